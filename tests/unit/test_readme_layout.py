"""README's layout block (``## Architecture``) matches the tree: every path it names exists, and every
package in ``shared/`` is named there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"


def layout_paths(markdown: str) -> list[str]:
    """The paths named in the first plain code block of ``## Architecture``, nested entries under their
    parent (``shared/`` + ``  hl7v2/ mllp/`` -> ``shared/hl7v2/``, ``shared/mllp/``)."""
    section = markdown.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    blocks = [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```$", section, re.S | re.M) if not lang]
    assert blocks, "README: no layout block under ## Architecture"
    paths: list[str] = []
    parent = ""
    for line in blocks[0].splitlines():
        indent = len(line) - len(line.lstrip(" "))
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split()
        if not line.strip() or indent > 2:  # a description carried on to the next line
            continue
        if indent == 0:
            parent = names[0] if names[0].endswith("/") else ""
            paths.append(names[0])
        else:
            paths += [parent + name for name in names]
    return paths


PATHS = layout_paths(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        (
            "x\n## Architecture\n\n```mermaid\nflowchart LR\n```\n\n"
            "```\na/            the a\n  b/ c.py    two\n"
            "                more text/\nd.txt         a file\n```\n## Next\n",
            ["a/", "a/b/", "a/c.py", "d.txt"],
        ),
    ],
)
def test_extraction(markdown: str, expected: list[str]) -> None:
    assert layout_paths(markdown) == expected


def test_every_named_path_exists() -> None:
    missing = [p for p in PATHS if not (REPO_ROOT / p).exists()]
    assert missing == []


def test_every_shared_package_is_named() -> None:
    named = {p.split("/")[1] for p in PATHS if p.startswith("shared/") and p != "shared/"}
    packages = {p.parent.name for p in (REPO_ROOT / "shared").glob("*/__init__.py")}
    assert packages - named == set()
