"""event_from_fhir: EventKind rules for FHIR writes and identity keys shared with the HL7 path."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.canonical import identity
from shared.canonical.model import EventKind, Patient
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.fhir_in import UnsupportedInteraction, event_from_fhir, patient_from_fhir
from shared.terminology import systems
from tests.unit.mapping.fhir_in.fhirin_helpers import (
    NHS_OK,
    NHS_OK_2,
    allergy,
    encounter,
    pds_patient,
    potassium,
    report,
    sodium,
    uncovered_leaves,
)

LAST_UPDATED = "2026-07-01T12:00:00+01:00"


def patient() -> Patient:
    return patient_from_fhir(pds_patient()).value


def enc(status: str, cls: str = "IMP", **extra: Any) -> dict[str, Any]:
    res = encounter()
    res["status"] = status
    res["class"]["code"] = cls
    res["meta"] = {"lastUpdated": LAST_UPDATED}
    if status == "finished":
        res["period"]["end"] = "2026-07-05T16:00:00+01:00"
    res.update(extra)
    return res


@pytest.mark.parametrize(
    ("status", "cls", "interaction", "kind"),
    [
        ("planned", "IMP", "create", EventKind.PRE_ADMISSION),
        ("arrived", "EMER", "create", EventKind.REGISTRATION),
        ("in-progress", "IMP", "create", EventKind.ADMISSION),
        ("in-progress", "ACUTE", "create", EventKind.ADMISSION),
        ("in-progress", "AMB", "create", EventKind.REGISTRATION),
        ("in-progress", "EMER", "create", EventKind.REGISTRATION),
        ("finished", "IMP", "create", EventKind.DISCHARGE),
        ("cancelled", "IMP", "create", EventKind.CANCEL_ADMISSION),
        ("finished", "IMP", "update", EventKind.DISCHARGE),
        ("cancelled", "IMP", "update", EventKind.CANCEL_ADMISSION),
        ("entered-in-error", "IMP", "update", EventKind.CANCEL_ADMISSION),
        ("in-progress", "IMP", "update", EventKind.ENCOUNTER_UPDATE),
        ("in-progress", "IMP", "delete", EventKind.CANCEL_ADMISSION),
    ],
)
def test_encounter_kind_rules_without_previous(
    status: str, cls: str, interaction: str, kind: EventKind
) -> None:
    event = event_from_fhir(enc(status, cls), interaction=interaction, patient=patient()).value  # type: ignore[arg-type]
    assert event.kind is kind
    assert event.key.kind is kind
    assert event.encounter is not None


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        ("in-progress", "finished", EventKind.DISCHARGE),
        ("finished", "in-progress", EventKind.CANCEL_DISCHARGE),
        ("in-progress", "cancelled", EventKind.CANCEL_ADMISSION),
        ("planned", "in-progress", EventKind.ADMISSION),
        ("in-progress", "in-progress", EventKind.ENCOUNTER_UPDATE),
        ("finished", "finished", EventKind.ENCOUNTER_UPDATE),
    ],
)
def test_encounter_kind_rules_against_the_previous_version(before: str, after: str, kind: EventKind) -> None:
    event = event_from_fhir(enc(after), interaction="update", patient=patient(), previous=enc(before)).value
    assert event.kind is kind


def test_location_change_is_a_transfer_timed_by_the_new_location() -> None:
    previous = enc("in-progress")
    previous["location"] = [{"location": {"display": "Old ward"}, "status": "active"}]
    event = event_from_fhir(
        enc("in-progress"), interaction="update", patient=patient(), previous=previous
    ).value
    assert event.kind is EventKind.TRANSFER
    assert event.occurred_at is not None
    assert event.occurred_at.value.isoformat() == "2026-07-02T09:00:00+01:00"
    assert event.key == identity.encounter_event_key(
        EventKind.TRANSFER,
        event.encounter,
        patient=event.patient,
        occurred_at=event.occurred_at,
        recorded_at=None,
    )


def _wards(*entries: tuple[str, str], started: str | None = None) -> dict[str, Any]:
    """An in-progress Encounter with these (ward, status) locations; ``started``: the first one's start."""
    locations: list[dict[str, Any]] = [{"location": {"display": w}, "status": s} for w, s in entries]
    if started is not None:
        locations[0]["period"] = {"start": started}
    return enc("in-progress", location=locations)


