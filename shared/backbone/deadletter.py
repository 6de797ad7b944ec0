"""Dead-letter handling: notice every dead letter, record it, alert, keep it; list / show / replay / purge.

:class:`DeadLetterMonitor` (timer ``deadletter_monitor`` in ``functions/deadletter.py``) **peeks** each
subscription's dead-letter sub-queue - it never receives or completes, so the message stays where it is
until an operator replays or purges it. For every dead letter it has not seen before (table
``deadletters``, partition ``<topic>~<subscription>``, row = sequence number) it:

* records topic, subscription, sequence number, message id, correlation ID, dead-letter reason and
  description, delivery count, enqueue / dead-letter times, the clinical-event key (an application
  property) and the last error code the journal holds for that subscriber (the bus only says
  ``MaxDeliveryCountExceeded``; the journal says *why* each delivery failed) - no body;
* journals ``dead-lettered`` for the correlation ID (closing the subscriber's in-flight row);
* publishes a ``deadletter.recorded`` platform event (severity ``error``) for alerting;
* clears the parked record of a released copy that ended in the dead-letter queue.

A peek window of ``peek_limit`` messages per subscription bounds each pass; when a sub-queue holds at
least that many the monitor also raises ``deadletter.backlog`` (the window always starts at the oldest
dead letter: purge or replay to see further).

Operations (``tie dlq ...``): :func:`list_dead_letters`, :func:`show_dead_letter`, :func:`replay`,
:func:`purge`. A replay returns messages to their subscription tagged ``tie_replay_count`` (the bus port's
replay); the write-back subscriber hands that to the idempotency guard as ``is_replay``: a replay of
something already applied is answered from the store, replaying twice changes nothing, and a replay of a
stored permanent failure (after the fix) runs the effect once more.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.backbone import contracts
from shared.backbone.delivery import PARKED_ROW_PROPERTY
from shared.errors import TieError
from shared.journal import DEAD_LETTERED, FAILED, REPLAYED, Journal
from shared.messaging.ports import MessageBus, ReceivedMessage, replay_count
from shared.messaging.topology import TOPIC_PLATFORM, TOPOLOGY, TopicSpec
from shared.observability.correlation import MESSAGE_PROPERTY as CORRELATION_PROPERTY
from shared.storage.errors import RecordExists
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_DEADLETTERS
from shared.storage.ports import RecordStore

_log = logging.getLogger("tie.backbone.deadletter")

EVENT_KEY_PROPERTY = "tie_event_key"
DEFAULT_PEEK_LIMIT = 250


def _partition(topic: str, subscription: str) -> str:
    return safe_key(f"{topic}~{subscription}")


def _row(sequence_number: int) -> str:
    return f"{sequence_number:020d}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered message as operators see it (metadata only; ``body`` only when asked for)."""

    topic: str
    subscription: str
    sequence_number: int
    message_id: str
    correlation_id: str | None
    reason: str | None
    description: str | None
    delivery_count: int
    enqueued_at: datetime
    dead_lettered_at: datetime | None
    event_key: str | None
    replay_count: int
    size: int
    last_error_code: str | None = None
    recorded_at: datetime | None = None
    body: bytes | None = None
    #: What the last failure reported beside its code: the downstream's error codes and positions (HL7
    #: ``ERR 103 at PID-8``) or the canonical field a mapping refused - never values.
    last_error_detail: str | None = None

    def to_json(self, *, include_body: bool = False) -> dict[str, Any]:
        row: dict[str, Any] = {
            "topic": self.topic,
            "subscription": self.subscription,
            "sequence": self.sequence_number,
            "messageId": self.message_id,
            "correlationId": self.correlation_id,
            "reason": self.reason,
            "description": self.description,
            "deliveryCount": self.delivery_count,
            "enqueued": self.enqueued_at.isoformat(),
            "deadLettered": self.dead_lettered_at.isoformat() if self.dead_lettered_at else None,
            "eventKey": self.event_key,
            "replayCount": self.replay_count,
            "size": self.size,
            "lastErrorCode": self.last_error_code,
            "lastErrorDetail": self.last_error_detail,
            "recorded": self.recorded_at.isoformat() if self.recorded_at else None,
        }
        if include_body and self.body is not None:
            row["body"] = self.body.decode("utf-8", errors="replace")
        return row


def _from_message(message: ReceivedMessage, record: Mapping[str, Any] | None) -> DeadLetter:
    props = message.application_properties
    corr = message.correlation_id or props.get(CORRELATION_PROPERTY)
    key = props.get(EVENT_KEY_PROPERTY)
    recorded = record.get("recorded_at") if record else None
    return DeadLetter(
        topic=message.topic,
        subscription=message.subscription,
        sequence_number=message.sequence_number,
        message_id=message.message_id,
        correlation_id=str(corr) if corr else None,
        reason=message.dead_letter_reason,
        description=message.dead_letter_description,
        delivery_count=message.delivery_count,
        enqueued_at=message.enqueued_time,
        dead_lettered_at=message.dead_lettered_at,
        event_key=str(key) if key else None,
        replay_count=replay_count(props),
        size=len(message.body),
        last_error_code=(record or {}).get("last_error_code"),
        last_error_detail=(record or {}).get("last_error_detail"),
        recorded_at=datetime.fromisoformat(recorded) if isinstance(recorded, str) else None,
        body=message.body,
    )


