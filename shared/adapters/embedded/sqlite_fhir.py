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
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from shared.adapters.embedded._sqlite import SqliteDatabase
from shared.fhirstore import bundle as bundle_ops
from shared.fhirstore.errors import (
    InvalidResource,
    InvalidSearch,
    ResourceConflict,
    ResourceGone,
    ResourceNotFound,
    StoreUnavailable,
    VersionConflict,
)
from shared.fhirstore.ports import (
    METHOD_CREATE,
    METHOD_DELETE,
    BatchEntryOutcome,
    CommitEvents,
    FhirReader,
    JsonDict,
    SearchResult,
    StoredResource,
    WriteResult,
    format_instant,
    parse_etag,
)
from shared.fhirstore.search import (
    ID_PATTERN,
    Criterion,
    DateValue,
    ParamType,
    ReferenceValue,
    SearchQuery,
    StringValue,
    TokenValue,
    capabilities,
    check_type,
    extract_index,
    parse_query_string,
    parse_search,
    to_micros,
)
from shared.outbox.committed import CommittedBatch
from shared.outbox.model import OutboxMessage
from shared.storage.errors import StorageUnavailable

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SCHEMA = """
CREATE TABLE IF NOT EXISTS fhir_resource (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (rtype, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fhir_resource_updated ON fhir_resource (rtype, deleted, last_updated);
CREATE TABLE IF NOT EXISTS fhir_version (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS fhir_version_key ON fhir_version (rtype, id, version);
CREATE INDEX IF NOT EXISTS fhir_version_updated ON fhir_version (rtype, last_updated);
CREATE TABLE IF NOT EXISTS fhir_idx_token (
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, system TEXT, code TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_idx_token_value ON fhir_idx_token (rtype, param, code, system);
CREATE INDEX IF NOT EXISTS fhir_idx_token_res ON fhir_idx_token (rtype, id, param);
CREATE TABLE IF NOT EXISTS fhir_idx_string (
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_idx_string_value ON fhir_idx_string (rtype, param, norm);
CREATE INDEX IF NOT EXISTS fhir_idx_string_res ON fhir_idx_string (rtype, id, param);
CREATE TABLE IF NOT EXISTS fhir_idx_date (
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_idx_date_value ON fhir_idx_date (rtype, param, lo, hi);
CREATE INDEX IF NOT EXISTS fhir_idx_date_res ON fhir_idx_date (rtype, id, param);
CREATE TABLE IF NOT EXISTS fhir_idx_ref (
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, ttype TEXT NOT NULL, tid TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_idx_ref_value ON fhir_idx_ref (rtype, param, tid, ttype);
CREATE INDEX IF NOT EXISTS fhir_idx_ref_res ON fhir_idx_ref (rtype, id, param);
CREATE INDEX IF NOT EXISTS fhir_idx_ref_target ON fhir_idx_ref (ttype, tid);
CREATE TABLE IF NOT EXISTS fhir_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created INTEGER NOT NULL,
    parked INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    message TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS fhir_outbox_batch ON fhir_outbox (batch, seq);
CREATE INDEX IF NOT EXISTS fhir_outbox_due ON fhir_outbox (parked, id)
"""

