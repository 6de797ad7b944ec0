"""Run the Azurite storage emulator for tests.

:func:`azurite_process` is a context manager: it installs a pinned Azurite with npm into
``.local/tools/azurite`` on first use (never globally), starts it on free loopback ports with in-memory
persistence, waits until the blob and table endpoints accept connections, yields connection details,
and stops the process group it started.

When Azurite cannot be made available (no npm/node, install failure, start failure) the tests that need
it are skipped with the reason, except under ``CI=true``, where that is an error: CI must exercise the
Azure adapters.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Pinned Azurite release. 3.35.0 is the newest whose declared engines (node >= 10) accept the Node 20
#: that Debian ships here; 3.36+ declares node >= 21.
AZURITE_VERSION = "3.35.0"

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS_DIR = REPO_ROOT / ".local" / "tools" / "azurite"
AZURITE_BIN = TOOLS_DIR / "node_modules" / ".bin" / "azurite"

#: Azurite's well-known development account. The key is Microsoft's *published* emulator key
#: (documented for Azurite and the old storage emulator), not a secret.
DEV_ACCOUNT_NAME = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class AzuriteUnavailable(RuntimeError):
    """Azurite could not be installed or started."""


@dataclass(frozen=True)
class AzuriteEndpoints:
    host: str
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.blob_port}/{DEV_ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{self.host}:{self.queue_port}/{DEV_ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{self.host}:{self.table_port}/{DEV_ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={DEV_ACCOUNT_NAME};AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )


def unavailable(reason: str) -> None:
    """Skip (developer machine) or fail loudly (``CI=true``) because Azurite is not available."""
    if os.environ.get("CI", "").lower() == "true":
        raise AzuriteUnavailable(f"Azurite is required under CI=true: {reason}")
    pytest.skip(f"Azurite unavailable: {reason}")


def _installed_version() -> str | None:
    package_json = TOOLS_DIR / "node_modules" / "azurite" / "package.json"
    try:
        return str(json.loads(package_json.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed() -> Path:
    """Install the pinned Azurite under ``.local/tools/azurite`` unless it is already there.

    A file lock serialises concurrent test sessions. Raises :class:`AzuriteUnavailable` on failure.
    """
    if AZURITE_BIN.exists() and _installed_version() == AZURITE_VERSION:
        return AZURITE_BIN
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise AzuriteUnavailable("npm/node not found on PATH")
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with open(TOOLS_DIR.parent / "azurite.install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if AZURITE_BIN.exists() and _installed_version() == AZURITE_VERSION:
            return AZURITE_BIN
        command = [
            npm,
            "install",
            "--prefix",
            str(TOOLS_DIR),
            f"azurite@{AZURITE_VERSION}",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AzuriteUnavailable(f"npm install failed: {exc}") from exc
        if result.returncode != 0 or not AZURITE_BIN.exists():
            tail = (result.stderr or result.stdout)[-2000:]
            raise AzuriteUnavailable(f"npm install exited {result.returncode}: {tail}")
    return AZURITE_BIN


def _free_ports(count: int, host: str) -> list[int]:
    """Ports the OS considers free right now (bound to port 0 together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the process group we started (Azurite's node process and any children)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def azurite_process(host: str = "127.0.0.1") -> Iterator[AzuriteEndpoints]:
    """Install (first time), start and finally stop Azurite. Raises :class:`AzuriteUnavailable`."""
    binary = ensure_installed()
    blob_port, queue_port, table_port = _free_ports(3, host)
    endpoints = AzuriteEndpoints(host, blob_port, queue_port, table_port)
    with tempfile.TemporaryDirectory(prefix="azurite-") as workdir:
        log_path = Path(workdir) / "azurite.log"
        command = [
            str(binary),
            "--blobHost", host, "--blobPort", str(blob_port),
            "--queueHost", host, "--queuePort", str(queue_port),
            "--tableHost", host, "--tablePort", str(table_port),
            "--skipApiVersionCheck", "--disableTelemetry", "--loose", "--silent",
            "--inMemoryPersistence", "--extentMemoryLimit", "256",
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            # cwd is the temp dir: with in-memory persistence Azurite should write nothing, but any
            # debug/telemetry files it might create stay out of the repository.
            process = subprocess.Popen(
                command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not (_accepts(host, blob_port) and _accepts(host, table_port)):
                if process.poll() is not None:
                    output = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                    raise AzuriteUnavailable(f"azurite exited with {process.returncode}: {output}")
                if time.monotonic() > deadline:
                    raise AzuriteUnavailable(f"azurite did not listen within {START_TIMEOUT_S:.0f} s")
                time.sleep(0.1)
            yield endpoints
        finally:
            _stop(process)
