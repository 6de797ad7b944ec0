"""``TriggerWorkers`` (``tie run --workers``) with stand-in worker programs: a start that fails part-way
leaves no worker running, and a worker that exits is started again and stopped with the rest."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.helpers import process_alive, wait_for
from tie.localhost.workers import READY, TriggerWorkers, WorkerStartFailed

pytestmark = pytest.mark.timeout(120)

#: The first of its kind to claim ``argv[1]`` (a file) writes its pid there, reports ready and waits;
#: any later one exits at once (status 3) without reporting ready.
_CLAIMING = f"""
import os, sys, time
try:
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
except FileExistsError:
    sys.exit(3)
os.write(fd, str(os.getpid()).encode()); os.close(fd)
print({READY!r}, flush=True)
time.sleep(120)
"""

#: Reports ready, records its pid in ``argv[1]`` (one line per start) and waits.
_STEADY = f"""
import os, sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"{{os.getpid()}}\\n")
print({READY!r}, flush=True)
time.sleep(120)
"""


def test_a_start_that_fails_part_way_stops_the_workers_already_ready(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    workers = TriggerWorkers([sys.executable, "-c", _CLAIMING, str(claim)], 2)
    with pytest.raises(WorkerStartFailed):
        asyncio.run(workers.start())
    ready = int(claim.read_text())  # the one that started
    assert not process_alive(ready)  # stopped and reaped before start() raised


def test_a_worker_that_exits_is_started_again_and_stopped_with_the_rest(tmp_path: Path) -> None:
    starts = tmp_path / "starts"

    def started() -> list[int]:
        return [int(line) for line in starts.read_text().split()] if starts.exists() else []

    async def scenario() -> list[int]:
        workers = TriggerWorkers([sys.executable, "-c", _STEADY, str(starts)], 1)
        await workers.start()
        try:
            (first,) = workers.pids()
            os.kill(first, 9)
            await asyncio.to_thread(wait_for, lambda: len(started()) == 2 and workers.pids(), 60)
            assert workers.pids() == [started()[1]]
        finally:
            await workers.stop(grace=5)
        return started()

    pids = asyncio.run(scenario())
    assert len(pids) == 2
    assert not any(process_alive(pid) for pid in pids)
