from __future__ import annotations

from typing import Any

import pytest

from shared.canonical.model import ResultReport
from shared.fhir import json as fjson
from shared.fhir.ids import child_id, keyed_id, resource_id, urn
from shared.fhir.validation import validate_bundle
from shared.mapping.fhir_out import FhirOutError, serialize, to_bundle
from shared.terminology import systems
from tests.unit.mapping.fhir_out import fhirout_events as ev

REPORT_ID = keyed_id("DiagnosticReport", ev.FILLER_SYSTEM, "LAB123456", f"{systems.LOINC}|58410-2")


def entries(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def observations(bundle: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Observations by OBX sequence (recovered from the deterministic id scheme)."""
    out: dict[int, dict[str, Any]] = {}
    for obs_seq, obs in enumerate(ev.results(), start=1):
        token = (
            f"{obs.code.codings[0].system}|{obs.code.codings[0].code}"
            if hasattr(obs.code, "codings") and obs.code.codings
            else None
        )
        for e in entries(bundle, "Observation"):
            if token and e["resource"]["id"] == child_id("Observation", REPORT_ID, str(obs_seq), token):
                out[obs_seq] = e["resource"]
    return out


def test_oru_report_and_observations() -> None:
    b = to_bundle(ev.oru_r01()).value
    assert validate_bundle(b) == []
    (report_entry,) = entries(b, "DiagnosticReport")
    assert report_entry["request"] == {"method": "PUT", "url": f"DiagnosticReport/{REPORT_ID}"}
    dr = report_entry["resource"]
    assert dr["status"] == "final"
    assert dr["identifier"] == [
        {
            "type": {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "FILL"}]},
            "system": ev.FILLER_SYSTEM,
            "value": "LAB123456",
        }
    ]
    assert dr["extension"] == [
        {
            "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note",
            "valueAnnotation": {"text": "Sample received late"},
        }
    ]
    assert dr["conclusion"] == "Normal"
    assert dr["basedOn"][0]["type"] == "ServiceRequest"
    assert dr["basedOn"][0]["identifier"]["value"] == "ORD98765"
    # the clocks went forward at 01:00 GMT on 29 March 2026
    assert dr["effectiveDateTime"] == "2026-03-29T00:30:00+00:00"
    assert dr["issued"] == "2026-03-29T09:00:00+01:00"
    # a result is not an encounter event: the encounter is referred to by its visit number, not rewritten
    assert dr["encounter"] == {
        "type": "Encounter",
        "identifier": {"system": ev.VISIT_SYSTEM, "value": "V0001"},
    }
    assert not entries(b, "Encounter")
    # seven results become Observations; the attachment (OBX ED) becomes the report's presentedForm
    assert len(dr["result"]) == 7
    assert [r["reference"] for r in dr["result"]] == [
        f"Observation/{e['resource']['id']}" for e in entries(b, "Observation")
    ]
    assert dr["presentedForm"] == [
        {"contentType": "application/pdf", "url": "https://blob.example/claim/abc", "title": "Report"}
    ]
    for e in entries(b, "Observation"):
        obs = e["resource"]
        assert e["request"] == {"method": "PUT", "url": f"Observation/{obs['id']}"}
        assert obs["subject"] == {"reference": urn(resource_id("Patient", systems.NHS_NUMBER, ev.NHS))}

    by_seq = observations(b)
    assert by_seq[1]["valueQuantity"] == {
        "value": fjson.loads(b"132.0"),
        "unit": "g/L",
        "system": systems.UCUM,
        "code": "g/L",
    }
    assert by_seq[1]["referenceRange"][0]["low"]["value"] == fjson.loads(b"115")
    assert by_seq[1]["effectiveDateTime"] == "2026-03-29T00:30:00+00:00"
    assert by_seq[1]["issued"] == "2026-03-29T02:30:00+01:00"
    assert by_seq[2]["valueString"] == "Sample slightly haemolysed"
    assert by_seq[2]["note"] == [{"text": "Repeat if clinically indicated"}]
    assert by_seq[3]["valueCodeableConcept"]["coding"][0]["code"] == "278149003"
    assert by_seq[4]["valueQuantity"]["comparator"] == "<"
    assert set(by_seq[5]["valueRange"]) == {"low", "high"}
    assert by_seq[6]["valueDateTime"] == "2026-07-01T07:05:00+01:00"


def test_data_absent_result() -> None:
    b = to_bundle(ev.oru_r01()).value
    absent = [e["resource"] for e in entries(b, "Observation") if "dataAbsentReason" in e["resource"]]
    (obs,) = absent
    assert obs["dataAbsentReason"]["coding"] == [{"system": systems.DATA_ABSENT_REASON, "code": "error"}]
    assert not any(k.startswith("value") for k in obs)
    assert obs["code"]["extension"][0]["valueCode"] == "unsupported"
    assert obs["code"]["coding"] == [{"system": systems.LOCAL_LAB, "code": "ZZZ"}]


def test_decimal_precision_survives_serialisation() -> None:
    raw = serialize(to_bundle(ev.oru_r01()).value)
    assert b'"valueQuantity":{"value":132.0,' in raw
    assert b'"comparator":"<"' in raw


def test_amended_result_replays_onto_the_same_resources() -> None:
    first = to_bundle(ev.oru_r01()).value
    e = ev.oru_r01()
    amended = e.model_copy(update={"reports": (e.reports[0].model_copy(update={"status": "amended"}),)})
    second = to_bundle(amended).value
    assert [x["request"] for x in second["entry"]] == [x["request"] for x in first["entry"]]
    assert entries(second, "DiagnosticReport")[0]["resource"]["status"] == "amended"


def test_result_during_an_encounter_event_references_the_put_encounter() -> None:
    e = ev.oru_r01()
    admission_with_results = ev.adt_a01().model_copy(update={"reports": e.reports})
    b = to_bundle(admission_with_results).value
    assert validate_bundle(b) == []
    dr = entries(b, "DiagnosticReport")[0]["resource"]
    assert dr["encounter"] == {"reference": f"Encounter/{resource_id('Encounter', ev.VISIT_SYSTEM, 'V0001')}"}


def test_report_without_order_numbers_is_refused() -> None:
    e = ev.oru_r01()
    bare: ResultReport = e.reports[0].model_copy(
        update={"filler_order_number": None, "placer_order_number": None}
    )
    with pytest.raises(FhirOutError) as info:
        to_bundle(e.model_copy(update={"reports": (bare,)}))
    assert info.value.field == "reports[0].filler_order_number"


def test_results_with_the_same_identity_are_refused_not_merged() -> None:
    e = ev.oru_r01()
    first = e.reports[0].results[0]
    twice = e.reports[0].model_copy(update={"results": (first, first)})
    with pytest.raises(FhirOutError) as info:
        to_bundle(e.model_copy(update={"reports": (twice,)}))
    assert info.value.field == "reports[0].results[1]"


def test_orm_service_request() -> None:
    b = to_bundle(ev.orm_o01()).value
    assert validate_bundle(b) == []
    (entry,) = entries(b, "ServiceRequest")
    rid = resource_id("ServiceRequest", ev.ORDER_SYSTEM, "ORD98765")
    assert entry["request"] == {"method": "PUT", "url": f"ServiceRequest/{rid}"}
    sr = entry["resource"]
    assert (sr["status"], sr["intent"], sr["priority"]) == ("active", "order", "urgent")
    assert sr["identifier"][0]["type"]["coding"][0]["code"] == "PLAC"
    assert sr["authoredOn"] == "2026-01-15T09:30:00+00:00"
    assert sr["requester"]["reference"] == entries(b, "Practitioner")[0]["fullUrl"]
    assert sr["reasonCode"] == [{"text": "Tired all the time"}]
    # cancelling the order (ORC-1 CA -> revoked) updates the same ServiceRequest
    revoked = entries(to_bundle(ev.orm_o01("revoked")).value, "ServiceRequest")[0]
    assert revoked["request"] == entry["request"] and revoked["resource"]["status"] == "revoked"


def test_clinical_resources() -> None:
    b = to_bundle(ev.clinical()).value
    assert validate_bundle(b) == []
    kinds = [e["resource"]["resourceType"] for e in b["entry"]]
    for rtype in (
        "AllergyIntolerance",
        "Condition",
        "MedicationRequest",
        "MedicationStatement",
        "DocumentReference",
        "ServiceRequest",
        "Encounter",
    ):
        assert rtype in kinds
    # an A08 states the patient record: conditional update rather than create
    assert entries(b, "Patient")[0]["request"]["method"] == "PUT"
    allergy = entries(b, "AllergyIntolerance")[0]["resource"]
    assert allergy["patient"]["reference"] == entries(b, "Patient")[0]["fullUrl"]
    assert allergy["clinicalStatus"]["coding"][0] == {
        "system": systems.ALLERGY_CLINICAL_STATUS,
        "code": "active",
    }
    assert allergy["reaction"][1]["manifestation"][0]["extension"][0]["valueCode"] == "unknown"
    condition = entries(b, "Condition")[0]["resource"]
    assert condition["onsetDateTime"] == "2020-05-01"
    assert condition["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    doc = entries(b, "DocumentReference")[0]["resource"]
    assert doc["context"]["encounter"][0]["reference"].startswith("Encounter/")
    assert doc["date"] == "2026-01-15T09:30:00+00:00"
    referral = next(
        e["resource"]
        for e in entries(b, "ServiceRequest")
        if e["resource"]["identifier"][0]["value"] == "000000000001"
    )
    assert referral["intent"] == "order" and "performer" in referral
    statement = entries(b, "MedicationStatement")[0]["resource"]
    assert statement["context"]["reference"].startswith("Encounter/")
