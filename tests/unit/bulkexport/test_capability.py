"""The CapabilityStatement advertises the Bulk Data operations and the _pseudonymise extension parameter."""

from __future__ import annotations

from pathlib import Path

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.fhirapi.capability import capability_statement
from shared.fhirapi.clinical_events import DELETABLE_TYPES
from shared.fhirstore.search import SUPPORTED_TYPES


def test_export_operations_are_advertised(tmp_path: Path) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    repo = SqliteFhirRepository(tmp_path / "f.db")
    try:
        caps = repo.capabilities()
    finally:
        repo.close()
    statement = capability_statement(
        caps, base="https://gw/tie/fhir", resource_types=SUPPORTED_TYPES, deletable=DELETABLE_TYPES
    )
    CapabilityStatement.model_validate(statement)
    assert statement["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    (system,) = statement["rest"][0]["operation"]
    assert system["definition"] == "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
    assert "_pseudonymise" in system["documentation"]
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    (patient,) = by_type["Patient"]["operation"]
    assert patient["definition"].endswith("/patient-export")
    assert all("operation" not in r for t, r in by_type.items() if t != "Patient")
