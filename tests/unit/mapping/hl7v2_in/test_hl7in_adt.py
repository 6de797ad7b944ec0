"""ADT triggers -> canonical events: kind, encounter status, period, parties, envelope, unsupported events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.canonical import identity
from shared.canonical.model import (
    ClinicalDateTime,
    Concept,
    DataAbsent,
    EncounterStatus,
    EventKind,
    Identifier,
    Sensitivity,
)
from shared.mapping.errors import MissingRequiredField, UnsupportedEvent, UnsupportedMessageType
from shared.mapping.hl7v2_in import map_bytes
from shared.terminology import systems
from tests.unit.mapping.hl7v2_in.hl7in_samples import NHS, adt, event, message, msh, seg

UTC_0955 = datetime(2026, 7, 1, 10, 55, tzinfo=UTC)  # PV1-44 20260701115500 is BST


def test_a01_admission_encounter() -> None:
    ev = event(adt("A01"))
    assert ev.kind is EventKind.ADMISSION
    enc = ev.encounter
    assert enc is not None
    assert enc.status is EncounterStatus.IN_PROGRESS
    assert enc.identifiers == (
        Identifier(system="urn:tie:authority:RRV", value="V0000123", type="VN", assigner="RRV"),
    )
    assert isinstance(enc.encounter_class, Concept)
    assert enc.encounter_class.coding(systems.V3_ACT_CODE) is not None
    assert enc.encounter_class.coding(systems.V3_ACT_CODE).code == "IMP"  # type: ignore[union-attr]
    assert enc.encounter_class.codings[0].system == systems.V2_0004_PATIENT_CLASS  # sender's code first
    assert enc.period is not None and enc.period.start is not None
    assert enc.period.start.value == UTC_0955
    assert enc.period.end is None
    assert enc.location is not None
    assert (enc.location.point_of_care, enc.location.room, enc.location.bed) == ("WARD1", "BAY2", "BED3")
    assert enc.location.facility == "RRV"
    (attending,) = enc.attending
    assert attending.identifiers[0].system == systems.GMC_NUMBER
    assert attending.identifiers[0].value == "C1234567"
    assert attending.name is not None and attending.name.family == "JONES"
    assert attending.name.prefix == ("DR",)
    assert enc.referring[0].identifiers[0].system == systems.GMP_NUMBER
    assert enc.admitting == enc.attending
    assert isinstance(enc.priority, Concept)
    assert enc.priority.coding(systems.V3_ACT_PRIORITY) is not None  # PV1-4 E -> EM
    assert isinstance(enc.service_type, Concept)
    assert enc.service_type.codings[0].code == "MED"
    assert isinstance(enc.admit_source, Concept) and enc.admit_source.codings[0].code == "19"


def test_a02_transfer_prior_location_and_event_time() -> None:
    raw = adt("A02", pv1={6: "WARD9^BAY1^BED1^RRV"}, evn={2: "20260701130000", 6: "20260701125900"})
    ev = event(raw)
    assert ev.kind is EventKind.TRANSFER
    assert ev.encounter is not None and ev.encounter.status is EncounterStatus.IN_PROGRESS
    assert ev.encounter.prior_location is not None and ev.encounter.prior_location.point_of_care == "WARD9"
    assert ev.occurred_at is not None and ev.occurred_at.value == datetime(2026, 7, 1, 11, 59, tzinfo=UTC)
    assert ev.key.components[-1] == "2026-07-01T11:59:00Z"  # EVN-6, not EVN-2 or MSH-7


def test_a03_discharge_needs_and_uses_pv1_45() -> None:
    ev = event(adt("A03", pv1={36: "01", 45: "20260705100000"}))
    assert ev.kind is EventKind.DISCHARGE
    enc = ev.encounter
    assert enc is not None and enc.status is EncounterStatus.FINISHED
    assert enc.period is not None and enc.period.end is not None
    assert enc.period.end.value == datetime(2026, 7, 5, 9, 0, tzinfo=UTC)
    assert isinstance(enc.discharge_disposition, Concept)
    # table 0112's code list is not held offline: no code is claimed as an HL7 0112 code
    assert enc.discharge_disposition.codings[0].system == "urn:tie:codesystem:RRV:0112"
    assert ev.key.components[-2:] == ("urn:tie:authority:RRV", "V0000123")  # patient + visit, not time
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(adt("A03"))
    assert err.value.field == "PV1-45" and err.value.error_code == "101"


def test_a04_registration_is_arrived() -> None:
    ev = event(adt("A04", pv1={2: "O"}))
    assert ev.kind is EventKind.REGISTRATION
    assert ev.encounter is not None and ev.encounter.status is EncounterStatus.ARRIVED
    assert isinstance(ev.encounter.encounter_class, Concept)
    assert ev.encounter.encounter_class.coding(systems.V3_ACT_CODE).code == "AMB"  # type: ignore[union-attr]


def test_a05_pre_admission_planned_with_expected_admit_date() -> None:
    raw = adt("A05", pv1={44: ""}, extra=(seg("PV2", {8: "20260710090000"}),))
    ev = event(raw)
    assert ev.kind is EventKind.PRE_ADMISSION
    enc = ev.encounter
    assert enc is not None and enc.status is EncounterStatus.PLANNED
    assert enc.period is not None and enc.period.start is not None
    assert enc.period.start.value == datetime(2026, 7, 10, 8, 0, tzinfo=UTC)
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(adt("A05", pv1={44: ""}))
    assert err.value.field == "PV1-44"


@pytest.mark.parametrize(
    ("pv1", "status"),
    [
        ({45: "20260705100000"}, EncounterStatus.FINISHED),
        ({2: "P", 44: ""}, EncounterStatus.PLANNED),
        ({}, EncounterStatus.IN_PROGRESS),
    ],
)
def test_a08_status_is_derived_from_pv1(pv1: dict[int, str], status: EncounterStatus) -> None:
    ev = event(adt("A08", pv1=pv1, evn={2: "20260702080000"}))
    assert ev.kind is EventKind.ENCOUNTER_UPDATE
    assert ev.encounter is not None and ev.encounter.status is status
    assert ev.key.components[1:] == ("nhs|" + NHS, "urn:tie:authority:RRV", "V0000123")
    assert ev.recorded_at is not None and ev.recorded_at.value == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)


def test_a08_without_any_status_evidence_is_an_error() -> None:
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(adt("A08", pv1={44: ""}))
    assert err.value.field == "PV1-44"


def test_a11_is_a_cancellation_of_the_admission_not_a_new_encounter() -> None:
    admission = event(adt("A01"))
    cancel = event(adt("A11", evn={2: "20260701140000"}, control_id="MSG0002"))
    assert cancel.kind is EventKind.CANCEL_ADMISSION
    assert cancel.encounter is not None and cancel.encounter.status is EncounterStatus.CANCELLED
    assert admission.encounter is not None
    assert cancel.encounter.identifiers == admission.encounter.identifiers
    assert cancel.cancels == admission.key
    assert cancel.key != admission.key


def test_a12_cancels_the_transfer_and_names_where_the_patient_stays() -> None:
    moved = {3: "WARD2^B^1^RRV", 6: "WARD1^BAY2^BED3^RRV"}
    transfer = event(adt("A02", pv1=moved, evn={2: "20260702120000"}))
    back = {3: "WARD1^BAY2^BED3^RRV", 6: "WARD2^B^1^RRV"}
    undo = event(adt("A12", pv1=back, evn={2: "20260702130000", 6: "20260702120000"}, control_id="MSG0002"))
    assert undo.kind is EventKind.CANCEL_TRANSFER
    assert undo.encounter is not None and undo.encounter.status is EncounterStatus.IN_PROGRESS
    assert undo.encounter.location is not None and undo.encounter.location.point_of_care == "WARD1"
    assert (
        undo.encounter.prior_location is not None and undo.encounter.prior_location.point_of_care == "WARD2"
    )
    assert undo.cancels == transfer.key
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(adt("A12", pv1={3: ""}))
    assert err.value.field == "PV1-3"


def test_a13_cancels_the_discharge() -> None:
    discharge = event(adt("A03", pv1={45: "20260705100000"}))
    undo = event(adt("A13", pv1={45: "20260705100000"}, evn={2: "20260705120000"}))
    assert undo.kind is EventKind.CANCEL_DISCHARGE
    assert undo.encounter is not None and undo.encounter.status is EncounterStatus.IN_PROGRESS
    assert undo.cancels == discharge.key
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(adt("A13"))
    assert err.value.field == "PV1-45"


@pytest.mark.parametrize(
    ("trigger", "kind"), [("A28", EventKind.PATIENT_CREATED), ("A31", EventKind.PATIENT_UPDATED)]
)
def test_patient_events_have_no_encounter(trigger: str, kind: EventKind) -> None:
    ev = event(adt(trigger, pv1={2: "N", 19: "", 44: ""}))
    assert ev.kind is kind
    assert ev.encounter is None
    assert ev.patient.nhs_number is not None and ev.patient.nhs_number.value == NHS
    assert ev.recorded_at is not None
    assert ev.key == identity.patient_event_key(kind, ev.patient)


def test_a40_merge() -> None:
    raw = message(
        msh("ADT^A40^ADT_A39"),
        seg("EVN", {1: "A40", 2: "20260701120000"}),
        seg("PID", {1: "1", 3: f"{NHS}^^^NHS^NH~RRV1234567^^^RRV^MR", 5: "SMITH^JOHN"}),
        seg("MRG", {1: "RRV7654321^^^RRV^MR"}),
    )
    ev = event(raw)
    assert ev.kind is EventKind.PATIENT_MERGE
    retired = Identifier(system="urn:tie:authority:RRV", value="RRV7654321", type="MR", assigner="RRV")
    assert ev.merged_identifiers == (retired,)
    assert [(link.kind, link.other) for link in ev.patient.links] == [("replaces", retired)]
    assert ev.key == identity.merge_key(ev.patient, ev.merged_identifiers)
    assert ev.encounter is None


def test_a40_mrg_nhs_number_and_missing_mrg() -> None:
    raw = message(
        msh("ADT^A40"),
        seg("EVN", {1: "A40", 2: "20260701120000"}),
        seg("PID", {1: "1", 3: "RRV1234567^^^RRV^MR"}),
        seg("MRG", {1: "9449305552^^^NHS^NH"}),
    )
    (merged,) = event(raw).merged_identifiers
    assert (merged.system, merged.value) == (systems.NHS_NUMBER, "9449305552")
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(message(msh("ADT^A40"), seg("EVN", {1: "A40"}), seg("PID", {3: "X1^^^RRV"})))
    assert err.value.field == "MRG"


def test_envelope_source_provenance_and_times() -> None:
    received = ClinicalDateTime(value=datetime(2026, 7, 1, 11, 0, 5, tzinfo=UTC))
    ev = map_bytes(adt("A01", evn={6: "20260701115400"}), correlation_id="corr-1", received_at=received).value
    assert (ev.source.application, ev.source.facility) == ("PAS", "RRV")
    p = ev.provenance
    assert (p.source_format, p.message_id, p.message_type) == ("hl7v2", "MSG0001", "ADT^A01")
    assert (p.received_at, p.correlation_id) == (received, "corr-1")
    assert ev.occurred_at is not None and ev.occurred_at.value == datetime(2026, 7, 1, 10, 54, tzinfo=UTC)
    assert ev.recorded_at is not None and ev.recorded_at.value == datetime(2026, 7, 1, 11, 0, tzinfo=UTC)
    assert ev.sensitivity is Sensitivity.NORMAL


def test_record_time_falls_back_to_msh_7_the_event_time_does_not() -> None:
    ev = event(adt("A01", evn={1: "A01", 2: ""}, when="20260115120000"))
    assert ev.recorded_at is not None and ev.recorded_at.value == datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    # MSH-7 is when the message was sent: transport, not clinical content (it would change the digest of
    # every resend); the record time is not content, the event time is.
    assert ev.occurred_at is None


def test_visit_number_system_from_sending_facility_when_no_authority() -> None:
    ev = event(adt("A01", pv1={19: "V55"}))
    assert ev.encounter is not None
    assert (ev.encounter.identifiers[0].system, ev.encounter.identifiers[0].value) == (
        "urn:tie:authority:RRV",
        "V55",
    )


@pytest.mark.parametrize("field", [19, 2])
def test_encounter_event_needs_visit_number_and_class(field: int) -> None:
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(adt("A01", pv1={field: ""}))
    assert err.value.field == f"PV1-{field}"


def test_unmapped_patient_class_is_data_absent_with_the_source_code() -> None:
    enc = event(adt("A01", pv1={2: "R"})).encounter
    assert enc is not None and isinstance(enc.encounter_class, DataAbsent)
    assert enc.encounter_class.source is not None and enc.encounter_class.source.code == "R"


def test_unsupported_trigger_and_message_type() -> None:
    with pytest.raises(UnsupportedEvent) as err:
        map_bytes(adt("A06"))
    assert (err.value.field, err.value.error_code) == ("MSH-9", "201")
    with pytest.raises(UnsupportedMessageType) as err2:
        map_bytes(message(msh("SIU^S12"), seg("PID", {3: "X^^^RRV"})))
    assert err2.value.error_code == "200"
    with pytest.raises(MissingRequiredField) as err3:
        map_bytes(message(msh(""), seg("PID", {3: "X^^^RRV"})))
    assert err3.value.field == "MSH-9"


def test_no_pv1_in_an_encounter_event() -> None:
    raw = message(msh("ADT^A01"), seg("EVN", {1: "A01"}), seg("PID", {3: "X1^^^RRV"}))
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(raw)
    assert err.value.field == "PV1"


def test_pv1_50_alternate_visit_id_is_a_further_identifier_not_the_identity() -> None:
    ev = event(adt("A01", pv1={50: "ALT42^^^OTHERPAS^VN"}))
    assert ev.encounter is not None
    visit, alternate = ev.encounter.identifiers
    assert (visit.value, visit.type) == ("V0000123", "VN")  # PV1-19 first
    assert (alternate.system, alternate.value) == ("urn:tie:authority:OTHERPAS", "ALT42")
    assert identity.encounter_identifier(ev.encounter) == visit  # the identity uses PV1-19
    assert ev.key == event(adt("A01")).key  # an alternate id does not change the event's identity
    same = event(adt("A01", pv1={50: "V0000123^^^RRV"})).encounter
    assert same is not None and len(same.identifiers) == 1  # the visit number again is not repeated


@pytest.mark.parametrize("trigger", ["A01", "A02", "A04", "A08", "A11", "A13"])
def test_pv1_45_is_the_period_end_whenever_present(trigger: str) -> None:
    ev = event(adt(trigger, pv1={45: "20260705100000"}))
    assert ev.encounter is not None and ev.encounter.period is not None
    assert ev.encounter.period.end is not None
    assert ev.encounter.period.end.value == datetime(2026, 7, 5, 9, 0, tzinfo=UTC)


def test_expected_discharge_pv2_9_is_an_end_only_for_a_planned_encounter() -> None:
    pv2 = (seg("PV2", {8: "20260710090000", 9: "20260712090000"}),)
    planned = event(adt("A05", pv1={44: ""}, extra=pv2)).encounter
    assert planned is not None and planned.period is not None and planned.period.end is not None
    assert planned.period.end.value == datetime(2026, 7, 12, 8, 0, tzinfo=UTC)
    registration = event(adt("A04", extra=pv2)).encounter  # an expected time is not an actual end
    assert registration is not None and registration.period is not None
    assert registration.period.end is None
