"""Every shipped terminology data file loads and obeys the rules the rest of the engine relies on."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from shared.terminology import (
    Equivalence,
    all_concept_maps,
    all_value_sets,
    concept_map_ids,
    field_policies,
    load_concept_map,
    load_value_set,
    lookup,
    value_set_ids,
)
from shared.terminology import systems as s
from shared.terminology.conceptmaps import ConceptMap

SEMVER = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?")
EQUIVALENCES = {
    "relatedto",
    "equivalent",
    "equal",
    "wider",
    "subsumes",
    "narrower",
    "specializes",
    "inexact",
    "unmatched",
    "disjoint",
}

#: The maps the issue asks for; a missing one is a regression, not a skip.
REQUIRED_MAPS = {
    "v2-0001-to-administrative-gender",
    "v2-0004-to-encounter-class",
    "v2-0007-to-encounter-priority",
    "v2-0063-to-relationship",
    "v2-0078-to-observation-interpretation",
    "v2-0085-to-observation-status",
    "v2-0123-to-diagnostic-report-status",
    "v2-0038-to-request-status",
    "v2-0119-to-request-status",
    "snomed-to-icd10-common-diagnoses",
    "example-trust-local-lab-to-loinc-snomed",
    "v2-0200-to-name-use",
    "v2-0190-to-address-use-and-type",
    "v2-0201-to-contact-point-use",
    "v2-0202-to-contact-point-system",
    "v2-0027-to-request-priority",
    "hl7uk-0445-to-nhs-number-verification-status",
    "v3-marital-status-to-hl7uk-0002",
}
REQUIRED_VALUE_SETS = {
    "administrative-gender",
    "observation-status",
    "encounter-status",
    "encounter-class",
    "diagnostic-report-status",
    "request-status",
    "request-intent",
    "allergyintolerance-clinical",
    "allergyintolerance-verification",
    "nhs-number-verification-status",
    "data-absent-reason",
}


def _raw(kind: str, resource_id: str) -> dict[str, object]:
    text = resources.files(f"shared.terminology.data.{kind}").joinpath(f"{resource_id}.json").read_text()
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc


def test_required_files_are_shipped() -> None:
    assert set(concept_map_ids()) >= REQUIRED_MAPS
    assert set(value_set_ids()) >= REQUIRED_VALUE_SETS


@pytest.mark.parametrize("map_id", concept_map_ids())
def test_concept_map_file_is_well_formed(map_id: str) -> None:
    raw = _raw("conceptmaps", map_id)
    for key in ("id", "version", "title", "sourceSystem", "targetSystem", "groups"):
        assert key in raw, key
    assert raw["id"] == map_id
    assert SEMVER.fullmatch(str(raw["version"]))
    cmap = load_concept_map(map_id)
    assert cmap.version == raw["version"]
    assert cmap.url and cmap.canonical.endswith("|" + cmap.version)
    assert raw["references"], "every map says where its content came from"
    for group in cmap.groups:
        assert group.unmapped is None or group.unmapped.mode != "fixed"
        for element in group.elements.values():
            assert element.targets
            for target in element.targets:
                assert target.equivalence.value in EQUIVALENCES
                assert (target.code is None) == (target.equivalence is Equivalence.UNMATCHED)
                if target.equivalence not in (Equivalence.EQUAL, Equivalence.EQUIVALENT):
                    assert target.comment, f"{map_id} {element.code}: approximate mapping without a reason"


@pytest.mark.parametrize("map_id", concept_map_ids())
def test_no_duplicate_source_codes_within_a_group(map_id: str) -> None:
    # Checked on the raw JSON: the loader's dict would silently keep the last duplicate otherwise.
    raw = _raw("conceptmaps", map_id)
    groups = raw["groups"]
    assert isinstance(groups, list)
    for group in groups:
        codes = [e["code"] for e in group.get("elements", [])]
        assert len(codes) == len(set(codes)), f"{map_id}: duplicate source code"


@pytest.mark.parametrize("map_id", concept_map_ids())
def test_every_system_is_a_declared_constant(map_id: str) -> None:
    cmap = load_concept_map(map_id)
    assert s.is_known_code_system(cmap.source_system)
    assert s.is_known_code_system(cmap.target_system)
    for group in cmap.groups:
        assert group.source in s.CODE_SYSTEMS, group.source
        assert group.target in s.CODE_SYSTEMS, group.target


def _bound_groups() -> list[tuple[ConceptMap, int]]:
    return [(m, i) for m in all_concept_maps() for i, g in enumerate(m.groups) if g.target_value_set]


def test_maps_to_bound_fields_declare_their_value_set() -> None:
    declared = {(m.id, m.groups[i].target) for m, i in _bound_groups()}
    for map_id in (
        "v2-0001-to-administrative-gender",
        "v2-0004-to-encounter-class",
        "v2-0085-to-observation-status",
        "v2-0123-to-diagnostic-report-status",
        "v2-0038-to-request-status",
        "v2-0119-to-request-status",
    ):
        assert (map_id, load_concept_map(map_id).target_system) in declared


@pytest.mark.parametrize(("cmap", "index"), _bound_groups(), ids=lambda v: getattr(v, "id", str(v)))
def test_every_target_code_is_in_the_bound_value_set(cmap: ConceptMap, index: int) -> None:
    group = cmap.groups[index]
    assert group.target_value_set is not None
    vs = load_value_set(group.target_value_set)
    assert group.target in vs.systems
    for element in group.elements.values():
        for target in element.targets:
            if target.code is not None:
                assert vs.contains(group.target, target.code), (cmap.id, element.code, target.code)
                assert target.display == vs.display(group.target, target.code), (cmap.id, target.code)


def test_suggested_data_absent_reasons_are_real_codes() -> None:
    seen = 0
    for cmap in all_concept_maps():
        for group in cmap.groups:
            for element in group.elements.values():
                for target in element.targets:
                    if target.data_absent_reason is not None:
                        seen += 1
                        assert lookup("data-absent-reason", s.DATA_ABSENT_REASON, target.data_absent_reason)
    assert seen >= 3


@pytest.mark.parametrize("vs_id", value_set_ids())
def test_value_set_file_is_well_formed(vs_id: str) -> None:
    raw = _raw("valuesets", vs_id)
    assert raw["id"] == vs_id
    assert SEMVER.fullmatch(str(raw["version"]))
    vs = load_value_set(vs_id)
    assert vs.codings()
    for system in vs.systems:
        assert s.is_known_code_system(system), system
    for coding in vs.codings():
        assert coding.code.strip() == coding.code and coding.display


def test_value_sets_hold_the_published_codes() -> None:
    # Spot checks against the FHIR R4 / UK Core definitions (a code typo passes the structure checks).
    gender = load_value_set("administrative-gender").codings()
    assert {c.code for c in gender} == {"male", "female", "other", "unknown"}
    obs = {c.code for c in load_value_set("observation-status").codings()}
    assert "appended" not in obs and {"final", "amended", "corrected", "entered-in-error"} <= obs
    assert "appended" in {c.code for c in load_value_set("diagnostic-report-status").codings()}
    nhs = load_value_set("nhs-number-verification-status")
    assert [c.code for c in nhs.codings()] == [f"0{i}" for i in range(1, 9)]
    assert nhs.systems == {s.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND}
    assert nhs.display(s.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND, "01") == "Number present and verified"
    dar = {c.code for c in load_value_set("data-absent-reason").codings()}
    assert {"unknown", "not-applicable", "masked", "asked-unknown", "temp-unknown", "not-asked"} <= dar
    assert "invalid" not in dar


def test_field_policies_refer_to_real_maps_and_reasons() -> None:
    policies = field_policies()
    assert {"Patient.gender", "Encounter.class", "Observation.status", "Observation.interpretation"} <= set(
        policies
    )
    for policy in policies.values():
        cmap = load_concept_map(policy.concept_map_id)
        if policy.absent_reason is not None:
            assert lookup("data-absent-reason", s.DATA_ABSENT_REASON, policy.absent_reason)
        if policy.target_system is not None:
            assert policy.target_system in {g.target for g in cmap.groups}
    # Status elements are FHIR modifiers: guessing one changes the clinical meaning, so they must raise.
    for status_field in ("Observation.status", "DiagnosticReport.status", "ServiceRequest.status"):
        assert policies[status_field].unmapped.value == "raise"


def test_all_value_sets_and_maps_load_together() -> None:
    assert len(all_value_sets()) == len(value_set_ids())
    assert len(all_concept_maps()) == len(concept_map_ids())
