"""Sender-scoped local code systems (shared.terminology.local_systems) and the HL7 table code lists
(shared.terminology.v2tables): the file format is checked at load, the default URN is documented and
reversible, counts carry field names only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.terminology import local_systems, v2tables
from shared.terminology.local_systems import InvalidLocalCodeSystems

URI = "https://fhir.example-trust.nhs.uk/CodeSystem/hospital-service"
GOOD: dict[str, Any] = {
    "version": "1.0.0",
    "facilities": {"RX1": {"name": "Example Trust", "systems": {"0069": URI}}},
}


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    local_systems.reset_unmapped()
    yield
    local_systems.override(None)
    local_systems.reset_unmapped()


def test_packaged_file_configures_no_facility() -> None:
    packaged = local_systems.packaged()
    assert packaged.by_facility == {}
    assert local_systems.local_system("RX1", "0069") == ("urn:tie:codesystem:RX1:0069", False)
    assert local_systems.local_system(None, "0023") == ("urn:tie:codesystem:unknown-sender:0023", False)
    assert local_systems.default_system("A B/C", "0002") == "urn:tie:codesystem:A%20B%2FC:0002"


def test_configured_facility_table_and_reverse() -> None:
    config = local_systems.parse(GOOD, "test")
    local_systems.override(config)
    assert local_systems.local_system("rx1", "0069") == (URI, True)  # facility case-insensitive
    assert local_systems.local_system("RX1", "0023") == ("urn:tie:codesystem:RX1:0023", False)
    assert config.table_of(URI) == "0069"
    assert local_systems.table_of("urn:tie:codesystem:RX9:0112") == "0112"
    assert local_systems.table_of("urn:tie:codesystem:LOCALETH") is None  # a CWE.3 name, not a table
    assert local_systems.table_of("http://terminology.hl7.org/CodeSystem/v2-0069") is None
    assert config.canonical("urn:tie:codesystem:RX1:0069") == URI
    assert config.canonical("urn:tie:codesystem:RX1:0023") == "urn:tie:codesystem:RX1:0023"


BAD = [
    ({**GOOD, "extra": 1}, "unknown member"),
    ({**GOOD, "version": "1.0"}, "semantic version"),
    ({"version": "1.0.0", "facilities": []}, "facilities must be an object"),
    ({"version": "1.0.0", "facilities": {"RX1": {"systems": {"69": URI}}}}, "four digits"),
    ({"version": "1.0.0", "facilities": {"RX1": {"systems": {"0069": "http://x.example/cs"}}}}, "https"),
    ({"version": "1.0.0", "facilities": {"RX1": {"systems": {}}}}, "non-empty"),
    ({"version": "1.0.0", "facilities": {"RX1": {"systems": {"0069": URI, "0023": URI}}}}, "reuses"),
    (
        {
            "version": "1.0.0",
            "facilities": {"RX1": {"systems": {"0069": URI}}, "rx1": {"systems": {"0023": URI}}},
        },
        "twice",
    ),
    ({"version": "1.0.0", "facilities": {"bad/ns": {"systems": {"0069": URI}}}}, "namespace"),
    ({"version": "1.0.0", "facilities": {"RX1": {"systems": {"0069": URI}, "uri": URI}}}, "may only have"),
]


@pytest.mark.parametrize(("doc", "problem"), BAD)
def test_bad_files_are_refused(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidLocalCodeSystems, match=problem):
        local_systems.parse(doc, "test")


def test_load_file_reports_the_file_not_its_content(tmp_path: Path) -> None:
    good = tmp_path / "systems.json"
    good.write_text(json.dumps(GOOD), "utf-8")
    assert local_systems.load_file(good).system("RX1", "0069") == URI
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", "utf-8")
    with pytest.raises(InvalidLocalCodeSystems, match=r"broken\.json: not valid JSON"):
        local_systems.load_file(broken)
    with pytest.raises(InvalidLocalCodeSystems, match="cannot be read"):
        local_systems.load_file(tmp_path / "missing.json")


def test_unmapped_counts_are_per_field() -> None:
    for name in ("encounter.service_type", "encounter.service_type", "patient.ethnicity"):
        local_systems.record_unmapped(name)
    assert local_systems.unmapped_counts() == {"encounter.service_type": 2, "patient.ethnicity": 1}
    local_systems.reset_unmapped()
    assert local_systems.unmapped_counts() == {}


TABLE_CODES = [
    ("0069", "MED", True),
    ("0069", "110", False),  # an NHS treatment function code, not an HL7 hospital service
    ("0023", "1", True),
    ("0023", "19", False),  # an NHS source of admission code
    ("0023", "...", False),  # the placeholder row of a user-defined table is not a code
    ("0189", "H", True),
    ("0189", "Z2", False),
    ("0002", "9", False),
    ("0203", "MR", True),
    ("0203", "MEDREC", False),
    ("0112", "01", False),  # code list not held: nothing is claimed
]


@pytest.mark.parametrize(("table", "code", "expected"), TABLE_CODES)
def test_table_codes(table: str, code: str, expected: bool) -> None:
    assert v2tables.is_table_code(table, code) is expected


def test_table_of_and_version() -> None:
    assert v2tables.table_of("http://terminology.hl7.org/CodeSystem/v2-0069") == "0069"
    assert v2tables.table_of("http://terminology.hl7.org/CodeSystem/v3-NullFlavor") is None
    assert v2tables.table_of(None) is None
    assert v2tables.tables_version() == "1.0.0"
