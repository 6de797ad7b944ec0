"""Doc links stay accurate (docs/README.md): every note in ``docs/`` and every ADR is listed in the index,
every relative Markdown link in the docs, README.md and CHANGELOG.md resolves, and every ``docs/...`` path
named in code or docs exists. The checkers are pure functions, run on the real tree and on broken tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

DOCS = REPO_ROOT / "docs"
INDEX = DOCS / "README.md"
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_DOC_PATH = re.compile(r"(?<![\w/.-])docs/[\w./-]+\.(?:md|png)")


def unlisted(index_text: str, notes: list[str]) -> list[str]:
    """Notes (paths relative to docs/) that the index does not link."""
    linked = {target.split("#", 1)[0] for target in _LINK.findall(index_text)}
    return [note for note in notes if note not in linked]


def broken_links(text: str, base: Path) -> list[str]:
    """Relative link targets in Markdown ``text`` missing next to ``base`` (URLs and anchors skipped)."""
    broken = []
    for target in _LINK.findall(text):
        path = target.split("#", 1)[0]
        if not path or re.match(r"^[a-z][a-z0-9+.-]*:", path):
            continue
        if not (base / path).exists():
            broken.append(target)
    return broken


def missing_doc_paths(text: str, root: Path) -> list[str]:
    """``docs/...`` paths named in ``text`` that do not exist under ``root``."""
    return sorted({p for p in _DOC_PATH.findall(text) if not (root / p).exists()})


def _notes() -> list[str]:
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if p != INDEX)


def _markdown_files() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), REPO_ROOT / "README.md", REPO_ROOT / "CHANGELOG.md"]


def _sources() -> list[Path]:
    files = [REPO_ROOT / "function_app.py", *_markdown_files()]
    for package in ("shared", "functions", "tie"):
        files += sorted((REPO_ROOT / package).rglob("*.py"))
    return files


@pytest.mark.parametrize(
    ("index_text", "notes", "expected"),
    [
        ("* [a](a.md) - a\n* [0001](adr/0001-x.md) - x", ["a.md", "adr/0001-x.md"], []),
        ("* [a](a.md#part) - a", ["a.md"], []),
        ("* [a](a.md) - a", ["a.md", "b.md"], ["b.md"]),
        ("a.md is mentioned but not linked", ["a.md"], ["a.md"]),
    ],
)
def test_unlisted_table(index_text: str, notes: list[str], expected: list[str]) -> None:
    assert unlisted(index_text, notes) == expected


def test_broken_links_table(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("x")
    text = "[ok](here.md) [anchor](here.md#x) [url](https://example.org/a.md) [self](#top) [gone](gone.md)"
    assert broken_links(text, tmp_path) == ["gone.md"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("x")
    named = "see docs/here.md, docs/gone.md and not/docs/elsewhere.md"
    assert missing_doc_paths(named, tmp_path) == ["docs/gone.md"]


def test_index_lists_every_note_and_adr() -> None:
    assert unlisted(INDEX.read_text(encoding="utf-8"), _notes()) == []


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_markdown_links_resolve(path: Path) -> None:
    assert broken_links(path.read_text(encoding="utf-8"), path.parent) == []


def test_docs_paths_named_in_code_and_docs_exist() -> None:
    missing = {
        path.relative_to(REPO_ROOT).as_posix(): found
        for path in _sources()
        if (found := missing_doc_paths(path.read_text(encoding="utf-8"), REPO_ROOT))
    }
    assert missing == {}
