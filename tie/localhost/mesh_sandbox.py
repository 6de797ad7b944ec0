"""NHS England's mesh-sandbox on loopback: the MESH default for ``TIE_MESH_BACKEND=sandbox`` and the tests.

Runs ``uvicorn mesh_sandbox.api:app`` in a child process bound to 127.0.0.1 with ``AUTH_MODE=none`` and
``STORE_MODE=memory`` (its canned mailboxes X26ABC1/2/3 exist; messages live only as long as the
process). The caller stops it (context manager exit), never leaving it running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

SANDBOX_SHARED_KEY = "TestKey"


class SandboxUnavailable(RuntimeError):
    """mesh-sandbox is not installed or did not start."""


def sandbox_installed() -> bool:
    try:
        import mesh_sandbox  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


def start(port: int, *, shared_key: str = SANDBOX_SHARED_KEY) -> subprocess.Popen[bytes]:
    if not sandbox_installed():
        raise SandboxUnavailable("mesh-sandbox is not installed (requirements-dev.txt)")
    env = {
        **os.environ,
        "AUTH_MODE": "none",
        "STORE_MODE": "memory",
        "SHARED_KEY": shared_key,
        "ENV": "local",
    }
    uvicorn = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    args = [sys.executable, "-c", _LAUNCHER, "mesh_sandbox.api:app", *uvicorn]
    # Fixed arguments (no caller input but an int port); output discarded so no pipe can fill up.
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


#: Runs uvicorn after asking Linux to SIGTERM this process when its parent dies (even by SIGKILL), so a
#: killed host leaves no sandbox behind. Done in the child itself: no preexec_fn in a threaded parent.
_LAUNCHER = """
import runpy, signal, sys
if sys.platform == "linux":
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
sys.argv = ["uvicorn", *sys.argv[1:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    """Until ``/health`` answers (bounded: ``timeout`` seconds), or the process exits."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SandboxUnavailable(f"mesh-sandbox exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SandboxUnavailable("mesh-sandbox did not answer in time")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def running(port: int, *, shared_key: str = SANDBOX_SHARED_KEY) -> Iterator[str]:
    """Start mesh-sandbox on ``127.0.0.1:port``; yields its base URL; stops it on exit."""
    proc = start(port, shared_key=shared_key)
    try:
        wait_ready(proc, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
