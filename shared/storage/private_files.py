"""Owner-only files for the embedded stores: directories 0700, files 0600.

The SQLite bus, record, blob and FHIR stores under ``TIE_LOCAL_DIR`` hold patient data. SQLite creates a
new database with the process umask (typically 0644: readable by every local user) and gives its
``-wal`` / ``-shm`` / ``-journal`` files the database file's mode, so the database file is created here,
0600, before SQLite opens it. Directories this creates are 0700; existing directories are left alone
(``TIE_LOCAL_DIR`` may live under a shared parent). Existing store files are tightened to 0600.
On platforms without POSIX modes (Windows) this only creates what is missing.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_POSIX = os.name == "posix"
#: Files SQLite keeps beside a database.
SIDE_FILES = ("-wal", "-shm", "-journal")


def private_directory(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700 (the umask cannot widen it)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # created meanwhile by another process: not ours to change
            continue
        if _POSIX:
            os.chmod(directory, 0o700)


def private_file(path: Path) -> None:
    """Make sure ``path`` (a store's database file) exists with mode 0600, its directory created 0700,
    and tighten SQLite's side files that already exist."""
    private_directory(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    if not _POSIX:
        return
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            info = candidate.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
                os.chmod(candidate, 0o600)
