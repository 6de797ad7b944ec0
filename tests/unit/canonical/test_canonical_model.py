from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared.canonical import identity
from shared.canonical.model import (
    ClinicalDateTime,
    Coding,
    Concept,
    DataAbsentReason,
    Encounter,
    EncounterStatus,
    EventKind,
    Identifier,
    NhsNumber,
    Observation,
    PartialDate,
    Patient,
    Period,
    ServiceRequest,
)
from shared.terminology import load_value_set

VISIT = Identifier(system="urn:tie:authority:RGT01", value="V1", type="VN")
CLASS = Concept(codings=(Coding(system="http://terminology.hl7.org/CodeSystem/v3-ActCode", code="IMP"),))


def t(*args: int, tz: timezone = UTC) -> ClinicalDateTime:
    return ClinicalDateTime(value=datetime(*args, tzinfo=tz))


def test_data_absent_reasons_are_exactly_the_fhir_code_system() -> None:
    codes = set(
        load_value_set("data-absent-reason").concepts[
            "http://terminology.hl7.org/CodeSystem/data-absent-reason"
        ]
    )
    assert {r.value for r in DataAbsentReason} == codes


def test_models_are_immutable_and_strict() -> None:
    p = Patient(nhs_number=NhsNumber(value="9434765919"))
    with pytest.raises(ValidationError):
        p.names = ()  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Patient(nhs_number=NhsNumber(value="9434765919"), unknown_field=1)  # type: ignore[call-arg]


def test_invariants() -> None:
    with pytest.raises(ValidationError):
        NhsNumber(value="9434765910")  # check digit
    with pytest.raises(ValidationError):
        Patient()  # needs an identifier
    with pytest.raises(ValidationError):
        ClinicalDateTime(value=datetime(2026, 1, 1))  # naive
    with pytest.raises(ValidationError):
        PartialDate(year=2026, month=2, day=30)
    with pytest.raises(ValidationError):
        PartialDate(year=2026, day=3)
    with pytest.raises(ValidationError):
        Concept()
    with pytest.raises(ValidationError):
        ServiceRequest(status="active", intent="order", code=CLASS)
    code = Concept(text="x")
    with pytest.raises(ValidationError):
        Observation(status="final", code=code, value="1", data_absent={"reason": "unknown"})


def test_partial_dates_render_at_their_precision() -> None:
    assert PartialDate(year=1980).iso() == "1980"
    assert PartialDate(year=1980, month=2).iso() == "1980-02"
    assert PartialDate(year=1980, month=2, day=29).iso() == "1980-02-29"


def encounter(start: ClinicalDateTime, end: ClinicalDateTime | None = None) -> Encounter:
    return Encounter(
        identifiers=(VISIT,),
        status=EncounterStatus.IN_PROGRESS,
        encounter_class=CLASS,
        period=Period(start=start, end=end),
    )


PAT = Patient(nhs_number=NhsNumber(value="9434765919"))
OTHER_PAT = Patient(nhs_number=NhsNumber(value="9434765870"))


def test_admission_identity_is_patient_and_visit_not_time() -> None:
    bst = timezone(timedelta(hours=1))
    a = identity.encounter_event_key(
        EventKind.ADMISSION,
        encounter(t(2026, 7, 1, 12, tz=bst)),
        patient=PAT,
        occurred_at=None,
        recorded_at=None,
    )
    b = identity.encounter_event_key(
        EventKind.ADMISSION, encounter(t(2026, 7, 3, 9)), patient=PAT, occurred_at=None, recorded_at=None
    )
    assert a == b  # the admit time is content (a corrected time is an update), not identity
    assert a.value.startswith("admission-") and len(a.value) == len("admission-") + 32
    other_visit = encounter(t(2026, 7, 1, 11)).model_copy(
        update={"identifiers": (VISIT.model_copy(update={"value": "V2"}),)}
    )
    c = identity.encounter_event_key(
        EventKind.ADMISSION, other_visit, patient=PAT, occurred_at=None, recorded_at=None
    )
    other_issuer = encounter(t(2026, 7, 1, 11)).model_copy(
        update={"identifiers": (VISIT.model_copy(update={"system": "urn:tie:authority:RX1"}),)}
    )
    d = identity.encounter_event_key(
        EventKind.ADMISSION, other_issuer, patient=PAT, occurred_at=None, recorded_at=None
    )
    e = identity.encounter_event_key(
        EventKind.ADMISSION,
        encounter(t(2026, 7, 1, 11)),
        patient=OTHER_PAT,
        occurred_at=None,
        recorded_at=None,
    )
    assert len({a, c, d, e}) == 4  # visit, issuer and patient each make a different event


def test_transfers_are_point_events_keyed_by_when_they_occurred() -> None:
    enc = encounter(t(2026, 7, 1, 11))
    first = identity.encounter_event_key(
        EventKind.TRANSFER,
        enc,
        patient=PAT,
        occurred_at=t(2026, 7, 1, 14),
        recorded_at=None,
    )
    second = identity.encounter_event_key(
        EventKind.TRANSFER,
        enc,
        patient=PAT,
        occurred_at=t(2026, 7, 2, 9),
        recorded_at=None,
    )
    assert first != second


def test_cancellation_points_at_the_admission() -> None:
    enc = encounter(t(2026, 7, 1, 11))
    admitted = identity.encounter_event_key(
        EventKind.ADMISSION, enc, patient=PAT, occurred_at=None, recorded_at=None
    )
    assert identity.cancelled_event_key(EventKind.CANCEL_ADMISSION, enc, patient=PAT) == admitted


def test_identity_errors_are_permanent_and_specific() -> None:
    with pytest.raises(identity.IdentityError):
        identity.encounter_event_key(
            EventKind.ADMISSION, None, patient=PAT, occurred_at=None, recorded_at=None
        )
    with pytest.raises(identity.IdentityError):
        identity.encounter_event_key(
            EventKind.TRANSFER, encounter(t(2026, 1, 1)), patient=PAT, occurred_at=None, recorded_at=None
        )
    with pytest.raises(identity.IdentityError):
        identity.result_key(PAT, None, CLASS)
    with pytest.raises(identity.IdentityError):
        identity.merge_key(PAT, ())


def test_patient_key_prefers_the_nhs_number() -> None:
    local = Identifier(system="urn:tie:authority:RGT01", value="H1", type="MR")
    both = Patient(nhs_number=NhsNumber(value="9434765919"), identifiers=(local,))
    assert identity.patient_key(both) == "nhs|9434765919"
    assert identity.patient_key(Patient(identifiers=(local,))) == "urn:tie:authority:RGT01|H1"
    assert "9434765919" not in identity.patient_session_id(both)
