"""Message journal: what happened to a message, stage by stage, per correlation ID - and what is in flight.

Each entry is one stage with a UTC timestamp and non-identifying attributes (topic, subscriber, message
id, status, error code, downstream response code). No message bodies and no patient data, ever: callers
pass identifiers, not values. Backed by the record store port (table ``journal``, partition = correlation
ID, row = time-ordered stage key), so it works on the embedded default and on Azure Table Storage alike.

Stages (:data:`STAGES`): ``received``, ``acknowledged``, ``rejected`` / ``invalid`` (edge), ``published``,
``consumed`` / ``failed`` (ingest processor), ``mapped`` (a clinical event was published), and per
write-back subscriber ``delivered``, ``retried``, ``parked``, ``released``, ``written-back`` (with the
downstream's response), ``duplicate`` (the same clinical event, proven by identity and content digest:
no second effect), ``superseded`` (older than the version applied: recorded, never applied),
``conflict`` (contents that cannot both be true: surfaced, never applied), ``skipped``; then
``dead-lettered`` and ``replayed`` (by the dead-letter monitor and ``tie dlq replay``). See
``docs/event-identity.md``.

In flight ("accepted but not finished")
---------------------------------------
Recording a stage also maintains a small index (table ``inflight``, partition = correlation ID, row = the
subscriber still expected to act): ``received`` opens ``ingest-processor``; ``mapped`` (HL7 v2 path) or
``published`` to ``clinical-events`` (FHIR API) opens every write-back subscription; a subscriber's final
stage (``consumed``, ``written-back``, ``duplicate``, ``skipped``, ``dead-lettered``, an edge rejection)
closes its row (``superseded`` and ``conflict`` too); ``replayed`` re-opens it. Opening is an
insert-if-absent and closing writes a tombstone, so a write-back that finishes before ``mapped`` is
journaled (the event is published first) is not re-opened by it. :meth:`Journal.inflight` lists the
open rows and clears tombstones older than ``tombstone_ttl``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_CLINICAL, WRITEBACK_SUBSCRIPTIONS
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.keys import restore_key, safe_key
from shared.storage.names import TABLE_INFLIGHT, TABLE_JOURNAL
from shared.storage.ports import AtomicRecordWrites, RecordStore, RecordWrite

JOURNAL_TABLE = TABLE_JOURNAL
INFLIGHT_TABLE = TABLE_INFLIGHT

RECEIVED: Final = "received"
ACKNOWLEDGED: Final = "acknowledged"
REJECTED: Final = "rejected"
INVALID: Final = "invalid"
PUBLISHED: Final = "published"
CONSUMED: Final = "consumed"
FAILED: Final = "failed"
MAPPED: Final = "mapped"
DELIVERED: Final = "delivered"
RETRIED: Final = "retried"
PARKED: Final = "parked"
RELEASED: Final = "released"
WRITTEN_BACK: Final = "written-back"
DUPLICATE: Final = "duplicate"
SUPERSEDED: Final = "superseded"
CONFLICT: Final = "conflict"
SKIPPED: Final = "skipped"
DEAD_LETTERED: Final = "dead-lettered"
REPLAYED: Final = "replayed"

STAGES: Final = (
    RECEIVED,
    ACKNOWLEDGED,
    REJECTED,
    INVALID,
    PUBLISHED,
    CONSUMED,
    FAILED,
    MAPPED,
    DELIVERED,
    RETRIED,
    PARKED,
    RELEASED,
    WRITTEN_BACK,
    DUPLICATE,
    SUPERSEDED,
    CONFLICT,
    SKIPPED,
    DEAD_LETTERED,
    REPLAYED,
)

_ALLOWED_VALUE_TYPES = (str, int, float, bool, type(None))
_SUBSCRIBER_DONE: Final = frozenset({WRITTEN_BACK, SKIPPED, SUPERSEDED, CONFLICT})


@dataclass(frozen=True, slots=True)
class JournalEntry:
    correlation_id: str
    stage: str
    at: datetime
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class InflightEntry:
    """A correlation ID some subscriber has still to act on."""

    correlation_id: str
    #: Subscribers (subscription names) still expected to act, with when each was opened.
    waiting: Mapping[str, datetime]

    @property
    def since(self) -> datetime:
        return min(self.waiting.values())


def _effect(stage: str, attributes: Mapping[str, Any]) -> tuple[str, str] | list[tuple[str, str]] | None:
    """What ``stage`` does to the in-flight index: (action, subscriber) pairs; action open/close/reopen."""
    subscriber = attributes.get("subscriber") or attributes.get("subscription")
    if stage == RECEIVED:
        return ("open", SUB_INGEST_PROCESSOR)
    if stage == MAPPED or (
        stage in (PUBLISHED, "publish-deferred") and attributes.get("topic") == TOPIC_CLINICAL
    ):
        # A clinical event is (or, from the outbox, will be) on clinical-events: every write-back is due.
        return [("open", name) for name in WRITEBACK_SUBSCRIPTIONS]
    if stage in (REJECTED, INVALID, CONSUMED):
        return ("close", SUB_INGEST_PROCESSOR)
    if stage == DUPLICATE:
        return ("close", str(subscriber or SUB_INGEST_PROCESSOR))
    if stage == FAILED and "delivery_count" not in attributes and not subscriber:
        return ("close", SUB_INGEST_PROCESSOR)  # the edge could not store it: the sender must resend
    if stage in _SUBSCRIBER_DONE and subscriber:
        return ("close", str(subscriber))
    if stage == DEAD_LETTERED and subscriber:
        return ("close", str(subscriber))
    if stage == REPLAYED and subscriber:
        return ("reopen", str(subscriber))
    return None


class Journal:
    def __init__(
        self,
        records: RecordStore,
        *,
        clock: Callable[[], datetime] | None = None,
        track_inflight: bool = True,
        tombstone_ttl: timedelta = timedelta(minutes=10),
    ) -> None:
        self._records = records
        self._clock = clock or (lambda: datetime.now(UTC))
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._track_inflight = track_inflight
        self._tombstone_ttl = tombstone_ttl
        #: A store that writes several records in one transaction gets each stage and its in-flight index
        #: changes as one write (one commit; never the stage without the index change).
        self._atomic = records if isinstance(records, AtomicRecordWrites) else None

    def record(self, correlation_id: str, stage: str, **attributes: str | int | float | bool | None) -> None:
        for key, value in attributes.items():
            if not isinstance(value, _ALLOWED_VALUE_TYPES):
                raise TypeError(f"journal attribute {key!r} must be a scalar")
        at = self._clock()
        with self._lock:
            seq = next(self._counter)
        # Row key sorts by time; the counter keeps entries from one process in order within a microsecond.
        row_key = f"{at.strftime('%Y%m%dT%H%M%S%f')}-{seq:08d}-{safe_key(stage)}"
        partition = safe_key(correlation_id)
        writes = [
            RecordWrite(
                "upsert",
                JOURNAL_TABLE,
                partition,
                row_key,
                {"stage": stage, "at": at.isoformat(), "attributes": dict(attributes)},
            )
        ]
        if self._track_inflight:
            writes += self._index(partition, correlation_id, stage, attributes, at)
        if self._atomic is not None:
            self._atomic.write_all(writes)  # the stage and its index changes: one transaction
            return
        for write in writes:  # the stage first, then the index (see journey())
            assert write.value is not None  # upserts and inserts only
            if write.kind == "insert_if_absent":
                with contextlib.suppress(RecordExists):
                    self._records.insert(write.table, write.partition_key, write.row_key, write.value)
            else:
                self._records.upsert(write.table, write.partition_key, write.row_key, write.value)

    def trace(self, correlation_id: str) -> list[JournalEntry]:
        entries = []
        for rec in self._records.query(JOURNAL_TABLE, safe_key(correlation_id)):
            entries.append(
                JournalEntry(
                    correlation_id=correlation_id,
                    stage=str(rec.value["stage"]),
                    at=datetime.fromisoformat(str(rec.value["at"])),
                    attributes=dict(rec.value.get("attributes") or {}),
                )
            )
        entries.sort(key=lambda e: e.at)
        return entries

    # -- in flight -------------------------------------------------------------------------------------

    def _index(
        self, partition: str, correlation_id: str, stage: str, attributes: Mapping[str, Any], at: datetime
    ) -> list[RecordWrite]:
        """The in-flight index writes for ``stage``."""
        effect = _effect(stage, attributes)
        if effect is None:
            return []
        writes = []
        for action, subscriber in effect if isinstance(effect, list) else [effect]:
            value = {"correlation_id": correlation_id, "open": action != "close", "at": at.isoformat()}
            # Opening a row already open, or already finished (a tombstone), leaves it as it is.
            row = safe_key(subscriber)
            if action == "open":
                writes.append(RecordWrite("insert_if_absent", INFLIGHT_TABLE, partition, row, value))
            else:
                writes.append(RecordWrite("upsert", INFLIGHT_TABLE, partition, row, value))
        return writes

    def journey(self, correlation_id: str) -> tuple[list[JournalEntry], dict[str, datetime]]:
        """``(trace, waiting)`` read consistently: who is still waiting is read *before* the stages. A stage
        is journaled before the index closes its row, so a subscriber that is no longer waiting has its
        final stage in the trace (read the other way round, a stage recorded between the reads could be
        missing from both)."""
        waiting = self.waiting(correlation_id)
        return self.trace(correlation_id), waiting

    def waiting(self, correlation_id: str) -> dict[str, datetime]:
        """Subscribers still expected to act on ``correlation_id`` (empty: finished or unknown)."""
        return {
            restore_key(rec.row_key): datetime.fromisoformat(str(rec.value["at"]))
            for rec in self._records.query(INFLIGHT_TABLE, safe_key(correlation_id))
            if rec.value.get("open")
        }

    def inflight(self, *, limit: int = 1000, older_than: timedelta | None = None) -> list[InflightEntry]:
        """Accepted but not finished, oldest first (at most ``limit`` correlation IDs).

        ``older_than``: only those waiting at least that long. Clears expired tombstones as it goes.
        """
        now = self._clock()
        grouped: dict[str, dict[str, datetime]] = {}
        for rec in self._records.query(INFLIGHT_TABLE):
            at = datetime.fromisoformat(str(rec.value["at"]))
            if not rec.value.get("open"):
                if now - at > self._tombstone_ttl:
                    with contextlib.suppress(ConcurrencyConflict, RecordNotFound):
                        self._records.delete(INFLIGHT_TABLE, rec.partition_key, rec.row_key, etag=rec.etag)
                continue
            if older_than is not None and now - at < older_than:
                continue
            corr = str(rec.value.get("correlation_id") or restore_key(rec.partition_key))
            grouped.setdefault(corr, {})[restore_key(rec.row_key)] = at
        entries = [InflightEntry(corr, waiting) for corr, waiting in grouped.items()]
        entries.sort(key=lambda e: e.since)
        return entries[:limit]
