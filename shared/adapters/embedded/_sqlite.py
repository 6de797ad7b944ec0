"""A small connection pool over one SQLite file, shared by the embedded storage backends.

WAL mode lets readers run while one writer commits; ``BEGIN IMMEDIATE`` takes the write lock up front so
read-check-write sequences are atomic across threads *and* processes (SQLite's file locks), and the
busy timeout makes a second writer wait instead of failing. Writers of one process queue on a lock first
(woken as soon as the writer before them commits): SQLite's busy handler polls with sleeps of up to 100 ms,
which under concurrent writes put hundreds of milliseconds on the p99. ``synchronous=NORMAL`` keeps the
database consistent after a crash; a power cut may lose the last commits (this is the development default).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.adapters.embedded._writelock import ProcessWriteLock
from shared.storage.errors import StorageUnavailable
from shared.storage.private_files import private_file


class SqliteDatabase:
    """Thread-safe access to one SQLite file: a pool of connections, one per concurrent user."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0, schema: str = "") -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        #: Held around every write transaction of this process (re-entrant: a nested write by the same
        #: thread still meets SQLite's busy timeout, as before).
        self._writer = threading.RLock()
        self._process_lock = ProcessWriteLock(path)
        self._depth = 0
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        try:
            private_file(path)  # 0600 in a 0700 directory: the stores hold patient data
            # Open one connection now: the file is in WAL mode before any concurrent use.
            with self._connection():
                pass
            if schema:
                with self.write() as conn:
                    for statement in schema.split(";"):
                        if statement.strip():
                            conn.execute(statement)
        except BaseException:
            self.close()
            raise

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            self._enable_wal(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (a persistent setting) unless it already is.

        Switching needs an exclusive lock and SQLite reports SQLITE_BUSY at once instead of calling the
        busy handler, so when several processes open a new file together, retry for the busy timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.005
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                    return
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if (
                    getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY
                    or time.monotonic() > deadline
                ):
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"SQLite store {self.path.name} is closed")
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = self._open()
            yield conn
        except sqlite3.OperationalError as exc:
            # "database is locked", "disk I/O error", "database or disk is full": worth retrying later.
            name = getattr(exc, "sqlite_errorname", type(exc).__name__)
            raise StorageUnavailable(f"SQLite store {self.path.name} unavailable ({name})") from None
        finally:
            if conn is not None:
                with self._lock:
                    if self._closed or conn.in_transaction:
                        conn.close()
                    else:
                        self._idle.append(conn)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode: each statement sees a consistent snapshot."""
        with self._connection() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside ``BEGIN IMMEDIATE``: committed on success, rolled back on any exception."""
        if not self._writer.acquire(timeout=self._busy_timeout):
            raise StorageUnavailable(f"SQLite store {self.path.name} unavailable (busy)")
        outer = self._depth == 0
        try:
            if self._closed:
                raise RuntimeError(f"SQLite store {self.path.name} is closed")
            if outer and not self._process_lock.acquire(self._busy_timeout):
                raise StorageUnavailable(f"SQLite store {self.path.name} unavailable (busy)")
        except BaseException:
            self._writer.release()
            raise
        self._depth += 1
        try:
            with self._connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.rollback()
                    raise
                conn.commit()
        finally:
            self._depth -= 1
            try:
                if outer:
                    self._process_lock.release()
            finally:
                self._writer.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._process_lock.close()
