"""Storage ports: a key-value record store and a blob store.

The record store is shaped after Azure Table Storage (partition key + row key, ETag optimistic
concurrency, conditional insert) because that is the production backend; the embedded default is SQLite.

Key rules (the intersection of what every backend accepts, enforced by every adapter):
table names ``^[A-Za-z][A-Za-z0-9]{2,62}$``; partition/row keys are non-empty strings of at most 512
characters containing none of ``/ \\ # ?`` or control characters (encode identifiers first, e.g. with
:func:`shared.storage.keys.safe_key`). Values are JSON-serialisable dicts of at most 256 KiB serialized.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    table: str
    partition_key: str
    row_key: str
    value: JsonDict
    etag: str
    updated_at: datetime


@runtime_checkable
class RecordStore(Protocol):
    """Key-value records with conditional insert and ETag optimistic concurrency. Thread-safe."""

    def get(self, table: str, partition_key: str, row_key: str) -> Record | None: ...

    def insert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        """Create; raises :class:`~shared.storage.errors.RecordExists` if the key is taken."""
        ...

    def update(self, table: str, partition_key: str, row_key: str, value: JsonDict, *, etag: str) -> Record:
        """Replace if the stored ETag equals ``etag``; else :class:`ConcurrencyConflict`
        (:class:`RecordNotFound` if gone)."""
        ...

    def upsert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        """Create or replace unconditionally."""
        ...

    def delete(self, table: str, partition_key: str, row_key: str, *, etag: str | None = None) -> bool:
        """Delete (conditionally when ``etag`` given); returns False if there was nothing to delete."""
        ...

    def query(
        self,
        table: str,
        partition_key: str | None = None,
        *,
        row_key_prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Records of a partition (or the whole table), ordered by (partition key, row key)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RecordWrite:
    """One write of :meth:`AtomicRecordWrites.write_all`, with the semantics of the :class:`RecordStore`
    method of the same name: ``upsert``; ``insert_if_absent`` (create; an existing record is left as it
    is); ``update`` (replace if the stored ETag is ``etag``); ``delete`` (conditional when ``etag`` is
    given; nothing to delete is not an error)."""

    kind: Literal["upsert", "insert_if_absent", "update", "delete"]
    table: str
    partition_key: str
    row_key: str
    value: JsonDict | None = None
    etag: str | None = None


@runtime_checkable
class AtomicRecordWrites(Protocol):
    """Optional capability of a :class:`RecordStore` that can apply writes to several tables and partitions
    in one transaction (the embedded SQLite store). Callers fall back to one write at a time without it
    (Azure Table Storage transactions cover one partition of one table only)."""

    def write_all(self, writes: Sequence[RecordWrite]) -> None:
        """Apply ``writes`` in order, all or none: a failed condition raises what the single write raises
        (:class:`~shared.storage.errors.ConcurrencyConflict`, :class:`RecordNotFound`) and nothing is
        written."""
        ...


@dataclass(frozen=True, slots=True)
class BlobInfo:
    container: str
    name: str
    size: int
    etag: str
    content_type: str | None
    last_modified: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class BlobStore(Protocol):
    """Named binary objects in containers. Container names: ``^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$``."""

    def put(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = True,
    ) -> BlobInfo:
        """Store; with ``overwrite=False`` raises :class:`BlobExists` if the name is taken."""
        ...

    def get(self, container: str, name: str) -> bytes:
        """Raises :class:`~shared.storage.errors.BlobNotFound`."""
        ...

    def info(self, container: str, name: str) -> BlobInfo | None: ...

    def delete(self, container: str, name: str) -> bool: ...

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]: ...

    def close(self) -> None: ...
