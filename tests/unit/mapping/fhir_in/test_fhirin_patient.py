"""FHIR Patient (UK Core / PDS) -> canonical Patient."""

from __future__ import annotations

from typing import Any

import pytest

from shared.canonical.model import DataAbsent, DataAbsentReason, Sensitivity
from shared.mapping.errors import InvalidValue, MappingError, MissingRequiredField
from shared.mapping.fhir_in import patient_from_fhir
from shared.terminology import systems
from tests.unit.mapping.fhir_in.fhirin_helpers import (
    NHS_BAD,
    NHS_OK,
    NHS_OK_2,
    pds_patient,
    sources,
    uncovered_leaves,
)

ENGLAND = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"


def test_pds_patient_maps_every_element_it_can_carry() -> None:
    mapped = patient_from_fhir(pds_patient())
    p = mapped.value
    assert p.nhs_number is not None
    assert (p.nhs_number.value, p.nhs_number.verification_status) == (NHS_OK, "01")
    assert [(i.system, i.value) for i in p.identifiers] == [("https://trust.example.nhs.uk/Id/mrn", "MRN123")]
    first, maiden = p.names
    assert (first.family, first.given, first.prefix, first.suffix, first.use) == (
        "Smith",
        ("Jane", "Anne"),
        ("Mrs",),
        ("MBE",),
        "usual",
    )
    assert first.period is not None and first.period.start is not None and first.period.end is not None
    assert first.period.start.value.date().isoformat() == "2020-01-01"
    assert first.period.start.precision == "day"
    assert maiden.use == "maiden" and maiden.family == "Jones"
    assert p.gender == "female"
    assert p.birth_date is not None and p.birth_date.iso() == "2010-10-22"
    assert not isinstance(p.deceased, bool) and p.deceased is not None
    assert p.deceased.value.isoformat() == "2020-10-22T10:30:00+01:00"
    assert p.general_practitioner is not None and p.general_practitioner.ods_code == "Y12345"
    assert [(t.system, t.value, t.use) for t in p.telecom] == [
        ("phone", "01632960587", "home"),
        ("email", "jane.smith@example.com", "work"),
    ]  # the value-less telecom carries nothing
    assert len(p.addresses) == 1  # the text-only address has no canonical element to carry
    a = p.addresses[0]
    assert (a.lines, a.city, a.district, a.postal_code, a.use) == (
        ("1 Trevelyan Square", "Boar Lane", "City Centre"),
        "Leeds",
        "West Yorkshire",
        "LS1 6AE",
        "home",
    )
    assert p.ethnicity is not None and p.ethnicity.codings[0].code == "A"  # type: ignore[union-attr]
    assert p.marital_status is not None
    assert p.sensitivity is Sensitivity.NORMAL


def test_lineage_names_fhir_source_and_canonical_target() -> None:
    mapped = patient_from_fhir(pds_patient(), full_url="urn:uuid:abc")
    assert sources(mapped.lineage, "patient.names[0].given[0]") == {"Patient.name[0].given[0]"}
    assert sources(mapped.lineage, "patient.names[0].given[1]") == {"Patient.name[0].given[1]"}
    assert sources(mapped.lineage, "patient.nhs_number.value") == {"Patient.identifier[0].value"}
    assert sources(mapped.lineage, "patient.addresses[0].postal_code") == {"Patient.address[0].postalCode"}
    assert sources(mapped.lineage, "patient.general_practitioner.ods_code") == {
        "Patient.generalPractitioner[0].identifier.value"
    }
    assert {e.resource for e in mapped.lineage} == {"urn:uuid:abc"}


def test_every_populated_canonical_leaf_has_lineage() -> None:
    mapped = patient_from_fhir(pds_patient())
    assert uncovered_leaves(mapped.value, "patient", mapped.lineage, ignore=set()) == []


def test_lineage_can_be_switched_off() -> None:
    assert patient_from_fhir(pds_patient(), lineage=False).lineage == ()


