"""The pre-commit hooks run the pinned tools (docs/pre-commit.md): ``.pre-commit-config.yaml`` has ruff check,
ruff format and mypy hooks; a local hook calls the tool in ``.venv`` (installed from the hashed dev lock) with
``language: system``, a hook from a remote repository must carry the pinned version as its ``rev``; the
``.venv`` tools are the pinned versions. The checker is a pure function, run on the real file and on broken
tables."""

from __future__ import annotations

import re
import shlex
from importlib import metadata
from typing import Any

import pytest
import yaml

from tests.helpers import REPO_ROOT

CONFIG = REPO_ROOT / ".pre-commit-config.yaml"
REQUIRED_HOOKS = {"ruff-check": "ruff", "ruff-format": "ruff", "mypy": "mypy"}
# remote hook repositories and the tool whose version their rev names
REMOTE_TOOLS = {
    "https://github.com/astral-sh/ruff-pre-commit": "ruff",
    "https://github.com/pre-commit/mirrors-mypy": "mypy",
}


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements or lock file (ruff and mypy only)."""
    found: dict[str, str] = {}
    for tool in ("ruff", "mypy"):
        match = re.search(rf"^{tool}==(\S+)", text, re.MULTILINE)
        if match:
            found[tool] = match.group(1)
    return found


def hook_problems(config: dict[str, Any], pinned: dict[str, str]) -> list[str]:
    """What makes ``config`` run something other than the pinned tools (empty: nothing)."""
    problems: list[str] = []
    seen: set[str] = set()
    for repo in config.get("repos", []):
        url = repo.get("repo")
        for hook in repo.get("hooks", []):
            hook_id = hook.get("id", "?")
            tool = REQUIRED_HOOKS.get(hook_id)
            if tool is None:
                continue
            seen.add(hook_id)
            if url == "local":
                if hook.get("language") != "system":
                    problems.append(f"{hook_id}: a local hook must use language: system (the .venv tool)")
                entry = shlex.split(hook.get("entry", ""))
                if not entry or entry[0] != f".venv/bin/{tool}":
                    problems.append(f"{hook_id}: entry must call .venv/bin/{tool}")
            elif REMOTE_TOOLS.get(url) == tool:
                if str(repo.get("rev", "")).removeprefix("v") != pinned[tool]:
                    problems.append(
                        f"{hook_id}: rev {repo.get('rev')} is not the pinned {tool} {pinned[tool]}"
                    )
            else:
                problems.append(f"{hook_id}: unknown hook repository {url}")
    problems += [f"{hook_id}: hook missing" for hook_id in sorted(set(REQUIRED_HOOKS) - seen)]
    return problems


def _local(hook_id: str, entry: str, language: str = "system") -> dict[str, Any]:
    return {"repo": "local", "hooks": [{"id": hook_id, "entry": entry, "language": language}]}


_PINNED = {"ruff": "0.17.6", "mypy": "2.4.1"}
_GOOD = [
    _local("ruff-check", ".venv/bin/ruff check --force-exclude"),
    _local("ruff-format", ".venv/bin/ruff format --force-exclude"),
    _local("mypy", ".venv/bin/mypy"),
]

CASES = [
    ("local venv hooks", _GOOD, []),
    (
        "ruff from PATH",
        [_local("ruff-check", "ruff check"), *_GOOD[1:]],
        ["ruff-check: entry must call .venv/bin/ruff"],
    ),
    (
        "pre-commit-managed environment",
        [*_GOOD[:2], _local("mypy", ".venv/bin/mypy", language="python")],
        ["mypy: a local hook must use language: system (the .venv tool)"],
    ),
    (
        "remote ruff at the pinned rev",
        [
            {
                "repo": "https://github.com/astral-sh/ruff-pre-commit",
                "rev": "v0.17.6",
                "hooks": [{"id": "ruff-check"}, {"id": "ruff-format"}],
            },
            _GOOD[2],
        ],
        [],
    ),
    (
        "remote ruff at another rev",
        [
            {
                "repo": "https://github.com/astral-sh/ruff-pre-commit",
                "rev": "v0.17.5",
                "hooks": [{"id": "ruff-check"}, {"id": "ruff-format"}],
            },
            _GOOD[2],
        ],
        [
            "ruff-check: rev v0.17.5 is not the pinned ruff 0.17.6",
            "ruff-format: rev v0.17.5 is not the pinned ruff 0.17.6",
        ],
    ),
    (
        "mypy from an unknown repository",
        [*_GOOD[:2], {"repo": "https://example.org/mypy-hooks", "rev": "2.4.1", "hooks": [{"id": "mypy"}]}],
        ["mypy: unknown hook repository https://example.org/mypy-hooks"],
    ),
    ("mypy hook missing", _GOOD[:2], ["mypy: hook missing"]),
]


@pytest.mark.parametrize(("repos", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hook_problems_table(repos: list[dict[str, Any]], expected: list[str]) -> None:
    assert hook_problems({"repos": repos}, _PINNED) == expected


def _config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_config_runs_the_pinned_tools() -> None:
    pinned = pins((REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8"))
    assert pinned.keys() == {"ruff", "mypy"}
    assert pins((REPO_ROOT / "requirements-dev.lock").read_text(encoding="utf-8")) == pinned
    assert hook_problems(_config(), pinned) == []


def test_venv_tools_are_the_pinned_versions() -> None:
    # the local hooks call .venv/bin/<tool>; that is the pinned tool only if the venv holds the pinned version
    pinned = pins((REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8"))
    assert {tool: metadata.version(tool) for tool in pinned} == pinned


@pytest.mark.parametrize(
    ("path", "checked"),
    [
        ("shared/outbox/__init__.py", True),
        ("functions/audit_consumer.py", True),
        ("tie/cli.py", True),
        ("function_app.py", True),
        ("tests/unit/test_cli.py", False),
        ("bench/convert.py", False),
        ("tools/function_app.py", False),
    ],
)
def test_mypy_hook_covers_what_make_typecheck_covers(path: str, checked: bool) -> None:
    (mypy_hook,) = [h for r in _config()["repos"] for h in r["hooks"] if h["id"] == "mypy"]
    assert bool(re.search(mypy_hook["files"], path)) is checked
