"""A fixed pool of daemon worker threads for the MLLP listener's CPU- and I/O-heavy work.

Parsing, validating and persisting a message runs here, off the event loop, so the loop keeps reading
and writing every other connection while one message is being handled. Unlike
:class:`concurrent.futures.ThreadPoolExecutor` (and ``asyncio.to_thread``, which uses one), the threads are
daemons and nothing joins them at interpreter exit: a handler stuck on storage cannot keep a stopping
process alive after :meth:`MllpServer.stop <shared.mllp.server.MllpServer.stop>` has given up on it. That
is safe because the listener persists before it ACKs: a message whose handler is abandoned was never
acknowledged, and the sender resends it.

Use it with ``loop.run_in_executor(pool, fn, *args)``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class WorkerPool(Executor):
    """``workers`` daemon threads taking work from one FIFO queue."""

    def __init__(self, workers: int, *, name: str = "tie-mllp-worker") -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._shutdown = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("WorkerPool is shut down")
            future: Future[T] = Future()
            self._queue.put((future, fn, args, kwargs))
            return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, like an executor
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; cancel queued work if asked; wait for running work only if ``wait``."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
