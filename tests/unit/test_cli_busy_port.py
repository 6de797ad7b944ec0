"""``tie run`` on a port another process holds: one line naming the port and how to pick another,
a non-zero exit status, no traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, free_port

pytestmark = pytest.mark.timeout(120)


def _tie_run(local: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIE_", "TieStorage__"))}
    env.update({"TIE_LOCAL_DIR": str(local), "PYTHONPATH": str(REPO_ROOT), **extra_env})
    return subprocess.run(
        [sys.executable, "-m", "tie.cli", "run", "--settings", "none.json", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _human_lines(stderr: str) -> list[str]:
    """stderr without the JSON log lines (the listener logs that it opened and closed)."""
    lines = []
    for line in stderr.splitlines():
        try:
            json.loads(line)
        except ValueError:
            lines.append(line)
    return lines


def _occupied() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


@pytest.mark.parametrize(
    ("listener", "expected"),
    [
        (
            "http",
            "tie run: HTTP port {port} on 127.0.0.1 is already in use (another tie run?); "
            "pick another: make run PORT={next}, or tie run --port {next}",
        ),
        (
            "mllp",
            "tie run: MLLP port {port} on 127.0.0.1 is already in use (another tie run?); "
            "pick another: make run MLLP_PORT={next}, or tie run --mllp-port {next} (or tie run --no-mllp)",
        ),
    ],
)
def test_a_busy_port_is_one_line_and_a_failure(tmp_path: Path, listener: str, expected: str) -> None:
    with _occupied() as holder:
        busy = holder.getsockname()[1]
        http_port = busy if listener == "http" else free_port()
        mllp_port = busy if listener == "mllp" else free_port()
        done = _tie_run(tmp_path / "local", "--port", str(http_port), "--mllp-port", str(mllp_port))
    assert done.returncode == 1, done.stdout + done.stderr
    assert _human_lines(done.stderr) == [expected.format(port=busy, next=busy + 1)]
    assert "Traceback" not in done.stdout + done.stderr
    assert "Host started:" not in done.stdout


def test_a_busy_mllp_port_from_the_environment_is_named(tmp_path: Path) -> None:
    with _occupied() as holder:
        busy = holder.getsockname()[1]
        done = _tie_run(tmp_path / "local", "--port", str(free_port()), TIE_MLLP_PORT=str(busy))
    assert done.returncode == 1
    [line] = _human_lines(done.stderr)
    assert line.startswith(f"tie run: MLLP port {busy} on 127.0.0.1 is already in use")
