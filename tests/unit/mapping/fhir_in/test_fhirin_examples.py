"""The official FHIR R4 examples (``fhir-r4-core-examples``): every resource of a supported type either
maps, or is refused with a typed MappingError naming a FHIR element of that resource - never another
exception, never a half-mapped value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.mapping.errors import MappingError
from shared.mapping.fhir_in import (
    allergy_from_fhir,
    encounter_from_fhir,
    observation_from_fhir,
    patient_from_fhir,
    report_from_fhir,
    service_request_from_fhir,
)
from shared.mapping.lineage import leaf_paths

pytestmark = pytest.mark.corpus

EXAMPLES = (
    Path(__file__).resolve().parents[4]
    / ".."
    / "shared"
    / "corpora"
    / "fhir-r4-core-examples"
    / "spec"
    / "hl7.fhir.r4.examples"
    / "4.0.1"
    / "package"
)
MAPPERS: dict[str, Callable[..., Any]] = {
    "Patient": patient_from_fhir,
    "Encounter": encounter_from_fhir,
    "Observation": observation_from_fhir,
    "DiagnosticReport": report_from_fhir,
    "ServiceRequest": service_request_from_fhir,
    "AllergyIntolerance": allergy_from_fhir,
}


def _resources() -> list[tuple[str, dict[str, Any]]]:
    if not EXAMPLES.is_dir():
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(EXAMPLES.glob("*.json")):
        doc = json.loads(path.read_text("utf-8"))
        resources = [doc] + [e.get("resource", {}) for e in doc.get("entry") or []]
        for i, res in enumerate(resources):
            if res.get("resourceType") in MAPPERS:
                out.append((f"{path.name}#{i}", res))
    return out


RESOURCES = _resources()


@pytest.mark.parametrize(("name", "resource"), RESOURCES, ids=[n for n, _ in RESOURCES])
def test_example_maps_or_is_refused_with_a_typed_error(name: str, resource: dict[str, Any]) -> None:
    rtype = resource["resourceType"]
    refused: MappingError | None = None
    try:
        mapped = MAPPERS[rtype](resource)
    except MappingError as err:
        refused = err
    if refused is not None:
        assert refused.field is not None and refused.field.startswith((rtype, "resourceType")), name
        return
    sources = {e.source for e in mapped.lineage if e.source is not None}
    # every lineage source names an element of this resource (or one it references)
    present = set(leaf_paths(resource, rtype))
    for src in sources:
        if ".resolve()" in src:
            continue
        assert any(p == src or p.startswith(src + ".") or p.startswith(src + "[") for p in present), (
            name,
            src,
        )


def test_examples_were_found_and_most_map() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("fhir-r4-core-examples is not present")
    mapped = 0
    for _, res in RESOURCES:
        try:
            MAPPERS[res["resourceType"]](res, lineage=False)
            mapped += 1
        except MappingError:
            pass
    assert len(RESOURCES) >= 20
    assert mapped >= len(RESOURCES) // 2