@dataclass(slots=True)
class ScanReport:
    seen: int = 0
    recorded: int = 0
    backlogged: list[str] = field(default_factory=list)
    failed: int = 0


def _subscriptions(topology: Sequence[TopicSpec]) -> list[tuple[str, str]]:
    return [(t.name, s.name) for t in topology for s in t.subscriptions]


def last_error_code(journal: Journal, correlation_id: str | None, subscription: str) -> str | None:
    """The error code of the last ``failed`` stage the journal holds for ``subscription`` (for a delivery
    answered with a stored failure: the stored failure's code)."""
    if not correlation_id:
        return None
    for entry in reversed(journal.trace(correlation_id)):
        if entry.stage != FAILED:
            continue
        subscriber = entry.attributes.get("subscriber")
        if subscriber in (None, subscription):
            code = entry.attributes.get("cause") or entry.attributes.get("error_code")
            return str(code) if code else None
    return None


def last_error_detail(journal: Journal, correlation_id: str | None, subscription: str) -> str | None:
    """The ``detail`` of the latest ``failed`` stage of ``subscription`` that has one (a redelivery answered
    with a stored failure journals the stored code but no detail: the detail is the original failure's)."""
    if not correlation_id:
        return None
    for entry in reversed(journal.trace(correlation_id)):
        if entry.stage == FAILED and entry.attributes.get("subscriber") in (None, subscription):
            detail = entry.attributes.get("detail")
            if detail:
                return str(detail)
    return None