def test_a_transfer_undone_is_a_cancel_transfer_naming_the_transfer() -> None:
    """The FHIR form of A12 (what the write-back stores for it): the current ward is gone, the prior one
    current again. Its time - and the transfer it cancels - is the removed ward's start."""
    moved = "2026-07-02T09:00:00+01:00"
    transfer = event_from_fhir(
        _wards(("Ward 2", "active"), ("Ward 1", "completed"), started=moved),
        interaction="update",
        patient=patient(),
        previous=_wards(("Ward 1", "active")),
    ).value
    assert transfer.kind is EventKind.TRANSFER
    undo = event_from_fhir(
        _wards(("Ward 1", "active")),
        interaction="update",
        patient=patient(),
        previous=_wards(("Ward 2", "active"), ("Ward 1", "completed"), started=moved),
    ).value
    assert undo.kind is EventKind.CANCEL_TRANSFER
    assert undo.cancels == transfer.key
    # A move back that keeps the ward it left as history is a transfer, not a cancellation.
    back = event_from_fhir(
        _wards(("Ward 1", "active"), ("Ward 2", "completed")),
        interaction="update",
        patient=patient(),
        previous=_wards(("Ward 2", "active"), ("Ward 1", "completed")),
    ).value
    assert back.kind is EventKind.TRANSFER


def test_admission_key_is_the_identity_rule_patient_and_visit_number() -> None:
    event = event_from_fhir(enc("in-progress"), interaction="create", patient=patient()).value
    visit = event.encounter.identifiers[0]  # type: ignore[union-attr]
    assert event.key == identity.make_key(
        EventKind.ADMISSION, identity.patient_key(event.patient), visit.system, visit.value
    )


def test_same_admission_written_twice_gives_the_same_key_whatever_the_record_time() -> None:
    first = event_from_fhir(enc("in-progress"), interaction="create", patient=patient()).value
    later = enc("in-progress", meta={"lastUpdated": "2026-07-01T13:00:00+01:00"})
    second = event_from_fhir(later, interaction="create", patient=patient()).value
    assert first.key == second.key


def test_cancellation_points_at_the_admission_it_cancels() -> None:
    admitted = event_from_fhir(enc("in-progress"), interaction="create", patient=patient()).value
    cancelled = event_from_fhir(enc("cancelled"), interaction="update", patient=patient()).value
    assert cancelled.cancels == admitted.key
    assert cancelled.key != admitted.key


def test_encounter_event_needs_visit_number_and_times() -> None:
    res = enc("in-progress")
    res["identifier"] = []
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(res, interaction="create", patient=patient())
    assert err.value.field == "Encounter.identifier"
    res = enc("in-progress")
    del res["period"]
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(res, interaction="create", patient=patient())
    assert err.value.field == "Encounter.period.start"
    res = enc("in-progress")
    del res["meta"]
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(res, interaction="update", patient=patient())
    assert err.value.field == "Encounter.meta.lastUpdated"


def test_recorded_at_argument_overrides_meta() -> None:
    from shared.canonical.model import ClinicalDateTime

    res = enc("in-progress")
    del res["meta"]
    when = ClinicalDateTime(value=datetime(2026, 7, 1, 11, 0, tzinfo=UTC))
    event = event_from_fhir(res, interaction="update", patient=patient(), recorded_at=when).value
    assert event.recorded_at == when and event.kind is EventKind.ENCOUNTER_UPDATE


