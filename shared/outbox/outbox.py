"""The transactional outbox over the :class:`~shared.storage.ports.RecordStore` port.

See :mod:`shared.outbox` for the protocol and the crash windows it covers.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import PermanentError, TransientError
from shared.messaging.ports import MessageBus, OutboundMessage
from shared.outbox.model import OUTBOX_FIELD, OutboxMessage, OwnerRef
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.names import TABLE_OUTBOX
from shared.storage.ports import AtomicRecordWrites, JsonDict, Record, RecordStore, RecordWrite

_log = logging.getLogger("tie.outbox")

ENTRY_FORMAT = 1
#: Partition of entries whose messages the bus rejected permanently (unknown topic, too large...).
PARKED_PARTITION = "parked"
#: Entry partitions: the first hex digit of the batch id (spreads load over Azure Table partitions).
SHARDS: tuple[str, ...] = tuple("0123456789abcdef")
#: How often settling retries its compare-and-swap on the owner record before leaving it to the relay.
SETTLE_ROUNDS = 5


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch whose entry is written; it is committed by the owner's conditional write of :meth:`embed`."""

    batch_id: str
    owner: OwnerRef
    #: ETag the committing write must be conditional on.
    owner_etag: str
    messages: tuple[OutboxMessage, ...]
    entry_partition: str
    entry_row: str

    def embedded(self) -> dict[str, Any]:
        """``{batch id: ...}``: what the owner's :data:`OUTBOX_FIELD` gains when the batch commits."""
        return {
            self.batch_id: {
                "entry": [self.entry_partition, self.entry_row],
                "messages": [m.to_json() for m in self.messages],
            }
        }

    def embed(self, value: JsonDict) -> JsonDict:
        """A copy of the owner's new ``value`` with this batch added to its :data:`OUTBOX_FIELD`."""
        merged = dict(value)
        pending = dict(merged.get(OUTBOX_FIELD) or {})
        pending.update(self.embedded())
        merged[OUTBOX_FIELD] = pending
        return merged


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """The relay's index entry for one batch (the messages themselves live in the owner record)."""

    partition_key: str
    row_key: str
    batch_id: str
    owner: OwnerRef
    owner_etag: str
    created_ms: int
    attempts: int
    last_error: str | None

    @classmethod
    def from_record(cls, record: Record) -> OutboxEntry:
        value = record.value
        owner = value["owner"]
        return cls(
            partition_key=record.partition_key,
            row_key=record.row_key,
            batch_id=str(value["batch"]),
            owner=OwnerRef(str(owner["table"]), str(owner["pk"]), str(owner["rk"])),
            owner_etag=str(value["owner_etag"]),
            created_ms=int(value["created_ms"]),
            attempts=int(value.get("attempts", 0)),
            last_error=value.get("last_error"),
        )


def _batch_messages(data: Any) -> list[OutboxMessage]:
    return [OutboxMessage.from_json(m) for m in data["messages"]]


def carry_forward(old_value: JsonDict, new_value: JsonDict) -> JsonDict:
    """``new_value`` keeping ``old_value``'s unsettled batches: use when an owner record is rewritten."""
    pending = old_value.get(OUTBOX_FIELD)
    if not pending:
        return new_value
    merged = dict(new_value)
    combined = dict(pending)
    combined.update(merged.get(OUTBOX_FIELD) or {})
    merged[OUTBOX_FIELD] = combined
    return merged