class DeadLetterMonitor:
    """Notices, records and announces dead letters (see the module docstring). Safe to run concurrently
    (recording is an insert-if-absent, so only one instance announces each dead letter)."""

    def __init__(
        self,
        bus: MessageBus,
        records: RecordStore,
        journal: Journal,
        *,
        topology: Sequence[TopicSpec] = TOPOLOGY,
        peek_limit: int = DEFAULT_PEEK_LIMIT,
        forget_parked: Callable[[str, str], object] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._bus = bus
        self._records = records
        self._journal = journal
        self._subscriptions = _subscriptions(topology)
        self._peek_limit = peek_limit
        self._forget_parked = forget_parked
        self._clock = clock or (lambda: datetime.now(UTC))

    def scan(self) -> ScanReport:
        report = ScanReport()
        for topic, subscription in self._subscriptions:
            try:
                messages = self._bus.peek(
                    topic, subscription, dead_letter=True, max_messages=self._peek_limit
                )
            except TieError as exc:
                report.failed += 1
                _log.warning(
                    "dead-letter peek failed",
                    extra={"topic": topic, "subscription": subscription, "error_code": exc.code},
                )
                continue
            report.seen += len(messages)
            for message in messages:
                if self._record(message):
                    report.recorded += 1
            if len(messages) >= self._peek_limit:
                report.backlogged.append(f"{topic}/{subscription}")
                self._announce_backlog(topic, subscription, len(messages))
        return report

    def _record(self, message: ReceivedMessage) -> bool:
        partition, row = _partition(message.topic, message.subscription), _row(message.sequence_number)
        if self._records.get(TABLE_DEADLETTERS, partition, row) is not None:
            return False
        letter = _from_message(message, None)
        error_code = last_error_code(self._journal, letter.correlation_id, message.subscription)
        now = self._clock()
        detail = last_error_detail(self._journal, letter.correlation_id, message.subscription)
        value = letter.to_json() | {
            "last_error_code": error_code,
            "last_error_detail": detail,
            "recorded_at": now.isoformat(),
        }
        value.pop("lastErrorCode", None)
        value.pop("lastErrorDetail", None)
        value.pop("recorded", None)
        try:
            self._records.insert(TABLE_DEADLETTERS, partition, row, value)
        except RecordExists:
            return False  # another monitor instance got there first
        if letter.correlation_id:
            self._journal.record(
                letter.correlation_id,
                DEAD_LETTERED,
                topic=message.topic,
                subscription=message.subscription,
                sequence=message.sequence_number,
                reason=letter.reason,
                delivery_count=letter.delivery_count,
                error_code=error_code,
            )
        parked_row = message.application_properties.get(PARKED_ROW_PROPERTY)
        if self._forget_parked is not None and isinstance(parked_row, str):
            self._forget_parked(message.subscription, parked_row)
        notice = contracts.platform_event(
            "deadletter.recorded",
            event_id="dlq-"
            + hashlib.sha256(
                f"{message.topic}\x1f{message.subscription}\x1f{message.sequence_number}\x1f"
                f"{message.message_id}".encode()
            ).hexdigest()[:32],
            subject=f"deadletter/{message.topic}/{message.subscription}",
            severity="error",
            correlation_id=letter.correlation_id,
            event_key=letter.event_key,
            details={
                "topic": message.topic,
                "subscription": message.subscription,
                "sequence": message.sequence_number,
                "message_id": message.message_id,
                "reason": letter.reason,
                "delivery_count": letter.delivery_count,
                "error_code": error_code,
                "replay_count": letter.replay_count,
            },
            time=now,
        )
        self._publish(notice)
        _log.warning(
            "dead letter recorded",
            extra={
                "topic": message.topic,
                "subscription": message.subscription,
                "sequence_number": message.sequence_number,
                "message_id": message.message_id,
                "reason": letter.reason,
                "delivery_count": letter.delivery_count,
                "error_code": error_code,
            },
        )
        return True

    def _announce_backlog(self, topic: str, subscription: str, count: int) -> None:
        hour = self._clock().strftime("%Y%m%d%H")
        notice = contracts.platform_event(
            "deadletter.backlog",
            event_id="dlqb-"
            + hashlib.sha256(f"{topic}\x1f{subscription}\x1f{hour}".encode()).hexdigest()[:32],
            subject=f"deadletter/{topic}/{subscription}",
            severity="critical",
            details={"topic": topic, "subscription": subscription, "at_least": count},
        )
        self._publish(notice)

    def _publish(self, document: dict[str, Any]) -> None:
        try:
            self._bus.publish(TOPIC_PLATFORM, [contracts.to_outbound(TOPIC_PLATFORM, document)])
        except TieError as exc:  # the record is kept; alerting retries on the next dead letter
            _log.warning("platform event not published", extra={"error_code": exc.code})


# -- operations (tie dlq ...) --------------------------------------------------------------------------


def list_dead_letters(
    bus: MessageBus,
    records: RecordStore,
    *,
    topology: Sequence[TopicSpec] = TOPOLOGY,
    topic: str | None = None,
    subscription: str | None = None,
    limit: int = DEFAULT_PEEK_LIMIT,
) -> list[DeadLetter]:
    """Dead letters of every subscription (or one topic / subscription), joined with what the monitor
    recorded. Bodies are kept on the objects for :func:`show_dead_letter`; ``to_json`` omits them."""
    letters: list[DeadLetter] = []
    for t, s in _subscriptions(topology):
        if (topic and t != topic) or (subscription and s != subscription):
            continue
        for message in bus.peek(t, s, dead_letter=True, max_messages=limit):
            record = records.get(TABLE_DEADLETTERS, _partition(t, s), _row(message.sequence_number))
            letters.append(_from_message(message, None if record is None else record.value))
    return letters


def show_dead_letter(
    bus: MessageBus,
    records: RecordStore,
    topic: str,
    subscription: str,
    sequence_number: int,
    *,
    limit: int = DEFAULT_PEEK_LIMIT,
) -> DeadLetter | None:
    for letter in list_dead_letters(bus, records, topic=topic, subscription=subscription, limit=limit):
        if letter.sequence_number == sequence_number:
            return letter
    return None


def replay(
    bus: MessageBus,
    records: RecordStore,
    journal: Journal,
    topic: str,
    subscription: str,
    *,
    sequence_numbers: Sequence[int] | None = None,
    limit: int = DEFAULT_PEEK_LIMIT,
) -> int:
    """Return dead letters (all, or the given sequence numbers) to their subscription, tagged as a replay,
    and journal ``replayed`` for each (re-opening the subscriber's in-flight row). Returns how many."""
    wanted = None if sequence_numbers is None else {int(n) for n in sequence_numbers}
    letters = [
        letter
        for letter in list_dead_letters(bus, records, topic=topic, subscription=subscription, limit=limit)
        if wanted is None or letter.sequence_number in wanted
    ]
    if not letters:
        return 0
    count = bus.replay_dead_letters(
        topic, subscription, sequence_numbers=[letter.sequence_number for letter in letters]
    )
    for letter in letters:
        if letter.correlation_id:
            journal.record(
                letter.correlation_id,
                REPLAYED,
                topic=topic,
                subscription=subscription,
                sequence=letter.sequence_number,
                replay_count=letter.replay_count + 1,
            )
        records.delete(TABLE_DEADLETTERS, _partition(topic, subscription), _row(letter.sequence_number))
    return count


def purge(
    bus: MessageBus,
    records: RecordStore,
    *,
    older_than: timedelta,
    topology: Sequence[TopicSpec] = TOPOLOGY,
    topic: str | None = None,
    subscription: str | None = None,
) -> dict[str, int]:
    """Delete dead letters older than ``older_than`` (per ``topic/subscription``: how many) and forget
    their records."""
    purged: dict[str, int] = {}
    for t, s in _subscriptions(topology):
        if (topic and t != topic) or (subscription and s != subscription):
            continue
        before = {
            m.sequence_number for m in bus.peek(t, s, dead_letter=True, max_messages=DEFAULT_PEEK_LIMIT)
        }
        count = bus.purge_dead_letters(t, s, older_than=older_than)
        if not count:
            continue
        purged[f"{t}/{s}"] = count
        after = {m.sequence_number for m in bus.peek(t, s, dead_letter=True, max_messages=DEFAULT_PEEK_LIMIT)}
        for sequence in before - after:
            records.delete(TABLE_DEADLETTERS, _partition(t, s), _row(sequence))
    return purged
