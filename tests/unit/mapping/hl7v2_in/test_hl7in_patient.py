"""PID / PD1 -> Patient: NHS number rules, identifier systems, names, addresses, coded fields and policies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.canonical.model import (
    Address,
    ClinicalDateTime,
    Coding,
    Concept,
    DataAbsent,
    DataAbsentReason,
    HumanName,
    Identifier,
    Organization,
    PartialDate,
    Patient,
    Period,
    Sensitivity,
)
from shared.mapping.errors import InvalidValue, MissingRequiredField, UnmappedSourceCode
from shared.mapping.hl7v2_in import map_bytes
from shared.terminology import UnmappedCode, systems
from tests.unit.mapping.hl7v2_in.hl7in_samples import NHS, NHS_2, NHS_BAD, adt, event, message, msh, seg


def patient_of(pid: dict[int, str], *, msh_fields: dict[str, str] | None = None) -> Patient:
    return event(adt("A28", pid=pid, msh_fields=msh_fields)).patient


@pytest.mark.parametrize(
    "cx",
    [
        f"{NHS}^^^NHS^NH",
        f"{NHS}^^^NHS^HN",  # UCLH Epic
        f"{NHS}^^^NHS",  # authority, no type
        f"{NHS}^^^^NH",  # type, no authority
        f"{NHS}^^^&2.16.840.1.113883.2.1.4.1&ISO^NH",  # the NHS number OID
        "943 476 5919^^^NHS^NH",  # presentation spacing
    ],
)
def test_nhs_number_declarations(cx: str) -> None:
    patient = patient_of({3: f"{cx}~RRV1^^^RRV^MR"})
    assert patient.nhs_number is not None and patient.nhs_number.value == NHS
    assert patient.nhs_number.verification_status is None  # no standard HL7 v2 field
    assert [i.value for i in patient.identifiers] == ["RRV1"]  # the NHS repetition is not a local id


def test_nhs_number_failing_modulus_11_is_invalid_and_not_echoed() -> None:
    with pytest.raises(InvalidValue) as err:
        map_bytes(adt("A28", pid={3: f"{NHS_BAD}^^^NHS^NH~RRV1^^^RRV^MR"}))
    assert (err.value.field, err.value.error_code) == ("PID-3", "102")
    assert NHS_BAD not in str(err.value) and NHS_BAD not in repr(err.value.args)


def test_two_different_nhs_numbers_are_an_error() -> None:
    with pytest.raises(InvalidValue) as err:
        map_bytes(adt("A28", pid={3: f"{NHS}^^^NHS^NH~{NHS_2}^^^NHS^NH"}))
    assert err.value.field == "PID-3"
    # The same number twice is fine.
    assert patient_of({3: f"{NHS}^^^NHS^NH~{NHS}^^^NHS^NH"}).nhs_number is not None


def test_repeated_digit_placeholder_is_not_a_patients_nhs_number() -> None:
    patient = patient_of({3: "9999999999^^^NHS^HN~40800000^^^MRENTR^MEDREC"})
    assert patient.nhs_number is None
    assert [(i.system, i.value) for i in patient.identifiers] == [("urn:tie:authority:MRENTR", "40800000")]
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(adt("A28", pid={3: "9999999999^^^NHS^HN"}))
    assert err.value.field == "PID-3"


def test_pid_19_and_pid_2_as_nhs_number_sources() -> None:
    assert patient_of({3: "RRV1^^^RRV", 19: "944 930 5552"}).nhs_number.value == NHS_2  # type: ignore[union-attr]
    ssn_like = patient_of({3: "RRV1^^^RRV", 19: "1234567890"})  # fails Modulus 11: an SSN-style field
    assert ssn_like.nhs_number is None
    assert patient_of({2: f"{NHS_2}^^^NHS^NH", 3: "RRV1^^^RRV"}).nhs_number.value == NHS_2  # type: ignore[union-attr]
    # PID-3 wins over PID-19.
    assert patient_of({3: f"{NHS}^^^NHS^NH", 19: NHS_2}).nhs_number.value == NHS  # type: ignore[union-attr]


def test_no_identifier_at_all() -> None:
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(adt("A28", pid={3: ""}))
    assert (err.value.field, err.value.error_code) == ("PID-3", "101")


@pytest.mark.parametrize(
    ("cx", "system"),
    [
        ("A1^^^RRV^MR", "urn:tie:authority:RRV"),
        ("A1^^^IA PHIMS Stage&2.16.1&ISO^PI", "urn:tie:authority:IA%20PHIMS%20Stage"),
        ("A1^^^&2.16.840.1.113883.19&ISO^MR", "urn:oid:2.16.840.1.113883.19"),
        ("A1^^^ODS^XX", systems.ODS_ORGANIZATION_CODE),
        ("A1^^^^MR", "urn:tie:authority:RRV"),  # no authority: the sending facility (MSH-4)
    ],
)
def test_local_identifier_systems(cx: str, system: str) -> None:
    (ident,) = patient_of({3: cx}).identifiers
    assert (ident.system, ident.value) == (system, "A1")


def test_identifier_system_from_msh_3_when_msh_4_empty() -> None:
    (ident,) = patient_of({3: "A1"}, msh_fields={"f4": ""}).identifiers
    assert ident == Identifier(system="urn:tie:authority:PAS", value="A1")


def test_names_all_repetitions() -> None:
    patient = patient_of(
        {5: "SMITH^JOHN^PAUL DAVID^JR^MR^PHD^^^^^^20200101^20251231~JONES^JOHN^^^^^M~^^^^^^U"}
    )
    first, second = patient.names
    assert first == HumanName(
        family="SMITH",
        given=("JOHN", "PAUL", "DAVID"),
        prefix=("MR",),
        suffix=("JR", "PHD"),
        period=Period(
            start=ClinicalDateTime(value=datetime(2020, 1, 1, tzinfo=UTC), precision="day"),
            end=ClinicalDateTime(value=datetime(2025, 12, 31, tzinfo=UTC), precision="day"),
        ),
    )
    assert second.family == "JONES" and second.use is None  # name type: map pending, no default
    assert len(patient.names) == 2  # the third repetition has no name parts


def test_birth_date_partial_and_invalid() -> None:
    assert patient_of({7: "198005"}).birth_date == PartialDate(year=1980, month=5)
    assert patient_of({7: "198808181126+0215"}).birth_date == PartialDate(year=1988, month=8, day=18)
    with pytest.raises(InvalidValue) as err:
        map_bytes(adt("A28", pid={7: "19800231"}))
    assert err.value.field == "PID-7"


@pytest.mark.parametrize(
    ("code", "gender"), [("M", "male"), ("F", "female"), ("U", "unknown"), ("O", "other")]
)
def test_gender_through_concept_map(code: str, gender: str) -> None:
    assert patient_of({8: code}).gender == gender


def test_unknown_gender_code_is_data_absent_or_raises_under_strict() -> None:
    gender = patient_of({8: "X"}).gender
    assert isinstance(gender, DataAbsent)
    assert gender.reason is DataAbsentReason.UNKNOWN
    assert gender.source is not None and (gender.source.system, gender.source.code) == (
        systems.V2_0001_ADMINISTRATIVE_SEX,
        "X",
    )
    not_applicable = patient_of({8: "N"}).gender
    assert isinstance(not_applicable, DataAbsent) and not_applicable.reason is DataAbsentReason.NOT_APPLICABLE
    with pytest.raises(UnmappedSourceCode) as err:
        map_bytes(adt("A28", pid={8: "X"}), strict=True)
    assert (err.value.field, err.value.error_code) == ("PID-8", "103")
    assert err.value.concept_map_id == "v2-0001-to-administrative-gender"
    assert isinstance(err.value.cause, UnmappedCode)  # terminology's error, kept but not chained
    assert err.value.__cause__ is None
    # strict does not change a code the map knows
    assert map_bytes(adt("A28", pid={8: "F"}), strict=True).value.patient.gender == "female"


def test_address_components() -> None:
    (address,) = patient_of({}).addresses
    assert address == Address(
        lines=("1 HIGH STREET", "FLAT 2"),
        city="LONDON",
        district="GREATER LONDON",
        postal_code="NW1 2BU",
        country="GBR",
    )  # type H: use/type pending their concept map, not defaulted


def test_pending_fields_are_not_mapped() -> None:
    patient = patient_of({13: "020 7946 0000^PRN^PH", 32: "NSTS01"})
    assert patient.telecom == ()
    assert patient.nhs_number is not None and patient.nhs_number.verification_status is None


def test_death() -> None:
    dead = patient_of({29: "20260101093000", 30: "Y"}).deceased
    assert dead == ClinicalDateTime(value=datetime(2026, 1, 1, 9, 30, tzinfo=UTC), precision="second")
    assert patient_of({30: "Y"}).deceased is True
    assert patient_of({30: "N"}).deceased is False
    assert patient_of({}).deceased is None
    with pytest.raises(InvalidValue) as err:
        map_bytes(adt("A28", pid={30: "Q"}))
    assert (err.value.field, err.value.error_code) == ("PID-30", "103")


def test_marital_status_and_ethnicity_kept_as_sent() -> None:
    patient = patient_of({16: "M", 22: "A^White - British^NHSETHNIC~B^Other^NHSETHNIC"})
    assert patient.marital_status == Concept(
        codings=(Coding(system=systems.v2_table_system("0002"), code="M"),)
    )
    assert isinstance(patient.ethnicity, Concept)
    (coding,) = patient.ethnicity.codings
    assert (coding.system, coding.code, coding.display) == (
        "urn:tie:codesystem:NHSETHNIC",
        "A",
        "White - British",
    )
    assert patient.ethnicity.text == "White - British"


def test_pd1_gp_practice_and_protection_indicator() -> None:
    raw = adt("A28", before_pv1=(seg("PD1", {3: "THE SURGERY^^Y01234", 12: "Y"}),))
    patient = event(raw).patient
    assert patient.general_practitioner == Organization(ods_code="Y01234", name="THE SURGERY")
    assert patient.sensitivity is Sensitivity.RESTRICTED
    v25 = event(adt("A28", before_pv1=(seg("PD1", {3: "^^^^^^^^^B82005", 12: "N"}),))).patient
    assert v25.general_practitioner == Organization(ods_code="B82005")
    assert v25.sensitivity is Sensitivity.NORMAL


def test_more_than_one_patient_is_refused() -> None:
    raw = message(
        msh("ADT^A28"), seg("EVN", {1: "A28"}), seg("PID", {3: "A1^^^RRV"}), seg("PID", {3: "A2^^^RRV"})
    )
    with pytest.raises(InvalidValue) as err:
        map_bytes(raw)
    assert err.value.field == "PID(2)"


def test_escaped_and_null_values() -> None:
    patient = patient_of({5: "O\\T\\BRIEN^MARY", 8: '""'})
    assert patient.names[0].family == "O&BRIEN"
    assert patient.gender is None  # HL7 null: no value, not a code