@pytest.mark.parametrize("system", [systems.NHS_NUMBER_VERIFICATION_STATUS_PDS, ENGLAND])
def test_verification_status_accepted_from_both_code_systems(system: str) -> None:
    res = pds_patient()
    res["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0].update(system=system, code="02")
    p = patient_from_fhir(res).value
    assert p.nhs_number is not None and p.nhs_number.verification_status == "02"


def test_unknown_verification_code_is_a_typed_error() -> None:
    res = pds_patient()
    res["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = "09"
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient.identifier[0].extension[0].valueCodeableConcept.coding[0].code"
    assert err.value.error_code == "103"


def test_verification_status_in_an_unknown_code_system_is_rejected() -> None:
    res = pds_patient()
    res["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["system"] = "urn:other"
    with pytest.raises(InvalidValue):
        patient_from_fhir(res)


def test_nhs_number_failing_modulus_11_names_the_element_not_the_value() -> None:
    res = pds_patient()
    res["identifier"][0]["value"] = NHS_BAD
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient.identifier[0].value"
    assert NHS_BAD not in str(err.value)
    assert isinstance(err.value, MappingError)


def test_nhs_number_with_presentation_spaces_is_normalised() -> None:
    res = pds_patient()
    res["identifier"][0]["value"] = "943 476 5919"
    p = patient_from_fhir(res).value
    assert p.nhs_number is not None and p.nhs_number.value == NHS_OK


def test_two_different_nhs_numbers_are_refused() -> None:
    res = pds_patient()
    res["identifier"].append({"system": systems.NHS_NUMBER, "value": NHS_OK_2})
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient.identifier[2].value"
    assert NHS_OK_2 not in str(err.value)


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], Sensitivity.NORMAL),
        (["U"], Sensitivity.NORMAL),
        (["R"], Sensitivity.RESTRICTED),
        (["V"], Sensitivity.VERY_RESTRICTED),
        (["U", "V", "R"], Sensitivity.VERY_RESTRICTED),
    ],
)
def test_confidentiality_label_sets_sensitivity(codes: list[str], expected: Sensitivity) -> None:
    res = pds_patient()
    res["meta"]["security"] = [{"system": systems.V3_CONFIDENTIALITY, "code": c} for c in codes]
    mapped = patient_from_fhir(res)
    assert mapped.value.sensitivity is expected
    assert any(e.target == "patient.sensitivity" for e in mapped.lineage)


def test_missing_meta_is_normal() -> None:
    res = pds_patient()
    del res["meta"]
    assert patient_from_fhir(res).value.sensitivity is Sensitivity.NORMAL


def test_confidentiality_code_outside_the_pds_value_set_is_an_error() -> None:
    res = pds_patient()
    res["meta"]["security"] = [{"system": systems.V3_CONFIDENTIALITY, "code": "N"}]
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient.meta.security[0].code"


def test_security_labels_in_other_systems_are_ignored() -> None:
    res = pds_patient()
    res["meta"]["security"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"}
    ]
    assert patient_from_fhir(res).value.sensitivity is Sensitivity.NORMAL


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(gender="F"), "Patient.gender"),
        (lambda r: r["name"][0].update(use="legal"), "Patient.name[0].use"),
        (lambda r: r["address"][0].update(use="holiday"), "Patient.address[0].use"),
        (lambda r: r["telecom"][0].update(system="telex"), "Patient.telecom[0].system"),
        (lambda r: r["telecom"][0].update(use="office"), "Patient.telecom[0].use"),
    ],
)
def test_codes_outside_required_value_sets_are_typed_errors(mutate: Any, field: str) -> None:
    res = pds_patient()
    mutate(res)
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert err.value.field == field
    assert err.value.error_code == "103"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(birthDate="22/10/2010"), "Patient.birthDate"),
        (lambda r: r.update(birthDate="2010-02-30"), "Patient.birthDate"),
        (lambda r: r.update(deceasedDateTime="yesterday"), "Patient.deceasedDateTime"),
        (lambda r: r["name"][0].update(given="Jane"), "Patient.name[0].given"),
        (lambda r: r["name"][0]["period"].update(start="2026-01-01"), "Patient.name[0].period.end"),
        (lambda r: r.update(deceasedBoolean=True), "Patient.deceased[x]"),
        (lambda r: r.update(name={"family": "x"}), "Patient.name"),
    ],
)
def test_malformed_elements_are_typed_errors_naming_the_element(mutate: Any, field: str) -> None:
    res = pds_patient()
    mutate(res)
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert err.value.field == field


def test_partial_birth_date_keeps_its_precision() -> None:
    res = pds_patient()
    res["birthDate"] = "1970-06"
    p = patient_from_fhir(res).value
    assert p.birth_date is not None and (p.birth_date.year, p.birth_date.month, p.birth_date.day) == (
        1970,
        6,
        None,
    )


