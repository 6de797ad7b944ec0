from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.canonical.model import ClinicalEvent
from shared.mapping.fhir_out import serialize, to_bundle, to_resources
from shared.mapping.lineage import LineageEntry, compose, leaf_paths, uncovered
from tests.unit.mapping.fhir_out import fhirout_events as ev

FIXTURES: list[Callable[[], ClinicalEvent]] = [
    ev.adt_a01,
    ev.adt_a02,
    ev.adt_a03,
    ev.adt_a11,
    ev.adt_a13,
    ev.adt_a40,
    ev.oru_r01,
    ev.orm_o01,
    ev.clinical,
]


@pytest.mark.parametrize("make", FIXTURES, ids=lambda f: f.__name__)
def test_every_emitted_element_has_lineage(make: Callable[[], ClinicalEvent]) -> None:
    mapped = to_bundle(make(), lineage=True)
    bundle, lineage = mapped.value, mapped.lineage
    for entry in bundle["entry"]:
        res = entry["resource"]
        paths = leaf_paths(res, res["resourceType"])
        assert paths
        assert uncovered(paths, lineage, resource=entry["fullUrl"]) == [], res["resourceType"]
    # the bundle's own elements (type, identifier, fullUrl, request.*) too
    envelope = {k: v for k, v in bundle.items() if k != "entry"}
    envelope["entry"] = [{k: v for k, v in e.items() if k != "resource"} for e in bundle["entry"]]
    assert uncovered(leaf_paths(envelope, "Bundle"), lineage) == []


def test_lineage_records_canonical_to_fhir_paths() -> None:
    mapped = to_bundle(ev.adt_a01(), lineage=True)
    patient_url = mapped.value["entry"][0]["fullUrl"]
    by_target = {(e.target, e.resource): e for e in mapped.lineage}
    given = by_target[("Patient.name[0].given[0]", patient_url)]
    assert given.source == "patient.names[0].given[0]"
    assert by_target[("Patient.identifier[0].value", patient_url)].source == "patient.nhs_number.value"
    assert by_target[("Patient.birthDate", patient_url)].source == "patient.birth_date"
    profile = by_target[("Patient.meta.profile[0]", patient_url)]
    assert profile.source is None and "UK Core" in profile.rule
    enc_url = mapped.value["entry"][-1]["fullUrl"]
    start = by_target[("Encounter.period.start", enc_url)]
    assert start.source == "encounter.period.start" and "to_fhir" in start.rule
    assert by_target[("Encounter.id", enc_url)].source == "encounter.identifiers[0]"


def test_lineage_composes_with_an_hl7_step() -> None:
    hl7_step = [
        LineageEntry("PID-5[1].2", "patient.names[0].given[0]", "XPN.2"),
        LineageEntry("PV1-44", "encounter.period.start", "TS -> ClinicalDateTime"),
    ]
    fhir_step = to_bundle(ev.adt_a01(), lineage=True).lineage
    end_to_end = {(e.source, e.target) for e in compose(hl7_step, fhir_step)}
    assert ("PID-5[1].2", "Patient.name[0].given[0]") in end_to_end
    assert ("PV1-44", "Encounter.period.start") in end_to_end


def test_lineage_is_off_by_default_and_does_not_change_the_output() -> None:
    plain = to_bundle(ev.oru_r01())
    traced = to_bundle(ev.oru_r01(), lineage=True)
    assert plain.lineage == ()
    assert serialize(plain.value) == serialize(traced.value)


@pytest.mark.parametrize("make", FIXTURES, ids=lambda f: f.__name__)
def test_same_event_gives_byte_identical_bundles(make: Callable[[], ClinicalEvent]) -> None:
    event = make()
    first = serialize(to_bundle(event).value)
    assert serialize(to_bundle(event).value) == first
    # an equal event rebuilt from scratch (a replayed message) gives the same bytes
    assert serialize(to_bundle(make()).value) == first


def requests(bundle: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {e["fullUrl"]: e["request"] for e in bundle["entry"]}


def test_replays_hit_the_same_ids_and_conditions() -> None:
    a01 = requests(to_bundle(ev.adt_a01()).value)
    assert a01 == requests(to_bundle(ev.adt_a01()).value)
    # a later message about the same admission (transfer) targets the same Patient and Encounter
    a02 = requests(to_bundle(ev.adt_a02()).value)
    shared = {u for u in a01 if a01[u]["url"].startswith(("Patient", "Encounter"))}
    assert shared and all(a02[u] == a01[u] for u in shared)
    # a different patient does not
    other = requests(to_bundle(ev.adt_a01(nhs="9000000009")).value)
    patient_url = next(u for u in a01 if a01[u]["url"] == "Patient")
    assert patient_url not in other


def test_to_resources_filters_by_type_with_matching_lineage() -> None:
    mapped = to_resources(ev.oru_r01(), lineage=True, types={"Observation"})
    assert mapped.value and {r["resourceType"] for r in mapped.value} == {"Observation"}
    assert mapped.lineage and all(e.target.startswith("Observation.") for e in mapped.lineage)
    everything = to_resources(ev.oru_r01())
    assert len(everything.value) == len(to_bundle(ev.oru_r01()).value["entry"])
    assert everything.lineage == ()


def resolve(obj: object, path: str) -> object:
    """Follow a canonical lineage path (``patient.names[0].given[0]``) through the model."""
    for part in path.replace("[", ".[").split("."):
        obj = obj[int(part[1:-1])] if part.startswith("[") else getattr(obj, part)  # type: ignore[index]
    return obj


@pytest.mark.parametrize("make", FIXTURES, ids=lambda f: f.__name__)
def test_every_lineage_source_names_a_populated_canonical_element(make: Callable[[], ClinicalEvent]) -> None:
    event = make()
    sources = {e.source for e in to_bundle(event, lineage=True).lineage if e.source is not None}
    assert sources
    for source in sources:
        value = resolve(event, source)
        assert value is not None and value != (), source
