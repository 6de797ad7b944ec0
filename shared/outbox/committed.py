"""Batches committed by a store in the same database transaction as its own writes, and their relay.

The record-store outbox (:class:`~shared.outbox.outbox.Outbox`) commits messages with *one record*. A store
with real transactions does better: it inserts the messages as rows of its own outbox table in the transaction
that writes the state they announce (the embedded FHIR store:
:meth:`~shared.adapters.embedded.sqlite_fhir.SqliteFhirRepository.create` and friends with ``events=``).
Either both are durable or neither is. The writer publishes right after the commit and settles the batch
(deletes its rows); :class:`CommittedBatchRelay` publishes whatever a crash or a bus outage left behind.

A batch published twice (writer and relay racing, or a crash after publishing but before settling) keeps
its ``message_id`` values, so the bus's duplicate detection drops the copy; beyond the detection window
the consumers' idempotency guards answer it. See ``docs/adr/0001-fhir-api-transactional-events.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from shared.errors import PermanentError, TransientError
from shared.messaging.ports import MessageBus, OutboundMessage
from shared.outbox.model import OutboxMessage
from shared.outbox.relay import RelayReport

_log = logging.getLogger("tie.outbox.committed")

#: A bus batch stays well under Service Bus's smallest batch limit (256 KB on Standard).
MAX_CHUNK_BYTES = 192 * 1024
MAX_CHUNK_MESSAGES = 100


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """The messages one store transaction committed, in order."""

    batch_id: str
    messages: tuple[OutboxMessage, ...]
    #: Commit time (epoch milliseconds, the store's clock).
    created_ms: int = 0


@runtime_checkable
class CommittedOutbox(Protocol):
    """A store that commits outbox batches in its own write transactions (see the module docs).

    ``pending_batches``: unsettled, unparked batches committed at or before ``created_before_ms`` (None:
    any), oldest first. ``settle_batch`` removes a published batch (a no-op when it is gone already);
    ``park_batch`` sets aside a batch the bus refused for good, for an operator. All are idempotent and
    raise :class:`~shared.errors.TransientError` subclasses when the store is unavailable.
    """

    def pending_batches(
        self, *, limit: int = 100, created_before_ms: int | None = None
    ) -> list[CommittedBatch]: ...

    def settle_batch(self, batch_id: str) -> None: ...

    def park_batch(self, batch_id: str, reason: str) -> None: ...


def chunks(
    messages: Sequence[OutboundMessage],
    *,
    max_bytes: int = MAX_CHUNK_BYTES,
    max_messages: int = MAX_CHUNK_MESSAGES,
) -> Iterator[list[OutboundMessage]]:
    """Consecutive runs of messages that fit one bus batch (a large transaction's events do not)."""
    run: list[OutboundMessage] = []
    size = 0
    for message in messages:
        if run and (size + len(message.body) > max_bytes or len(run) >= max_messages):
            yield run
            run, size = [], 0
        run.append(message)
        size += len(message.body)
    if run:
        yield run


def send_batch(
    bus: MessageBus,
    messages: Sequence[OutboxMessage],
    *,
    max_bytes: int = MAX_CHUNK_BYTES,
    max_messages: int = MAX_CHUNK_MESSAGES,
) -> None:
    """Publish in order: one ``publish`` per bus-sized run of consecutive messages for the same topic.
    Raises the bus's error; what was published before it stays published (re-publishing is deduplicated)."""
    start = 0
    while start < len(messages):
        topic = messages[start].topic
        end = start
        while end < len(messages) and messages[end].topic == topic:
            end += 1
        for run in chunks(
            [m.message for m in messages[start:end]], max_bytes=max_bytes, max_messages=max_messages
        ):
            bus.publish(topic, run)
        start = end


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


class CommittedBatchRelay:
    """Publish and settle the batches a :class:`CommittedOutbox` still holds.

    Batches younger than ``grace`` are left to their writer, which publishes right after committing (a
    relay that got there first would only cause a duplicate the bus drops). ``on_published`` is called
    after each batch is published (e.g. to journal it); its failures are logged, never raised.
    """

    def __init__(
        self,
        source: CommittedOutbox,
        bus: MessageBus,
        *,
        grace: timedelta = timedelta(seconds=2),
        clock: Callable[[], int] | None = None,
        on_published: Callable[[CommittedBatch], None] | None = None,
    ) -> None:
        self._source = source
        self._bus = bus
        self._grace_ms = int(grace.total_seconds() * 1000)
        self._clock = clock or _now_ms
        self._on_published = on_published

    def relay_once(self, *, limit: int = 100) -> RelayReport:
        """One pass over at most ``limit`` due batches, oldest first; stops at the first bus outage."""
        report = RelayReport()
        due = self._clock() - self._grace_ms
        for batch in self._source.pending_batches(limit=limit, created_before_ms=due):
            try:
                send_batch(self._bus, batch.messages)
            except TransientError as exc:
                _log.warning("committed batch %s: bus unavailable (%s)", batch.batch_id, exc.code)
                report.failed += 1
                return report
            except PermanentError as exc:
                self._source.park_batch(batch.batch_id, exc.code)
                _log.error("committed batch %s parked: the bus rejected it (%s)", batch.batch_id, exc.code)
                report.parked += 1
                continue
            self._source.settle_batch(batch.batch_id)
            report.published += 1
            report.messages += len(batch.messages)
            if self._on_published is not None:
                try:
                    self._on_published(batch)
                except TransientError as exc:
                    _log.warning(
                        "committed batch %s: after-publish step failed (%s)", batch.batch_id, exc.code
                    )
        return report

    def run_until_idle(self, *, max_seconds: float, limit: int = 100) -> RelayReport:
        """Passes until one makes no progress or ``max_seconds`` elapse (for a timer trigger)."""
        total = RelayReport()
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            report = self.relay_once(limit=limit)
            total += report
            if not report.progressed or report.failed:
                break
        return total

    def run_forever(self, stop: threading.Event, *, interval: float = 1.0, limit: int = 100) -> RelayReport:
        """Relay every ``interval`` seconds until ``stop`` is set (a background thread's target)."""
        total = RelayReport()
        while not stop.is_set():
            try:
                report = self.relay_once(limit=limit)
            except TransientError as exc:  # store unavailable: try again next interval
                _log.warning("committed batch relay pass failed (%s)", exc.code)
                report = RelayReport(failed=1)
            total += report
            if report.progressed and not report.failed:
                continue
            stop.wait(interval)
        return total