class Outbox:
    """Enqueue bus messages in the same conditional write as the state they belong to.

    Usage (the idempotency guard does exactly this, its ``IN_PROGRESS`` record being the owner)::

        owner = records.get(table, pk, rk)                      # the owner must exist (have an ETag)
        batch = outbox.prepare(OwnerRef(table, pk, rk), owner.etag, messages)   # 1. entry written
        outbox.commit(batch, new_state)                         # 2. ONE conditional write: state + messages
        outbox.publish(bus, batch)                              # 3. publish, 4. settle

    Anything between the steps may crash: :class:`~shared.outbox.relay.OutboxRelay` finishes the job.
    """

    def __init__(
        self,
        records: RecordStore,
        *,
        table: str = TABLE_OUTBOX,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._records = records
        self._table = table
        self._clock = clock or _utc_now
        self._atomic = records if isinstance(records, AtomicRecordWrites) else None

    @property
    def records(self) -> RecordStore:
        return self._records

    @property
    def table(self) -> str:
        return self._table

    def now_ms(self) -> int:
        return _ms(self._clock())

    # -- writer side ---------------------------------------------------------------------------------

    def prepare(self, owner: OwnerRef, owner_etag: str, messages: Sequence[OutboxMessage]) -> PreparedBatch:
        """Write the relay's entry for a new batch (step 1). Nothing is published until it commits."""
        if not messages:
            raise ValueError("an outbox batch needs at least one message")
        batch_id = uuid.uuid4().hex
        created_ms = self.now_ms()
        partition, row = batch_id[0], f"{created_ms:013d}-{batch_id}"
        self._records.insert(
            self._table,
            partition,
            row,
            {
                "v": ENTRY_FORMAT,
                "batch": batch_id,
                "owner": {"table": owner.table, "pk": owner.partition_key, "rk": owner.row_key},
                "owner_etag": owner_etag,
                "created_ms": created_ms,
                "messages": len(messages),
                "attempts": 0,
                "last_error": None,
            },
        )
        return PreparedBatch(batch_id, owner, owner_etag, tuple(messages), partition, row)

    def commit(self, batch: PreparedBatch, value: JsonDict) -> Record:
        """Step 2 for a generic owner: replace its value (plus the batch) if its ETag is still the one
        prepared against. Raises :class:`ConcurrencyConflict` if the owner changed (batch not committed)."""
        owner = batch.owner
        return self._records.update(
            owner.table, owner.partition_key, owner.row_key, batch.embed(value), etag=batch.owner_etag
        )

    def publish(self, bus: MessageBus, batch: PreparedBatch) -> bool:
        """Publish a committed batch and settle it (steps 3-4). Returns whether it was published.

        A bus failure is logged (batch id and error code only) and left to the relay: the batch is
        committed, so it will be published; this call never raises for it.
        """
        if not self._send(bus, batch.batch_id, batch.messages):
            return False
        self.settle(batch.owner, batch.batch_id, batch.entry_partition, batch.entry_row)
        return True

    def flush_owner(self, bus: MessageBus, owner: OwnerRef) -> bool:
        """Publish and settle every batch committed in ``owner`` (e.g. a duplicate delivery found the
        holder crashed after committing). Returns whether nothing is left pending."""
        record = self._records.get(owner.table, owner.partition_key, owner.row_key)
        if record is None:
            return True
        clean = True
        for batch_id, data in dict(record.value.get(OUTBOX_FIELD) or {}).items():
            if self._send(bus, batch_id, _batch_messages(data)):
                entry_pk, entry_rk = data["entry"]
                self.settle(owner, batch_id, str(entry_pk), str(entry_rk))
            else:
                clean = False
        return clean

    def settle(self, owner: OwnerRef, batch_id: str, entry_partition: str, entry_row: str) -> None:
        """After publishing: drop the batch from the owner (compare-and-swap) and delete its entry.

        Storage trouble is swallowed (logged): an unsettled batch is merely re-published by the relay,
        which the bus's duplicate detection drops.
        """
        try:
            for _ in range(SETTLE_ROUNDS):
                record = self._records.get(owner.table, owner.partition_key, owner.row_key)
                if record is None or batch_id not in (record.value.get(OUTBOX_FIELD) or {}):
                    break
                value = dict(record.value)
                pending = dict(value[OUTBOX_FIELD])
                del pending[batch_id]
                value[OUTBOX_FIELD] = pending
                try:
                    if self._atomic is not None:  # the owner's update and the entry's delete: one commit
                        self._atomic.write_all(
                            [
                                RecordWrite(
                                    "update",
                                    owner.table,
                                    owner.partition_key,
                                    owner.row_key,
                                    value,
                                    record.etag,
                                ),
                                RecordWrite("delete", self._table, entry_partition, entry_row),
                            ]
                        )
                        return
                    self._records.update(
                        owner.table, owner.partition_key, owner.row_key, value, etag=record.etag
                    )
                    break
                except ConcurrencyConflict:
                    continue
                except RecordNotFound:
                    break
            else:
                _log.info("outbox batch %s: owner busy, settling left to the relay", batch_id)
                return
            self._records.delete(self._table, entry_partition, entry_row)
        except TransientError as exc:
            _log.warning("outbox batch %s published but not settled (%s)", batch_id, exc.code)

    # -- shared with the relay -----------------------------------------------------------------------

    def _send(self, bus: MessageBus, batch_id: str, messages: Sequence[OutboxMessage]) -> bool:
        try:
            self.send(bus, messages)
        except TransientError as exc:
            _log.warning("outbox batch %s not published yet (%s); the relay will retry", batch_id, exc.code)
            return False
        except PermanentError as exc:
            _log.error("outbox batch %s rejected by the bus (%s); left for the relay", batch_id, exc.code)
            return False
        return True

    @staticmethod
    def send(bus: MessageBus, messages: Sequence[OutboxMessage]) -> None:
        """Publish in order, one atomic ``publish`` per run of consecutive messages for the same topic."""
        run: list[OutboundMessage] = []
        topic: str | None = None
        for item in messages:
            if topic is not None and item.topic != topic:
                bus.publish(topic, run)
                run = []
            topic = item.topic
            run.append(item.message)
        if topic is not None:
            bus.publish(topic, run)

    def entries(self, partition: str, *, limit: int | None = None) -> list[OutboxEntry]:
        """Entries of one partition (a shard, or :data:`PARKED_PARTITION`), oldest first."""
        return [OutboxEntry.from_record(r) for r in self._records.query(self._table, partition, limit=limit)]

    def requeue_parked(self) -> int:
        """Return every parked entry to its shard (after fixing what the bus rejected); returns how many."""
        moved = 0
        for record in self._records.query(self._table, PARKED_PARTITION):
            value = dict(record.value)
            shard = str(value.pop("shard", record.row_key.rsplit("-", 1)[-1][0]))
            with contextlib.suppress(RecordExists):
                self._records.insert(self._table, shard, record.row_key, value)
            self._records.delete(self._table, PARKED_PARTITION, record.row_key)
            moved += 1
        return moved

    def pending_count(self) -> int:
        """Entries not yet settled (excluding parked ones); for health and ``tie`` output."""
        return sum(len(self._records.query(self._table, shard)) for shard in SHARDS)