_INDEX_TABLES = ("fhir_idx_token", "fhir_idx_string", "fhir_idx_date", "fhir_idx_ref")
_TABLE_FOR = {
    ParamType.TOKEN: "fhir_idx_token",
    ParamType.URI: "fhir_idx_token",
    ParamType.STRING: "fhir_idx_string",
    ParamType.DATE: "fhir_idx_date",
    ParamType.REFERENCE: "fhir_idx_ref",
}
_LAST_UPDATED_WIDTH = 1000  # lastUpdated has millisecond precision: [t, t + 1 ms)
_STRING_UPPER = "\U0010ffff"


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _date_sql(prefix: str, lo_col: str, hi_col: str, lo: int, hi: int) -> tuple[str, list[Any]]:
    """SQL for :func:`shared.fhirstore.search.date_predicate` (resource range in the two columns)."""
    within = f"({lo_col} >= ? AND {hi_col} <= ?)"
    if prefix == "eq":
        # "lo < P.hi" is implied (a range is never empty) and bounds the index range scan.
        return f"({lo_col} >= ? AND {lo_col} < ? AND {hi_col} <= ?)", [lo, hi, hi]
    if prefix == "ne":
        return f"NOT {within}", [lo, hi]
    if prefix == "gt":
        return f"{hi_col} > ?", [hi]
    if prefix == "lt":
        return f"{lo_col} < ?", [lo]
    if prefix == "ge":
        return f"({hi_col} > ? OR {within})", [hi, lo, hi]
    if prefix == "le":
        return f"({lo_col} < ? OR {within})", [lo, lo, hi]
    if prefix == "sa":
        return f"{lo_col} >= ?", [hi]
    if prefix == "eb":
        return f"({hi_col} <= ? AND {lo_col} < ?)", [lo, lo]
    if prefix == "ap":
        return f"({lo_col} < ? AND {hi_col} > ?)", [hi, lo]
    raise ValueError(prefix)


def _value_sql(criterion: Criterion) -> tuple[str, list[Any]]:
    """OR of the criterion's values against one index row."""
    parts: list[str] = []
    args: list[Any] = []
    for value in criterion.values:
        if isinstance(value, TokenValue):
            clause: list[str] = []
            if value.code is not None:
                clause.append("code = ?")
                args.append(value.code)
            if value.system == "":
                clause.append("system IS NULL")
            elif value.system is not None:
                clause.append("system = ?")
                args.append(value.system)
            parts.append("(" + " AND ".join(clause) + ")")
        elif isinstance(value, StringValue):
            if criterion.modifier == "exact":
                parts.append("exact = ?")
                args.append(value.text)
            elif criterion.modifier == "contains":
                parts.append("instr(norm, ?) > 0")
                args.append(value.norm)
            else:
                parts.append("(norm >= ? AND norm < ?)")
                args.extend((value.norm, value.norm + _STRING_UPPER))
        elif isinstance(value, DateValue):
            sql, date_args = _date_sql(value.prefix, "lo", "hi", value.lo, value.hi)
            parts.append(sql)
            args.extend(date_args)
        elif isinstance(value, ReferenceValue):
            if value.type is None:
                parts.append("tid = ?")
                args.append(value.id)
            else:
                parts.append("(tid = ? AND ttype = ?)")
                args.extend((value.id, value.type))
    return "(" + " OR ".join(parts) + ")", args


def _criterion_sql(rtype: str, criterion: Criterion) -> tuple[str, list[Any]]:
    name = criterion.param.name
    if name == "_id":
        ids = [v.code for v in criterion.values if isinstance(v, TokenValue) and not v.system]
        if not ids:
            return "0", []
        return f"r.id IN ({','.join('?' * len(ids))})", list(ids)
    if name == "_lastUpdated":
        parts, args = [], []
        for value in criterion.values:
            if isinstance(value, DateValue):
                sql, date_args = _date_sql(
                    value.prefix,
                    "r.last_updated",
                    f"(r.last_updated + {_LAST_UPDATED_WIDTH})",
                    value.lo,
                    value.hi,
                )
                parts.append(sql)
                args.extend(date_args)
        return "(" + " OR ".join(parts) + ")", args
    table = _TABLE_FOR[criterion.param.type]
    if criterion.modifier == "missing":
        negate = "NOT " if criterion.values[0] is True else ""
        sub = f"SELECT id FROM {table} INDEXED BY {table}_value WHERE rtype = ? AND param = ?"
        return f"r.id {negate}IN ({sub})", [rtype, name]
    value_sql, args = _value_sql(criterion)
    negate = "NOT " if criterion.modifier == "not" else ""
    sub = f"SELECT id FROM {table} INDEXED BY {table}_value WHERE rtype = ? AND param = ? AND {value_sql}"
    sql = f"r.id {negate}IN ({sub})"
    return sql, [rtype, name, *args]


