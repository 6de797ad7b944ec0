"""HL7 v2 ingest: parse, validate, persist (publish) before ACK, and acknowledge — once per control ID.

One core serves both edges (``POST /api/hl7v2`` and the MLLP listener)::

    raw bytes -> parse -> validate -> duplicate check -> publish to tie-ingest -> remember outcome -> ACK

* **Unparseable** input gets ``AR`` with an ERR locating the problem (nothing is stored).
* **Structurally unacceptable** (unsupported type/event/version, segment sequence): ``AR`` / ``CR``.
* **Content errors** (required field missing, bad data type, table value, NHS number check digit) and
  messages that parse and validate but **cannot be mapped safely** to the canonical model (no patient
  identifier, no visit number for an admission, an unmapped code under a strict policy): original mode
  ``AE``, enhanced mode ``CR``, with an ERR naming the field. We never commit (``CA``) a message we know
  we cannot process: HTTP senders have no channel for a later application ACK, and a committed message
  that can only fail would end in the dead-letter queue instead of back with the sender.
* **Accepted**: the message is published to the ingest topic — the bus holds it durably — *before*
  ``AA`` / ``CA`` is built. If publishing fails (transient), the answer is ``AR`` / ``CE`` and nothing is
  remembered, so the sender's retry is processed normally.
* **Duplicates**: the outcome of every parseable message is remembered per (MSH-3, MSH-4, MSH-10), but
  only an *accepted* one (AA / CA) reserves the control ID: a retransmission with the same bytes is
  answered with the stored ACK and not re-processed; the same control ID with *different* content is
  rejected with ERR 205 (Duplicate key identifier). After a rejection (AR / AE / CR) the control ID stays
  free: senders resend a corrected message under it, and even a byte-identical resend is processed again
  (rules or configuration may have changed; a rejected message had no effects to protect). An accepted
  outcome replaces a stored rejection conditionally on its ETag. The bus message id is derived from the
  same key, so two concurrent copies are also de-duplicated by the bus.
* **Suspected unescaped delimiters** (components beyond a data type's arity, sub-components in a
  primitive, ...; see :mod:`shared.hl7v2.validation`) are ERR warnings in the ACK and a journal note
  (positions only). Senders listed in ``TIE_HL7_STRICT_SENDERS`` get them as errors (AE / CR).

No patient data reaches logs or the journal: only control IDs, codes and positions.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from shared.backbone import clinical
from shared.config.settings import get_settings
from shared.errors import TransientError
from shared.hl7v2 import Hl7ParseError, Message, limits, parse_message
from shared.hl7v2.ack import AckCode, build_ack, build_ack_for_unparseable, choose_ack_codes
from shared.hl7v2.validation import LIMIT_CHECK, Issue, ValidationResult, validate
from shared.ingest.ingest import InboundMessage, ProcessorContext, accept
from shared.journal import Journal
from shared.mapping.errors import MappingError
from shared.mapping.hl7v2_in import map_message
from shared.messaging.ports import MessageBus
from shared.storage.errors import ConcurrencyConflict, InvalidKey, RecordExists, RecordNotFound
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_HL7_OUTCOMES
from shared.storage.ports import Record, RecordStore

CHANNEL = "hl7v2"
CONTENT_TYPE = "x-application/hl7-v2+er7"
OUTCOME_TABLE = TABLE_HL7_OUTCOMES

_log = logging.getLogger("tie.hl7v2")

Outcome = Literal["accepted", "content-error", "rejected", "unavailable"]

#: Journal stage noting suspected unescaped delimiters (attributes: positions and counts, never values).
SUSPECT_DELIMITERS_STAGE = "suspect-delimiters"
_NOTE_LOCATIONS = 20
#: Conditional writes of one outcome before giving up (each failure means another writer got in between).
_STORE_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Hl7IngestResult:
    """What the edge sends back. ``ack`` is ``None`` when MSH-15 asks for no accept ACK."""

    ack: bytes | None
    code: AckCode | None
    outcome: Outcome
    duplicate: bool
    correlation_id: str
    control_id: str | None = None
    message_id: str | None = None


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _sender_key(message: Message) -> str:
    return safe_key(f"{message.get('MSH-3') or ''}|{message.get('MSH-4') or ''}")


def bus_message_id(message: Message) -> str:
    """Deterministic bus message id for a (sender, control id): the bus drops concurrent copies."""
    key = f"{message.get('MSH-3') or ''}|{message.get('MSH-4') or ''}|{message.control_id or ''}"
    return "hl7v2-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


class Hl7Ingest:
    """The HL7 v2 ingest service. Thread-safe: the ports are."""

    def __init__(
        self,
        bus: MessageBus,
        records: RecordStore,
        *,
        application: str = "TIE",
        facility: str | None = None,
        accepted_processing_ids: frozenset[str] | None = None,
        clock: Callable[[], datetime] | None = None,
        strict_senders: Collection[tuple[str, str]] | None = None,
    ) -> None:
        """``strict_senders``: (MSH-3.1, MSH-4.1) pairs, upper case, ``*`` = any, whose suspected unescaped
        delimiters are errors; ``None`` reads ``TIE_HL7_STRICT_SENDERS``."""
        self._bus = bus
        self._records = records
        self._journal = Journal(records)
        self._application = application
        self._facility = facility
        self._processing_ids = accepted_processing_ids
        self._clock = clock or (lambda: datetime.now(UTC))
        self._strict_senders = frozenset(
            get_settings().hl7_strict_sender_set if strict_senders is None else strict_senders
        )

    # ------------------------------------------------------------------------------------------ public
    def handle(self, raw: bytes, *, source: str, correlation_id: str) -> Hl7IngestResult:
        self._journal.record(correlation_id, "received", channel=CHANNEL, source=source, size=len(raw))
        try:
            message = parse_message(raw)
        except Hl7ParseError as exc:
            return self._unparseable(raw, exc, correlation_id)

        control_id = message.control_id
        previous: Record | None = None
        keys, key_issue = _outcome_keys(message)
        if keys is not None:
            previous = self._records.get(OUTCOME_TABLE, *keys)
            if previous is not None and _reserves(previous.value):
                return self._repeat(message, raw, previous.value, correlation_id)

        strict = self._is_strict(message)
        result = validate(message, accepted_processing_ids=self._processing_ids, strict_delimiters=strict)
        self._note_delimiters(result, message, correlation_id, strict=strict)
        plan = choose_ack_codes(message, result)
        if result.reject or not control_id or key_issue is not None:
            issues = result.issues
            extra = _missing_control_id() if not control_id else key_issue
            if extra is not None and not _reported_at(issues, extra):
                issues = (*issues, extra)
            code: AckCode = "AR" if plan.mode == "original" else "CR"
            return self._answer(
                message,
                raw,
                code,
                issues,
                "rejected",
                correlation_id,
                keys=keys,
                send=_accept_ack_wanted(message, code),
                previous=previous,
            )
        problems: tuple[Issue, ...] = result.errors
        if not problems:
            try:
                map_message(message, correlation_id=correlation_id)
            except MappingError as exc:
                problems = (mapping_issue(exc),)
        if problems:
            code = "AE" if plan.mode == "original" else "CR"
            return self._answer(
                message,
                raw,
                code,
                (*problems, *result.warnings),
                "content-error",
                correlation_id,
                keys=keys,
                send=_accept_ack_wanted(message, code),
                previous=previous,
            )

        message_id = bus_message_id(message)
        try:
            accept(
                self._bus,
                self._journal,
                body=raw,
                channel=CHANNEL,
                correlation_id=correlation_id,
                content_type=CONTENT_TYPE,
                source=source,
                message_id=message_id,
                extra_properties={
                    "hl7_message_type": message.message_type or "",
                    "hl7_trigger_event": message.trigger_event or "",
                    "hl7_control_id": control_id,
                },
                journal_receipt=False,
            )
        except TransientError as exc:
            _log.warning("ingest publish failed", extra={"control_id": control_id, "error_code": exc.code})
            failed = choose_ack_codes(message, result, committed=False)
            code = failed.immediate or ("AR" if failed.mode == "original" else "CE")
            issue = Issue("E", "207", text="Message could not be stored; resend later")
            return self._answer(message, raw, code, [issue], "unavailable", correlation_id, keys=None)
        code = plan.immediate or ("AA" if plan.mode == "original" else "CA")
        return self._answer(
            message,
            raw,
            code,
            result.warnings,
            "accepted",
            correlation_id,
            keys=keys,
            message_id=message_id,
            send=plan.immediate is not None,
            previous=previous,
        )

    # ----------------------------------------------------------------------------------------- helpers
    def _is_strict(self, message: Message) -> bool:
        if not self._strict_senders:
            return False
        app = (message.get("MSH-3.1") or "").strip().upper()
        facility = (message.get("MSH-4.1") or "").strip().upper()
        candidates = ((app, facility), (app, "*"), ("*", facility), ("*", "*"))
        return any(pair in self._strict_senders for pair in candidates)

    def _note_delimiters(
        self, result: ValidationResult, message: Message, correlation_id: str, *, strict: bool
    ) -> None:
        suspects = result.delimiter_issues
        if not suspects:
            return
        self._journal.record(
            correlation_id,
            SUSPECT_DELIMITERS_STAGE,
            control_id=message.control_id,
            count=len(suspects),
            locations=",".join(i.location for i in suspects[:_NOTE_LOCATIONS]),
            strict=strict,
        )
        _log.info(
            "hl7 suspected unescaped delimiters",
            extra={
                "control_id": message.control_id,
                "count": len(suspects),
                "reason": "strict" if strict else "warn",
            },
        )

    def oversize(self, head: bytes, *, size: int, source: str, correlation_id: str) -> Hl7IngestResult:
        """Answer a message larger than the edge accepts (HTTP body, MLLP frame) from its first bytes:
        AR / CR with ERR ``102`` and no location, as :func:`oversize_ack`. Nothing is stored."""
        self._journal.record(correlation_id, "received", channel=CHANNEL, source=source, size=size)
        ack = oversize_ack(
            head, correlation_id=correlation_id, application=self._application, now=self._clock()
        )
        return self._rejected_unparsed(ack, "oversize", "102", None, correlation_id)

    def _unparseable(self, raw: bytes, exc: Hl7ParseError, correlation_id: str) -> Hl7IngestResult:
        ack = build_ack_for_unparseable(
            raw, exc, sending_application=self._application, control_id=correlation_id, now=self._clock()
        )
        return self._rejected_unparsed(ack, "unparseable", exc.error_code, exc.segment, correlation_id)

    def _rejected_unparsed(
        self, ack: bytes, reason: str, error_code: str, segment: str | None, correlation_id: str
    ) -> Hl7IngestResult:
        code = unparsed_ack_code(ack)
        self._journal.record(
            correlation_id, "rejected", reason=reason, error_code=error_code, segment=segment
        )
        self._journal.record(correlation_id, "acknowledged", code=code)
        _log.info("hl7 " + reason, extra={"error_code": error_code, "status": code})
        return Hl7IngestResult(ack, code, "rejected", False, correlation_id)

    def _answer(
        self,
        message: Message,
        raw: bytes,
        code: AckCode,
        issues: tuple[Issue, ...] | list[Issue],
        outcome: Outcome,
        correlation_id: str,
        *,
        keys: tuple[str, str] | None,
        message_id: str | None = None,
        send: bool = True,
        previous: Record | None = None,
    ) -> Hl7IngestResult:
        """``keys``: where to remember the outcome (``None``: not remembered)."""
        ack_message = build_ack(
            message,
            code=code,
            issues=issues,
            sending_application=self._application,
            sending_facility=self._facility,
            control_id=correlation_id,
            now=self._clock(),
        )
        ack = ack_message.encode()
        traced = _traceable(message.control_id)
        if outcome != "accepted":
            self._journal.record(
                correlation_id,
                "rejected"
                if outcome == "rejected"
                else ("failed" if outcome == "unavailable" else "invalid"),
                control_id=traced,
                error_code=",".join(sorted({i.code for i in issues if i.severity == "E"})) or None,
            )
        if keys is not None:
            value = {
                "code": code,
                "outcome": outcome,
                "ack": ack.decode("latin-1"),
                "send": send,
                "digest": _digest(raw),
                "correlation_id": correlation_id,
                "message_id": message_id,
                "at": self._clock().isoformat(),
            }
            holder = self._remember(message, keys, value, previous)
            if holder is not None:
                # An accepted message holds the control ID (a concurrent copy won the race): answer as a
                # repeat of it (the bus dropped our duplicate publish, if any).
                return self._repeat(message, raw, holder, correlation_id, journal_receipt=False)
        self._journal.record(
            correlation_id, "acknowledged", code=code, control_id=traced, **_interface(message)
        )
        _log.info("hl7 acknowledged", extra={"control_id": traced, "status": code})
        return Hl7IngestResult(
            ack if send else None, code, outcome, False, correlation_id, traced, message_id
        )

    def _remember(
        self, message: Message, keys: tuple[str, str], value: dict[str, object], previous: Record | None
    ) -> dict[str, object] | None:
        """Store ``value`` as the control ID's outcome unless an accepted outcome holds it; then return that.

        Only accepted outcomes reserve the ID, so a stored rejection is replaced - with ``update`` on the
        ETag read, so a concurrent writer is never overwritten blindly: on a conflict the record is read
        again and the decision repeated.
        """
        partition, row = keys
        current = previous
        for _ in range(_STORE_ATTEMPTS):
            if current is not None and _reserves(current.value):
                return current.value
            try:
                if current is None:
                    self._records.insert(OUTCOME_TABLE, partition, row, value)
                else:
                    self._records.update(OUTCOME_TABLE, partition, row, value, etag=current.etag)
                return None
            except (RecordExists, ConcurrencyConflict, RecordNotFound):
                current = self._records.get(OUTCOME_TABLE, partition, row)
        _log.warning(
            "hl7 outcome not stored: control id contended",
            extra={"control_id": message.control_id, "status": value.get("code")},
        )
        return None

    def _repeat(
        self,
        message: Message,
        raw: bytes,
        stored: dict[str, object],
        correlation_id: str,
        *,
        journal_receipt: bool = True,
    ) -> Hl7IngestResult:
        if stored.get("digest") != _digest(raw):
            issue = Issue(
                "E",
                "205",
                "MSH",
                1,
                10,
                text="Control ID already used by this sender for a different message",
            )
            plan = choose_ack_codes(message)
            code: AckCode = "AR" if plan.mode == "original" else "CR"
            return self._answer(message, raw, code, [issue], "rejected", correlation_id, keys=None)
        self._journal.record(
            correlation_id,
            "duplicate",
            control_id=message.control_id,
            original_correlation_id=str(stored.get("correlation_id")),
        )
        code = _ack_code(stored.get("code"))
        self._journal.record(
            correlation_id, "acknowledged", code=code, control_id=message.control_id, **_interface(message)
        )
        ack = str(stored["ack"]).encode("latin-1") if stored.get("send", True) else None
        outcome = _outcome(stored.get("outcome"))
        message_id = stored.get("message_id")
        return Hl7IngestResult(
            ack,
            code,
            outcome,
            True,
            correlation_id,
            message.control_id,
            str(message_id) if message_id else None,
        )


_ACK_CODES: dict[str, AckCode] = {c: c for c in ("AA", "AE", "AR", "CA", "CE", "CR")}
_OUTCOMES: dict[str, Outcome] = {o: o for o in ("accepted", "content-error", "rejected", "unavailable")}


def _ack_code(value: object) -> AckCode:
    return _ACK_CODES[str(value)]


def _outcome(value: object) -> Outcome:
    return _OUTCOMES.get(str(value), "accepted")


def _reserves(stored: dict[str, object]) -> bool:
    """Only an accepted outcome (AA / CA) reserves its control ID; records without one count as accepted."""
    return _outcome(stored.get("outcome")) == "accepted"


def _accept_ack_wanted(message: Message, code: AckCode) -> bool:
    """Original mode always answers; enhanced mode follows MSH-15 (AL always, NE never, ER errors only,
    SU successes only; empty or unknown counts as AL, as in :mod:`shared.hl7v2.ack`)."""
    if not ((message.accept_ack_type or "").strip() or (message.application_ack_type or "").strip()):
        return True
    condition = (message.accept_ack_type or "").strip().upper()
    if condition == "NE":
        return False
    if condition == "ER":
        return code not in ("AA", "CA")
    if condition == "SU":
        return code in ("AA", "CA")
    return True


def _outcome_keys(message: Message) -> tuple[tuple[str, str] | None, Issue | None]:
    """The outcome record's (partition, row) keys for ``message``, or the ERR-ready issue that says why
    the sender (MSH-3, MSH-4) or control ID (MSH-10) cannot key one (too long once encoded for storage:
    ``102`` at that field, a rejection). ``(None, None)`` when there is no control ID."""
    control_id = message.control_id
    if not control_id:
        return None, None
    try:
        partition = _sender_key(message)
    except InvalidKey:
        text = "Sending application and facility (MSH-3, MSH-4) are too long"
        return None, Issue("E", "102", "MSH", 1, 3, text=text, check=LIMIT_CHECK)
    try:
        row = safe_key(control_id)
    except InvalidKey:
        text = "Message control ID (MSH-10) is too long"
        return None, Issue("E", "102", "MSH", 1, 10, text=text, check=LIMIT_CHECK)
    return (partition, row), None


#: ERR-8 / MSA-3 of a message over an edge's size limit (``TIE_HTTP_MAX_BODY_BYTES``,
#: ``TIE_MLLP_MAX_MESSAGE_BYTES``): the same text over HTTP and MLLP, whichever the limit.
OVERSIZE_TEXT = "Message exceeds the maximum size accepted by this endpoint"


def oversize_ack(
    head: bytes, *, correlation_id: str, application: str = "TIE", now: datetime | None = None
) -> bytes:
    """The ACK for a message over the size limit, built from its first bytes: AR (CR when MSH-15/16 are
    readable and valued), ERR ``102`` (a length error: permanent, not ``207``) without a location, and
    MSH-10 = ``correlation_id``. Same on both edges."""
    error = Hl7ParseError(OVERSIZE_TEXT, error_code="102")
    return build_ack_for_unparseable(
        head, error, sending_application=application, control_id=correlation_id, now=now
    )


def unparsed_ack_code(ack: bytes) -> AckCode:
    """MSA-1 of an ACK built by :func:`build_ack_for_unparseable` (``AR``, or ``CR`` in enhanced mode)."""
    try:
        code = parse_message(ack).get("MSA-1")
    except Hl7ParseError:
        return "AR"
    return "CR" if code == "CR" else "AR"


def _interface(message: Message) -> dict[str, str | None]:
    """Which interface a message came in on, for reconciliation (``docs/reconciliation.md``): the
    sender (MSH-3.1|MSH-4.1), the message type (MSH-9.1^MSH-9.2) and the sequence number (MSH-13, when
    the sender uses them). System identifiers only."""
    sender = f"{message.get('MSH-3.1') or ''}|{message.get('MSH-4.1') or ''}"
    kind = "^".join(p for p in (message.message_type, message.trigger_event) if p)
    sequence = (message.get("MSH-13") or "").strip()
    return {
        "sender": sender[:80],
        "message_type": kind[:20] or None,
        "sequence": sequence[:15] if sequence.isdigit() else None,
    }


def _traceable(control_id: str | None) -> str | None:
    """``control_id`` for the journal, logs and the result when within the MSH-10 bound, else ``None``."""
    if control_id is None or len(control_id) > limits.MSH_FIELD_LENGTHS.get(10, 199):
        return None
    return control_id


def _reported_at(issues: Sequence[Issue], issue: Issue) -> bool:
    """True when ``issues`` already hold an error at ``issue``'s segment and field."""
    return any(
        i.is_error and (i.segment, i.segment_index, i.field) == (issue.segment, 1, issue.field)
        for i in issues
    )


