"""``tie run --workers N``: the Service Bus triggers in N worker processes, beside the edges' process.

The parent process keeps the edges (HTTP, MLLP) and the timers; each worker process runs the same app's
Service Bus triggers only, and they compete for messages on the shared embedded stores, which are safe
across processes. A worker that exits unexpectedly is started again; a worker whose parent is gone stops
itself. Design notes: ``docs/adr/0011-local-host-worker-processes.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

_log = logging.getLogger("tie.host")

#: The line a worker prints once its triggers are running; the parent waits for it before "Host started:".
READY = "Worker started"
#: Seconds a worker may take to start (imports, bootstrap, stores opened).
START_TIMEOUT = 120.0
#: Seconds between restarts of a worker that keeps exiting.
RESTART_BACKOFF = 2.0


def worker_argv(app: str, settings: str, host_json: str, parent: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tie.cli",
        "run",
        "--app",
        app,
        "--settings",
        settings,
        "--host-json",
        host_json,
        "--worker-of",
        str(parent),
    ]


class WorkerStartFailed(RuntimeError):
    """A worker process exited or stayed silent before it was ready."""


class TriggerWorkers:
    """Start, supervise and stop the worker processes of one ``tie run``."""

    def __init__(self, argv: Sequence[str], count: int) -> None:
        self._argv = list(argv)
        self._count = count
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def count(self) -> int:
        return self._count

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.returncode is None]

    async def start(self) -> None:
        """Start every worker (together) and wait until each is ready; on failure stop them all and raise."""
        spawns = [asyncio.ensure_future(self._spawn(i)) for i in range(self._count)]
        try:
            await asyncio.gather(*spawns)
        except BaseException:
            for spawn in spawns:
                spawn.cancel()
            await asyncio.gather(*spawns, return_exceptions=True)  # each kills its process on the way out
            await self.stop(grace=2.0)
            raise
        self._supervisors = [asyncio.create_task(self._supervise(i)) for i in range(self._count)]

    async def _spawn(self, index: int) -> None:
        """Start worker ``index`` and record it once ready. Its own session: a Ctrl-C on the terminal reaches
        the host process only, which stops the workers itself. A worker that fails to start, or whose start
        is cancelled, is killed."""
        proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            except TimeoutError:
                line = b""
            if not line.decode(errors="replace").startswith(READY):
                raise WorkerStartFailed(f"worker {index + 1} did not start")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            raise
        self._procs[index] = proc

    async def _supervise(self, index: int) -> None:
        while not self._stopping:
            proc = self._procs[index]
            if proc is None:
                return
            assert proc.stdout is not None
            while await proc.stdout.readline():  # a worker prints nothing after READY; drain regardless
                pass
            code = await proc.wait()
            if self._stopping:
                return
            _log.error(
                "worker process exited; starting it again",
                extra={"reason": f"worker {index + 1}", "status": code},
            )
            while not self._stopping:
                await asyncio.sleep(RESTART_BACKOFF)
                if self._stopping:
                    return
                try:
                    await self._spawn(index)
                    break
                except (WorkerStartFailed, OSError) as exc:
                    _log.error(
                        "worker process did not start again; retrying",
                        extra={"reason": f"worker {index + 1}", "error_code": type(exc).__name__},
                    )

    def stopping(self) -> None:
        """From now on a worker that exits is not started again (the host is shutting down)."""
        self._stopping = True

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every worker (each finishes its running invocations); SIGKILL after ``grace``."""
        self._stopping = True
        live = [p for p in self._procs if p is not None and p.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in live:  # the supervisors keep reading their output meanwhile
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._supervisors:  # a start still awaited kills its process when cancelled
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        self._supervisors.clear()
        for late in self._procs:  # a restart that became ready meanwhile
            if late is not None and late.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    late.kill()
                await late.wait()


def watch_parent(parent: int, on_gone: Callable[[], None], interval: float = 0.5) -> threading.Thread:
    """Call ``on_gone`` once the process ``parent`` is no longer this process's parent (it exited or was
    killed: the worker is re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(interval)
        on_gone()

    thread = threading.Thread(target=watch, name="tie-worker-parent-watch", daemon=True)
    thread.start()
    return thread
