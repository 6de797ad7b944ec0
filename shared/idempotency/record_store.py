"""The idempotency store on the :class:`~shared.storage.ports.RecordStore` port (SQLite and Azure Tables).

One implementation serves both backends because the port already offers what the state machine needs:
conditional insert (``insert`` -> :class:`~shared.storage.errors.RecordExists`) and ETag compare-and-swap
(``update``/``delete`` with ``etag`` -> :class:`~shared.storage.errors.ConcurrencyConflict`), with the
same semantics on both (checked by ``tests/contract``). No backend-specific store is needed: neither TTL
indexes nor multi-record transactions are used (expiry is evaluated on read and purged by
:meth:`~shared.idempotency.persistence.PersistenceStore.purge_expired`).

Layout: table :data:`~shared.storage.names.TABLE_IDEMPOTENCY`, partition key = the first two hex digits of
the key hash (256 partitions: spreads Azure Table load), row key = the key hash (64 hex digits).
"""

from __future__ import annotations

from collections.abc import Iterator

from shared.idempotency.persistence import IdempotencyRecord, PersistenceStore, StoredRecord
from shared.outbox.model import OwnerRef
from shared.storage.names import TABLE_IDEMPOTENCY
from shared.storage.ports import RecordStore

PARTITIONS: tuple[str, ...] = tuple(f"{i:02x}" for i in range(256))


def partition_of(key_hash: str) -> str:
    return key_hash[:2]


class RecordStorePersistence(PersistenceStore):
    """Idempotency records in a :class:`~shared.storage.ports.RecordStore`."""

    def __init__(self, records: RecordStore, *, table: str = TABLE_IDEMPOTENCY) -> None:
        self._records = records
        self._table = table

    @property
    def records(self) -> RecordStore:
        return self._records

    @property
    def table(self) -> str:
        return self._table

    def owner_ref(self, key_hash: str) -> OwnerRef:
        return OwnerRef(self._table, partition_of(key_hash), key_hash)

    def _get(self, key_hash: str) -> StoredRecord | None:
        found = self._records.get(self._table, partition_of(key_hash), key_hash)
        if found is None:
            return None
        return StoredRecord(IdempotencyRecord.from_value(key_hash, found.value), found.etag)

    def _insert(self, record: IdempotencyRecord) -> str:
        key = record.key_hash
        return self._records.insert(self._table, partition_of(key), key, record.to_value()).etag

    def _replace(self, record: IdempotencyRecord, version: str) -> str:
        key = record.key_hash
        return self._records.update(self._table, partition_of(key), key, record.to_value(), etag=version).etag

    def _delete(self, key_hash: str, version: str) -> bool:
        return self._records.delete(self._table, partition_of(key_hash), key_hash, etag=version)

    def _scan(self) -> Iterator[StoredRecord]:
        for partition in PARTITIONS:
            for found in self._records.query(self._table, partition):
                yield StoredRecord(IdempotencyRecord.from_value(found.row_key, found.value), found.etag)
