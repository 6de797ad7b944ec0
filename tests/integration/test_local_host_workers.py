"""``tie run --workers N``: the Service Bus triggers run in N worker processes while the host process keeps
HTTP, MLLP and the timers; a worker that dies is started again, and a worker whose host is gone stops.

The sample app's consumer records the process that consumed each message, so which process ran a trigger
is observed, not assumed.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tests.helpers import child_pids, host_process, process_alive, tie_cli, wait_for

pytestmark = [pytest.mark.timeout(240)]

APP = "tests/fixtures/sample_app.py"
ENV = {"TIE_SAMPLE_APP_INSTALL_CONTAINER": "1", "TIE_SAMPLE_SLOW_SECONDS": "0"}


def _consume(local: Path, ids: list[str]) -> set[int]:
    """Publish ``ids`` to the sample app's subscription, wait until each is consumed once; who consumed."""
    from tests.fixtures.sample_app import TEST_TOPOLOGY

    bus = SqliteBus(local / "bus.sqlite3", TEST_TOPOLOGY)
    records = SqliteRecordStore(local / "records.sqlite3")
    try:
        bus.publish(TOPIC_INGEST, [OutboundMessage(body=b"hello", message_id=i) for i in ids])

        def consumed() -> list[Any] | None:
            found = [records.get("consumed", "test", i) for i in ids]
            return found if all(found) else None

        done = wait_for(consumed, timeout=120)
        assert [d.value["effects"] for d in done] == [1] * len(ids)
        wait_for(lambda: not bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR), timeout=120)
        by = [records.get("consumedby", "test", i) for i in ids]
        return {int(b.value["pid"]) for b in by if b is not None}
    finally:
        bus.close()
        records.close()


def test_workers_run_the_triggers_are_restarted_and_stop_with_their_host(tmp_path: Path) -> None:
    local = tmp_path / "local"
    tail: deque[str] = deque(maxlen=200)
    args = ["--no-mllp", "--workers", "2"]
    with host_process(local, app=APP, env=ENV, extra_args=args, output=tail) as (proc, _base):
        workers = child_pids(proc.pid)
        assert len(workers) == 2, "\n".join(tail)
        assert any(line.startswith("Worker processes: 2 running the Service Bus triggers") for line in tail)

        # The triggers run in the workers, never in the host process (it keeps HTTP and the timers).
        first = _consume(local, [f"a-{n}" for n in range(40)])
        assert first and first <= workers, "\n".join(tail)

        # Workers killed outright are started again, and the new ones consume.
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(child_pids(proc.pid) - workers) == 2, timeout=120)
        now = child_pids(proc.pid)
        assert not now & workers
        second = _consume(local, [f"b-{n}" for n in range(40)])
        assert second and second <= now, "\n".join(tail)

        # The host process killed outright: its workers notice and stop by themselves.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        wait_for(lambda: not any(process_alive(pid) for pid in now), timeout=120)


def test_workers_must_be_a_small_number(tmp_path: Path) -> None:
    out = tie_cli(tmp_path / "local", "run", "--settings", "none.json", "--workers", "9")
    assert out.returncode == 2
    assert "--workers: not a number of processes, 0 to 8" in out.stderr
