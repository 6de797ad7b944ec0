"""The audit log port: an append-only, hash-chained sequence of audit records.

Adapters: :class:`shared.adapters.embedded.sqlite_audit.SqliteAuditLog` (embedded default) and
:class:`shared.adapters.azure.audit_blobs.AppendBlobAuditLog` (append blobs in a WORM container). Neither
offers an update or a delete: records are only appended, each carrying the previous record's hash
(:mod:`shared.audit.chain`), and :func:`shared.audit.chain.verify_chain` re-computes the chain.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from shared.audit.model import AuditRecord

#: Blob container of the Azure adapter: WORM (time-based retention, protected append writes allowed).
AUDIT_CONTAINER = "audit"


@dataclass(frozen=True, slots=True)
class ChainedEntry:
    """One stored record: its position, the previous record's hash, its own hash, its canonical JSON."""

    seq: int
    prev: str
    hash: str
    body: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement "the chain had ``seq`` records, the last hashing to ``hash``, at ``at``"."""

    seq: int
    hash: str
    at: str
    signature: str


@runtime_checkable
class AuditLog(Protocol):
    """Append-only audit records. Thread-safe. Append failures raise a
    :class:`~shared.errors.TransientError` (the audited action then fails: nothing goes unaudited)."""

    def append(self, records: Sequence[AuditRecord]) -> list[ChainedEntry]:
        """Append ``records`` in order, atomically (all or none)."""
        ...

    def entries(self, *, after: int = 0) -> Iterator[ChainedEntry]:
        """Every stored entry with ``seq > after`` in storage order (what verification walks)."""
        ...

    def search(
        self,
        *,
        patient: str | None = None,
        agent: str | None = None,
        entity: str | None = None,
        correlation_id: str | None = None,
        record_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ChainedEntry]:
        """Entries matching every given filter, oldest first (``record_id``: the record's own id)."""
        ...

    def checkpoints(self) -> list[Checkpoint]:
        """Signed checkpoints, oldest first (the last one is the signed head)."""
        ...

    def close(self) -> None: ...
