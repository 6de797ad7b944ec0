"""FHIR $translate semantics over the shipped concept maps."""

from __future__ import annotations

import pytest

from shared.terminology import (
    Coding,
    Equivalence,
    UnknownConceptMap,
    load_concept_map,
    translate,
    v2_table_system,
)
from shared.terminology import systems as s

V2_0001 = v2_table_system("0001")
GENDER_MAP = "v2-0001-to-administrative-gender"


def test_exact_match() -> None:
    result = translate("F", V2_0001)
    assert result.result is True and result.message is None
    (match,) = result.matches
    assert match.equivalence is Equivalence.EQUIVALENT
    assert match.concept == Coding(system=s.ADMINISTRATIVE_GENDER, code="female", display="Female")
    cmap = load_concept_map(GENDER_MAP)
    assert match.source == f"{cmap.url}|{cmap.version}"
    assert (match.concept_map_id, match.concept_map_version) == (GENDER_MAP, cmap.version)


def test_approximate_match_keeps_its_equivalence_and_reason() -> None:
    (match,) = translate("A", V2_0001).matches
    assert match.concept is not None and match.concept.code == "other"
    assert match.equivalence is Equivalence.WIDER
    assert match.comment


def test_explicitly_unmatched_code_gives_result_false_with_the_reason() -> None:
    result = translate("N", V2_0001)
    assert result.result is False
    (match,) = result.matches
    assert match.equivalence is Equivalence.UNMATCHED and match.concept is None
    assert match.data_absent_reason == "not-applicable"
    assert result.usable == ()
    assert result.message


def test_unknown_code_gives_result_false_and_no_matches() -> None:
    result = translate("Q", V2_0001)
    assert (result.result, result.matches) == (False, ())
    assert result.message is not None and "'Q'" in result.message


def test_codes_are_case_sensitive() -> None:
    assert translate("f", V2_0001).result is False


def test_no_map_for_the_system_is_a_no_not_an_error() -> None:
    result = translate("M", "urn:example:nothing-maps-from-here")
    assert (result.result, result.matches) == (False, ())


def test_reverse_translation_inverts_equivalence() -> None:
    # SNOMED Asthma -> ICD-10 J45.9 is 'narrower'; seen from ICD-10 the SNOMED concept is 'wider'.
    forward = translate("195967001", s.SNOMED_CT, target_system=s.ICD10)
    (fwd,) = forward.matches
    assert fwd.concept == Coding(system=s.ICD10, code="J45.9", display="Asthma, unspecified")
    assert fwd.equivalence is Equivalence.NARROWER
    back = translate("J45.9", s.ICD10, reverse=True)
    (rev,) = back.matches
    assert rev.concept == Coding(system=s.SNOMED_CT, code="195967001", display="Asthma")
    assert rev.equivalence is Equivalence.WIDER


def test_reverse_translation_collects_every_source_of_a_target() -> None:
    # Both A (Ambiguous, wider) and O (Other, equivalent) map to 'other'.
    result = translate("other", s.ADMINISTRATIVE_GENDER, concept_map_id=GENDER_MAP, reverse=True)
    found = {(m.concept.code if m.concept else None, m.equivalence) for m in result.matches}
    assert found == {("O", Equivalence.EQUIVALENT), ("A", Equivalence.NARROWER)}


def test_reverse_never_returns_unmatched_entries() -> None:
    # N is listed as unmatched for gender; nothing in administrative-gender may translate back to it.
    for code in ("male", "female", "other", "unknown"):
        result = translate(code, s.ADMINISTRATIVE_GENDER, reverse=True)
        assert all(m.concept is not None and m.concept.code != "N" for m in result.matches)


