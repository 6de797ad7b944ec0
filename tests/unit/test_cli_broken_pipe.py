"""`tie … | head`: a reader that goes away ends the command quietly with the SIGPIPE status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _running(command: str) -> str:
    """A script that runs ``tie`` main() with ``command`` (source defining ``command(args)``) as the
    parsed command's function."""
    return (
        "import tie.cli as c\n" + command + "p = c.build_parser()\n"
        "a = p.parse_args(['bus', 'topics'])\n"
        "a.func = command\n"
        "c.build_parser = lambda: type('P', (), {'parse_args': lambda self, argv: a})()\n"
        "raise SystemExit(c.main([]))\n"
    )


def test_output_to_a_closed_pipe_ends_quietly() -> None:
    # Enough lines that the pipe buffer fills after the reader has gone.
    script = _running(
        "def command(args):\n    for i in range(200_000):\n        print('row', i)\n    return 0\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"row 0")
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGPIPE
    assert b"Traceback" not in err
    assert b"BrokenPipeError" not in err


def test_a_broken_pipe_elsewhere_is_an_error_not_a_quiet_exit() -> None:
    # A BrokenPipeError from something other than stdout (an MLLP peer closing its socket) while stdout is
    # still read must surface as the error it is, not as a quiet SIGPIPE exit.
    script = _running("def command(args):\n    raise BrokenPipeError(32, 'peer closed')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, cwd=ROOT, env=env, timeout=120, check=False
    )
    assert proc.returncode == 1
    assert b"BrokenPipeError" in proc.stderr and b"peer closed" in proc.stderr