def test_patient_without_any_identifier_is_refused() -> None:
    res = pds_patient()
    res["identifier"] = [{"system": "urn:x", "use": "old"}]  # no value: identifies nothing
    with pytest.raises(MissingRequiredField) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient.identifier"


def test_local_identifier_needs_a_system() -> None:
    res = pds_patient()
    res["identifier"][1] = {"value": "MRN123"}
    with pytest.raises(MissingRequiredField) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient.identifier[1].system"


def test_identifier_type_and_assigner_are_kept() -> None:
    res = pds_patient()
    res["identifier"][1].update(
        type={"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "MR"}]},
        assigner={"identifier": {"system": systems.ODS_ORGANIZATION_CODE, "value": "RX1"}},
    )
    ident = patient_from_fhir(res).value.identifiers[0]
    assert (ident.type, ident.assigner) == ("MR", "RX1")


def test_not_a_patient_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir({"resourceType": "Person", "identifier": []})
    assert err.value.field == "resourceType"


def test_deceased_boolean() -> None:
    res = pds_patient()
    del res["deceasedDateTime"]
    res["deceasedBoolean"] = False
    assert patient_from_fhir(res).value.deceased is False


def test_merge_link_by_logical_identifier() -> None:
    res = pds_patient()
    res["link"] = [
        {
            "type": "replaces",
            "other": {"identifier": {"system": "https://trust.example.nhs.uk/Id/mrn", "value": "OLD1"}},
        }
    ]
    p = patient_from_fhir(res).value
    assert [(link.kind, link.other.value) for link in p.links] == [("replaces", "OLD1")]


def test_merge_link_resolved_from_context_uses_the_nhs_number() -> None:
    res = pds_patient()
    other = pds_patient()
    other["identifier"] = [{"system": systems.NHS_NUMBER, "value": NHS_OK_2}]
    res["link"] = [{"type": "replaced-by", "other": {"reference": "Patient/other"}}]
    p = patient_from_fhir(res, context={"Patient/other": other}).value
    assert p.links[0].other.system == systems.NHS_NUMBER and p.links[0].other.value == NHS_OK_2


def test_unresolvable_merge_link_is_refused_but_a_seealso_link_is_not_carried() -> None:
    res = pds_patient()
    res["link"] = [{"type": "replaces", "other": {"reference": "Patient/nowhere"}}]
    with pytest.raises(MissingRequiredField) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient.link[0].other.identifier"
    res["link"] = [{"type": "seealso", "other": {"reference": "RelatedPerson/mum"}}]
    assert patient_from_fhir(res).value.links == ()


def test_merge_link_with_invalid_nhs_number_is_refused() -> None:
    res = pds_patient()
    res["link"] = [
        {"type": "replaces", "other": {"identifier": {"system": systems.NHS_NUMBER, "value": NHS_BAD}}}
    ]
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient.link[0].other.identifier.value"
    assert NHS_BAD not in str(err.value)


def test_gp_reference_resolved_from_context() -> None:
    res = pds_patient()
    res["generalPractitioner"] = [{"reference": "Organization/gp"}]
    org = {
        "resourceType": "Organization",
        "identifier": [{"system": systems.ODS_ORGANIZATION_CODE, "value": "B82005"}],
        "name": "Example Surgery",
    }
    mapped = patient_from_fhir(res, context={"Organization/gp": org})
    gp = mapped.value.general_practitioner
    assert gp is not None and (gp.ods_code, gp.name) == ("B82005", "Example Surgery")
    assert sources(mapped.lineage, "patient.general_practitioner.ods_code") == {
        "Patient.generalPractitioner[0].resolve().identifier[0].value"
    }


def test_error_text_never_contains_patient_values() -> None:
    res = pds_patient()
    res["name"][0]["given"] = ["Jane", ""]
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert "Jane" not in str(err.value) and "Smith" not in str(err.value)


def test_gender_data_absent_extension() -> None:
    res = pds_patient()
    del res["gender"]
    res["_gender"] = {"extension": [{"url": systems.EXT_DATA_ABSENT_REASON, "valueCode": "asked-unknown"}]}
    mapped = patient_from_fhir(res)
    assert isinstance(mapped.value.gender, DataAbsent)
    assert mapped.value.gender.reason is DataAbsentReason.ASKED_UNKNOWN
    res["_gender"]["extension"][0]["valueCode"] = "forgot"
    with pytest.raises(InvalidValue) as err:
        patient_from_fhir(res)
    assert err.value.field == "Patient._gender.extension[0].valueCode"
