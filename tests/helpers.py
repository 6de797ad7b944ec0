"""Helpers for tests that run the local functions host in-process or as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def corpus_missing(reason: str) -> NoReturn:
    """A corpus under ../shared/corpora is absent: skip locally, FAIL under ``CI=true`` (CI must run the
    corpus tests, not report them as skipped). Every corpus test calls this instead of ``pytest.skip``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the corpora are required)", pytrace=False)
    pytest.skip(reason)


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> HttpResult:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResult(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as err:
        return HttpResult(err.code, dict(err.headers.items()), err.read())


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@contextmanager
def running_host(host: Any) -> Iterator[Any]:
    """Run a LocalHost on a private event loop in a background thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(host.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(15), "host did not start"
    try:
        yield host
    finally:
        asyncio.run_coroutine_threadsafe(host.stop(grace=5), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_env(local_dir: Path) -> dict[str, str]:
    """The environment of a ``tie`` subprocess over ``local_dir``: this one's, without its TIE settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIE_", "TieStorage__"))}
    env.update({"TIE_LOCAL_DIR": str(local_dir), "PYTHONPATH": str(REPO_ROOT)})
    return env


def tie_cli(local_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tie.cli *args`` over ``local_dir`` (text output captured; a 60 s limit)."""
    return subprocess.run(
        [sys.executable, "-m", "tie.cli", *args],
        cwd=REPO_ROOT,
        env=local_env(local_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _proc_state(pid: int | str) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc (Linux); ``None`` when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
    return fields[0], int(fields[1])


def child_pids(pid: int) -> set[int]:
    """Live (not zombie) child processes of ``pid``: ``tie run --workers``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        state = _proc_state(entry.name) if entry.name.isdigit() else None
        if state is not None and state[0] != "Z" and state[1] == pid:
            found.add(int(entry.name))
    return found


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, exited but not reaped, is not)."""
    state = _proc_state(pid)
    return state is not None and state[0] != "Z"


@contextmanager
def host_process(
    local_dir: Path,
    *,
    app: str = "function_app",
    port: int | None = None,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    output: deque[str] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``tie run`` in a subprocess; yields (process, base_url). Killed (not asked) on exit if still alive.

    The host's output is read continuously by a background thread (a full pipe would block the host);
    the last lines are kept in ``output`` (pass a deque to read them) for assertion messages.
    """
    port = port or free_port()
    tail: deque[str] = output if output is not None else deque(maxlen=200)
    full_env = {**local_env(local_dir), **(env or {})}
    # The console script, as `make run` starts it (its sys.path lacks the working directory).
    script = Path(sys.executable).parent / "tie"
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "tie.cli"]
    args = [*launcher, "run", "--app", app, "--port", str(port), "--settings", "none.json"]
    args += extra_args or ["--no-mllp"]
    proc = subprocess.Popen(
        args, cwd=REPO_ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    started = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            text = line.decode(errors="replace").rstrip()
            tail.append(text)
            if text.startswith("Host started:"):
                started.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                reader.join(5)
                raise AssertionError(f"host exited early ({proc.returncode}):\n" + "\n".join(tail))
            # "Host started:" is printed once every listener (HTTP and, unless --no-mllp, MLLP) is open;
            # an open HTTP port alone does not mean the MLLP listener is.
            if started.wait(0.1):
                break
        else:
            raise AssertionError("host did not start within 60s:\n" + "\n".join(tail))
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        reader.join(5)
