"""Event identity from HL7: stable across re-sends, cancellations point at what they cancel, GMT/BST-correct,
and reproducible from FHIR (the visit-number system is the Encounter.identifier system)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.canonical.model import EventKind
from shared.mapping.fhir_in import event_from_fhir
from shared.terminology import systems
from tests.unit.mapping.hl7v2_in.hl7in_samples import adt, event, oru


def test_the_same_admission_mapped_twice_has_the_same_key() -> None:
    first = event(adt("A01", control_id="MSG1", when="20260701120000"))
    resent = event(adt("A01", control_id="MSG2", when="20260701123000", evn={2: "20260701123000"}))
    assert first.key == resent.key  # message id and record time are not part of an admission's identity
    other_visit = event(adt("A01", pv1={19: "V999^^^RRV"}))
    assert other_visit.key != first.key
    corrected_time = event(adt("A01", control_id="MSG3", pv1={44: "20260701113000"}))
    assert corrected_time.key == first.key  # a corrected admit time is an update of the same admission


def test_same_visit_number_for_another_patient_or_issuer_is_another_event() -> None:
    first = event(adt("A01"))
    other_patient = event(adt("A01", pid={3: "9434765870^^^NHS^NH"}))
    other_issuer = event(adt("A01", pv1={19: "V0000123^^^RX1"}))
    assert len({first.key, other_patient.key, other_issuer.key}) == 3


def test_a11_cancels_the_a01_of_the_same_visit() -> None:
    admission = event(adt("A01"))
    cancel = event(adt("A11", control_id="MSG9", evn={2: "20260702090000"}))
    assert cancel.cancels == admission.key
    other = event(adt("A11", pv1={19: "V999^^^RRV"}))
    assert other.cancels != admission.key


@pytest.mark.parametrize(
    ("pv1_44", "utc"),
    [
        ("20260115120000", datetime(2026, 1, 15, 12, 0, tzinfo=UTC)),  # GMT
        ("20260701120000", datetime(2026, 7, 1, 11, 0, tzinfo=UTC)),  # BST
        ("20260329010000", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),  # the spring gap hour, moved on
        ("20261025013000", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # autumn overlap: first (BST) one
        ("20260701120000+0000", datetime(2026, 7, 1, 12, 0, tzinfo=UTC)),  # an explicit offset wins
    ],
)
def test_encounter_start_is_uk_local_time(pv1_44: str, utc: datetime) -> None:
    ev = event(adt("A01", pv1={44: pv1_44}))
    assert (
        ev.encounter is not None and ev.encounter.period is not None and ev.encounter.period.start is not None
    )
    assert ev.encounter.period.start.value.astimezone(UTC) == utc


def test_gmt_and_bst_versions_of_the_same_wall_clock_time_differ() -> None:
    winter = event(adt("A01", pv1={44: "20260115120000"}))
    summer = event(adt("A01", pv1={44: "20260715120000"}))
    assert winter.encounter.period.start.value.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert summer.encounter.period.start.value.utcoffset().total_seconds() == 3600  # type: ignore[union-attr]


def test_result_key_ignores_message_id() -> None:
    assert event(oru(control_id="A")).key == event(oru(control_id="B")).key


def test_fhir_encounter_create_reproduces_the_admission_key() -> None:
    hl7_event = event(adt("A01"))
    encounter = {
        "resourceType": "Encounter",
        "identifier": [{"system": "urn:tie:authority:RRV", "value": "V0000123"}],
        "status": "in-progress",
        "class": {"system": systems.V3_ACT_CODE, "code": "IMP"},
        "period": {"start": "2026-07-01T11:55:00+01:00"},
        "meta": {"lastUpdated": "2026-07-01T12:00:00+01:00"},
    }
    fhir_event = event_from_fhir(encounter, interaction="create", patient=hl7_event.patient).value
    assert fhir_event.kind is EventKind.ADMISSION
    assert fhir_event.key == hl7_event.key
