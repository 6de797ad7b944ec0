"""Embedded :class:`~shared.storage.ports.RecordStore`: one SQLite file, one SQL table per record table.

Semantics match :mod:`shared.adapters.azure.tables`:

* conditional insert is the primary-key constraint (:class:`RecordExists`);
* every write stores a fresh random ETag; ``update``/conditional ``delete`` compare it inside a
  ``BEGIN IMMEDIATE`` transaction, so exactly one of several writers holding the same ETag wins, across
  threads and processes;
* values are compact JSON (:func:`shared.storage.keys.encode_value`, 256 KiB limit);
* records sort by (partition key, row key) in code-point order; table names are case-insensitive.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path

from shared.adapters.embedded._sqlite import SqliteDatabase
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.keys import (
    decode_value,
    encode_value,
    prefix_upper_bound,
    validate_key,
    validate_table_name,
)
from shared.storage.ports import JsonDict, Record, RecordWrite

_COLUMNS = "pk, rk, value, etag, updated_at"
#: ``ON CONFLICT (pk, rk)`` action per :class:`~shared.storage.ports.RecordWrite` kind.
_ON_CONFLICT = {
    "upsert": "DO UPDATE SET value = excluded.value, etag = excluded.etag, updated_at = excluded.updated_at",
    "insert_if_absent": "DO NOTHING",
}
_WRITE_KINDS = frozenset({*_ON_CONFLICT, "update", "delete"})


def _new_etag() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class SqliteRecordStore:
    """:class:`~shared.storage.ports.RecordStore` over a single SQLite database file (WAL mode)."""

    def __init__(self, path: str | PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self._db = SqliteDatabase(Path(path), busy_timeout=busy_timeout)
        self._known_tables: set[str] = set()
        self._tables_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------------------

    def _table(self, table: str) -> str:
        """SQL identifier for ``table``, creating the SQL table on first use."""
        validate_table_name(table)
        sql_name = f'"rec_{table.lower()}"'
        with self._tables_lock:
            if sql_name in self._known_tables:
                return sql_name
        with self._db.write() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {sql_name} (pk TEXT NOT NULL, rk TEXT NOT NULL, "
                "value TEXT NOT NULL, etag TEXT NOT NULL, updated_at TEXT NOT NULL, "
                "PRIMARY KEY (pk, rk)) WITHOUT ROWID"
            )
        with self._tables_lock:
            self._known_tables.add(sql_name)
        return sql_name

    @staticmethod
    def _keys(partition_key: str, row_key: str) -> None:
        validate_key(partition_key, what="partition key")
        validate_key(row_key, what="row key")

    @staticmethod
    def _record(table: str, row: tuple[str, str, str, str, str]) -> Record:
        pk, rk, value, etag, updated_at = row
        return Record(
            table=table,
            partition_key=pk,
            row_key=rk,
            value=decode_value(value),
            etag=etag,
            updated_at=datetime.fromisoformat(updated_at),
        )

    # -- RecordStore ---------------------------------------------------------------------------------

    def get(self, table: str, partition_key: str, row_key: str) -> Record | None:
        sql_table = self._table(table)
        self._keys(partition_key, row_key)
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM {sql_table} WHERE pk = ? AND rk = ?", (partition_key, row_key)
            ).fetchone()
        return None if row is None else self._record(table, row)

    def insert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        sql_table = self._table(table)
        self._keys(partition_key, row_key)
        text = encode_value(value)
        etag, now = _new_etag(), _now()
        try:
            with self._db.write() as conn:
                conn.execute(
                    f"INSERT INTO {sql_table} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                    (partition_key, row_key, text, etag, now.isoformat()),
                )
        except sqlite3.IntegrityError:
            raise RecordExists(f"record already exists in table {table}") from None
        return Record(table, partition_key, row_key, decode_value(text), etag, now)

    def update(self, table: str, partition_key: str, row_key: str, value: JsonDict, *, etag: str) -> Record:
        sql_table = self._table(table)
        self._keys(partition_key, row_key)
        text = encode_value(value)
        new_etag, now = _new_etag(), _now()
        exists = None
        with self._db.write() as conn:
            changed = conn.execute(
                f"UPDATE {sql_table} SET value = ?, etag = ?, updated_at = ? "
                "WHERE pk = ? AND rk = ? AND etag = ?",
                (text, new_etag, now.isoformat(), partition_key, row_key, etag),
            ).rowcount
            if not changed:
                exists = conn.execute(
                    f"SELECT 1 FROM {sql_table} WHERE pk = ? AND rk = ?", (partition_key, row_key)
                ).fetchone()
        if not changed:
            if exists:
                raise ConcurrencyConflict(f"record in table {table} was changed since it was read")
            raise RecordNotFound(f"record not found in table {table}")
        return Record(table, partition_key, row_key, decode_value(text), new_etag, now)

    def upsert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        sql_table = self._table(table)
        self._keys(partition_key, row_key)
        text = encode_value(value)
        etag, now = _new_etag(), _now()
        with self._db.write() as conn:
            conn.execute(
                f"INSERT INTO {sql_table} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (pk, rk) DO UPDATE SET value = excluded.value, etag = excluded.etag, "
                "updated_at = excluded.updated_at",
                (partition_key, row_key, text, etag, now.isoformat()),
            )
        return Record(table, partition_key, row_key, decode_value(text), etag, now)

    def write_all(self, writes: Sequence[RecordWrite]) -> None:
        """:class:`~shared.storage.ports.AtomicRecordWrites`: every write in one ``BEGIN IMMEDIATE``
        transaction (one commit instead of one per write); a failed condition rolls all of them back."""
        if not writes:
            return
        now = _now().isoformat()
        prepared = []
        for write in writes:
            if write.kind not in _WRITE_KINDS:
                raise ValueError(f"unknown record write kind {write.kind!r}")
            if write.kind == "update" and write.etag is None:
                raise ValueError("a conditional update needs an etag")
            if write.kind != "delete" and write.value is None:
                raise ValueError(f"a record {write.kind} needs a value")
            sql_table = self._table(write.table)
            self._keys(write.partition_key, write.row_key)
            text = encode_value(write.value) if write.value is not None else ""
            prepared.append((write, sql_table, text))
        with self._db.write() as conn:
            for write, sql_table, text in prepared:
                pk, rk = write.partition_key, write.row_key
                if write.kind in _ON_CONFLICT:
                    conn.execute(
                        f"INSERT INTO {sql_table} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
                        f"ON CONFLICT (pk, rk) {_ON_CONFLICT[write.kind]}",
                        (pk, rk, text, _new_etag(), now),
                    )
                    continue
                if write.kind == "update":
                    changed = conn.execute(
                        f"UPDATE {sql_table} SET value = ?, etag = ?, updated_at = ? "
                        "WHERE pk = ? AND rk = ? AND etag = ?",
                        (text, _new_etag(), now, pk, rk, write.etag),
                    ).rowcount
                elif write.etag is None:
                    conn.execute(f"DELETE FROM {sql_table} WHERE pk = ? AND rk = ?", (pk, rk))
                    continue
                else:
                    changed = conn.execute(
                        f"DELETE FROM {sql_table} WHERE pk = ? AND rk = ? AND etag = ?", (pk, rk, write.etag)
                    ).rowcount
                if changed:
                    continue
                exists = conn.execute(
                    f"SELECT 1 FROM {sql_table} WHERE pk = ? AND rk = ?", (pk, rk)
                ).fetchone()
                if exists:
                    raise ConcurrencyConflict(f"record in table {write.table} was changed since it was read")
                if write.kind == "update":
                    raise RecordNotFound(f"record not found in table {write.table}")

    def delete(self, table: str, partition_key: str, row_key: str, *, etag: str | None = None) -> bool:
        sql_table = self._table(table)
        self._keys(partition_key, row_key)
        with self._db.write() as conn:
            if etag is None:
                return (
                    conn.execute(
                        f"DELETE FROM {sql_table} WHERE pk = ? AND rk = ?", (partition_key, row_key)
                    ).rowcount
                    > 0
                )
            deleted = conn.execute(
                f"DELETE FROM {sql_table} WHERE pk = ? AND rk = ? AND etag = ?",
                (partition_key, row_key, etag),
            ).rowcount
            if deleted:
                return True
            exists = conn.execute(
                f"SELECT 1 FROM {sql_table} WHERE pk = ? AND rk = ?", (partition_key, row_key)
            ).fetchone()
        if exists:
            raise ConcurrencyConflict(f"record in table {table} was changed since it was read")
        return False

    def query(
        self,
        table: str,
        partition_key: str | None = None,
        *,
        row_key_prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        sql_table = self._table(table)
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        if limit == 0:
            return []
        clauses: list[str] = []
        params: list[str | int] = []
        if partition_key is not None:
            validate_key(partition_key, what="partition key")
            clauses.append("pk = ?")
            params.append(partition_key)
        if row_key_prefix:
            validate_key(row_key_prefix, what="row key prefix")
            clauses.append("rk >= ?")
            params.append(row_key_prefix)
            bound = prefix_upper_bound(row_key_prefix)
            if bound is not None:
                clauses.append("rk < ?")
                params.append(bound)
        sql = f"SELECT {_COLUMNS} FROM {sql_table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY pk, rk"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._db.read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [self._record(table, row) for row in rows]

    def close(self) -> None:
        self._db.close()
