"""Exceptions for the MLLP transport.

Each type derives from exactly one of :class:`~shared.errors.PermanentError` /
:class:`~shared.errors.TransientError`, plus the :class:`MllpError` marker so callers can catch "anything
from the transport" in one clause. Exception text never contains message bytes.
"""

from __future__ import annotations

from shared.errors import PermanentError, TransientError


class MllpError(Exception):
    """Marker mixin for every MLLP transport error."""


class MllpPayloadError(MllpError, PermanentError):
    """A payload cannot be framed: it contains an MLLP control byte (start block 0x0B or end block 0x1C)."""

    code = "mllp-payload"


class MllpConnectionError(MllpError, TransientError):
    """Connecting failed, or the connection broke (reset, EOF, TLS failure) before the ACK arrived.

    Whether the peer processed the message is unknown: the sender must resend (at-least-once delivery).
    """

    code = "mllp-connection"


class MllpTlsError(MllpConnectionError):
    """The TLS handshake failed or the peer ended the session with a TLS alert: the peer's certificate is
    not trusted (wrong CA, wrong name) or the peer refused ours. ``reason`` is OpenSSL's short reason
    (``CERTIFICATE_VERIFY_FAILED``, ``TLSV13_ALERT_CERTIFICATE_REQUIRED``...), never certificate content.
    Transient like every connection failure: the message never reached the peer's application."""

    code = "mllp-tls"

    def __init__(self, text: str, *, reason: str) -> None:
        super().__init__(text)
        self.reason = reason


class MllpAckTimeout(MllpError, TransientError):
    """No complete reply frame arrived within the caller's timeout. The connection is dropped."""

    code = "mllp-ack-timeout"


class MllpProtocolError(MllpError, PermanentError):
    """The peer replied with something that is not a well-formed MLLP frame or not an HL7 ACK."""

    code = "mllp-protocol"
