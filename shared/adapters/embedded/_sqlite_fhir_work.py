"""The unit of work of the embedded FHIR store: writes, reads, history and search execution on one
connection inside its transaction (:mod:`shared.adapters.embedded.sqlite_fhir` opens them)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.embedded._sqlite_fhir_query import _criterion_sql, _driver, _driver_sql, _order_sql
from shared.adapters.embedded._sqlite_fhir_schema import _INDEX_TABLES, _dumps, _from_micros
from shared.fhirstore.errors import (
    InvalidResource,
    InvalidSearch,
    ResourceConflict,
    ResourceGone,
    ResourceNotFound,
    VersionConflict,
)
from shared.fhirstore.ports import (
    METHOD_CREATE,
    METHOD_DELETE,
    JsonDict,
    SearchResult,
    StoredResource,
    WriteResult,
    format_instant,
    parse_etag,
)
from shared.fhirstore.search import (
    ID_PATTERN,
    SearchQuery,
    check_type,
    extract_index,
    parse_query_string,
    parse_search,
    to_micros,
)

if TYPE_CHECKING:
    from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository


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
