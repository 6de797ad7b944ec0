"""The outbox relay: publishes committed batches whose writer did not (crash, bus outage).

Run it from a timer trigger (:meth:`OutboxRelay.run_until_idle`) or a background thread
(:meth:`OutboxRelay.run_forever`). Several relays may run at once: every step is idempotent (a batch
published twice is dropped by duplicate detection; settling and deleting are conditional or harmless).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from shared.errors import PermanentError, TransientError
from shared.messaging.ports import MessageBus
from shared.outbox.model import OUTBOX_FIELD
from shared.outbox.outbox import PARKED_PARTITION, SHARDS, Outbox, OutboxEntry, _batch_messages, _ms
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound

_log = logging.getLogger("tie.outbox.relay")


@dataclass(slots=True)
class RelayReport:
    """What one or more relay passes did (counts of batches unless said otherwise)."""

    published: int = 0
    messages: int = 0
    #: Entries whose batch never committed (writer crashed or lost its lease) or was already settled.
    orphaned: int = 0
    #: Orphans whose owner had to be fenced (a no-op conditional write) so a late writer cannot commit.
    fenced: int = 0
    #: Uncommitted entries still within the grace period (their writer may be about to commit).
    waiting: int = 0
    #: Batches the bus refused for good, moved to the ``parked`` partition for an operator.
    parked: int = 0
    #: Transient bus failures (the pass stops at the first; the next pass retries).
    failed: int = 0

    def __iadd__(self, other: RelayReport) -> RelayReport:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def progressed(self) -> int:
        return self.published + self.orphaned + self.parked


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OutboxRelay:
    """Publish committed batches, clear orphans, park poison.

    Per entry: read the owner record. Batch present -> publish, settle. Batch absent and the owner has
    changed (or is gone) since the entry was prepared -> the batch can never commit (the writer's
    conditional write would fail) or was already settled: delete the entry. Batch absent and the owner
    unchanged -> the writer may still commit: wait ``orphan_grace``, then *fence* (rewrite the owner
    unchanged, which changes its ETag, so the late writer's commit fails) and delete the entry.
    ``orphan_grace`` should exceed the longest writer. For the idempotency guard that is its lease, which
    is shorter than the message lock, which Service Bus caps at 5 minutes: the 5-minute default is safe.
    """

    def __init__(
        self,
        outbox: Outbox,
        bus: MessageBus,
        *,
        orphan_grace: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._outbox = outbox
        self._records = outbox.records
        self._bus = bus
        self._grace_ms = int(orphan_grace.total_seconds() * 1000)
        self._clock = clock or _utc_now

    def relay_once(self, *, limit: int = 100) -> RelayReport:
        """One pass over at most ``limit`` entries (oldest first within each shard)."""
        report = RelayReport()
        budget = limit
        for shard in SHARDS:
            if budget <= 0:
                break
            for entry in self._outbox.entries(shard, limit=budget):
                budget -= 1
                self._relay(entry, report)
                if report.failed:
                    return report  # the bus is unavailable: stop, the next pass retries
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
            except TransientError as exc:  # storage unavailable: try again next interval
                _log.warning("outbox relay pass failed (%s)", exc.code)
                report = RelayReport(failed=1)
            total += report
            if report.progressed and not report.failed:
                continue  # more may be waiting
            stop.wait(interval)
        return total

    # -- one entry -----------------------------------------------------------------------------------

    def _relay(self, entry: OutboxEntry, report: RelayReport) -> None:
        owner = entry.owner
        record = self._records.get(owner.table, owner.partition_key, owner.row_key)
        pending = None if record is None else (record.value.get(OUTBOX_FIELD) or {}).get(entry.batch_id)
        if pending is not None:
            messages = _batch_messages(pending)
            try:
                Outbox.send(self._bus, messages)
            except TransientError as exc:
                _log.warning("outbox relay: bus unavailable for batch %s (%s)", entry.batch_id, exc.code)
                report.failed += 1
                return
            except PermanentError as exc:
                self._park(entry, exc.code)
                report.parked += 1
                return
            self._outbox.settle(owner, entry.batch_id, entry.partition_key, entry.row_key)
            report.published += 1
            report.messages += len(messages)
            return
        if record is not None and record.etag == entry.owner_etag:
            if self._now_ms() - entry.created_ms < self._grace_ms:
                report.waiting += 1
                return
            try:  # fence: a no-op write changes the ETag the late writer's commit is conditional on
                self._records.update(
                    owner.table, owner.partition_key, owner.row_key, record.value, etag=record.etag
                )
            except ConcurrencyConflict:
                report.waiting += 1  # changed just now (maybe committed): decide on the next pass
                return
            except RecordNotFound:
                pass
            else:
                report.fenced += 1
        self._records.delete(self._outbox.table, entry.partition_key, entry.row_key)
        report.orphaned += 1

    def _park(self, entry: OutboxEntry, code: str) -> None:
        source = self._records.get(self._outbox.table, entry.partition_key, entry.row_key)
        if source is None:
            return
        value = dict(source.value)
        value["attempts"] = entry.attempts + 1
        value["last_error"] = code
        value["shard"] = entry.partition_key
        with contextlib.suppress(RecordExists):
            self._records.insert(self._outbox.table, PARKED_PARTITION, entry.row_key, value)
        self._records.delete(self._outbox.table, entry.partition_key, entry.row_key)
        _log.error("outbox batch %s parked: the bus rejected it (%s)", entry.batch_id, code)

    def _now_ms(self) -> int:
        return _ms(self._clock())