def test_equivalence_reversal_table() -> None:
    assert Equivalence.WIDER.reversed() is Equivalence.NARROWER
    assert Equivalence.NARROWER.reversed() is Equivalence.WIDER
    assert Equivalence.SUBSUMES.reversed() is Equivalence.SPECIALIZES
    assert Equivalence.SPECIALIZES.reversed() is Equivalence.SUBSUMES
    for symmetric in (Equivalence.EQUAL, Equivalence.EQUIVALENT, Equivalence.INEXACT, Equivalence.RELATEDTO):
        assert symmetric.reversed() is symmetric
    assert not Equivalence.UNMATCHED.is_match and not Equivalence.DISJOINT.is_match
    assert Equivalence.INEXACT.is_match


def test_target_system_selects_the_group() -> None:
    lab = "example-trust-local-lab-to-loinc-snomed"
    both = translate("ALB", s.LOCAL_LAB)
    assert {m.concept.system for m in both.matches if m.concept} == {s.LOINC, s.SNOMED_CT}
    loinc = translate("ALB", s.LOCAL_LAB, target_system=s.LOINC)
    assert [m.concept.code for m in loinc.matches if m.concept] == ["1751-7"]
    snomed = translate("ALB", s.LOCAL_LAB, concept_map_id=lab, target_system=s.SNOMED_CT)
    assert [m.concept.code for m in snomed.matches if m.concept] == ["1000821000000103"]
    # A test with no SNOMED mapping: the SNOMED group does not list it.
    assert translate("NA", s.LOCAL_LAB, target_system=s.SNOMED_CT).result is False


def test_multi_group_map_reaches_both_target_systems() -> None:
    v2_0063 = v2_table_system("0063")
    (mother,) = translate("MTH", v2_0063).matches
    assert mother.concept == Coding(system=s.V3_ROLE_CODE, code="MTH", display="mother")
    (emergency,) = translate("EMC", v2_0063).matches
    assert emergency.concept == Coding(system=s.V2_0131_CONTACT_ROLE, code="C", display="Emergency Contact")


def test_system_mismatch_with_an_explicit_map() -> None:
    result = translate("M", s.SNOMED_CT, concept_map_id=GENDER_MAP)
    assert result.result is False and result.matches == ()
    assert result.message is not None and GENDER_MAP in result.message


def test_concept_map_by_url_and_version() -> None:
    cmap = load_concept_map(GENDER_MAP)
    assert translate("M", V2_0001, concept_map_id=cmap.url).result is True
    assert translate("M", V2_0001, concept_map_id=cmap.canonical).result is True
    with pytest.raises(UnknownConceptMap):
        translate("M", V2_0001, concept_map_id=f"{cmap.url}|99.0.0")


@pytest.mark.parametrize("bad", ["no-such-map", "../valuesets/administrative-gender", "", "A" * 500])
def test_unknown_map_ids_raise(bad: str) -> None:
    with pytest.raises(UnknownConceptMap):
        load_concept_map(bad)


@pytest.mark.parametrize(
    ("table", "code", "expected"),
    [
        ("0004", "I", "IMP"),
        ("0004", "O", "AMB"),
        ("0004", "E", "EMER"),
        ("0004", "P", "PRENC"),
        ("0085", "F", "final"),
        ("0085", "C", "corrected"),
        ("0085", "W", "entered-in-error"),
        ("0085", "X", "cancelled"),
        ("0123", "R", "partial"),
        ("0123", "F", "final"),
        ("0038", "CM", "completed"),
        ("0038", "HD", "on-hold"),
        ("0078", "HH", "HH"),
        ("0078", "<", "<"),
    ],
)
def test_v2_table_spot_checks(table: str, code: str, expected: str) -> None:
    # Values taken from the HL7 v2-to-FHIR concept maps.
    result = translate(code, v2_table_system(table))
    assert [m.concept.code for m in result.usable if m.concept] == [expected]


def test_observation_status_has_no_r5_only_targets() -> None:
    # HL7 v2-to-FHIR targets 'appended', 'specimen-in-process', 'not-asked': none exist in R4.
    for code in ("B", "I", "N"):
        for match in translate(code, v2_table_system("0085")).matches:
            assert match.concept is None or match.concept.code in {"amended", "registered"}
