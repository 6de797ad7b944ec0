"""The generated FHIR part of the API Management configuration is current (tools/fhir_openapi.py)."""

from __future__ import annotations

import json

from shared.fhirstore.search import SUPPORTED_TYPES
from tools import fhir_openapi


def test_generated_files_are_current() -> None:
    stale = [
        str(path.relative_to(fhir_openapi.ROOT))
        for path, content in fhir_openapi.render_all().items()
        if (path.read_text() if path.exists() else None) != content
    ]
    assert stale == [], "run python tools/fhir_openapi.py"


def test_fhir_operations_cover_every_exposed_type_with_read_and_write_roles() -> None:
    doc = json.loads(fhir_openapi.OPENAPI.read_text())
    search = doc["paths"]["/fhir/{resourceType}"]["get"]
    (type_param,) = [p for p in search["parameters"] if p.get("name") == "resourceType"]
    assert sorted(type_param["schema"]["enum"]) == sorted(SUPPORTED_TYPES)
    roles = {
        (path, method): op["security"][0]["entraId"][0]
        for path, item in doc["paths"].items()
        if path.startswith("/fhir")
        for method, op in item.items()
    }
    assert len(roles) == 19
    for (path, method), role in roles.items():
        if path.startswith("/fhir/AuditEvent"):
            assert (method, role) == ("get", fhir_openapi.AUDIT_ROLE), path
            continue
        if "$export" in path or "/bulk" in path:
            assert role == fhir_openapi.EXPORT_ROLE, (path, method)
            continue
        reading = method == "get" or path.endswith("/_search")
        assert role == (fhir_openapi.READ_ROLE if reading else fhir_openapi.WRITE_ROLE), (path, method)
    assert len(fhir_openapi.OPENAPI.read_text()) < 131_072, "Bicep loadTextContent limit"