def _missing_control_id() -> Issue:
    return Issue("E", "101", "MSH", 1, 10, text="Message control ID (MSH-10) is required")


def mapping_issue(exc: MappingError) -> Issue:
    """An ERR-ready issue for a mapping failure, located at the field the mapper names."""
    segment = None
    occurrence = field = component = None
    if exc.field:
        m = _LOCATION.match(exc.field)
        if m:
            segment = m["segment"]
            occurrence = int(m["occurrence"]) if m["occurrence"] else 1
            field = int(m["field"]) if m["field"] else None
            component = int(m["component"]) if m["component"] else None
    return Issue(
        "E",
        exc.error_code,
        segment,
        None,
        field,
        component,
        text=f"Cannot be mapped safely: {exc.reason}"[:200],
        occurrence=occurrence,
    )


_LOCATION = re.compile(
    r"^(?P<segment>[A-Z][A-Z0-9]{2})(?:\((?P<occurrence>\d+)\))?(?:-(?P<field>\d+))?"
    r"(?:\[\d+\])?(?:\.(?P<component>\d+))?"
)


def process_hl7v2(message: InboundMessage, context: ProcessorContext) -> str:
    """Bus-side processor for the ``hl7v2`` channel: map to the canonical model and publish the clinical
    event to ``clinical-events`` (message id = the clinical-event key, so a redelivery re-publishes a
    duplicate the bus drops). Mapping is deterministic and was checked at the edge; a failure here is a
    defect or a changed rule set, and the message is retried and then dead-lettered, never dropped."""
    parsed = parse_message(message.body)
    event = map_message(parsed, correlation_id=message.correlation_id).value
    published = clinical.to_message(event)
    context.bus.publish(clinical.TOPIC, [published])
    if context.audit is not None:
        context.audit.transformed(
            correlation_id=message.correlation_id,
            channel=message.channel,
            message_id=message.message_id,
            received=message.body,
            produced=published.body,
            patient=published.session_id,
            event_key=event.key.value,
        )
    context.journal.record(
        message.correlation_id, "mapped", event_kind=event.kind.value, event_key=event.key.value
    )
    return f"published {event.kind.value}"
