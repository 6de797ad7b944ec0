"""Writers of several processes (``tie run --workers``) queue on a file lock beside each SQLite store, and
the embedded bus reads on pooled connections that never wait for its writer."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.adapters.embedded._sqlite import SqliteDatabase
from shared.adapters.embedded._writelock import ProcessWriteLock
from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.timeout(120)

_HOLD = """
import sys
from pathlib import Path
path = Path(sys.argv[2])
if sys.argv[1] == "records":
    from shared.adapters.embedded._sqlite import SqliteDatabase
    db = SqliteDatabase(path, schema="CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    tx = db.write()
else:
    from shared.adapters.embedded.sqlite_bus import SqliteBus
    db = SqliteBus(path)
    tx = db._transaction()
with tx:
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
sys.stdin.readline()
db.close()
"""


@contextmanager
def _held_by_another_process(kind: str, path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process inside a write transaction of ``path`` until a line is written to its stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, kind, str(path)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(30)


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"


@pytest.mark.parametrize("kind", ["records", "bus"])
def test_a_write_transaction_holds_the_file_lock_against_other_processes(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.sqlite3"
    lock = ProcessWriteLock(path)
    try:
        with _held_by_another_process(kind, path) as other:
            assert not lock.acquire(0.2)  # the other process is inside a write transaction
            _release(other)
            assert lock.acquire(30)  # and the lock is free as soon as it commits
            lock.release()
    finally:
        lock.close()


def test_a_writer_waits_for_another_process_and_then_commits(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    db = SqliteDatabase(path, busy_timeout=60, schema="CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    with _held_by_another_process("records", path) as other:
        entered = threading.Event()

        def write() -> None:  # a failure leaves the table empty
            with db.write() as conn:
                entered.set()
                conn.execute("INSERT INTO t (n) VALUES (1)")

        writer = threading.Thread(target=write)
        writer.start()
        assert not entered.wait(0.3)  # queued behind the other process's transaction
        _release(other)
        writer.join(60)
    with db.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1
    db.close()


def test_a_closed_store_refuses_writes_without_touching_the_lock(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "w.sqlite3", schema="CREATE TABLE t (n INTEGER)")
    db.close()
    with pytest.raises(RuntimeError, match="closed"), db.write():
        pass


def test_bus_reads_do_not_wait_for_the_writer_of_their_own_process(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.sqlite3")
    bus.publish(TOPIC_INGEST, [OutboundMessage(body=b"x", message_id="m-1")])
    in_tx, peeked = threading.Event(), threading.Event()
    seen: list[list[str]] = []
    verdict: list[bool] = []

    def writer() -> None:
        with bus._transaction():
            in_tx.set()
            verdict.append(peeked.wait(10))  # a read queued behind this transaction never sets it

    def reader() -> None:
        seen.append([m.message_id for m in bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)])
        peeked.set()

    w = threading.Thread(target=writer)
    w.start()
    assert in_tx.wait(30)
    r = threading.Thread(target=reader)
    r.start()
    w.join(60)
    r.join(60)
    assert verdict == [True]
    assert seen == [["m-1"]]
    bus.close()
