"""_elements and the per-client data-minimisation policy point (shared.fhirapi.minimise)."""

from __future__ import annotations

from shared.fhirapi.minimise import (
    NoPolicy,
    StaticElementsPolicy,
    combine,
    parse_elements,
    subset,
)

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"versionId": "1", "tag": [{"system": "urn:x", "code": "keep"}]},
    "identifier": [{"system": "urn:s", "value": "1"}],
    "name": [{"family": "Testperson"}],
    "address": [{"postalCode": "LS1 1AA"}],
}


def test_parse_elements() -> None:
    assert parse_elements([], "Patient") is None
    assert parse_elements(["", " , "], "Patient") is None
    assert parse_elements(["name, Patient.identifier", "gender"], "Patient") == {
        "name",
        "identifier",
        "gender",
    }
    assert parse_elements(["Observation.code,name.family"], "Patient") == frozenset()


def test_subset_keeps_mandatory_elements_and_tags_subsetted_once() -> None:
    out = subset(PATIENT, frozenset({"name"}))
    assert list(out) == ["resourceType", "id", "meta", "name"]
    assert [t["code"] for t in out["meta"]["tag"]] == ["keep", "SUBSETTED"]
    assert [t["code"] for t in PATIENT["meta"]["tag"]] == ["keep"], "the input is not modified"
    again = subset(out, frozenset({"name"}))
    assert [t["code"] for t in again["meta"]["tag"]] == ["keep", "SUBSETTED"]


def test_subset_without_removal_returns_the_resource_untouched() -> None:
    assert subset(PATIENT, None) is PATIENT
    everything = frozenset({"identifier", "name", "address"})
    assert subset(PATIENT, everything) is PATIENT


def test_combine_intersects_restrictions() -> None:
    assert combine(None, None) is None
    assert combine(frozenset({"a", "b"}), None) == {"a", "b"}
    assert combine(frozenset({"a", "b"}), frozenset({"b", "c"})) == {"b"}


def test_policies() -> None:
    assert NoPolicy().elements("anyone", "Patient") is None
    policy = StaticElementsPolicy({"app": {"Patient": ["name"]}})
    assert policy.elements("app", "Patient") == {"name"}
    assert policy.elements("app", "Observation") is None
    assert policy.elements("other", "Patient") is None and policy.elements(None, "Patient") is None
    strict = StaticElementsPolicy({"app": {"Patient": ["name"]}}, default=["identifier"])
    assert strict.elements("stranger", "Observation") == {"identifier"}
