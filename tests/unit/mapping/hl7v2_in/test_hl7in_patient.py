"""PID / PD1 -> Patient: NHS number rules, identifier systems, names, addresses, coded fields and policies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.canonical.model import (
    Address,
    ClinicalDateTime,
    Concept,
    ContactPoint,
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
    assert patient.nhs_number.verification_status is None  # no PID-32 status
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


def test_pid_2_and_pid_4_are_further_local_identifiers() -> None:
    patient = patient_of(
        {2: "EXT1^^^RRV^PI", 3: f"{NHS}^^^NHS^NH~RRV1^^^RRV^MR", 4: "ALT1^^^OTHER~RRV1^^^RRV^MR"}
    )
    assert [(i.system, i.value, i.type) for i in patient.identifiers] == [
        ("urn:tie:authority:RRV", "RRV1", "MR"),  # PID-3 first: it is the patient key without an NHS number
        ("urn:tie:authority:RRV", "EXT1", "PI"),
        ("urn:tie:authority:OTHER", "ALT1", None),  # PID-4's repeat of RRV1 is not kept twice
    ]
    only_pid_2 = patient_of({2: "EXT1^^^RRV", 3: ""})
    assert [i.value for i in only_pid_2.identifiers] == ["EXT1"]
    # An NHS number in PID-4 is the NHS number (it must agree with PID-3's), never a local identifier.
    pid_4_nhs = patient_of({3: "RRV1^^^RRV", 4: f"{NHS}^^^NHS^NH"})
    assert pid_4_nhs.nhs_number is not None and [i.value for i in pid_4_nhs.identifiers] == ["RRV1"]
    with pytest.raises(InvalidValue) as err:
        map_bytes(adt("A28", pid={3: f"{NHS}^^^NHS^NH", 4: f"{NHS_2}^^^NHS^NH"}))
    assert err.value.field == "PID-4"


def test_pid_19_ssn_and_pid_20_driving_licence_are_not_identifiers() -> None:
    patient = patient_of({3: "RRV1^^^RRV", 19: "123-45-6789", 20: "DLN-123^US^20010123"})
    assert [i.value for i in patient.identifiers] == ["RRV1"] and patient.nhs_number is None


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
    assert second.family == "JONES" and second.use == "maiden"  # XPN.7 M through v2-0200
    assert len(patient.names) == 2  # the third repetition has no name parts


@pytest.mark.parametrize(
    ("name_type", "use"),
    [("L", "official"), ("D", "usual"), ("N", "nickname"), ("BAD", "old"), ("A", None), ("LOCAL", None)],
)
def test_name_type_through_v2_0200(name_type: str, use: str | None) -> None:
    (name,) = patient_of({5: f"SMITH^JOHN^^^^^{name_type}"}).names
    # alias (no FHIR name-use) and a local code leave use empty: the name is kept, nothing is defaulted
    assert (name.family, name.use) == ("SMITH", use)


def test_unmapped_name_type_raises_under_strict() -> None:
    with pytest.raises(UnmappedSourceCode) as err:
        map_bytes(adt("A28", pid={5: "SMITH^JOHN^^^^^A"}), strict=True)
    assert (err.value.field, err.value.concept_map_id) == ("PID-5[1].7", "v2-0200-to-name-use")


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
        use="home",  # XAD.7 H through v2-0190 (use group); the type stays empty
    )


@pytest.mark.parametrize(
    ("xad1", "line"),
    [
        ("1000&Hospital Lane", "1000 Hospital Lane"),  # SAD.1 number, SAD.2 street name: both kept
        ("12 High Street&High Street&12", "12 High Street"),  # SAD.2/3 are parts of SAD.1: not repeated
        ("&High Street&12", "12 High Street"),  # no SAD.1: number then street (UK order)
        ("Flat 3&High Street&12", "Flat 3 High Street 12"),  # parts not in SAD.1 are kept
        ("1 HIGH STREET", "1 HIGH STREET"),
    ],
)
def test_street_line_keeps_every_sad_component(xad1: str, line: str) -> None:
    (address,) = patient_of({11: f"{xad1}^Ste. 123^Ann Arbor^^99999"}).addresses
    assert address.lines == (line, "Ste. 123")


@pytest.mark.parametrize(
    ("code", "use", "kind"),
    [
        ("H", "home", None),
        ("M", None, "postal"),
        ("B", "work", None),
        ("N", None, None),
        ("HOME", None, None),
    ],
)
def test_address_type_through_v2_0190(code: str, use: str | None, kind: str | None) -> None:
    (address,) = patient_of({11: f"1 HIGH STREET^^LONDON^^NW1 2BU^GBR^{code}"}).addresses
    assert (address.use, address.type) == (use, kind)


def test_xad_8_is_not_an_address_line() -> None:
    (address,) = patient_of({11: "1 HIGH STREET^^LONDON^^NW1 2BU^GBR^H^MSA CODE"}).addresses
    assert address.lines == ("1 HIGH STREET",)


def test_telecom_home_and_business() -> None:
    patient = patient_of(
        {
            13: "020 7946 0000^PRN^PH~07700900123^ORN^CP~^NET^Internet^a.patient@example.org~01130000000",
            14: "01134960999^WPN^PH~^^^^44^113^4960000^22",
        }
    )
    assert patient.telecom == (
        ContactPoint(system="phone", value="020 7946 0000", use="home", equipment_type="PH", use_code="PRN"),
        # CP: a mobile, whatever XTN.2 (the codes as sent are kept for an HL7 v2 write-back)
        ContactPoint(system="phone", value="07700900123", use="mobile", equipment_type="CP", use_code="ORN"),
        # NET: no FHIR use
        ContactPoint(
            system="email", value="a.patient@example.org", equipment_type="Internet", use_code="NET"
        ),
        ContactPoint(system="phone", value="01130000000", use="home"),  # bare number in PID-13: home phone
        ContactPoint(system="phone", value="01134960999", use="work", equipment_type="PH", use_code="WPN"),
        ContactPoint(system="phone", value="44 113 4960000 ext. 22", use="work"),  # XTN.5-8
    )


def test_telecom_without_equipment_type_holding_an_email_address() -> None:
    (contact,) = patient_of({13: "a.patient@example.org"}).telecom
    assert contact == ContactPoint(system="email", value="a.patient@example.org", use="home")


def test_telecom_with_a_local_equipment_type_raises() -> None:
    with pytest.raises(UnmappedSourceCode) as err:
        map_bytes(adt("A28", pid={13: "07700900123^PRN^MOBILE"}))
    assert (err.value.field, err.value.concept_map_id) == ("PID-13[1].3", "v2-0202-to-contact-point-system")
    assert "07700900123" not in str(err.value)


@pytest.mark.parametrize(("code", "status"), [("NSTS01", "01"), ("NSTS03", "03"), ("NSTS08", "08")])
def test_nhs_number_status_from_pid_32(code: str, status: str) -> None:
    patient = patient_of({32: code})
    assert patient.nhs_number is not None and patient.nhs_number.verification_status == status


def test_pid_32_codes_that_are_not_an_nhs_number_status() -> None:
    patient = patient_of({32: "AL~NSTS02"})  # AL: the name is an alias - says nothing about the number
    assert patient.nhs_number is not None and patient.nhs_number.verification_status == "02"
    only_other = patient_of({32: "US"})
    assert only_other.nhs_number is not None and only_other.nhs_number.verification_status is None
    with pytest.raises(UnmappedSourceCode) as err:
        map_bytes(adt("A28", pid={32: "NSTS1"}))  # not listed: a wrong status would mislead
    assert err.value.field == "PID-32[1]"
    with pytest.raises(InvalidValue) as err2:
        map_bytes(adt("A28", pid={32: "NSTS01~NSTS03"}))
    assert err2.value.field == "PID-32"
    no_number = patient_of({3: "RRV1^^^RRV^MR", 32: "NSTS07"})  # no NHS number to carry a status
    assert no_number.nhs_number is None


def test_death() -> None:
    dead = patient_of({29: "20260101093000", 30: "Y"}).deceased
    assert dead == ClinicalDateTime(value=datetime(2026, 1, 1, 9, 30, tzinfo=UTC), precision="second")
    assert patient_of({30: "Y"}).deceased is True
    assert patient_of({30: "N"}).deceased is False
    assert patient_of({}).deceased is None
    with pytest.raises(InvalidValue) as err:
        map_bytes(adt("A28", pid={30: "Q"}))
    assert (err.value.field, err.value.error_code) == ("PID-30", "103")


# PID-16 / PID-22 as NHS England feeds fill them (NHS Data Dictionary codes) -> the UK Core (England) code
# systems through the hl7uk-* concept maps; a code no map knows is kept as sent with userSelected=false.
_ETH = systems.ETHNIC_CATEGORY_ENGLAND
_MAR = systems.PERSON_MARITAL_STATUS_ENGLAND
_V2_0002 = systems.v2_table_system("0002")
_UK_DEMOGRAPHICS = [
    # (PID field, value sent, expected codings (system, code, user_selected), expected text)
    (22, "A^White - British^NHSETHNIC", [(_ETH, "A", None)], "White - British"),
    (22, "N", [(_ETH, "N", None)], None),  # NHS 'Black or Black British - African', not v2-0189 N
    (22, "99^^NHSETH", [(_ETH, "99", None)], None),
    (22, f"R^^{_ETH}", [(_ETH, "R", None)], None),  # the UK Core system named as a URI
    (22, "Q^Local^LOCALETH", [("urn:tie:codesystem:LOCALETH", "Q", False)], "Local"),
    # not a code of HL7 table 0189: the sender's own code, under its local code system (MSH-4 RRV)
    (22, "ZZ", [("urn:tie:codesystem:RRV:0189", "ZZ", False)], None),
    (16, "M", [(_MAR, "M", None)], None),
    (16, "P", [(_MAR, "P", None)], None),  # NHS 'Separated'
    # UK Core's value set expects single as v3-MaritalStatus S and not known as v3-NullFlavor UNK
    (16, "S", [(_V2_0002, "S", None), (systems.V3_MARITAL_STATUS, "S", None)], None),
    (16, "9", [("urn:tie:codesystem:RRV:0002", "9", None), (systems.V3_NULL_FLAVOR, "UNK", None)], None),
    (16, "U", [(_V2_0002, "U", None), (systems.V3_NULL_FLAVOR, "UNK", None)], None),  # HL7 'unknown'
    (16, "C", [(_V2_0002, "C", False)], None),  # HL7 common law: no NHS code
]


@pytest.mark.parametrize(("n", "sent", "codings", "text"), _UK_DEMOGRAPHICS)
def test_marital_status_and_ethnicity_to_uk_core(
    n: int, sent: str, codings: list[tuple[str, str, bool | None]], text: str | None
) -> None:
    patient = patient_of({16: "", 22: "", n: sent})
    value = patient.ethnicity if n == 22 else patient.marital_status
    assert isinstance(value, Concept)
    assert [(c.system, c.code, c.user_selected) for c in value.codings] == codings
    assert value.text == text


def test_ethnicity_display_is_the_uk_core_one_when_the_sender_gives_none() -> None:
    patient = patient_of({22: "A"})
    assert isinstance(patient.ethnicity, Concept)
    assert patient.ethnicity.codings[0].display == "White - British"


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