def test_patient_create_update_and_merge() -> None:
    res = pds_patient()
    res["meta"]["lastUpdated"] = LAST_UPDATED
    created = event_from_fhir(res, interaction="create", patient=None).value
    updated = event_from_fhir(res, interaction="update", patient=None).value
    assert (created.kind, updated.kind) == (EventKind.PATIENT_CREATED, EventKind.PATIENT_UPDATED)
    assert created.key == identity.patient_event_key(EventKind.PATIENT_CREATED, created.patient)
    res["link"] = [
        {"type": "replaces", "other": {"identifier": {"system": systems.NHS_NUMBER, "value": NHS_OK_2}}},
        {"type": "seealso", "other": {"identifier": {"system": "urn:x", "value": "y"}}},
    ]
    merged = event_from_fhir(res, interaction="update", patient=None).value
    assert merged.kind is EventKind.PATIENT_MERGE
    assert [i.value for i in merged.merged_identifiers] == [NHS_OK_2]
    assert merged.key == identity.merge_key(merged.patient, merged.merged_identifiers)


def test_patient_event_needs_a_record_time_and_delete_is_unsupported() -> None:
    res = pds_patient()
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(res, interaction="create", patient=None)
    assert err.value.field == "Patient.meta.lastUpdated"
    with pytest.raises(UnsupportedInteraction):
        event_from_fhir(res, interaction="delete", patient=None)


def test_result_events_from_observation_and_report() -> None:
    obs = potassium(identifier=[{"system": "urn:tie:authority:LAB", "value": "F1"}])
    event = event_from_fhir(obs, interaction="create", patient=patient()).value
    assert event.kind is EventKind.RESULT
    rep = event.reports[0]
    assert rep.filler_order_number is not None and rep.filler_order_number.value == "F1"
    assert event.key == identity.result_key(event.patient, rep.filler_order_number, rep.code)
    dr = event_from_fhir(
        report(), interaction="create", patient=patient(), context={"urn:uuid:na": sodium()}
    ).value
    assert dr.kind is EventKind.RESULT and len(dr.reports[0].results) == 2


def test_result_without_filler_number_is_refused() -> None:
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(potassium(), interaction="create", patient=patient())
    assert err.value.field == "Observation.identifier"


