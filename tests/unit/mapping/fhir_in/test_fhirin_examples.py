"""The official FHIR R4 examples (``fhir-r4-core-examples``): every resource of a supported type either
maps, or is refused with a typed MappingError naming a FHIR element of that resource - never another
exception, never a half-mapped value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.mapping.errors import InvalidValue, MappingError, MissingRequiredField
from shared.mapping.fhir_in import (
    allergy_from_fhir,
    encounter_from_fhir,
    observation_from_fhir,
    patient_from_fhir,
    report_from_fhir,
    service_request_from_fhir,
)
from shared.mapping.lineage import leaf_paths
from tests.helpers import corpus_missing

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

#: Examples the mappers refuse: (error type, the FHIR element it names). Everything else must map.
REFUSED: dict[str, tuple[type[MappingError], str]] = {
    # Patients with no identifier at all: no patient identity
    "Bundle-bundle-response.json#1": (MissingRequiredField, "Patient.identifier"),
    "Bundle-bundle-transaction.json#1": (MissingRequiredField, "Patient.identifier"),
    "Bundle-bundle-transaction.json#3": (MissingRequiredField, "Patient.identifier"),
    "Bundle-bundle-transaction.json#5": (MissingRequiredField, "Patient.identifier"),
    "Patient-infant-mom.json#0": (MissingRequiredField, "Patient.identifier"),
    # a DiagnosticReport whose results are references that were not supplied
    "Bundle-f001.json#1": (MissingRequiredField, "DiagnosticReport.result[0]"),
    # a panel of components without a value of its own
    "Observation-blood-pressure.json#0": (InvalidValue, "Observation.component"),
    # an order without a placer/filler identifier: no order identity
    "ServiceRequest-example.json#0": (MissingRequiredField, "ServiceRequest.identifier"),
}


@pytest.mark.parametrize(("name", "resource"), RESOURCES, ids=[n for n, _ in RESOURCES])
def test_example_maps_or_is_refused_with_a_typed_error(name: str, resource: dict[str, Any]) -> None:
    rtype = resource["resourceType"]
    if name in REFUSED:
        kind, field = REFUSED[name]
        with pytest.raises(MappingError) as refused:
            MAPPERS[rtype](resource)
        assert (type(refused.value), refused.value.field) == (kind, field), name
        return
    mapped = MAPPERS[rtype](resource)
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
        corpus_missing("fhir-r4-core-examples is not present")
    names = {n for n, _ in RESOURCES}
    assert len(RESOURCES) >= 20 and set(REFUSED) <= names
    assert len(names - set(REFUSED)) >= len(RESOURCES) // 2
