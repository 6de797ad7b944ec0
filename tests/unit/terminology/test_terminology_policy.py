"""Unmapped-code policies: raise, data-absent, keep-source; never a fabricated default."""

from __future__ import annotations

import pytest

from shared.errors import PermanentError
from shared.terminology import (
    AmbiguousMapping,
    Coding,
    Equivalence,
    KeptSource,
    MappedAbsent,
    MappedCode,
    UnknownConceptMap,
    UnknownFieldPolicy,
    Unmapped,
    UnmappedCode,
    field_policy,
    load_concept_map,
    map_code,
    map_field,
    v2_table_system,
)
from shared.terminology import systems as s

GENDER = "v2-0001-to-administrative-gender"
CLASS = "v2-0004-to-encounter-class"
LAB = "example-trust-local-lab-to-loinc-snomed"


@pytest.mark.parametrize("policy", list(Unmapped))
def test_a_mapped_code_is_mapped_whatever_the_policy(policy: Unmapped) -> None:
    out = map_code(GENDER, "M", policy=policy, field="Patient.gender")
    assert isinstance(out, MappedCode)
    assert out.target == Coding(system=s.ADMINISTRATIVE_GENDER, code="male", display="Male")
    assert out.source == Coding(system=v2_table_system("0001"), code="M", display="Male")
    assert out.equivalence is Equivalence.EQUIVALENT
    cmap = load_concept_map(GENDER)
    assert (out.concept_map_id, out.concept_map_version) == (GENDER, cmap.version)
    assert out.lineage == f"{GENDER}|{cmap.version}"


def test_raise_names_field_and_map() -> None:
    with pytest.raises(UnmappedCode) as info:
        map_code(GENDER, "Z", policy=Unmapped.RAISE, field="Patient.gender")
    err = info.value
    assert isinstance(err, PermanentError)
    assert (err.field, err.concept_map_id) == ("Patient.gender", GENDER)
    assert "Patient.gender" in str(err) and GENDER in str(err) and "not listed" in str(err)


def test_raise_on_an_explicitly_unmatched_code() -> None:
    with pytest.raises(UnmappedCode, match="explicitly unmatched"):
        map_code(GENDER, "N", policy=Unmapped.RAISE, field="Patient.gender")


def test_raise_message_does_not_carry_long_values() -> None:
    # Whatever a caller passes, the exception text carries at most a short prefix of it.
    long_value = "X" * 200
    with pytest.raises(UnmappedCode) as info:
        map_code(GENDER, long_value, policy=Unmapped.RAISE, field="Patient.gender")
    assert long_value not in str(info.value) and len(str(info.value)) < 200


def test_data_absent_uses_the_reason_the_map_suggests() -> None:
    out = map_code(GENDER, "N", policy=Unmapped.DATA_ABSENT, field="Patient.gender", absent_reason="unknown")
    assert isinstance(out, MappedAbsent)
    assert out.reason == "not-applicable" and out.explicitly_unmatched
    assert out.source == Coding(system=v2_table_system("0001"), code="N", display="Not applicable")
    assert out.reason_coding == Coding(
        system=s.DATA_ABSENT_REASON, code="not-applicable", display="Not Applicable"
    )
    assert out.comment


def test_data_absent_falls_back_to_the_callers_reason() -> None:
    out = map_code(GENDER, "Z", policy=Unmapped.DATA_ABSENT, field="Patient.gender", absent_reason="error")
    assert isinstance(out, MappedAbsent)
    assert (out.reason, out.explicitly_unmatched) == ("error", False)
    assert out.source == Coding(system=v2_table_system("0001"), code="Z")
    assert out.concept_map_id == GENDER


def test_data_absent_reason_must_be_a_real_code() -> None:
    with pytest.raises(ValueError, match="data-absent-reason"):
        map_code(GENDER, "Z", policy=Unmapped.DATA_ABSENT, field="Patient.gender", absent_reason="invalid")


def test_keep_source_carries_the_original_code_and_no_target() -> None:
    out = map_code(CLASS, "R", policy=Unmapped.KEEP_SOURCE, field="Encounter.class")
    assert isinstance(out, KeptSource)
    assert out.source == Coding(system=v2_table_system("0004"), code="R", display="Recurring patient")
    assert out.explicitly_unmatched and out.comment
    assert not hasattr(out, "target")
    local = map_code(CLASS, "NH", policy=Unmapped.KEEP_SOURCE, field="Encounter.class")
    assert isinstance(local, KeptSource) and not local.explicitly_unmatched
    assert local.source == Coding(system=v2_table_system("0004"), code="NH")


def test_source_system_can_be_given() -> None:
    out = map_code(GENDER, "Z", policy=Unmapped.KEEP_SOURCE, field="f", system=v2_table_system("0001"))
    assert isinstance(out, KeptSource) and out.source.system == v2_table_system("0001")
    # A system the map does not translate from is not silently accepted as a match.
    other = map_code(GENDER, "M", policy=Unmapped.KEEP_SOURCE, field="f", system=s.SNOMED_CT)
    assert isinstance(other, KeptSource) and other.source == Coding(system=s.SNOMED_CT, code="M")


def test_two_target_systems_need_a_choice() -> None:
    with pytest.raises(AmbiguousMapping) as info:
        map_code(LAB, "ALB", policy=Unmapped.KEEP_SOURCE, field="Observation.code")
    assert info.value.concept_map_id == LAB
    loinc = map_code(LAB, "ALB", policy=Unmapped.KEEP_SOURCE, field="Observation.code", target_system=s.LOINC)
    assert isinstance(loinc, MappedCode) and loinc.target.code == "1751-7"


def test_empty_code_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="empty code"):
        map_code(GENDER, " ", policy=Unmapped.DATA_ABSENT, field="Patient.gender")


def test_unknown_map_is_not_an_unmapped_code() -> None:
    with pytest.raises(UnknownConceptMap):
        map_code("no-such-map", "M", policy=Unmapped.DATA_ABSENT, field="Patient.gender")


def test_map_field_uses_the_declared_policy() -> None:
    assert field_policy("Patient.gender").unmapped is Unmapped.DATA_ABSENT
    gender = map_field("Patient.gender", "X")
    assert isinstance(gender, MappedAbsent) and gender.reason == field_policy("Patient.gender").absent_reason
    encounter = map_field("Encounter.class", "B")
    assert isinstance(encounter, KeptSource)
    with pytest.raises(UnmappedCode):
        map_field("Observation.status", "NOT_EXPECTED")
    status = map_field("Observation.status", "F")
    assert isinstance(status, MappedCode) and status.target == Coding(
        system=s.OBSERVATION_STATUS, code="final", display="Final"
    )
    lab = map_field("Observation.code", "ALB")  # the declared target system resolves the two-system map
    assert isinstance(lab, MappedCode) and lab.target.system == s.LOINC


def test_unknown_field_policy() -> None:
    with pytest.raises(UnknownFieldPolicy):
        map_field("Patient.shoeSize", "M")


def test_pds_verification_status_converts_to_the_uk_core_system() -> None:
    out = map_field("Patient.identifier.nhsNumberVerificationStatus", "01")
    assert isinstance(out, MappedCode)
    assert out.target == Coding(
        system=s.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND, code="01", display="Number present and verified"
    )
    assert out.source.system == s.NHS_NUMBER_VERIFICATION_STATUS_PDS
    assert out.equivalence is Equivalence.EQUAL
