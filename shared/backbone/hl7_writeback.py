"""Write-back to a system that speaks HL7 v2 over MLLP (e.g. a PAS or a lab system).

Events are written as HL7 v2 (:mod:`shared.mapping.hl7v2_out`) under the downstream's outbound profile
(:mod:`shared.backbone.hl7_profile`): encounter and patient events as ADT (their own trigger events, or
collapsed to A08 / A31), merges as ADT^A40, results as ORU^R01. Other kinds (orders, allergies...) are
*skipped* for this downstream (journaled with the reason); so is everything when no MLLP address is
configured.

MSH-10 is derived from the clinical-event key, its content digest and the message that carried it (the
mapper's default), and MSH-7 is the time TIE received the event (:func:`message_time`), so a message re-sent
after a lost ACK or a crash is the same message byte for byte and a receiver's own duplicate check
recognises it.

The receiver's answer decides (:func:`shared.mllp.client.read_msa`):

==================================  ===========================================================
``AA`` / ``CA``                     done
``AE`` / ``CE``                     retry (:class:`~shared.backbone.errors.DownstreamRetry`), unless an
                                    error it reports is permanent by ``hl7_ack_errors.json`` (HL7 0357:
                                    required field missing, table value not found, unsupported message
                                    type...): dead-letter at once
``AR`` / ``CR``                     dead-letter (:class:`~shared.backbone.errors.DownstreamRejected`)
no ACK within ``ack_timeout``       retry, counts for the circuit breaker (unavailable)
connection refused / reset          retry, counts for the circuit breaker (unavailable)
TLS refused (either certificate)    retry, counts for the circuit breaker (unavailable), ``detail``
                                    ``tls <OpenSSL reason>``: a link fault, not the message's
garbled reply, ACK for another ID   retry (the message may or may not have been processed)
==================================  ===========================================================

The error codes and positions the ACK reports (ERR-3 / ERR-2, ERR-1 and MSA-6 before v2.5; never the
text) are journaled with the retry or the failure (``detail``). See ``docs/hl7-writeback.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import threading
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from importlib import resources
from ssl import SSLContext
from typing import Any, NoReturn, TypeVar

from shared.backbone.errors import (
    DownstreamRejected,
    DownstreamRetry,
    DownstreamUnavailable,
    WriteBackUnmappable,
)
from shared.backbone.hl7_profile import OutboundProfile, to_ascii
from shared.backbone.writeback import DownstreamResponse
from shared.canonical.model import ClinicalEvent, EventKind
from shared.credentials.ports import TlsSource
from shared.hl7v2 import Message
from shared.mapping.hl7v2_out import Header, Hl7OutError, to_adt, to_adt_a40, to_oru_r01
from shared.mllp.client import AckError, AckOutcome, MllpClient, read_msa
from shared.mllp.errors import (
    MllpAckTimeout,
    MllpConnectionError,
    MllpError,
    MllpProtocolError,
    MllpTlsError,
)

T = TypeVar("T")

_ENCOUNTER_KINDS = frozenset(
    {
        EventKind.ADMISSION,
        EventKind.TRANSFER,
        EventKind.DISCHARGE,
        EventKind.REGISTRATION,
        EventKind.PRE_ADMISSION,
        EventKind.ENCOUNTER_UPDATE,
        EventKind.CANCEL_ADMISSION,
        EventKind.CANCEL_TRANSFER,
        EventKind.CANCEL_DISCHARGE,
    }
)
_PATIENT_KINDS = frozenset({EventKind.PATIENT_CREATED, EventKind.PATIENT_UPDATED})
_OTHER_KINDS = frozenset({EventKind.RESULT, EventKind.PATIENT_MERGE})


class MllpSender:
    """A synchronous face on :class:`~shared.mllp.client.MllpClient` for threaded callers.

    One connection, driven by a private event loop in a daemon thread; concurrent :meth:`send` calls are
    serialised by the client (strict request/response on one connection keeps the receiver's order).
    ``tls``: a registry TLS source (client certificate + server CA, rotation, per-send audit;
    docs/credentials.md) instead of a fixed ``ssl`` context.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 10.0,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
        tls: TlsSource | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tie-mllp-sender", daemon=True)
        self._thread.start()
        self._client = MllpClient(
            host, port, ssl=ssl, server_hostname=server_hostname, connect_timeout=connect_timeout, tls=tls
        )
        self._closed = False

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise MllpAckTimeout(f"no reply within {timeout:g}s") from None

    def send(self, payload: bytes, *, timeout: float) -> bytes:
        """Send one message, return the ACK payload (MLLP errors as :mod:`shared.mllp.errors`)."""
        if self._closed:
            raise MllpConnectionError("sender is closed")
        # The client bounds connect and exchange itself; the outer bound only guards a stuck loop.
        return self._run(self._client.send(payload, timeout=timeout), timeout + self._connect_timeout + 5)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(MllpError):
            self._run(self._client.close(), 5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


class Hl7MllpDownstream:
    """:class:`~shared.backbone.writeback.Downstream` sending HL7 v2 over MLLP (see the module docs).

    ``sender=None``: not configured - every event is skipped. ``profile``: what the receiver expects
    (:mod:`shared.backbone.hl7_profile`); without one, the keyword arguments give the MSH fields over the
    default profile.
    """

    def __init__(
        self,
        sender: MllpSender | None,
        *,
        name: str = "hl7v2",
        ack_timeout: float = 30.0,
        sending_application: str = "TIE",
        sending_facility: str = "",
        receiving_application: str = "",
        receiving_facility: str = "",
        version: str = "2.5.1",
        profile: OutboundProfile | None = None,
    ) -> None:
        self.sender = sender
        self.name = name
        self.ack_timeout = ack_timeout
        self.profile = profile or OutboundProfile(
            version=version,
            sending_application=sending_application,
            sending_facility=sending_facility,
            receiving_application=receiving_application,
            receiving_facility=receiving_facility,
        )

    def skip_reason(self, event: ClinicalEvent) -> str | None:
        if self.sender is None:
            return "not-configured"
        if event.kind in _ENCOUNTER_KINDS or event.kind in _PATIENT_KINDS or event.kind in _OTHER_KINDS:
            return None
        return f"kind-not-written-back:{event.kind.value}"

    def message_for(self, event: ClinicalEvent, *, now: datetime | None = None) -> bytes:
        """The HL7 v2 message for ``event`` (raises :class:`WriteBackUnmappable` naming the error code and
        the canonical field that could not be written); ``now``: the message time (MSH-7)."""
        p = self.profile
        header = Header(
            sending_application=p.sending_application,
            sending_facility=p.sending_facility,
            receiving_application=p.receiving_application,
            receiving_facility=p.receiving_facility,
            version=p.version,
            now=now or message_time(event),
        )
        try:
            if event.kind in _ENCOUNTER_KINDS or event.kind in _PATIENT_KINDS:
                trigger, structure = p.trigger(event.kind, event.kind in _PATIENT_KINDS)
                message = to_adt(event, header, trigger=trigger, structure=structure)
            elif event.kind is EventKind.PATIENT_MERGE:
                message = to_adt_a40(event, header)
            elif event.kind is EventKind.RESULT:
                message = to_oru_r01(event, header)
            else:
                raise WriteBackUnmappable(self.name, f"kind {event.kind.value} is not written as HL7 v2")
        except Hl7OutError as exc:
            raise WriteBackUnmappable(
                self.name,
                f"event cannot be written as HL7 v2 ({exc.code} at {exc.field})",
                detail=f"{exc.code} at {exc.field}",
            ) from None
        return self._on_the_wire(message)

    def _on_the_wire(self, message: Message) -> bytes:
        """The profile's MSH-15/16/17/18 set, and the message encoded in its character set (ASCII: without
        diacritics; a character the set cannot hold refuses the message, naming the field)."""
        p = self.profile
        for path, value in (
            ("MSH-15", p.accept_ack),
            ("MSH-16", p.application_ack),
            ("MSH-17", p.country),
            ("MSH-18", "" if p.charset == "ASCII" else p.charset),
        ):
            if value:
                message.set(path, value)
        text = message.to_er7()
        if p.charset == "ASCII":
            text, bad = to_ascii(text)
            if bad is not None:
                self._refuse_charset(text, bad)
        try:
            return text.encode(p.codec)
        except UnicodeEncodeError as exc:
            self._refuse_charset(text, exc.start)
            raise  # unreachable: _refuse_charset raises

    def _refuse_charset(self, text: str, index: int) -> NoReturn:
        before = text[:index]
        segment = before.rsplit("\r", 1)[-1]
        name = segment[:3]
        field = segment.count("|") + (1 if name == "MSH" else 0)
        where = f"{name}-{field}"
        raise WriteBackUnmappable(
            self.name,
            f"a character has no form in the profile's character set {self.profile.charset} ({where})",
            detail=f"charset {self.profile.charset} at {where}",
        )

    def apply(self, event: ClinicalEvent) -> DownstreamResponse:
        if self.sender is None:
            raise DownstreamUnavailable(self.name, "no MLLP address configured")
        payload = self.message_for(event)
        try:
            ack = self.sender.send(payload, timeout=self.ack_timeout)
        except MllpAckTimeout:
            raise DownstreamUnavailable(self.name, "no ACK within the timeout") from None
        except MllpTlsError as exc:  # a certificate refused on either side: docs/credentials.md
            raise DownstreamUnavailable(
                self.name, f"TLS refused ({exc.code})", detail=f"tls {exc.reason}"
            ) from None
        except MllpConnectionError as exc:
            raise DownstreamUnavailable(self.name, f"connection failed ({exc.code})") from None
        except MllpProtocolError as exc:
            raise DownstreamRetry(self.name, f"unusable reply ({exc.code})") from None
        try:
            summary = read_msa(ack)
        except MllpProtocolError:
            raise DownstreamRetry(self.name, "the reply is not an HL7 ACK") from None
        control_id = _control_id(payload)
        if control_id and summary.control_id != control_id:
            raise DownstreamRetry(self.name, "the ACK names another message", response=summary.code)
        detail = ack_detail(summary.errors)
        if summary.outcome is AckOutcome.ERROR:
            if ack_error_is_permanent(summary.errors):
                raise DownstreamRejected(
                    self.name,
                    f"application error ACK {summary.code}, not retryable ({detail})",
                    response=summary.code,
                    detail=detail,
                )
            raise DownstreamRetry(
                self.name, f"application error ACK {summary.code}", response=summary.code, detail=detail
            )
        if summary.outcome is AckOutcome.REJECT:
            raise DownstreamRejected(
                self.name, f"rejected with ACK {summary.code}", response=summary.code, detail=detail
            )
        return DownstreamResponse(
            status=summary.code,
            summary=f"{summary.code} for control ID {summary.control_id}",
            details={"control_id": summary.control_id},
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            payload=payload,
            reply=ack,
        )

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()


def message_time(event: ClinicalEvent) -> datetime | None:
    """MSH-7 of the message for ``event``: when TIE received the event (its provenance), else when the
    source recorded it - so building the message again (a retry after a lost ACK, a redelivery after a
    crash) gives the same bytes, not only the same MSH-10. ``None`` (the clock) when neither is known."""
    for stamp in (event.provenance.received_at, event.recorded_at):
        if stamp is not None and stamp.value.tzinfo is not None:
            return stamp.value
    return None


@functools.cache
def _ack_error_table() -> tuple[frozenset[str], frozenset[str]]:
    """(permanent codes, ignored severities) from ``hl7_ack_errors.json``."""
    data = json.loads(resources.files("shared.backbone").joinpath("hl7_ack_errors.json").read_text("utf-8"))
    return frozenset(data["permanent"]), frozenset(data["ignored_severities"])


def ack_error_is_permanent(errors: tuple[AckError, ...]) -> bool:
    """Whether an AE/CE answer is permanent: an error (severity E, F or unstated) whose code the table
    lists as permanent (a required field missing, a table value not found, an unsupported message type...).
    Anything else - no code, a transient or unknown code - is retried."""
    permanent, ignored = _ack_error_table()
    return any(e.code in permanent for e in errors if e.severity not in ignored)


def ack_detail(errors: tuple[AckError, ...]) -> str | None:
    """``ERR 101 at PID-3; ERR 207`` (codes and positions only, for the journal), ``None`` without errors."""
    if not errors:
        return None
    parts = [
        f"ERR {e.code}"
        + (f" at {e.location}" if e.location else "")
        + (f" ({e.severity})" if e.severity else "")
        for e in errors[:5]
    ]
    return "; ".join(parts)


def _control_id(payload: bytes) -> str:
    """MSH-10 of an ER7 message (separators from MSH-1/MSH-2)."""
    first = payload.split(b"\r", 1)[0]
    if len(first) < 4:
        return ""
    fields = first.split(first[3:4])
    if len(fields) <= 9:
        return ""
    component = fields[1][:1] or b"^"
    return fields[9].split(component, 1)[0].decode("ascii", errors="replace")
