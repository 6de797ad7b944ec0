"""Group commit: callers that arrive while another writes share the next transaction; each returns only
when its own records are stored, and a failed batch fails every caller in it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.chain import verify_chain
from shared.audit.group_commit import GroupCommitLog
from shared.audit.model import ACCESS, SUCCESS, Agent, AuditRecord
from shared.audit.ports import ChainedEntry
from shared.storage.errors import StorageUnavailable

KEY = b"g" * 32
WAITERS = 7


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        category=ACCESS,
        action="R",
        interaction="read",
        outcome=SUCCESS,
        agent=Agent("client", f"c{i}"),
        source="test",
        recorded=datetime(2026, 12, 7, tzinfo=UTC),
        id=f"r{i}",
    )


class GatedLog(SqliteAuditLog):
    """The first append blocks until the test opens the gate; every append's batch size is kept."""

    def __init__(self, path: Path, fail_second: bool = False) -> None:
        super().__init__(path, key=KEY)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.batches: list[int] = []
        self.fail_second = fail_second

    def append(self, records: Sequence[AuditRecord]) -> list[ChainedEntry]:
        self.batches.append(len(records))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.gate.wait(30)
        elif self.fail_second:
            raise StorageUnavailable("audit store unavailable (test)")
        return super().append(records)


def _run(log: GatedLog) -> tuple[GroupCommitLog, list[object]]:
    group = GroupCommitLog(log)
    with ThreadPoolExecutor(WAITERS + 1) as pool:
        leader = pool.submit(group.append, [_record(0)])
        assert log.entered.wait(30)
        others = [pool.submit(group.append, [_record(i)]) for i in range(1, WAITERS + 1)]
        with group._cond:  # the test waits until every other caller has queued behind the leader
            assert group._cond.wait_for(lambda: len(group._queue) == WAITERS, timeout=30)
        log.gate.set()
        outcomes: list[object] = [leader.result()]
        for future in others:
            exc = future.exception()
            outcomes.append(exc if exc is not None else future.result())
    return group, outcomes


def test_callers_queued_behind_a_write_share_one_transaction(tmp_path: Path) -> None:
    log = GatedLog(tmp_path / "audit.sqlite3")
    group, outcomes = _run(log)
    assert log.batches == [1, WAITERS]
    seqs = [[e.seq for e in out] for out in outcomes]  # type: ignore[attr-defined]
    assert seqs == [[i + 1] for i in range(WAITERS + 1)]  # each caller gets its own entries, in order
    result = verify_chain(group.entries(), group.checkpoints(), key=KEY)
    assert (result.ok, result.checked) == (True, WAITERS + 1)
    group.close()


def test_a_failed_batch_fails_every_caller_in_it(tmp_path: Path) -> None:
    log = GatedLog(tmp_path / "audit.sqlite3", fail_second=True)
    group, outcomes = _run(log)
    assert [e.seq for e in outcomes[0]] == [1]  # type: ignore[attr-defined]
    assert all(isinstance(o, StorageUnavailable) for o in outcomes[1:])
    assert [e.seq for e in group.entries()] == [1]
    with pytest.raises(StorageUnavailable):
        group.append([_record(99)])  # the log still fails: so does the next caller
    group.close()


def test_many_concurrent_callers_each_get_their_own_entries_in_one_chain(tmp_path: Path) -> None:
    group = GroupCommitLog(SqliteAuditLog(tmp_path / "audit.sqlite3", key=KEY), max_batch=5)
    start = threading.Barrier(8)
    results: dict[int, list[tuple[str, str]]] = {}

    def caller(worker: int) -> None:
        start.wait()
        mine = []
        for n in range(40):
            record = _record(worker * 1000 + n)
            (entry,) = group.append([record])
            mine.append((record.id, entry.body))
        results[worker] = mine

    threads = [threading.Thread(target=caller, args=(worker,), daemon=True) for worker in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30  # a hang guard only: the callers finish in well under a second
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert sorted(results) == list(range(8))  # a lost hand-over leaves callers waiting: fails, not hangs
    for mine in results.values():
        assert all(f'"id":"{record_id}"' in body for record_id, body in mine)
    result = verify_chain(group.entries(), group.checkpoints(), key=KEY)
    assert (result.ok, result.checked) == (True, 320)
    group.close()


class Interrupted(BaseException):
    """Stands in for an asynchronous exception reaching a waiting caller (KeyboardInterrupt and the like)."""


class _InterruptedWait(threading.Event):
    def __init__(self, after_wake: bool) -> None:
        super().__init__()
        self.after_wake = after_wake

    def wait(self, timeout: float | None = None) -> bool:
        if self.after_wake:
            super().wait(timeout)  # woken (handed the lead), then interrupted before it leads
        raise Interrupted


@pytest.mark.parametrize("after_wake", [False, True], ids=["while-queued", "when-handed-the-lead"])
def test_a_waiter_interrupted_never_leaves_the_lead_untaken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_wake: bool
) -> None:
    from shared.audit import group_commit

    real = group_commit._Pending
    doomed = [_record(1)]

    def pending(records: Sequence[AuditRecord]) -> group_commit._Pending:
        item = real(records)
        if records is doomed:
            item.wake = _InterruptedWait(after_wake)
        return item

    monkeypatch.setattr(group_commit, "_Pending", pending)
    log = GatedLog(tmp_path / "audit.sqlite3")
    group = GroupCommitLog(log)
    outcomes: dict[str, object] = {}

    def call(name: str, records: Sequence[AuditRecord]) -> threading.Thread:
        def run() -> None:
            try:
                outcomes[name] = [e.seq for e in group.append(records)]
            except Interrupted as exc:
                outcomes[name] = exc

        # Daemon threads: a caller stuck for ever fails the test below instead of hanging the run.
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    leader = call("leader", [_record(0)])
    assert log.entered.wait(30)
    waiter = call("waiter", doomed)
    if after_wake:
        with group._cond:  # queued behind the leader, to be handed the lead
            assert group._cond.wait_for(lambda: len(group._queue) == 1, timeout=30)
    else:
        waiter.join(30)
    log.gate.set()
    leader.join(30)
    waiter.join(30)
    assert outcomes["leader"] == [1]
    assert isinstance(outcomes["waiter"], Interrupted)
    later = call("later", [_record(2)])
    later.join(30)
    assert not later.is_alive(), "the next caller is stuck behind the interrupted one"
    assert outcomes["later"] == [2]
    stored = [json.loads(e.body).get("id") for e in group.entries()]
    assert stored == ["r0", "r2"]  # the interrupted caller's records: unwritten
    group.close()
