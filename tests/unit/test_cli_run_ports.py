"""``make run PORT=… MLLP_PORT=…`` and ``tie run`` honouring ``TIE_HTTP_PORT`` / ``TIE_MLLP_PORT``.

The host really starts (as a subprocess) and its banner names the ports it listens on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, corpus_missing, free_port

pytestmark = pytest.mark.timeout(120)

VENV_TIE = REPO_ROOT / ".venv" / "bin" / "tie"


def _env(local: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIE_", "TieStorage__", "MAKEFLAGS"))}
    env.pop("PORT", None)
    env.pop("MLLP_PORT", None)
    env.update({"TIE_LOCAL_DIR": str(local), "PYTHONPATH": str(REPO_ROOT), **extra})
    return env


@contextmanager
def _started(args: list[str], env: dict[str, str]) -> Iterator[list[str]]:
    """Run ``args``; yield the output lines up to and including ``Host started:``, then stop it."""
    proc = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make + tie run: stop the whole group
    )
    lines: list[str] = []
    started = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.decode(errors="replace").rstrip()
            if not started.is_set():
                lines.append(text)
            if text.startswith("Host started:"):
                started.set()
        started.set()  # exited: stop waiting

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert started.wait(90), "host did not start"
        assert proc.poll() is None, "\n".join(lines)
        yield lines
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)
        reader.join(5)


def _listening(lines: list[str], http_port: int, mllp_port: int) -> None:
    assert f"Host started: http://127.0.0.1:{http_port}/api" in lines, "\n".join(lines)
    assert any(line.startswith(f"MLLP listener: 127.0.0.1:{mllp_port} ") for line in lines), "\n".join(lines)


def test_make_run_takes_port_and_mllp_port(tmp_path: Path) -> None:
    if shutil.which("make") is None or not VENV_TIE.exists():
        corpus_missing("make or .venv/bin/tie is not available")
    http_port, mllp_port = free_port(), free_port()
    # -o: treat the venv stamp as up to date (never reinstall from a test).
    args = ["make", "--no-print-directory", "-o", ".venv/.installed", "run"]
    args += [f"PORT={http_port}", f"MLLP_PORT={mllp_port}"]
    with _started(args, _env(tmp_path / "local", {})) as lines:
        _listening(lines, http_port, mllp_port)


def test_make_run_falls_back_to_the_environment(tmp_path: Path) -> None:
    if shutil.which("make") is None or not VENV_TIE.exists():
        corpus_missing("make or .venv/bin/tie is not available")
    http_port, mllp_port = free_port(), free_port()
    env = _env(tmp_path / "local", {"TIE_HTTP_PORT": str(http_port), "TIE_MLLP_PORT": str(mllp_port)})
    with _started(["make", "--no-print-directory", "-o", ".venv/.installed", "run"], env) as lines:
        _listening(lines, http_port, mllp_port)


def test_tie_run_port_flags_override_the_environment(tmp_path: Path) -> None:
    http_port, mllp_port = free_port(), free_port()
    env = _env(tmp_path / "local", {"TIE_HTTP_PORT": "1", "TIE_MLLP_PORT": "1"})
    args = [sys.executable, "-m", "tie.cli", "run", "--settings", "none.json"]
    args += ["--port", str(http_port), "--mllp-port", str(mllp_port)]
    with _started(args, env) as lines:
        _listening(lines, http_port, mllp_port)


def test_tie_run_rejects_a_port_variable_that_is_not_a_number(tmp_path: Path) -> None:
    env = _env(tmp_path / "local", {"TIE_HTTP_PORT": "http"})
    done = subprocess.run(
        [sys.executable, "-m", "tie.cli", "run", "--settings", "none.json", "--no-mllp"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tie run: TIE_HTTP_PORT is not a port number; use e.g. TIE_HTTP_PORT=8081"
    ]
