"""The CapabilityStatement: generated from the repository's capabilities, listing exactly what is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.fhirapi.capability import capability_statement
from shared.fhirapi.clinical_events import DELETABLE_TYPES
from shared.fhirstore.search import SEARCH_PARAMETERS, SUPPORTED_TYPES, capabilities


def _statement(caps: dict[str, Any], types: tuple[str, ...] = SUPPORTED_TYPES) -> dict[str, Any]:
    return capability_statement(
        caps, base="https://gw/tie/fhir", resource_types=types, deletable=DELETABLE_TYPES
    )


def test_statement_is_a_valid_r4_capability_statement(tmp_path: Path) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    repo = SqliteFhirRepository(tmp_path / "f.db")
    try:
        statement = _statement(repo.capabilities())
    finally:
        repo.close()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1" and statement["kind"] == "instance"
    assert statement["url"] == "https://gw/tie/fhir/metadata"
    assert statement["implementation"]["url"] == "https://gw/tie/fhir"


def test_resources_interactions_and_parameters_follow_the_repository() -> None:
    statement = _statement(capabilities())
    rest = statement["rest"][0]
    resources = {r["type"]: r for r in rest["resource"]}
    assert list(resources) == list(SUPPORTED_TYPES)
    for rtype, entry in resources.items():
        codes = {i["code"] for i in entry["interaction"]}
        assert ("delete" in codes) is (rtype in DELETABLE_TYPES), rtype
        assert {"read", "vread", "update", "create", "search-type", "history-instance"} <= codes
        assert [p["name"] for p in entry["searchParam"]] == list(SEARCH_PARAMETERS[rtype])
        assert entry["conditionalCreate"] is True and entry["conditionalDelete"] == "not-supported"
        assert entry["conditionalRead"] == "full-support"
    assert {p["name"] for p in rest["searchParam"]} >= {"_count", "_offset", "_sort", "_elements", "_summary"}
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}


def test_only_types_both_stored_and_served_are_listed() -> None:
    caps = capabilities(("Patient", "Encounter"))
    statement = _statement(caps, ("Patient", "Observation"))
    assert [r["type"] for r in statement["rest"][0]["resource"]] == ["Patient"]
