"""The embedded audit log's checkpoint key: 32 random bytes in ``<TIE_LOCAL_DIR>/audit.key`` (0600).

Created once, atomically (written to a private temporary file, then hard-linked into place: two processes
starting together end up with the same key). Keep a copy away from the machine: whoever holds the key and
the file can re-sign a rewritten log (see docs/audit.md).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from shared.storage.private_files import private_directory

KEY_BYTES = 32


def local_key(path: Path) -> bytes:
    """The key at ``path``, created if absent."""
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError("the audit key file is not a 32-byte key")
    return key
