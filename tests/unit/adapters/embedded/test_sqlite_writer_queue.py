"""Writers of one process queue on the database's lock instead of meeting SQLite's busy handler (which
polls with sleeps of up to 100 ms: the p99 of concurrent FHIR creates)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from shared.adapters.embedded._sqlite import SqliteDatabase
from shared.storage.errors import StorageUnavailable


class _Traced(SqliteDatabase):
    """Records each write transaction start that found another one open in this process."""

    def __init__(self, path: Path) -> None:
        self.guard = threading.Lock()
        self.open_writes = 0
        self.overlaps = 0
        self.begins = 0
        super().__init__(path, schema="CREATE TABLE t (n INTEGER)")

    def _open(self) -> sqlite3.Connection:
        conn = super()._open()
        conn.set_trace_callback(self._trace)
        return conn

    def _trace(self, statement: str) -> None:
        with self.guard:
            if statement == "BEGIN IMMEDIATE":
                self.begins += 1
                self.overlaps += self.open_writes > 0
                self.open_writes += 1
            elif statement in ("COMMIT", "ROLLBACK"):
                self.open_writes -= 1


def test_concurrent_writers_never_reach_sqlite_while_another_writes(tmp_path: Path) -> None:
    db = _Traced(tmp_path / "w.sqlite3")
    start = threading.Barrier(8)

    def writer() -> None:
        start.wait()
        for n in range(50):
            with db.write() as conn:
                conn.execute("INSERT INTO t (n) VALUES (?)", (n,))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 400
    assert db.begins >= 400
    assert db.overlaps == 0
    db.close()


def test_a_writer_that_cannot_get_the_lock_in_time_is_unavailable(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "w.sqlite3", busy_timeout=0.0, schema="CREATE TABLE t (n INTEGER)")
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with db.write():
            held.set()
            done.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    try:
        with pytest.raises(StorageUnavailable), db.write():
            pass
    finally:
        done.set()
        thread.join()
    with db.write() as conn:  # the lock was released by the holder
        conn.execute("INSERT INTO t (n) VALUES (1)")
    db.close()