def test_blood_pressure_panel_becomes_one_result_per_component() -> None:
    bp = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:tie:obs", "value": "BP1"}],
        "status": "final",
        "code": {"coding": [{"system": systems.LOINC, "code": "85354-9"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-15T09:30:00Z",
        "note": [{"text": "left arm"}],
        "component": [
            {
                "code": {"coding": [{"system": systems.LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 120},
            },
            {
                "code": {"coding": [{"system": systems.LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 80},
            },
        ],
    }
    mapped = event_from_fhir(bp, interaction="create", patient=patient())
    rep = mapped.value.reports[0]
    assert [o.code.codings[0].code for o in rep.results] == ["8480-6", "8462-4"]  # type: ignore[union-attr]
    assert [o.sequence for o in rep.results] == [1, 2]
    assert rep.results[0].notes == ("left arm",) and rep.results[1].notes == ()
    assert {e.source for e in mapped.lineage if e.target == "reports[0].results[1].value.value"} == {
        "Observation.component[1].valueQuantity.value"
    }


def test_order_allergy_condition_and_identified_kinds() -> None:
    p = patient()
    order = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:tie:authority:EPR", "value": "P1"}],
        "status": "active",
        "intent": "order",
        "code": {"text": "FBC"},
        "subject": {"reference": "Patient/p1"},
    }
    ev = event_from_fhir(order, interaction="create", patient=p).value
    assert ev.kind is EventKind.ORDER and ev.key == identity.order_key(
        p, ev.orders[0].placer_order_number, None
    )
    ev = event_from_fhir(allergy(), interaction="create", patient=p).value
    assert ev.kind is EventKind.ALLERGY and ev.key == identity.allergy_key(p, ev.allergies[0].code)
    text_only = allergy()
    text_only["code"] = {"text": "cats"}
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(text_only, interaction="create", patient=p)
    assert err.value.field == "AllergyIntolerance.code.coding"
    condition = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": systems.SNOMED_CT, "code": "195967001"}]},
        "subject": {"reference": "Patient/p1"},
    }
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(condition, interaction="create", patient=p)
    assert err.value.field == "Condition.onset[x]"
    condition["onsetDateTime"] = "2010-05-01"
    ev = event_from_fhir(condition, interaction="create", patient=p).value
    assert ev.kind is EventKind.CONDITION
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"text": "letter"},
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": {"url": "https://blob/d"}}],
    }
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(doc, interaction="create", patient=p)
    assert err.value.field == "DocumentReference.identifier"
    doc["identifier"] = [{"system": "urn:tie:doc", "value": "D1"}]
    ev = event_from_fhir(doc, interaction="create", patient=p).value
    assert ev.kind is EventKind.DOCUMENT and ev.key == identity.identifier_key(
        EventKind.DOCUMENT, p, ev.documents[0].identifiers
    )


def test_subject_resolved_from_context_with_lineage() -> None:
    obs = potassium(identifier=[{"system": "urn:tie:authority:LAB", "value": "F1"}])
    mapped = event_from_fhir(obs, interaction="create", patient=None, context={"Patient/p1": pds_patient()})
    assert mapped.value.patient.nhs_number is not None and mapped.value.patient.nhs_number.value == NHS_OK
    assert {e.source for e in mapped.lineage if e.target == "patient.nhs_number.value"} == {
        "Observation.subject.resolve().identifier[0].value"
    }


def test_subject_missing_or_mismatched() -> None:
    obs = potassium(identifier=[{"system": "urn:tie:authority:LAB", "value": "F1"}])
    with pytest.raises(MissingRequiredField) as err:
        event_from_fhir(obs, interaction="create", patient=None)
    assert err.value.field == "Observation.subject"
    obs["subject"] = {"identifier": {"system": systems.NHS_NUMBER, "value": NHS_OK_2}}
    with pytest.raises(InvalidValue) as err2:
        event_from_fhir(obs, interaction="create", patient=patient())
    assert err2.value.field == "Observation.subject.identifier.value"
    assert NHS_OK_2 not in str(err2.value)


def test_unsupported_resource_types_and_deletes() -> None:
    with pytest.raises(UnsupportedInteraction):
        event_from_fhir({"resourceType": "Appointment"}, interaction="create", patient=patient())
    with pytest.raises(UnsupportedInteraction):
        event_from_fhir(allergy(), interaction="delete", patient=patient())


def test_provenance_source_and_lineage_resource() -> None:
    res = enc("in-progress")
    res["meta"]["source"] = "https://epr.example.nhs.uk"
    mapped = event_from_fhir(
        copy.deepcopy(res),
        interaction="create",
        patient=patient(),
        correlation_id="corr-1",
        request_id="req-1",
        full_url="urn:uuid:e1",
    )
    ev = mapped.value
    assert ev.source.application == "https://epr.example.nhs.uk"
    assert (ev.provenance.source_format, ev.provenance.message_id, ev.provenance.correlation_id) == (
        "fhir",
        "req-1",
        "corr-1",
    )
    assert ev.provenance.message_type == "Encounter:create"
    assert {e.resource for e in mapped.lineage} == {"urn:uuid:e1"}
    assert any(e.target == "kind" for e in mapped.lineage)


@pytest.mark.parametrize(
    "build",
    [
        lambda: (enc("in-progress"), "create", {}),
        lambda: (enc("finished"), "update", {"previous": enc("in-progress")}),
        lambda: ({**pds_patient(), "meta": {"lastUpdated": LAST_UPDATED, "source": "urn:epr"}}, "update", {}),
        lambda: (report(), "create", {"context": {"urn:uuid:na": sodium()}}),
        lambda: (allergy(), "create", {}),
    ],
)
def test_every_populated_leaf_of_the_event_has_lineage(build: Any) -> None:
    resource, interaction, extra = build()
    mapped = event_from_fhir(
        resource, interaction=interaction, patient=patient(), correlation_id="c", **extra
    )
    assert uncovered_leaves(mapped.value, "", mapped.lineage, ignore=set()) == []
