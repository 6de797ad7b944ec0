"""A cross-process queue for one SQLite file's writers (``tie run --workers``).

SQLite's own busy handler makes a writer of another process sleep 1, 2, 5, 10 ... up to 100 ms between
attempts, so under sustained writes from two processes a blocked writer may sleep for tens of milliseconds
while the other process's writers follow each other. Writers of every process take an advisory ``flock``
of a sidecar file first (``<db>-wlock``), polled every 50-500 us, so a waiting process tries again within
half a millisecond.
The lock is taken only around the embedded stores' own write transactions (after the process's own writer
lock) and released right after COMMIT or ROLLBACK; a process that dies holding it releases it with its file
descriptor. Every user of the embedded adapters takes it (the ``tie`` commands too); anything else opening
the file (the ``sqlite3`` shell) still meets SQLite's busy timeout.
Where ``fcntl`` is missing (Windows) the lock is a no-op and ``tie run --workers`` is refused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from shared.storage.private_files import private_file

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Whether writers of several processes can queue on the lock (POSIX).
AVAILABLE = fcntl is not None
_FIRST_DELAY = 0.00005
_MAX_DELAY = 0.0005


class ProcessWriteLock:
    """Exclusive across processes; the caller serialises its own threads first (flock is per file
    description, so two threads of one process would both "hold" it)."""

    def __init__(self, db_path: Path) -> None:
        self._fd = -1
        if fcntl is None:  # pragma: no cover - Windows
            return
        path = db_path.with_name(db_path.name + "-wlock")
        private_file(path)
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def acquire(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; False when another process held it all that time (or closed)."""
        if fcntl is None:  # pragma: no cover - Windows
            return True
        if self._fd < 0:
            return False
        if self._try():
            return True
        deadline = time.monotonic() + timeout
        delay = _FIRST_DELAY
        while time.monotonic() <= deadline:
            time.sleep(delay)
            if self._try():
                return True
            delay = min(delay * 2, _MAX_DELAY)
        return False

    def _try(self) -> bool:
        assert fcntl is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if fcntl is not None and self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
