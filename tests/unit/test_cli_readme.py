"""Every ``tie …`` and ``make …`` command in the README's shell blocks works as written: ``tie`` commands
parse with the real argparse parser (and name files that exist), ``make`` commands name real targets and
variables the Makefile reads."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.helpers import REPO_ROOT
from tie import cli

README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"
_SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SEPARATORS = {"|", "||", "&&", ";", "&"}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_PLACEHOLDER = re.compile(r"<[^<>\s]+>")


def shell_commands(markdown: str) -> list[list[str]]:
    """Simple commands (argv, environment assignments dropped) of every shell code block."""
    commands: list[list[str]] = []
    for block in _SHELL_BLOCK.findall(markdown):
        text = block.replace("\\\n", " ")  # continuation lines
        for line in text.splitlines():
            if line.lstrip().startswith(("{", "}", '"', "JSON")):
                continue  # here-document bodies
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:
                continue  # a here-document line with an odd quote: not a command
            current: list[str] = []
            for token in [*tokens, ";"]:
                if token in _SEPARATORS:
                    while current and _ASSIGNMENT.match(current[0]):
                        current.pop(0)
                    if current:
                        commands.append(current)
                    current = []
                else:
                    current.append(token)
    return commands


def _tie(argv: list[str]) -> list[str] | None:
    if argv[0] in ("tie", ".venv/bin/tie"):
        return [_PLACEHOLDER.sub("1", a) for a in argv[1:]]
    return None


COMMANDS = shell_commands(README.read_text(encoding="utf-8"))
TIE = [c for c in COMMANDS if _tie(c) is not None]
MAKE = [c for c in COMMANDS if c[0] == "make"]


def test_the_readme_documents_tie_and_make_commands() -> None:
    # Not vacuous: the extraction finds the commands a newcomer is told to run.
    assert len(TIE) >= 20 and len(MAKE) >= 3
    firsts = {(_tie(c) or [""])[0] for c in TIE}
    assert {"bus", "dlq", "trace", "mllp"} <= firsts
    assert ["make", "run", "PORT=8081", "MLLP_PORT=2576"] in MAKE


@pytest.mark.parametrize("argv", TIE, ids=[" ".join(c) for c in TIE])
def test_tie_command_parses(argv: list[str]) -> None:
    args_in = _tie(argv)
    assert args_in is not None
    try:
        args = cli.build_parser().parse_args(args_in)
    except SystemExit as exc:
        pytest.fail(f"README: `{' '.join(argv)}` does not parse (exit {exc.code})")
    assert callable(args.func)
    file = getattr(args, "file", None)
    if file is not None:
        assert (REPO_ROOT / file).is_file(), f"README: `{' '.join(argv)}` names a missing file"


def _makefile() -> tuple[set[str], set[str]]:
    text = MAKEFILE.read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))
    variables = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text))
    return targets, variables


@pytest.mark.parametrize("argv", MAKE, ids=[" ".join(c) for c in MAKE])
def test_make_command_names_real_targets(argv: list[str]) -> None:
    targets, variables = _makefile()
    words = [a for a in argv[1:] if not a.startswith("-")]
    goals = [w for w in words if "=" not in w]
    assigned = [w.split("=", 1)[0] for w in words if "=" in w]
    assert goals, f"README: `{' '.join(argv)}` names no target"
    assert set(goals) <= targets, f"README: `{' '.join(argv)}`: no such target {sorted(set(goals) - targets)}"
    assert set(assigned) <= variables, f"README: `{' '.join(argv)}`: the Makefile ignores {assigned}"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("```bash\n.venv/bin/tie dlq list   # comment\n```\n", [[".venv/bin/tie", "dlq", "list"]]),
        (
            "```bash\nX=1 make run PORT=1 && tie trace <id>\n```\n",
            [["make", "run", "PORT=1"], ["tie", "trace", "<id>"]],
        ),
        (
            "```bash\ntie bus send t f \\\n    --session-id s\n```\n",
            [["tie", "bus", "send", "t", "f", "--session-id", "s"]],
        ),
        (
            "```\ntie/  the CLI\n```\n```bash\ncurl -s x | tie trace a\n```\n",
            [["curl", "-s", "x"], ["tie", "trace", "a"]],
        ),
    ],
)
def test_extraction(markdown: str, expected: list[list[str]]) -> None:
    assert shell_commands(markdown) == expected


def test_a_broken_command_is_caught() -> None:
    for argv in (["tie", "dlq", "lst"], ["tie", "trace", "--control-id", "NOCOLON"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(argv[1:])
    assert "nosuchtarget" not in _makefile()[0]
