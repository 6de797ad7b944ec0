"""Azure :class:`~shared.audit.ports.AuditLog`: the hash chain as append blobs in the WORM ``audit``
container (time-based retention with ``allowProtectedAppendWrites``; see docs/audit.md).

Layout: ``chain/<segment:08d>.jsonl``, one JSON line per record ``{"seq", "prev", "hash", "body"}``; a batch
is one Append Block, so it lands whole or not at all. Every append is conditional on the append position
this writer last saw (``appendpos_condition``): a second writer that got there first makes the append fail
with 412, and this one re-reads the tail, re-chains its records after it and tries again - the chain never
forks. A segment is closed after :data:`MAX_BLOCKS` blocks (the service's limit is 50,000) and the next
one starts. Under the immutability policy nothing can be rewritten or deleted before retention ends; the
chain still proves order and completeness to whoever reads the blobs (``tie audit verify``). Search reads
the chain (auditor queries are rare; an index is future work).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.adapters.azure._storage_errors import error_code, translated
from shared.audit.chain import GENESIS, entry_hash
from shared.audit.model import AuditRecord, canonical_json
from shared.audit.ports import AUDIT_CONTAINER, ChainedEntry, Checkpoint
from shared.storage.errors import StorageUnavailable

PREFIX = "chain/"
MAX_BLOCKS = 45_000
#: Appends attempted before giving up when other writers keep winning the append position.
MAX_RACES = 20


@dataclass(slots=True)
class _Tail:
    segment: int
    offset: int
    blocks: int
    seq: int
    hash: str


def _name(segment: int) -> str:
    return f"{PREFIX}{segment:08d}.jsonl"


def _lines(data: bytes) -> Iterator[ChainedEntry]:
    for line in data.splitlines():
        if line.strip():
            item = json.loads(line)
            yield ChainedEntry(int(item["seq"]), str(item["prev"]), str(item["hash"]), str(item["body"]))


class AppendBlobAuditLog:
    """:class:`~shared.audit.ports.AuditLog` over append blobs. Thread-safe; safe across instances."""

    def __init__(self, service: BlobServiceClient, *, container: str = AUDIT_CONTAINER) -> None:
        self._container: ContainerClient = service.get_container_client(container)
        self._name = container
        self._lock = threading.Lock()
        self._tail: _Tail | None = None
        self._created = False

    @classmethod
    def from_connection_string(cls, conn_str: str, **kwargs: Any) -> AppendBlobAuditLog:
        """Azurite (development) only."""
        return cls(BlobServiceClient.from_connection_string(conn_str), **kwargs)

    @classmethod
    def from_endpoint(cls, endpoint: str, credential: TokenCredential, **kwargs: Any) -> AppendBlobAuditLog:
        return cls(BlobServiceClient(account_url=endpoint, credential=credential), **kwargs)

    # -- writing -------------------------------------------------------------------------------------

    def _ensure_container(self) -> None:
        if self._created:
            return
        with translated("create container", self._name), contextlib.suppress(ResourceExistsError):
            self._container.create_container()
        self._created = True

    def _segments(self) -> list[str]:
        with translated("list", self._name):
            return sorted(b.name for b in self._container.list_blobs(name_starts_with=PREFIX))

    def _read_tail(self) -> _Tail:
        names = self._segments()
        if not names:
            return self._new_segment(0, 0, GENESIS)
        last = names[-1]
        client = self._container.get_blob_client(last)
        with translated("read", self._name):
            data = client.download_blob().readall()
            blocks = int(client.get_blob_properties().append_blob_committed_block_count or 0)
        seq, prev = 0, GENESIS
        for entry in _lines(data):
            seq, prev = entry.seq, entry.hash
        if seq == 0 and len(names) > 1:  # a new, still empty segment: the chain ends in the one before
            with translated("read", self._name):
                before = self._container.get_blob_client(names[-2]).download_blob().readall()
            for entry in _lines(before):
                seq, prev = entry.seq, entry.hash
        return _Tail(int(last[len(PREFIX) : -len(".jsonl")]), len(data), blocks, seq, prev)

    def _new_segment(self, segment: int, seq: int, prev: str) -> _Tail:
        client = self._container.get_blob_client(_name(segment))
        with translated("create", self._name), contextlib.suppress(ResourceExistsError):
            client.create_append_blob(match_condition=MatchConditions.IfMissing)
        return _Tail(segment, 0, 0, seq, prev)

    def append(self, records: Sequence[AuditRecord]) -> list[ChainedEntry]:
        if not records:
            return []
        bodies = [canonical_json(r.to_json()) for r in records]
        with self._lock:
            self._ensure_container()
            for _ in range(MAX_RACES):
                tail = self._tail or self._read_tail()
                if tail.blocks >= MAX_BLOCKS:
                    tail = self._new_segment(tail.segment + 1, tail.seq, tail.hash)
                entries, seq, prev = [], tail.seq, tail.hash
                for body in bodies:
                    seq += 1
                    digest = entry_hash(seq, prev, body)
                    entries.append(ChainedEntry(seq, prev, digest, body))
                    prev = digest
                block = b"".join(
                    (
                        json.dumps({"seq": e.seq, "prev": e.prev, "hash": e.hash, "body": e.body}) + "\n"
                    ).encode()
                    for e in entries
                )
                client = self._container.get_blob_client(_name(tail.segment))
                try:
                    with translated("append", self._name):
                        try:
                            client.append_block(block, appendpos_condition=tail.offset)
                        except HttpResponseError as exc:
                            if exc.status_code == 412 or error_code(exc) in (
                                "AppendPositionConditionNotMet",
                                "BlockCountExceedsLimit",
                            ):
                                raise _Raced() from None
                            if isinstance(exc, ResourceNotFoundError):
                                raise _Raced() from None
                            raise
                except _Raced:
                    self._tail = None  # someone else appended (or rolled over): re-read and re-chain
                    continue
                self._tail = _Tail(tail.segment, tail.offset + len(block), tail.blocks + 1, seq, prev)
                return entries
        raise StorageUnavailable(f"append to {self._name} kept losing the race to other writers")

    # -- reading -------------------------------------------------------------------------------------

    def entries(self, *, after: int = 0) -> Iterator[ChainedEntry]:
        for name in self._segments():
            with translated("read", self._name):
                data = self._container.get_blob_client(name).download_blob().readall()
            for entry in _lines(data):
                if entry.seq > after:
                    yield entry

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
        wanted = {
            f"{prefix}:{value}"
            for prefix, value in (
                ("patient", patient),
                ("agent", agent),
                ("entity", entity),
                ("correlation", correlation_id),
                ("id", record_id),
            )
            if value
        }
        out: list[ChainedEntry] = []
        for entry in self.entries():
            record = AuditRecord.from_json(json.loads(entry.body))
            at = record.recorded.astimezone(UTC)
            if since is not None and at < since:
                continue
            if until is not None and at >= until:
                continue
            if wanted <= set(record.terms()):
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def checkpoints(self) -> list[Checkpoint]:
        """None: the WORM policy, not a key, protects the tail (docs/audit.md)."""
        return []

    def close(self) -> None:
        self._container.close()


class _Raced(Exception):
    """Another writer moved the append position (internal)."""
