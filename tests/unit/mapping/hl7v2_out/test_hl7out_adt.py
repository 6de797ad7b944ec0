"""canonical -> HL7 v2 ADT^A08."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.canonical.model import (
    Address,
    Coding,
    Concept,
    ContactPoint,
    DataAbsent,
    DataAbsentReason,
    EventKind,
    HumanName,
    Identifier,
    PartialDate,
    Period,
    Sensitivity,
)
from shared.hl7v2 import Message, parse_message
from shared.hl7v2.validation import validate
from shared.mapping.errors import MappingError
from shared.mapping.hl7v2_out import Hl7OutError, UnmappableCode, adt_a08, to_adt_a08, to_adt_a31
from shared.terminology import systems
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER, encounter, event, patient, segment_text, t


def a08(ev: object, **kw: object) -> Message:
    msg = to_adt_a08(ev, replace(HEADER, **kw))
    result = validate(msg)
    assert [i for i in result.issues if i.severity == "E"] == [], result.issues
    return parse_message(msg.encode())  # what the receiver reads


def test_header_event_and_segments() -> None:
    msg = a08(event())
    assert [s.name for s in msg.segments] == ["MSH", "EVN", "PID", "PD1", "PV1"]
    assert msg.get("MSH-9") == "ADT" and msg.get("MSH-9.2") == "A08" and msg.get("MSH-9.3") == "ADT_A01"
    assert msg.get("MSH-12") == "2.5.1" and msg.get("MSH-11") == "P"
    assert msg.get("MSH-7") == "20260701120000+0100"  # 11:00Z is 12:00 BST, offset explicit
    assert msg.get("EVN-1") == "A08" and msg.get("EVN-2") == "20260701101600+0100"


def test_nhs_number_and_local_identifiers_in_pid_3() -> None:
    msg = a08(event())
    assert segment_text(msg, "PID").split("|")[3] == "9434765919^^^NHS^NH~MRN123^^^RX1^MR"


@pytest.mark.parametrize(
    ("system", "cx4"),
    [
        ("urn:tie:authority:RX%201", "RX 1"),
        (systems.ODS_ORGANIZATION_CODE, "ODS"),
        ("urn:oid:1.2.826.0.1.285", "&1.2.826.0.1.285&ISO"),
        ("https://trust.example.nhs.uk/Id/mrn", "&https://trust.example.nhs.uk/Id/mrn&URI"),
    ],
)
def test_identifier_system_becomes_the_assigning_authority(system: str, cx4: str) -> None:
    p = patient(identifiers=(Identifier(system=system, value="X1"),))
    msg = a08(event(patient=p))
    assert msg.raw("PID-3[2].4") == cx4


def test_names_addresses_gender_birth_date_death() -> None:
    p = patient(
        names=(
            HumanName(
                family="Smith",
                given=("Jane", "Anne", "Marie"),
                prefix=("Mrs",),
                suffix=("MBE", "PhD", "QC", "Esq"),
                period=Period(start=t(2020, 1, 1, precision="day")),
            ),
        ),
        birth_date=PartialDate(year=1970, month=6),
        deceased=t(2026, 1, 15, 3, 0),
    )
    msg = a08(event(patient=p))
    assert (
        msg.get("PID-5.1") == "Smith" and msg.get("PID-5.2") == "Jane" and msg.get("PID-5.3") == "Anne Marie"
    )
    assert (msg.get("PID-5.4"), msg.get("PID-5.5"), msg.get("PID-5.6"), msg.get("PID-5.14")) == (
        "MBE",
        "Mrs",
        "PhD",
        "QC Esq",
    )
    assert msg.get("PID-5.12") == "20200101"
    assert msg.get("PID-7") == "197006"  # month precision kept
    assert msg.get("PID-8") == "F"
    assert msg.get("PID-11.1") == "1 Trevelyan Square" and msg.get("PID-11.5") == "LS1 6AE"
    assert msg.get("PID-29") == "20260115030000+0000"  # GMT in January
    assert msg.get("PID-30") == "Y"


def test_address_lines_beyond_two_are_kept_as_text_in_the_second() -> None:
    p = patient()
    addr = p.addresses[0].model_copy(update={"lines": ("1 High St", "Flat 2", "Chapel Allerton")})
    msg = a08(event(patient=p.model_copy(update={"addresses": (addr,)})))
    assert msg.get("PID-11.2") == "Flat 2, Chapel Allerton"


def test_delimiters_in_values_are_escaped() -> None:
    p = patient(names=(HumanName(family="O'Neil|Smith^Jr~X\\Y&Z", given=("Ann",)),))
    msg = to_adt_a08(event(patient=p), HEADER)
    er7 = msg.to_er7()
    assert "O'Neil\\F\\Smith\\S\\Jr\\R\\X\\E\\Y\\T\\Z" in er7
    assert parse_message(msg.encode()).get("PID-5.1") == "O'Neil|Smith^Jr~X\\Y&Z"
    assert not [i for i in validate(msg).issues if i.severity == "E"]


@pytest.mark.parametrize(
    ("gender", "code"), [("male", "M"), ("female", "F"), ("other", "O"), ("unknown", "U")]
)
def test_gender_is_reverse_translated(gender: str, code: str) -> None:
    assert a08(event(patient=patient(gender=gender))).get("PID-8") == code


def test_data_absent_gender_writes_its_table_code_or_nothing() -> None:
    table = systems.V2_0001_ADMINISTRATIVE_SEX
    not_applicable = DataAbsent(reason=DataAbsentReason.NOT_APPLICABLE, source=Coding(system=table, code="N"))
    assert a08(event(patient=patient(gender=not_applicable))).get("PID-8") == "N"
    # a code the table does not have is not written back (it would make the message invalid)
    junk = DataAbsent(reason=DataAbsentReason.UNKNOWN, source=Coding(system=table, code="X"))
    assert a08(event(patient=patient(gender=junk))).get("PID-8") is None
    bare = DataAbsent(reason=DataAbsentReason.ASKED_UNKNOWN)
    assert a08(event(patient=patient(gender=bare))).get("PID-8") is None


def test_unmappable_class_is_a_typed_error_not_a_default() -> None:
    enc = encounter(encounter_class=Concept(codings=(Coding(system=systems.V3_ACT_CODE, code="HH"),)))
    with pytest.raises(UnmappableCode) as err:
        to_adt_a08(event(encounter=enc), HEADER)
    assert err.value.field == "encounter.encounter_class"
    assert err.value.error_code == "103"
    assert isinstance(err.value, MappingError)


def test_class_from_v3_actcode_only_is_reverse_translated() -> None:
    enc = encounter(encounter_class=Concept(codings=(Coding(system=systems.V3_ACT_CODE, code="EMER"),)))
    assert a08(event(encounter=enc)).get("PV1-2") == "E"


def test_code_with_several_v2_candidates_is_refused() -> None:
    # v3 ActPriority EM <- v2-0007 E (equivalent) and A (narrower): the equivalent one wins
    enc = encounter(priority=Concept(codings=(Coding(system=systems.V3_ACT_PRIORITY, code="EM"),)))
    assert a08(event(encounter=enc)).get("PV1-4") == "E"
    # a SNOMED priority has no v2-0007 code at all
    enc = encounter(priority=Concept(codings=(Coding(system=systems.SNOMED_CT, code="394848005"),)))
    with pytest.raises(UnmappableCode) as err:
        to_adt_a08(event(encounter=enc), HEADER)
    assert err.value.field == "encounter.priority"


def test_table_fields_without_a_map_need_a_code_in_their_table() -> None:
    ok = encounter(
        service_type=Concept(codings=(Coding(system=systems.v2_table_system("0069"), code="MED"),))
    )
    assert a08(event(encounter=ok)).get("PV1-10") == "MED"
    bad = encounter(service_type=Concept(text="General medicine"))
    with pytest.raises(UnmappableCode) as err:
        to_adt_a08(event(encounter=bad), HEADER)
    assert err.value.field == "encounter.service_type"


def test_pv1_fields() -> None:
    msg = a08(event())
    assert msg.get("PV1-2") == "I"
    assert msg.raw("PV1-3") == "WARD7^R2^B4^RX101"
    assert msg.raw("PV1-7") == "C1234567^Who^Alan^^^Dr^^^GMC"
    assert msg.raw("PV1-19") == "V0001^^^RX1^VN"
    assert msg.get("PV1-44") == "20260701101500+0100"


def test_restriction_goes_in_pd1_12_and_very_restricted_is_refused() -> None:
    msg = a08(event(patient=patient(sensitivity=Sensitivity.RESTRICTED, general_practitioner=None)))
    assert msg.get("PD1-12") == "Y"
    with pytest.raises(UnmappableCode) as err:
        to_adt_a08(event(patient=patient(sensitivity=Sensitivity.VERY_RESTRICTED)), HEADER)
    assert err.value.field == "patient.sensitivity"


def test_no_pd1_without_gp_or_restriction() -> None:
    msg = a08(event(patient=patient(general_practitioner=None)))
    assert msg.segment("PD1") is None


def test_gp_ods_code_by_version() -> None:
    assert a08(event()).raw("PD1-3") == "Example Surgery^^^^^^^^^B82005"
    old = a08(event(), version="2.4")
    assert old.raw("PD1-3") == "Example Surgery^^B82005"
    assert old.get("MSH-9.3") == "ADT_A01"


def test_patient_only_event_has_pv1_class_not_applicable() -> None:
    msg = a08(event(EventKind.PATIENT_UPDATED, encounter=None))
    assert segment_text(msg, "PV1") == "PV1|1|N"


def test_control_id_is_deterministic_and_bounded() -> None:
    first = to_adt_a08(event(), HEADER).control_id
    assert first == to_adt_a08(event(), HEADER).control_id
    assert first is not None and len(first) <= 20
    assert to_adt_a08(event(), replace(HEADER, control_id="ABC")).control_id == "ABC"
    with pytest.raises(Hl7OutError):
        to_adt_a08(event(), replace(HEADER, control_id="X" * 21))


def test_control_id_names_the_carrying_message_not_only_the_content() -> None:
    """Same key and content carried by another inbound message (an event applied again after its
    cancellation) gets another control id; the same message redelivered keeps its own."""
    first = event()
    other = first.model_copy(
        update={"provenance": first.provenance.model_copy(update={"correlation_id": "another-message"})}
    )
    assert to_adt_a08(first, HEADER).control_id == to_adt_a08(first.model_copy(), HEADER).control_id
    assert to_adt_a08(other, HEADER).control_id != to_adt_a08(first, HEADER).control_id
    # A sender that reuses a correlation id for another message (its own MSH-10 differs) is still told
    # apart.
    reused = first.model_copy(
        update={"provenance": first.provenance.model_copy(update={"message_id": "ANOTHER-MSH10"})}
    )
    assert first.provenance.message_id != "ANOTHER-MSH10"
    assert to_adt_a08(reused, HEADER).control_id != to_adt_a08(first, HEADER).control_id


def test_naive_now_and_bad_version_are_refused() -> None:
    with pytest.raises(Hl7OutError):
        to_adt_a08(event(), replace(HEADER, now=datetime(2026, 1, 1)))
    with pytest.raises(Hl7OutError):
        to_adt_a08(event(), replace(HEADER, version="3.0"))


def test_times_in_winter_carry_gmt_offset() -> None:
    msg = a08(event(), now=datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    assert msg.get("MSH-7") == "20260115120000+0000"


def test_lineage_from_canonical_paths_to_hl7_fields() -> None:
    mapped = adt_a08(event(), HEADER)
    pairs = {(e.source, e.target) for e in mapped.lineage}
    assert ("patient.nhs_number.value", "PID-3[1].1") in pairs
    assert ("patient.names[0].family", "PID-5[1].1") in pairs
    assert ("encounter.period.start", "PV1-44") in pairs
    gender = next(e for e in mapped.lineage if e.target == "PID-8")
    assert gender.table == "v2-0001-to-administrative-gender" and gender.table_version
    assert to_adt_a08(event(), HEADER).to_er7() == mapped.value.to_er7()


def test_a31_for_a_patient_level_update() -> None:
    msg = to_adt_a31(event(EventKind.PATIENT_UPDATED, encounter=None), HEADER)
    assert not [i for i in validate(msg).issues if i.severity == "E"]
    read = parse_message(msg.encode())
    assert read.get("MSH-9.2") == "A31" and read.get("MSH-9.3") == "ADT_A05" and read.get("EVN-1") == "A31"
    assert [s.name for s in read.segments] == ["MSH", "EVN", "PID", "PD1", "PV1"]
    assert read.control_id != to_adt_a08(event(EventKind.PATIENT_UPDATED, encounter=None), HEADER).control_id


def test_name_address_and_telecom_types_are_reverse_translated() -> None:
    p = patient(
        names=(HumanName(family="Smith", given=("Jane",), use="official"), HumanName(family="X", use="temp")),
        addresses=(
            Address(lines=("1 High St",), city="Leeds", use="home"),
            Address(lines=("PO Box 9",), city="Leeds", type="postal"),
            Address(lines=("2 Low St",), city="York", type="physical"),  # no v2 code: left empty
        ),
        telecom=(
            ContactPoint(system="phone", value="0113 496 0000", use="home"),
            ContactPoint(system="phone", value="07700 900123", use="mobile"),
            ContactPoint(system="email", value="jane@example.org"),
            ContactPoint(system="phone", value="0113 496 0999", use="work"),
            ContactPoint(system="email", value="j@example.org", use="home"),  # FHIR: an email with a use
        ),
    )
    msg = a08(event(patient=p))
    assert (msg.get("PID-5.7"), msg.get("PID-5[2].7")) == ("L", "TEMP")
    assert (msg.get("PID-11.7"), msg.get("PID-11[2].7"), msg.get("PID-11[3].7")) == ("H", "M", None)
    pid = segment_text(msg, "PID").split("|")
    # a mobile is PRS^CP (table 0202 cellular phone), an email NET^Internet whatever its use (table 0201)
    assert pid[13] == (
        "0113 496 0000^PRN^PH~07700 900123^PRS^CP~^NET^Internet^jane@example.org~^NET^Internet^j@example.org"
    )
    assert pid[14] == "0113 496 0999^WPN^PH"  # the work number goes in the business phone field
    assert msg.get("PID-32") == "NSTS01"  # the helper's NHS number is verified (01)


def test_contact_point_system_with_no_single_v2_code_is_refused() -> None:
    p = patient(telecom=(ContactPoint(system="other", value="0113 496 0000"),))
    with pytest.raises(UnmappableCode) as err:
        to_adt_a08(event(patient=p), HEADER)
    assert (err.value.field, err.value.concept_map_id) == (
        "patient.telecom[0].system",
        "v2-0202-to-contact-point-system",
    )


@pytest.mark.parametrize(
    ("contact", "xtn"),
    [
        # what the source sent, as it sent it (XTN.3 / XTN.2), when it still reads as system / use
        (
            ContactPoint(
                system="other", value="0113 496 0000", use="home", equipment_type="TDD", use_code="PRN"
            ),
            "0113 496 0000^PRN^TDD",
        ),
        (ContactPoint(system="other", value="0113 496 0001", equipment_type="MD"), "0113 496 0001^^MD"),
        (
            ContactPoint(system="email", value="a@b.org", equipment_type="X.400", use_code="NET"),
            "^NET^X.400^a@b.org",
        ),
        # PRN^CP is a mobile (the equipment type fixes the use): written back as sent, not PRS^CP
        (
            ContactPoint(
                system="phone", value="07700 900123", use="mobile", equipment_type="CP", use_code="PRN"
            ),
            "07700 900123^PRN^CP",
        ),
        # the use changed since (FHIR work): the sent XTN.2 no longer says it -> v2-0201 backwards
        (
            ContactPoint(
                system="phone", value="0113 496 0002", use="work", equipment_type="PH", use_code="PRN"
            ),
            "0113 496 0002^WPN^PH",
        ),
        # the system changed since: the sent XTN.3 no longer says it -> v2-0202 backwards
        (
            ContactPoint(
                system="fax", value="0113 496 0003", use="home", equipment_type="PH", use_code="PRN"
            ),
            "0113 496 0003^PRN^FX",
        ),
    ],
)
def test_contact_point_keeps_the_equipment_type_and_use_the_source_sent(
    contact: ContactPoint, xtn: str
) -> None:
    msg = a08(event(patient=patient(telecom=(contact,))))
    pid = segment_text(msg, "PID").split("|")
    assert "|".join(pid[13:15]) in (xtn + "|", "|" + xtn)


def test_other_equipment_type_changed_since_is_refused_not_written() -> None:
    # an 'other' whose sent code reads as something else: no code is invented
    p = patient(telecom=(ContactPoint(system="other", value="0113 496 0000", equipment_type="PH"),))
    with pytest.raises(UnmappableCode):
        to_adt_a08(event(patient=p), HEADER)


@pytest.mark.parametrize(
    ("code", "pid16"),
    [("M", "M"), ("D", "D"), ("W", "W"), ("S", "S"), ("L", "P")],
)
def test_v3_marital_status_goes_back_to_pid_16_through_its_map(code: str, pid16: str) -> None:
    status = Concept(codings=(Coding(system=systems.V3_MARITAL_STATUS, code=code),))
    msg = to_adt_a31(
        event(EventKind.PATIENT_UPDATED, encounter=None, patient=patient(marital_status=status)), HEADER
    )
    assert parse_message(msg.encode()).get("PID-16") == pid16


@pytest.mark.parametrize("code", ["T", "A", "U", "C"])
def test_v3_marital_status_without_an_nhs_pid_16_code_is_refused(code: str) -> None:
    # HL7 0002 P / N mean domestic partner / annulled, but PID-16 is read with the NHS meaning: no guess
    status = Concept(codings=(Coding(system=systems.V3_MARITAL_STATUS, code=code),))
    ev = event(EventKind.PATIENT_UPDATED, encounter=None, patient=patient(marital_status=status))
    with pytest.raises(UnmappableCode) as err:
        to_adt_a31(ev, HEADER)
    assert (err.value.field, err.value.concept_map_id) == (
        "patient.marital_status",
        "v3-marital-status-to-hl7uk-0002",
    )


def test_alternate_visit_identifier_goes_in_pv1_50() -> None:
    enc = encounter()
    extra = Identifier(system="urn:tie:authority:OTHERPAS", value="ALT9", type="AN")
    msg = a08(event(encounter=enc.model_copy(update={"identifiers": (*enc.identifiers, extra)})))
    assert msg.get("PV1-19") == "V0001" and msg.get("PV1-50") == "ALT9" and msg.get("PV1-50.4") == "OTHERPAS"
