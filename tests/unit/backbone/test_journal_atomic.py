"""The journal writes a stage and its in-flight index changes as one transaction on a store that can
(:class:`~shared.storage.ports.AtomicRecordWrites`), one write at a time on one that cannot - same records."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.journal import Journal
from shared.storage.names import TABLE_INFLIGHT, TABLE_JOURNAL
from shared.storage.ports import AtomicRecordWrites, JsonDict, Record, RecordStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# (correlation id, stage, attributes): opens, closes, a write-back finishing before "mapped", a replay.
STAGES: list[tuple[str, str, dict[str, Any]]] = [
    ("m1", "received", {"channel": "hl7v2"}),
    ("m1", "published", {"topic": "tie-ingest"}),
    ("m1", "written-back", {"subscriber": "writeback-fhir", "status": "201"}),
    ("m1", "mapped", {"event_kind": "admission"}),
    ("m1", "consumed", {"delivery_count": 1}),
    ("m1", "dead-lettered", {"subscriber": "writeback-hl7v2"}),
    ("m1", "replayed", {"subscriber": "writeback-hl7v2"}),
    ("m2", "received", {}),
    ("m2", "received", {}),
    ("m2", "rejected", {"control_id": "C"}),
]


class OneAtATime:
    """A record store without :class:`AtomicRecordWrites` (like Azure Table Storage across tables)."""

    def __init__(self, inner: SqliteRecordStore) -> None:
        self.inner = inner

    def get(self, table: str, partition_key: str, row_key: str) -> Record | None:
        return self.inner.get(table, partition_key, row_key)

    def insert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        return self.inner.insert(table, partition_key, row_key, value)

    def update(self, table: str, partition_key: str, row_key: str, value: JsonDict, *, etag: str) -> Record:
        return self.inner.update(table, partition_key, row_key, value, etag=etag)

    def upsert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        return self.inner.upsert(table, partition_key, row_key, value)

    def delete(self, table: str, partition_key: str, row_key: str, *, etag: str | None = None) -> bool:
        return self.inner.delete(table, partition_key, row_key, etag=etag)

    def query(self, table: str, partition_key: str | None = None, **kwargs: Any) -> list[Record]:
        return self.inner.query(table, partition_key, **kwargs)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """COMMIT statements of every SQLite connection opened during the test."""
    seen: list[str] = []
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(*args, **kwargs)
        conn.set_trace_callback(lambda sql: seen.append(sql) if sql.upper().startswith("COMMIT") else None)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return seen


def _rows(store: RecordStore, table: str) -> list[tuple[str, str, JsonDict]]:
    return [(r.partition_key, r.row_key, r.value) for r in store.query(table)]


def test_both_paths_write_the_same_journal_and_index(tmp_path: Path) -> None:
    atomic = SqliteRecordStore(tmp_path / "a.sqlite3")
    plain = OneAtATime(SqliteRecordStore(tmp_path / "p.sqlite3"))
    assert isinstance(atomic, AtomicRecordWrites) and not isinstance(plain, AtomicRecordWrites)
    for store in (atomic, plain):
        journal = Journal(store, clock=lambda: T0)
        for corr, stage, attrs in STAGES:
            journal.record(corr, stage, **attrs)
    for table in (TABLE_JOURNAL, TABLE_INFLIGHT):
        assert _rows(atomic, table) == _rows(plain, table), table
    journal = Journal(atomic, clock=lambda: T0)
    assert set(journal.waiting("m1")) == {"writeback-hl7v2"}  # closed by written-back before mapped opened
    assert journal.waiting("m2") == {}
    atomic.close()
    plain.close()


def test_a_stage_with_index_changes_is_one_commit(tmp_path: Path, commits: list[str]) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    journal = Journal(store)
    journal.record("warm", "received")  # creates the SQL tables
    journal.record("warm", "mapped")
    commits.clear()
    journal.record("m1", "received")  # stage + opens ingest-processor
    journal.record("m1", "mapped")  # stage + opens both write-backs
    journal.record("m1", "consumed")  # stage + closes ingest-processor
    assert len(commits) == 3
    assert set(journal.waiting("m1")) == {"writeback-fhir", "writeback-hl7v2"}
    store.close()