#: Driver preference: exact lookups first, then string prefixes, then bounded (``eq``) date ranges.
_DRIVER_RANK = {
    ParamType.TOKEN: 1,
    ParamType.URI: 1,
    ParamType.REFERENCE: 1,
    ParamType.STRING: 2,
    ParamType.DATE: 3,
}


def _driver(criteria: Sequence[Criterion]) -> Criterion | None:
    """The criterion whose index lookup should drive the query: positive (no ``:not``/``:missing``)."""
    best: tuple[int, Criterion] | None = None
    for criterion in criteria:
        if criterion.modifier in ("not", "missing") or criterion.param.name == "_lastUpdated":
            continue
        if criterion.param.type is ParamType.DATE and not all(
            isinstance(v, DateValue) and v.prefix == "eq" for v in criterion.values
        ):
            continue  # open-ended date ranges usually match most resources: filter, do not drive
        rank = 0 if criterion.param.name == "_id" else _DRIVER_RANK[criterion.param.type]
        if best is None or rank < best[0]:
            best = (rank, criterion)
    return None if best is None else best[1]


def _driver_sql(rtype: str, criterion: Criterion) -> tuple[str, list[Any]]:
    """Distinct ids matching one positive criterion (ignoring deletion, checked by the caller)."""
    if criterion.param.name == "_id":
        sql, args = _criterion_sql(rtype, criterion)
        return f"SELECT id FROM fhir_resource r WHERE r.rtype = ? AND {sql}", [rtype, *args]
    table = _TABLE_FOR[criterion.param.type]
    value_sql, args = _value_sql(criterion)
    return (
        f"SELECT DISTINCT id FROM {table} INDEXED BY {table}_value "
        f"WHERE rtype = ? AND param = ? AND {value_sql}",
        [rtype, criterion.param.name, *args],
    )


def _order_sql(rtype: str, query: SearchQuery) -> tuple[str, list[Any]]:
    parts: list[str] = []
    args: list[Any] = []
    for key in query.sort:
        direction = "DESC" if key.descending else "ASC"
        if key.param == "_lastUpdated":
            parts.append(f"r.last_updated {direction}")
            continue
        if key.param == "_id":
            parts.append(f"r.id {direction}")
            continue
        assert key.type is not None
        table = _TABLE_FOR[key.type]
        column = {ParamType.DATE: "lo", ParamType.STRING: "norm"}.get(key.type, "code")
        aggregate = "MIN"
        if key.descending:
            column = "hi" if key.type is ParamType.DATE else column
            aggregate = "MAX"
        sub = (
            f"(SELECT {aggregate}({column}) FROM {table} s WHERE s.rtype = ? AND s.id = r.id AND s.param = ?)"
        )
        # Resources without a value sort last either way (SQLite puts NULL first in ascending order).
        parts.append(f"{sub} IS NULL, {sub} {direction}")
        args.extend((rtype, key.param, rtype, key.param))
    if not query.sort:
        parts.append("r.last_updated ASC")
    parts.append("r.id ASC")
    return ", ".join(parts), args


