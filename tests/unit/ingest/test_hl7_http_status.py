"""The HL7 v2 HTTP edge has one status table (``functions.hl7v2.HTTP_STATUS``); the README's edge table
documents the situations behind each status and must agree with it."""

from __future__ import annotations

import re

import pytest

from functions.hl7v2 import HTTP_STATUS
from tests.helpers import REPO_ROOT

#: README row (words its situation cell starts with) -> the answer it documents.
_ROWS: list[tuple[str, str]] = [
    ("accepted (published before the ACK)", "accepted"),
    ("content errors", "content-error"),
    ("unparseable, unsupported type", "rejected"),
    ("same control ID, different bytes", "rejected"),
    ("could not be stored", "unavailable"),
    ("MSH-15 = NE", "no-ack"),
    ("too large", "oversize"),
    ("wrong Content-Type", "unsupported-media-type"),
]


def _readme_statuses() -> dict[str, str]:
    """situation cell -> HTTP status cell of the README table headed ``| situation | HTTP status | ACK |``."""
    lines = (REPO_ROOT / "README.md").read_text("utf-8").splitlines()
    start = lines.index("| situation | HTTP status | ACK |")
    rows: dict[str, str] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1]
    return rows


@pytest.mark.parametrize(("situation", "answer"), _ROWS)
def test_the_readme_row_has_the_status_of_the_table(situation: str, answer: str) -> None:
    cells = [status for row, status in _readme_statuses().items() if row.startswith(situation)]
    assert len(cells) == 1, situation
    assert re.match(r"\d{3}", cells[0]) is not None and int(cells[0][:3]) == HTTP_STATUS[answer]


def test_every_status_in_the_readme_is_in_the_table_and_back() -> None:
    documented = {int(m) for cell in _readme_statuses().values() for m in re.findall(r"\b\d{3}\b", cell)}
    assert documented == set(HTTP_STATUS.values())
    assert {answer for _, answer in _ROWS} == set(HTTP_STATUS)
