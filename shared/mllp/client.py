"""Asyncio MLLP client (sender side) and a parser-free ACK classifier.

:class:`MllpClient` keeps one connection and does strict request/response: :meth:`MllpClient.send`
writes one frame and returns the payload of the next reply frame. Concurrent ``send`` calls on one client
are serialised. After any failure (timeout, I/O error, garbled reply, cancellation) the connection is
dropped, because a late reply could otherwise be paired with the next message; the next ``send``
reconnects. A connection the peer has already closed is replaced before sending, so an idle-closed
connection costs nothing.

:func:`classify_ack` reads MSA-1 from an ACK without the HL7 parser (the transport stays independent of
it). Write-back maps the outcome as ACCEPT -> done, ERROR -> retry, REJECT -> dead-letter.

Credentials: instead of a fixed ``ssl`` context a client may take a ``tls`` source
(:class:`shared.credentials.broker.ClientTls`, from the downstream registry): each new connection asks it
for the current context (a rotated certificate is used from the next connection on), and each ``send``
asks it to record the credential used (per-call audit) before anything is written. A missing or expired
certificate fails the call with the credential error (``docs/credentials.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
from dataclasses import dataclass
from ssl import SSLContext, SSLError
from typing import Final

from shared.credentials.ports import TlsSource
from shared.mllp.errors import MllpAckTimeout, MllpConnectionError, MllpProtocolError, MllpTlsError
from shared.mllp.framing import DEFAULT_MAX_MESSAGE_BYTES, Frame, FrameDecoder, Garbage, frame

_READ_CHUNK: Final = 65_536
_CLOSE_TIMEOUT: Final = 2.0


class MllpClient:
    """One MLLP connection to ``host:port`` (TLS when ``ssl`` or ``tls`` is given).

    ``server_hostname`` overrides the name checked against the server certificate (default: ``host``).
    ``connect_timeout`` bounds connecting plus the TLS handshake. ``max_message_bytes`` bounds a reply.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: TlsSource | None = None,
    ) -> None:
        if ssl is not None and tls is not None:
            raise ValueError("give ssl or tls, not both")
        self._host = host
        self._port = port
        self._ssl = ssl
        self._tls = tls
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._max_message_bytes = max_message_bytes
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = FrameDecoder(max_message_bytes)
        self._lock = asyncio.Lock()
        #: Number of connections established so far (reconnects included).
        self.connections_made = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        """Open the connection if it is not open. Raises :class:`MllpConnectionError` on failure."""
        if self.connected and self._reader is not None and not self._reader.at_eof():
            return
        await self._drop()
        context = self._tls.context() if self._tls is not None else self._ssl
        hostname = (self._server_hostname or self._host) if context is not None else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=context, server_hostname=hostname, limit=_READ_CHUNK * 2
                )
        except TimeoutError as exc:
            raise MllpConnectionError(f"connect to port {self._port} timed out") from exc
        except SSLError as exc:
            reason = _tls_reason(exc)
            text = f"TLS handshake with port {self._port} failed: {reason}"
            raise MllpTlsError(text, reason=reason) from exc
        except OSError as exc:
            raise MllpConnectionError(f"connect to port {self._port} failed: {type(exc).__name__}") from exc
        self._reader, self._writer = reader, writer
        self._decoder = FrameDecoder(self._max_message_bytes)
        self.connections_made += 1

    async def send(self, message: bytes, *, timeout: float) -> bytes:
        """Send one message and return the payload of the reply frame (the ACK).

        ``timeout`` bounds writing plus waiting for the reply (connecting has its own
        ``connect_timeout``). Raises :class:`MllpAckTimeout`, :class:`MllpConnectionError`,
        :class:`MllpProtocolError`, or :class:`~shared.mllp.errors.MllpPayloadError` when ``message``
        cannot be framed.
        """
        data = frame(message)
        async with self._lock:
            await self.connect()
            if self._tls is not None:
                self._tls.record_use("mllp-send")
            ok = False
            try:
                async with asyncio.timeout(timeout):
                    reply = await self._exchange(data)
                ok = True
                return reply
            except TimeoutError as exc:
                raise MllpAckTimeout(f"no reply within {timeout:g}s") from exc
            except SSLError as exc:  # TLS 1.3: a refused client certificate arrives as an alert here
                reason = _tls_reason(exc)
                raise MllpTlsError(f"TLS session ended by the peer: {reason}", reason=reason) from exc
            except OSError as exc:
                raise MllpConnectionError(f"connection failed: {type(exc).__name__}") from exc
            finally:
                if not ok:
                    await self._drop()

    async def _exchange(self, data: bytes) -> bytes:
        assert self._reader is not None
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()
        while True:
            chunk = await self._reader.read(_READ_CHUNK)
            if not chunk:
                raise MllpConnectionError("connection closed by peer before the reply")
            events = [e for e in self._decoder.feed(chunk) if not isinstance(e, Garbage)]
            if not events:
                continue
            if len(events) > 1 or not isinstance(events[0], Frame):
                kinds = ",".join(type(e).__name__ for e in events)
                raise MllpProtocolError(f"unexpected reply framing: {kinds}")
            if self._decoder.in_frame:
                raise MllpProtocolError("unexpected data after the reply frame")
            return events[0].payload

    async def close(self) -> None:
        """Close the connection (idempotent); a later :meth:`send` reconnects."""
        await self._drop()

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)

    async def __aenter__(self) -> MllpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _tls_reason(exc: SSLError) -> str:
    """OpenSSL's short reason code (no certificate content), else the exception type."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason.replace("_", "").isalnum():
        return reason
    return type(exc).__name__


def send_message(
    host: str,
    port: int,
    message: bytes,
    timeout: float,
    *,
    ssl: SSLContext | None = None,
    server_hostname: str | None = None,
) -> bytes:
    """Synchronous one-shot send: connect, send, return the ACK payload, close.

    Runs its own event loop, so it must not be called from inside a running loop. ``timeout`` bounds
    connecting and the exchange separately.
    """

    async def _run() -> bytes:
        async with MllpClient(
            host, port, ssl=ssl, server_hostname=server_hostname, connect_timeout=timeout
        ) as client:
            return await client.send(message, timeout=timeout)

    return asyncio.run(_run())


# ---------------------------------------------------------------------------- ACK classification


class AckOutcome(enum.Enum):
    """What the receiver said, from MSA-1 (original and enhanced acknowledgment codes)."""

    ACCEPT = "accept"  # AA / CA -> done
    ERROR = "error"  # AE / CE -> retry
    REJECT = "reject"  # AR / CR -> dead-letter


_ACK_CODES: Final = {
    b"AA": AckOutcome.ACCEPT,
    b"CA": AckOutcome.ACCEPT,
    b"AE": AckOutcome.ERROR,
    b"CE": AckOutcome.ERROR,
    b"AR": AckOutcome.REJECT,
    b"CR": AckOutcome.REJECT,
}
_SEGMENT_SPLIT: Final = re.compile(rb"[\r\n]+")


_SAFE_TOKEN: Final = re.compile(rb"[A-Za-z0-9.\-]+")


@dataclass(frozen=True, slots=True)
class AckError:
    """One error the receiver reported (an ERR segment, or MSA-6 before v2.5): the HL7 table 0357 (or the
    receiver's) error code, the severity (ERR-4: ``E``/``F``/``W``/``I``, ``""`` when not given) and where
    (``PID-3``; ``""`` when not given). Codes and positions only - never the diagnostic text (it may quote
    patient data) - so it is safe to journal."""

    code: str
    severity: str = ""
    location: str = ""


@dataclass(frozen=True, slots=True)
class AckSummary:
    """MSA-1 and MSA-2 of an ACK, and the errors it reports (identifiers/codes only, safe to log)."""

    outcome: AckOutcome
    code: str
    control_id: str
    errors: tuple[AckError, ...] = ()


def _token(value: bytes, limit: int = 20) -> str:
    """The leading identifier-like token (letters, digits, ``.``, ``-``) of an ACK field, bounded: a code
    or a position, never the text after it."""
    found = _SAFE_TOKEN.match(value.strip())
    return found.group()[:limit].decode("ascii") if found else ""


def _location(parts: list[bytes]) -> str:
    """``SEG-n`` (or ``SEG``) from an ERL/ELD's segment id and field position."""
    segment = _token(parts[0], 3) if parts else ""
    field = _token(parts[2], 4) if len(parts) > 2 else ""
    if not segment:
        return ""
    return f"{segment}-{field}" if field.isdigit() else segment


def _errors(fields: list[bytes], component: bytes, subcomponent: bytes, repetition: bytes) -> list[AckError]:
    """The errors of one ERR segment: v2.5+ ERR-2 location, ERR-3 code, ERR-4 severity; else (v2.3/2.4)
    each ERR-1 repetition ``seg^seq^field^code&text&table``."""

    def part(n: int) -> list[bytes]:
        return fields[n].split(component) if len(fields) > n and fields[n] else []

    code = part(3)
    if code and code[0].strip():
        severity = _token(part(4)[0], 1) if part(4) else ""
        return [AckError(_token(code[0]), severity, _location(part(2)))]
    found = []
    for rep in fields[1].split(b"~") if len(fields) > 1 and fields[1] else []:
        eld = rep.split(component)
        eld_code = eld[3].split(subcomponent, 1)[0] if len(eld) > 3 else b""
        if eld_code.strip():
            found.append(AckError(_token(eld_code), "", _location(eld)))
    return found


def read_msa(ack_payload: bytes) -> AckSummary:
    """Read MSA-1 (acknowledgment code), MSA-2 (control id of the acknowledged message) and the errors
    reported (ERR segments; MSA-6 when there is none) as :class:`AckError` codes and positions.

    Separators come from the ACK's own MSH-1 (field) and MSH-2 (first char: component); segments may be
    separated by CR, LF or CRLF. Raises :class:`MllpProtocolError` when the payload does not start with
    MSH, has no MSA segment, or MSA-1 is not one of AA/AE/AR/CA/CE/CR.
    """
    if len(ack_payload) < 4 or not ack_payload.startswith(b"MSH"):
        raise MllpProtocolError("reply is not an HL7 message (no leading MSH)")
    field_sep = ack_payload[3:4]
    if field_sep.isalnum() or field_sep in (b"\r", b"\n", b" "):
        raise MllpProtocolError("reply MSH-1 field separator is invalid")
    segments = _SEGMENT_SPLIT.split(ack_payload)
    msh_fields = segments[0].split(field_sep)
    encoding = msh_fields[1] if len(msh_fields) > 1 else b""
    component_sep = encoding[:1] or b"^"
    for segment in segments[1:]:
        fields = segment.split(field_sep)
        if fields[0].strip() != b"MSA":
            continue
        raw_code = fields[1] if len(fields) > 1 else b""
        code = raw_code.split(component_sep, 1)[0].strip().upper()
        outcome = _ACK_CODES.get(code)
        if outcome is None:
            raise MllpProtocolError("reply MSA-1 is not a known acknowledgment code")
        control = fields[2].split(component_sep, 1)[0].strip() if len(fields) > 2 else b""
        errors: list[AckError] = []
        subcomponent_sep = encoding[3:4] or b"&"
        repetition_sep = encoding[1:2] or b"~"
        for other in segments[1:]:
            err = other.split(field_sep)
            if err[0].strip() == b"ERR":
                errors.extend(_errors(err, component_sep, subcomponent_sep, repetition_sep))
        if not errors and len(fields) > 6 and fields[6].strip():
            # MSA-6 error condition (v2.3/2.4, withdrawn in v2.5): code ^ text
            errors.append(AckError(_token(fields[6].split(component_sep, 1)[0])))
        return AckSummary(
            outcome, code.decode("ascii"), control.decode("ascii", errors="replace"), tuple(errors)
        )
    raise MllpProtocolError("reply has no MSA segment")


def classify_ack(ack_payload: bytes) -> AckOutcome:
    """ACCEPT (AA/CA), ERROR (AE/CE) or REJECT (AR/CR) from MSA-1; see :func:`read_msa`."""
    return read_msa(ack_payload).outcome