class _Work:
    """The :class:`~shared.fhirstore.bundle.UnitOfWork` over one connection (inside its transaction)."""

    def __init__(self, repo: SqliteFhirRepository, conn: sqlite3.Connection) -> None:
        self._repo = repo
        self._conn = conn

    # -- primitives -------------------------------------------------------------------------------

    def new_id(self) -> str:
        return self._repo._id_factory()

    def current(self, resource_type: str, resource_id: str) -> tuple[str, bool] | None:
        row = self._conn.execute(
            "SELECT version, deleted FROM fhir_resource WHERE rtype = ? AND id = ?",
            (resource_type, resource_id),
        ).fetchone()
        return None if row is None else (str(row[0]), bool(row[1]))

    def _now(self) -> int:
        moment = self._repo._clock()
        micros = to_micros(moment)
        return micros - micros % 1000

    def put(
        self,
        resource_type: str,
        resource_id: str,
        resource: JsonDict,
        *,
        if_match: str | None,
        method: str,
    ) -> WriteResult:
        check_type(resource_type)
        current = self.current(resource_type, resource_id)
        if if_match is not None:
            expected = parse_etag(if_match)
            if current is None or current[1] or current[0] != expected:
                actual = None if current is None or current[1] else current[0]
                raise VersionConflict(resource_type, resource_id, expected, actual)
        if method == METHOD_CREATE and current is not None:
            raise ResourceConflict(f"{resource_type}/{resource_id} already exists")
        version = int(current[0]) + 1 if current is not None else 1
        now = self._now()
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(_from_micros(now))
        body: JsonDict = {"resourceType": resource_type, "id": resource_id, "meta": meta}
        body.update((k, v) for k, v in resource.items() if k not in body)
        try:
            text = _dumps(body)
        except (TypeError, ValueError):
            raise InvalidResource("the resource is not JSON-serialisable") from None
        conn = self._conn
        conn.execute(
            "INSERT INTO fhir_version (rtype, id, version, last_updated, method, deleted, body) "
            "VALUES (?, ?, ?, ?, ?, 0, ?)",
            (resource_type, resource_id, version, now, method, text),
        )
        conn.execute(
            "INSERT INTO fhir_resource (rtype, id, version, last_updated, deleted) VALUES (?, ?, ?, ?, 0) "
            "ON CONFLICT (rtype, id) DO UPDATE SET version = excluded.version, "
            "last_updated = excluded.last_updated, deleted = 0",
            (resource_type, resource_id, version, now),
        )
        if current is not None:
            self._drop_index(resource_type, resource_id)
        rows = extract_index(body)
        key = (resource_type, resource_id)
        if rows.tokens:
            conn.executemany(
                "INSERT INTO fhir_idx_token (rtype, id, param, system, code) VALUES (?, ?, ?, ?, ?)",
                [(*key, *row) for row in rows.tokens],
            )
        if rows.strings:
            conn.executemany(
                "INSERT INTO fhir_idx_string (rtype, id, param, norm, exact) VALUES (?, ?, ?, ?, ?)",
                [(*key, *row) for row in rows.strings],
            )
        if rows.dates:
            conn.executemany(
                "INSERT INTO fhir_idx_date (rtype, id, param, lo, hi) VALUES (?, ?, ?, ?, ?)",
                [(*key, *row) for row in rows.dates],
            )
        if rows.references:
            conn.executemany(
                "INSERT INTO fhir_idx_ref (rtype, id, param, ttype, tid) VALUES (?, ?, ?, ?, ?)",
                [(*key, *row) for row in rows.references],
            )
        created = current is None or current[1]
        # A fresh copy of what was stored: the caller may mutate it without touching its input.
        return WriteResult(json.loads(text), created, str(version), _from_micros(now))

    def _drop_index(self, resource_type: str, resource_id: str) -> None:
        for table in _INDEX_TABLES:
            self._conn.execute(
                f"DELETE FROM {table} WHERE rtype = ? AND id = ?", (resource_type, resource_id)
            )

    def delete(self, resource_type: str, resource_id: str) -> None:
        check_type(resource_type)
        current = self.current(resource_type, resource_id)
        if current is None or current[1]:
            return
        version = int(current[0]) + 1
        now = self._now()
        stub = {
            "resourceType": resource_type,
            "id": resource_id,
            "meta": {"versionId": str(version), "lastUpdated": format_instant(_from_micros(now))},
        }
        self._conn.execute(
            "INSERT INTO fhir_version (rtype, id, version, last_updated, method, deleted, body) "
            "VALUES (?, ?, ?, ?, ?, 1, ?)",
            (resource_type, resource_id, version, now, METHOD_DELETE, _dumps(stub)),
        )
        self._conn.execute(
            "UPDATE fhir_resource SET version = ?, last_updated = ?, deleted = 1 WHERE rtype = ? AND id = ?",
            (version, now, resource_type, resource_id),
        )
        self._drop_index(resource_type, resource_id)

    # -- reads ------------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        check_type(resource_type)
        if not ID_PATTERN.match(resource_id):
            raise ResourceNotFound(resource_type, "(invalid id)")
        row = self._conn.execute(
            "SELECT v.version, v.last_updated, v.method, v.deleted, v.body FROM fhir_resource r "
            "JOIN fhir_version v ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version "
            "WHERE r.rtype = ? AND r.id = ?",
            (resource_type, resource_id),
        ).fetchone()
        if row is None:
            raise ResourceNotFound(resource_type, resource_id)
        if row[3]:
            raise ResourceGone(resource_type, resource_id, str(row[0]))
        return self._stored(row)

    @staticmethod
    def _stored(row: Sequence[Any]) -> StoredResource:
        version, last_updated, method, deleted, body = row
        return StoredResource(
            resource=json.loads(body),
            version_id=str(version),
            last_modified=_from_micros(last_updated),
            deleted=bool(deleted),
            method=method,
        )

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        check_type(resource_type)
        if not ID_PATTERN.match(resource_id) or not version_id.isdigit():
            raise ResourceNotFound(
                resource_type, resource_id if ID_PATTERN.match(resource_id) else "(invalid id)"
            )
        row = self._conn.execute(
            "SELECT version, last_updated, method, deleted, body FROM fhir_version "
            "WHERE rtype = ? AND id = ? AND version = ?",
            (resource_type, resource_id, int(version_id)),
        ).fetchone()
        if row is None:
            raise ResourceNotFound(resource_type, resource_id, version_id)
        if row[3]:
            raise ResourceGone(resource_type, resource_id, str(row[0]))
        return self._stored(row)

    def history(
        self,
        resource_type: str,
        resource_id: str | None = None,
        *,
        count: int | None = None,
        since: datetime | None = None,
    ) -> list[StoredResource]:
        check_type(resource_type)
        where = ["rtype = ?"]
        args: list[Any] = [resource_type]
        if resource_id is not None:
            where.append("id = ?")
            args.append(resource_id)
        if since is not None:
            where.append("last_updated >= ?")
            args.append(to_micros(since))
        sql = (
            "SELECT version, last_updated, method, deleted, body FROM fhir_version WHERE "
            + " AND ".join(where)
            + (
                " ORDER BY version DESC"
                if resource_id is not None
                else " ORDER BY last_updated DESC, id, version DESC"
            )
        )
        if count is not None:
            sql += " LIMIT ?"
            args.append(max(count, 0))
        rows = self._conn.execute(sql, args).fetchall()
        if resource_id is not None and not rows and self.current(resource_type, resource_id) is None:
            raise ResourceNotFound(
                resource_type, resource_id if ID_PATTERN.match(resource_id) else "(invalid id)"
            )
        return [self._stored(row) for row in rows]

    def _from_where(self, query: SearchQuery) -> tuple[str, str, list[Any]]:
        """(source, condition, args) selecting the current matches of ``query`` (alias ``r``).

        With a selective positive criterion, that criterion's index lookup drives the query (``CROSS
        JOIN`` fixes the join order, so SQLite cannot prefer scanning every resource of the type in
        lastUpdated order); the other criteria filter. Otherwise the type's resources are scanned.
        """
        rtype = query.resource_type
        driver = _driver(query.criteria)
        clauses = ["r.deleted = 0"]
        if driver is None:
            source = "fhir_resource r"
            clauses.insert(0, "r.rtype = ?")
            args: list[Any] = [rtype]
        else:
            sub, args = _driver_sql(rtype, driver)
            source = f"({sub}) m CROSS JOIN fhir_resource r ON r.rtype = ? AND r.id = m.id"
            args.append(rtype)
        for criterion in query.criteria:
            if criterion is driver:
                continue
            sql, crit_args = _criterion_sql(rtype, criterion)
            clauses.append(sql)
            args.extend(crit_args)
        return source, " AND ".join(clauses), args

    def match_ids(self, query: SearchQuery, *, limit: int, offset: int = 0) -> list[str]:
        source, where, args = self._from_where(query)
        order, order_args = _order_sql(query.resource_type, query)
        rows = self._conn.execute(
            f"SELECT r.id FROM {source} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, *order_args, limit, offset],
        ).fetchall()
        return [row[0] for row in rows]

    def find(self, resource_type: str, query: str, *, context: str) -> list[str]:
        parsed = parse_search(resource_type, parse_query_string(query), strict=True)
        if not parsed.criteria:
            raise InvalidSearch(context, "no search criteria")
        return self.match_ids(parsed, limit=2)

    def run_search(self, query: SearchQuery) -> SearchResult:
        source, where, args = self._from_where(query)
        total: int | None = None
        if query.total:
            total = int(
                self._conn.execute(f"SELECT COUNT(*) FROM {source} WHERE {where}", args).fetchone()[0]
            )
        resources: list[JsonDict] = []
        included: list[JsonDict] = []
        if query.count > 0 and (total is None or total > query.offset):
            order, order_args = _order_sql(query.resource_type, query)
            rows = self._conn.execute(
                f"SELECT r.id, v.body FROM {source} CROSS JOIN fhir_version v "
                "ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version "
                f"WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*args, *order_args, query.count, query.offset],
            ).fetchall()
            resources = [json.loads(row[1]) for row in rows]
            if query.includes and rows:
                included = self._included(query, [row[0] for row in rows])
        return SearchResult(
            total=total,
            resources=resources,
            included=included,
            count=query.count,
            offset=query.offset,
            params=list(query.params),
            ignored=list(query.ignored),
        )

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> SearchResult:
        return self.run_search(parse_search(resource_type, params))

    def _included(self, query: SearchQuery, page_ids: list[str]) -> list[JsonDict]:
        wanted: dict[tuple[str, str], None] = {}
        marks = ",".join("?" * len(page_ids))
        for include in query.includes:
            params = [d.name for d in query.reference_params(include.source_type, include)]
            if not params:
                continue
            pmarks = ",".join("?" * len(params))
            if include.reverse:
                sql = (
                    f"SELECT DISTINCT rtype, id FROM fhir_idx_ref WHERE rtype = ? AND param IN ({pmarks}) "
                    f"AND ttype = ? AND tid IN ({marks})"
                )
                args: list[Any] = [include.source_type, *params, query.resource_type, *page_ids]
            else:
                sql = (
                    f"SELECT DISTINCT ttype, tid FROM fhir_idx_ref WHERE rtype = ? AND param IN ({pmarks}) "
                    f"AND id IN ({marks})"
                )
                args = [include.source_type, *params, *page_ids]
                if include.target_type:
                    sql += " AND ttype = ?"
                    args.append(include.target_type)
            for rtype, rid in self._conn.execute(sql, args).fetchall():
                wanted[(rtype, rid)] = None
        page = {(query.resource_type, rid) for rid in page_ids}
        keys = [key for key in wanted if key not in page]
        return self._fetch_current(keys)

    def _fetch_current(self, keys: list[tuple[str, str]]) -> list[JsonDict]:
        found: dict[tuple[str, str], JsonDict] = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = self._conn.execute(
                    "SELECT r.id, v.body FROM fhir_resource r JOIN fhir_version v "
                    "ON v.rtype = r.rtype AND v.id = r.id AND v.version = r.version "
                    f"WHERE r.rtype = ? AND r.deleted = 0 AND r.id IN ({','.join('?' * len(chunk))})",
                    [rtype, *chunk],
                ).fetchall()
                for rid, body in rows:
                    found[(rtype, rid)] = json.loads(body)
        return [found[key] for key in keys if key in found]


class _TxReader:
    """:class:`~shared.fhirstore.ports.FhirReader` over an open write transaction (sees its writes)."""

    def __init__(self, work: _Work) -> None:
        self._work = work

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        return self._work.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        return self._work.vread(resource_type, resource_id, version_id)

    def history(
        self,
        resource_type: str,
        resource_id: str | None = None,
        *,
        count: int | None = None,
        since: datetime | None = None,
    ) -> list[StoredResource]:
        return self._work.history(resource_type, resource_id, count=count, since=since)

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
        return self._work.run_search(query)


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
        with self._reading() as work:
            return work.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        with self._reading() as work:
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
