"""The data-file format rules, and load-once caching."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

import shared.terminology as terminology
from shared.terminology import InvalidTerminologyData, conceptmaps, policy, valuesets
from shared.terminology import _data as data
from shared.terminology.coding import Equivalence

V2 = "http://terminology.hl7.org/CodeSystem/v2-0001"
GENDER = "http://hl7.org/fhir/administrative-gender"


def _map(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "ConceptMap",
        "id": "test-map",
        "version": "1.2.3",
        "title": "Test",
        "status": "active",
        "sourceSystem": V2,
        "targetSystem": GENDER,
        "references": ["test"],
        "groups": [
            {
                "elements": [
                    {
                        "code": "M",
                        "display": "Male",
                        "targets": [{"code": "male", "equivalence": "equivalent"}],
                    },
                    {
                        "code": "N",
                        "targets": [
                            {
                                "equivalence": "unmatched",
                                "comment": "why",
                                "dataAbsentReason": "not-applicable",
                            }
                        ],
                    },
                ]
            }
        ],
    }
    doc.update(overrides)
    return doc


def _target(doc: dict[str, Any], element: int = 0) -> dict[str, Any]:
    target = doc["groups"][0]["elements"][element]["targets"][0]
    assert isinstance(target, dict)
    return target


def test_minimal_map_parses_with_defaults() -> None:
    cmap = conceptmaps._parse("test-map", _map())
    assert cmap.url == "urn:tie:conceptmap:test-map" and cmap.canonical == "urn:tie:conceptmap:test-map|1.2.3"
    (group,) = cmap.groups
    assert (group.source, group.target) == (V2, GENDER)
    assert group.elements["N"].targets[0].data_absent_reason == "not-applicable"
    assert cmap.translate("M").usable[0].equivalence is Equivalence.EQUIVALENT


def _broken(mutate: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_map())
    mutate(doc)
    return doc


BROKEN = {
    "id differs from file": lambda d: d.update(id="other"),
    "not semver": lambda d: d.update(version="1.0"),
    "missing title": lambda d: d.pop("title"),
    "bad status": lambda d: d.update(status="live"),
    "unknown top-level key": lambda d: d.update(equivalance="x"),
    "no groups": lambda d: d.update(groups=[]),
    "bad equivalence": lambda d: _target(d).update(equivalence="same"),
    "typo in target key": lambda d: _target(d).update(equivalance="equal"),
    "unmatched with a code": lambda d: _target(d, 1).update(code="other"),
    "match without a code": lambda d: _target(d).pop("code"),
    "approximate without comment": lambda d: _target(d).update(equivalence="wider"),
    "reason on a mapped target": lambda d: _target(d).update(dataAbsentReason="unknown"),
    "reason not a DAR code": lambda d: _target(d, 1).update(dataAbsentReason="invalid"),
    "duplicate source code": lambda d: d["groups"][0]["elements"].append(
        copy.deepcopy(d["groups"][0]["elements"][0])
    ),
    "duplicate target": lambda d: d["groups"][0]["elements"][0]["targets"].append(dict(_target(d))),
    "fixed unmapped mode": lambda d: d["groups"][0].update(unmapped={"mode": "fixed", "code": "unknown"}),
    "other-map without url": lambda d: d["groups"][0].update(unmapped={"mode": "other-map"}),
    "duplicate group pair": lambda d: d["groups"].append(copy.deepcopy(d["groups"][0])),
    "element without targets": lambda d: d["groups"][0]["elements"][0].update(targets=[]),
    "wrong resourceType": lambda d: d.update(resourceType="ValueSet"),
}


@pytest.mark.parametrize("mutate", BROKEN.values(), ids=BROKEN.keys())
def test_format_violations_are_rejected(mutate: Any) -> None:
    with pytest.raises(InvalidTerminologyData) as info:
        conceptmaps._parse("test-map", _broken(mutate))
    assert "conceptmaps/test-map.json" in str(info.value)


def test_unmapped_provided_passes_the_code_through() -> None:
    doc = _map(groups=[{"unmapped": {"mode": "provided"}, "elements": []}])
    cmap = conceptmaps._parse("test-map", doc)
    (match,) = cmap.translate("X").matches
    assert match.concept is not None and (match.concept.system, match.concept.code) == (GENDER, "X")
    assert match.equivalence is Equivalence.EQUAL


def test_unmapped_other_map_consults_the_named_map() -> None:
    # An unlisted code falls through to the shipped gender map.
    doc = _map(
        groups=[
            {
                "unmapped": {"mode": "other-map", "url": "v2-0001-to-administrative-gender"},
                "elements": [
                    {"code": "M", "targets": [{"code": "female", "equivalence": "disjoint", "comment": "t"}]}
                ],
            }
        ]
    )
    cmap = conceptmaps._parse("test-map", doc)
    assert [m.concept.code for m in cmap.translate("F").usable if m.concept] == ["female"]
    listed = cmap.translate("M")  # listed here, so the other map is not consulted
    assert listed.result is False and listed.matches[0].equivalence is Equivalence.DISJOINT


def test_value_set_format_violations() -> None:
    good: dict[str, Any] = {
        "id": "t",
        "url": "urn:t",
        "version": "1.0.0",
        "title": "T",
        "status": "active",
        "compose": {"include": [{"system": GENDER, "concept": [{"code": "male", "display": "Male"}]}]},
    }
    assert valuesets._parse("t", good).contains(GENDER, "male")
    dup = copy.deepcopy(good)
    dup["compose"]["include"][0]["concept"].append({"code": "male"})
    for bad in (dict(good, version="v1"), dict(good, id="u"), dict(good, extra=1), dup):
        with pytest.raises(InvalidTerminologyData):
            valuesets._parse("t", bad)


def test_field_policy_format_violations() -> None:
    ok = {"field": "F", "conceptMap": "v2-0001-to-administrative-gender", "unmapped": "keep-source"}
    version, parsed = policy._parse_policies({"version": "1.0.0", "fields": [ok]})
    assert version == "1.0.0" and parsed["F"].unmapped is policy.Unmapped.KEEP_SOURCE
    bad_entries = [
        dict(ok, conceptMap="missing-map"),
        dict(ok, unmapped="ignore"),
        dict(ok, unmapped="data-absent"),  # no absentReason
        dict(ok, absentReason="unknown"),  # reason without data-absent
        dict(ok, unmapped="data-absent", absentReason="invalid"),
        dict(ok, targetSystem="http://loinc.org"),
    ]
    for entry in bad_entries:
        with pytest.raises(InvalidTerminologyData):
            policy._parse_policies({"version": "1.0.0", "fields": [entry]})
    with pytest.raises(InvalidTerminologyData):
        policy._parse_policies({"version": "1.0.0", "fields": [ok, ok]})


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []
    real = data.read_json

    def counting(kind: str, resource_id: str) -> Any:
        calls.append((kind, resource_id))
        return real(kind, resource_id)

    terminology.clear_caches()
    monkeypatch.setattr(data, "read_json", counting)
    yield calls
    terminology.clear_caches()


def test_concept_maps_are_read_once(counted_reads: list[tuple[str, str]]) -> None:
    first = terminology.load_concept_map("v2-0001-to-administrative-gender")
    terminology.translate("M", V2)
    terminology.translate("F", V2)
    again = terminology.load_concept_map("v2-0001-to-administrative-gender")
    assert first is again
    assert counted_reads.count(("conceptmaps", "v2-0001-to-administrative-gender")) == 1


def test_value_sets_are_read_once(counted_reads: list[tuple[str, str]]) -> None:
    for _ in range(3):
        assert terminology.lookup("administrative-gender", GENDER, "male")
    assert counted_reads.count(("valuesets", "administrative-gender")) == 1


def test_lookup_rejects_unknown_value_set() -> None:
    with pytest.raises(terminology.UnknownValueSet):
        terminology.lookup("no-such-set", GENDER, "male")
    assert terminology.lookup("administrative-gender", GENDER, "Male") is False
    assert terminology.lookup("administrative-gender", V2, "male") is False
