"""Embedded SQLite :class:`~shared.fhirstore.ports.FhirRepository` (the default FHIR store).

Tables (one SQLite file, WAL mode, shared with other processes through SQLite's file locks):

* ``fhir_version`` - every version of every resource: body (compact JSON with ``meta`` set), version
  number, lastUpdated (epoch microseconds, millisecond precision), interaction, deleted flag.
* ``fhir_resource`` - one row per resource: current version number, lastUpdated, deleted flag.
* ``fhir_idx_token`` / ``fhir_idx_string`` / ``fhir_idx_date`` / ``fhir_idx_ref`` - search index rows
  of the *current* version (:func:`shared.fhirstore.search.extract_index`), replaced on every write and
  removed on delete. ``_id`` and ``_lastUpdated`` are evaluated on ``fhir_resource``.
* ``fhir_outbox`` - messages committed with a write (``events=``, :class:`~shared.fhirstore.ports.
  EventCommittingRepository`): one row per message (commit-ordered id, batch id, position, commit time,
  message JSON), deleted when the batch is settled, flagged ``parked`` when the bus refused it for good.

Concurrency: every write - including the search behind a conditional create/update and a whole
transaction Bundle - runs inside one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock
before the first read. Two conditional creates racing (threads of one process or separate processes on
the same file) are therefore serialised: the second sees the first's insert and returns it. Writers
wait for the lock up to ``busy_timeout`` seconds, then fail with
:class:`~shared.fhirstore.errors.StoreUnavailable` (transient). Reads and searches run in a deferred read
transaction (a consistent snapshot for the count and the page) and are never blocked by writers (WAL).

Search compiles each criterion to ``r.id IN (SELECT id FROM <index> WHERE rtype=? AND param=? AND
(<value OR value ...>))`` ANDed together; the semantics are those of :mod:`shared.fhirstore.search`.
Pagination is offset-based with an exact total (unless ``_total=none``).

Code: this module holds the transactions, the port and the committed outbox; ``_sqlite_fhir_work`` the unit
of work (writes, reads, history, search execution); ``_sqlite_fhir_query`` the search SQL;
``_sqlite_fhir_schema`` the tables.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from shared.adapters.embedded._sqlite import SqliteDatabase
from shared.adapters.embedded._sqlite_fhir_schema import SCHEMA, _dumps
from shared.adapters.embedded._sqlite_fhir_work import _TxReader, _Work
from shared.fhirstore import bundle as bundle_ops
from shared.fhirstore.errors import InvalidResource, StoreUnavailable
from shared.fhirstore.ports import (
    BatchEntryOutcome,
    CommitEvents,
    FhirReader,
    JsonDict,
    SearchResult,
    StoredResource,
    WriteResult,
)
from shared.fhirstore.search import (
    ID_PATTERN,
    capabilities,
    check_type,
    parse_query_string,
    parse_search,
)
from shared.outbox.committed import CommittedBatch
from shared.outbox.model import OutboxMessage
from shared.storage.errors import StorageUnavailable

T = TypeVar("T")


class SqliteFhirRepository:
    """FHIR repository in one SQLite file (see the module docs). Thread- and multi-process-safe."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 30.0,
        clock: Callable[[], datetime] | None = None,
        id_factory: Callable[[], str] | None = None,
        max_transaction_entries: int | None = 500,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        """``max_transaction_entries`` mirrors the AHDS bundle limit so both adapters accept the same
        transactions (None = unlimited). ``clock`` and ``id_factory`` are injectable for tests;
        ``after_commit`` is called after every committed write transaction (fault-injection tests)."""
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._id_factory: Callable[[], str] = id_factory or (lambda: str(uuid.uuid4()))
        self._after_commit = after_commit
        self._max_transaction_entries = max_transaction_entries
        try:
            self._db = SqliteDatabase(Path(path), busy_timeout=busy_timeout, schema=SCHEMA)
        except StorageUnavailable as exc:
            raise StoreUnavailable(f"FHIR store {Path(path).name} unavailable") from exc

    # -- transactions -----------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[_Work]:
        try:
            with self._db.write() as conn:
                yield _Work(self, conn)
        except StorageUnavailable as exc:
            raise self._unavailable(exc) from exc
        if self._after_commit is not None:
            self._after_commit()

    @contextmanager
    def _reading(self) -> Iterator[_Work]:
        """A deferred read transaction: every statement sees the same snapshot."""
        try:
            with self._db.read() as conn:
                conn.execute("BEGIN")
                try:
                    yield _Work(self, conn)
                finally:
                    if conn.in_transaction:
                        conn.rollback()
        except StorageUnavailable as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def _statement(self) -> Iterator[_Work]:
        """For a read of one statement (read, vread): autocommit, which gives that statement one snapshot
        without the BEGIN and ROLLBACK round trips of :meth:`_reading`."""
        try:
            with self._db.read() as conn:
                yield _Work(self, conn)
        except StorageUnavailable as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: StorageUnavailable) -> Exception:
        """SQLite "busy/locked/IO/full" errors are transient; a generic SQL error (``SQLITE_ERROR``:
        bad SQL, missing table) is a defect and must not masquerade as a retryable outage."""
        original = exc.__context__
        if isinstance(original, sqlite3.OperationalError) and original.sqlite_errorname == "SQLITE_ERROR":
            return RuntimeError(f"FHIR store {self._db.path.name}: SQL error")
        return StoreUnavailable(f"FHIR store {self._db.path.name} unavailable")

    def _write(self, fn: Callable[[_Work], T]) -> T:
        with self._writing() as work:
            return fn(work)

    def _write_events(
        self,
        fn: Callable[[_Work], T],
        build: Callable[[FhirReader, T], Sequence[OutboxMessage]] | None,
        committed: list[CommittedBatch] | None,
    ) -> T:
        """``fn`` and the messages ``build`` makes of its outcome, in one transaction; the batch is
        appended to ``committed`` once the transaction has committed."""
        if build is None or committed is None:
            return self._write(fn)
        batch: CommittedBatch | None = None
        with self._writing() as work:
            result = fn(work)
            messages = tuple(build(_TxReader(work), result))
            if messages:
                batch = self._enqueue(work, messages)
        if batch is not None:
            committed.append(batch)
        return result

    def _enqueue(self, work: _Work, messages: tuple[OutboxMessage, ...]) -> CommittedBatch:
        batch_id = uuid.uuid4().hex
        created_ms = work._now() // 1000
        try:
            rows = [(batch_id, seq, created_ms, _dumps(m.to_json())) for seq, m in enumerate(messages)]
        except (TypeError, ValueError):
            raise InvalidResource("an event message is not JSON-serialisable", http_status=500) from None
        work._conn.executemany(
            "INSERT INTO fhir_outbox (batch, seq, created, parked, message) VALUES (?, ?, ?, 0, ?)", rows
        )
        return CommittedBatch(batch_id, messages, created_ms)

    # -- port -------------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        with self._statement() as work:
            return work.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        with self._statement() as work:
            return work.vread(resource_type, resource_id, version_id)

    def create(
        self,
        resource: JsonDict,
        *,
        if_none_exist: str | None = None,
        events: CommitEvents[WriteResult] | None = None,
    ) -> WriteResult:
        rtype = bundle_ops.check_resource(resource)
        if if_none_exist is not None:  # parse outside the write lock: a bad criterion fails fast
            parse_search(rtype, parse_query_string(if_none_exist), strict=True)
        return self._write_events(
            lambda work: bundle_ops.create_in(work, resource, if_none_exist=if_none_exist),
            *_parts(events),
        )

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: JsonDict,
        *,
        if_match: str | None = None,
        events: CommitEvents[WriteResult] | None = None,
    ) -> WriteResult:
        bundle_ops.check_resource(resource, resource_type, resource_id)
        return self._write_events(
            lambda work: bundle_ops.update_in(work, resource_type, resource_id, resource, if_match=if_match),
            *_parts(events),
        )

    def conditional_update(
        self,
        resource_type: str,
        query: str,
        resource: JsonDict,
        *,
        if_match: str | None = None,
        events: CommitEvents[WriteResult] | None = None,
    ) -> WriteResult:
        bundle_ops.check_resource(resource, resource_type)
        parse_search(resource_type, parse_query_string(query), strict=True)
        return self._write_events(
            lambda work: bundle_ops.conditional_update_in(
                work, resource_type, query, resource, if_match=if_match
            ),
            *_parts(events),
        )

    def delete(
        self,
        resource_type: str,
        resource_id: str,
        *,
        events: CommitEvents[StoredResource | None] | None = None,
    ) -> None:
        check_type(resource_type)
        if not ID_PATTERN.match(resource_id):
            return

        def delete(work: _Work) -> StoredResource | None:
            before = work.current(resource_type, resource_id)
            work.delete(resource_type, resource_id)
            if before is None or before[1]:
                return None  # nothing to delete: no version written
            return work.history(resource_type, resource_id, count=1)[0]

        self._write_events(delete, *_parts(events))

    def history(
        self,
        resource_type: str,
        resource_id: str | None = None,
        *,
        count: int | None = None,
        since: datetime | None = None,
    ) -> list[StoredResource]:
        with self._reading() as work:
            return work.history(resource_type, resource_id, count=count, since=since)

    def search(
        self,
        resource_type: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        count: int | None = None,
        offset: int | None = None,
        sort: Sequence[str] | None = None,
        include: Sequence[str] | None = None,
        strict: bool = True,
    ) -> SearchResult:
        query = parse_search(
            resource_type, params, strict=strict, count=count, offset=offset, sort=sort, include=include
        )
        with self._reading() as work:
            return work.run_search(query)

    def transaction(self, bundle: JsonDict, *, events: CommitEvents[JsonDict] | None = None) -> JsonDict:
        # Parse (and size-check) before taking the write lock; run_transaction parses again under it.
        bundle_ops.parse_transaction(bundle, max_entries=self._max_transaction_entries)
        return self._write_events(
            lambda work: bundle_ops.run_transaction(work, bundle, max_entries=self._max_transaction_entries),
            *_parts(events),
        )

    def batch(self, bundle: JsonDict, *, events: CommitEvents[BatchEntryOutcome] | None = None) -> JsonDict:
        def execute(fn: Callable[[_Work], JsonDict], index: int) -> JsonDict:
            if events is None:
                return self._write(fn)
            build = events.build

            def entry_build(reader: FhirReader, answer: JsonDict) -> Sequence[OutboxMessage]:
                return build(reader, (index, answer))

            return self._write_events(fn, entry_build, events.committed)

        return bundle_ops.run_batch(bundle, execute)

    # -- committed outbox (shared.outbox.committed.CommittedOutbox) ------------------------------

    def pending_batches(
        self, *, limit: int = 100, created_before_ms: int | None = None
    ) -> list[CommittedBatch]:
        return self._batches(parked=False, limit=limit, created_before_ms=created_before_ms)

    def parked_batches(self, *, limit: int = 100) -> list[CommittedBatch]:
        """Batches the bus refused for good (for an operator), oldest first."""
        return self._batches(parked=True, limit=limit, created_before_ms=None)

    def _batches(self, *, parked: bool, limit: int, created_before_ms: int | None) -> list[CommittedBatch]:
        cutoff = created_before_ms if created_before_ms is not None else 1 << 62
        with self._reading() as work:
            conn = work._conn
            heads = conn.execute(
                "SELECT batch, MIN(created), MIN(id) AS first FROM fhir_outbox WHERE parked = ? "
                "AND created <= ? GROUP BY batch ORDER BY first LIMIT ?",
                (int(parked), cutoff, max(limit, 0)),
            ).fetchall()
            out: list[CommittedBatch] = []
            for batch_id, created, _first in heads:
                rows = conn.execute(
                    "SELECT message FROM fhir_outbox WHERE batch = ? ORDER BY seq", (batch_id,)
                ).fetchall()
                messages = tuple(OutboxMessage.from_json(json.loads(row[0])) for row in rows)
                out.append(CommittedBatch(batch_id, messages, int(created)))
        return out

    def settle_batch(self, batch_id: str) -> None:
        with self._writing_quietly() as conn:
            conn.execute("DELETE FROM fhir_outbox WHERE batch = ?", (batch_id,))

    def park_batch(self, batch_id: str, reason: str) -> None:
        with self._writing_quietly() as conn:
            conn.execute(
                "UPDATE fhir_outbox SET parked = 1, reason = ? WHERE batch = ?", (reason[:200], batch_id)
            )

    def requeue_parked(self) -> int:
        """Return every parked batch to the relay (after fixing what the bus rejected); returns how many."""
        with self._writing_quietly() as conn:
            count = conn.execute("SELECT COUNT(DISTINCT batch) FROM fhir_outbox WHERE parked = 1").fetchone()[
                0
            ]
            conn.execute("UPDATE fhir_outbox SET parked = 0, reason = NULL WHERE parked = 1")
        return int(count)

    @contextmanager
    def _writing_quietly(self) -> Iterator[sqlite3.Connection]:
        """A write transaction for outbox bookkeeping (no ``after_commit``: it is not a FHIR write)."""
        try:
            with self._db.write() as conn:
                yield conn
        except StorageUnavailable as exc:
            raise self._unavailable(exc) from exc

    def capabilities(self) -> JsonDict:
        return capabilities(max_transaction_entries=self._max_transaction_entries or 0)

    def close(self) -> None:
        self._db.close()


def _parts(
    events: CommitEvents[T] | None,
) -> tuple[Callable[[FhirReader, T], Sequence[OutboxMessage]] | None, list[CommittedBatch] | None]:
    return (None, None) if events is None else (events.build, events.committed)
