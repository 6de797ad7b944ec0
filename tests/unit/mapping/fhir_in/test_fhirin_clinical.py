"""FHIR clinical resources -> canonical (Observation, DiagnosticReport, ServiceRequest, AllergyIntolerance,
Condition, MedicationRequest/Statement, DocumentReference)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.canonical.model import (
    Attachment,
    ClinicalDateTime,
    Concept,
    DataAbsentReason,
    Period,
    Quantity,
    Range,
)
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.fhir_in import (
    allergy_from_fhir,
    condition_from_fhir,
    document_reference_from_fhir,
    medication_request_from_fhir,
    medication_statement_from_fhir,
    observation_from_fhir,
    report_from_fhir,
    service_request_from_fhir,
)
from shared.terminology import systems
from tests.unit.mapping.fhir_in.fhirin_helpers import (
    FILL,
    PLAC,
    allergy,
    potassium,
    report,
    sodium,
    sources,
    uncovered_leaves,
)


def test_observation_maps_value_codes_range_interpretation_and_times() -> None:
    mapped = observation_from_fhir(potassium(), sequence=1)
    o = mapped.value
    assert o.status == "final"
    assert isinstance(o.code, Concept) and [c.code for c in o.code.codings] == ["2823-3", "K"]
    assert o.value == Quantity(value=Decimal("5.9"), unit="mmol/L", code="mmol/L", system=systems.UCUM)
    assert o.reference_range[0].low is not None and o.reference_range[0].low.value == Decimal("3.5")
    assert isinstance(o.interpretation[0], Concept) and o.interpretation[0].codings[0].code == "H"
    assert o.effective is not None and o.effective.value.isoformat() == "2026-01-15T09:30:00+00:00"
    assert o.notes == ("haemolysed sample",)
    assert o.sequence == 1
    assert sources(mapped.lineage, "reports[0].results[0].value.value") == {"Observation.valueQuantity.value"}
    assert uncovered_leaves(o, "reports[0].results[0]", mapped.lineage, ignore=set()) == []


@pytest.mark.parametrize(
    ("key", "value", "expected_type"),
    [
        ("valueString", "positive", str),
        ("valueCodeableConcept", {"coding": [{"system": systems.SNOMED_CT, "code": "10828004"}]}, Concept),
        ("valueDateTime", "2026-01-15", ClinicalDateTime),
        ("valueRange", {"low": {"value": 1}, "high": {"value": 2}}, Range),
        ("valueInteger", 7, Quantity),
    ],
)
def test_supported_value_types(key: str, value: object, expected_type: type) -> None:
    res = potassium()
    del res["valueQuantity"]
    res[key] = value
    assert isinstance(observation_from_fhir(res).value.value, expected_type)


@pytest.mark.parametrize(
    "key", ["valueBoolean", "valueRatio", "valuePeriod", "valueSampledData", "valueTime"]
)
def test_value_types_without_a_canonical_form_are_refused(key: str) -> None:
    res = potassium()
    del res["valueQuantity"]
    res[key] = True if key == "valueBoolean" else {"x": 1}
    with pytest.raises(InvalidValue) as err:
        observation_from_fhir(res)
    assert err.value.field == f"Observation.{key}"


def test_data_absent_reason_and_its_value_set() -> None:
    res = potassium()
    del res["valueQuantity"]
    res["dataAbsentReason"] = {"coding": [{"system": systems.DATA_ABSENT_REASON, "code": "not-performed"}]}
    o = observation_from_fhir(res).value
    assert o.data_absent is not None and o.data_absent.reason is DataAbsentReason.NOT_PERFORMED
    res["dataAbsentReason"]["coding"][0]["code"] = "lost"
    with pytest.raises(InvalidValue) as err:
        observation_from_fhir(res)
    assert err.value.field == "Observation.dataAbsentReason.coding[0].code"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(status="done"), "Observation.status"),
        (lambda r: r["valueQuantity"].update(value="abc"), "Observation.valueQuantity.value"),
        (lambda r: r["valueQuantity"].update(value=True), "Observation.valueQuantity.value"),
        (lambda r: r["valueQuantity"].update(comparator="~"), "Observation.valueQuantity.comparator"),
        (lambda r: r.update(effectiveDateTime="15/01/2026"), "Observation.effectiveDateTime"),
        (lambda r: r.update(effectiveTiming={"event": []}), "Observation.effective[x]"),
        (
            lambda r: r.update(effectiveTiming={"event": []}, effectiveDateTime=None),
            "Observation.effectiveTiming",
        ),
        (lambda r: r.update(valueString="x"), "Observation.value[x]"),
    ],
)
def test_observation_errors_name_the_element(mutate: Any, field: str) -> None:
    res = potassium()
    mutate(res)
    with pytest.raises(InvalidValue) as err:
        observation_from_fhir(res)
    assert err.value.field == field


def test_observation_without_code_is_refused() -> None:
    res = potassium()
    del res["code"]
    with pytest.raises(MissingRequiredField) as err:
        observation_from_fhir(res)
    assert err.value.field == "Observation.code"


def test_report_with_contained_and_bundled_observations() -> None:
    mapped = report_from_fhir(report(), context={"urn:uuid:na": sodium()}, full_url="urn:uuid:dr")
    rep = mapped.value
    assert rep.filler_order_number is not None and rep.filler_order_number.value == "F123"
    assert rep.placer_order_number is not None and rep.placer_order_number.value == "P456"
    assert [r.sequence for r in rep.results] == [1, 2]
    assert [r.code.codings[0].code for r in rep.results] == ["2823-3", "2951-2"]  # type: ignore[union-attr]
    assert rep.results[1].value == Quantity(value=Decimal(140), unit="mmol/L")
    assert rep.performer[0].name == "Pathology"  # type: ignore[union-attr]
    assert rep.conclusion == "see notes"
    assert sources(mapped.lineage, "reports[0].results[1].value.value") == {
        "DiagnosticReport.result[1].resolve().valueQuantity.value"
    }
    assert uncovered_leaves(rep, "reports[0]", mapped.lineage, ignore=set()) == []


def test_unresolvable_result_is_an_error_not_a_shorter_report() -> None:
    with pytest.raises(MissingRequiredField) as err:
        report_from_fhir(report())
    assert err.value.field == "DiagnosticReport.result[1]"


def test_presented_form_becomes_an_attachment_result() -> None:
    res = report(result=[], presentedForm=[{"contentType": "application/pdf", "url": "https://blob/r.pdf"}])
    mapped = report_from_fhir(res)
    rep = mapped.value
    assert len(rep.results) == 1
    only = rep.results[0]
    assert isinstance(only.value, Attachment) and only.value.url == "https://blob/r.pdf"
    assert (only.code, only.status, only.sequence) == (rep.code, "final", 1)
    assert uncovered_leaves(rep, "reports[0]", mapped.lineage, ignore=set()) == []
    res["presentedForm"][0]["data"] = "JVBERi0="
    with pytest.raises(InvalidValue) as err:
        report_from_fhir(res)
    assert err.value.field == "DiagnosticReport.presentedForm[0].data"


def test_placer_and_filler_are_not_repeated_in_identifiers_and_lose_their_type() -> None:
    res = report(result=[])
    res["identifier"].append({"system": "urn:tie:report", "value": "R1"})
    rep = report_from_fhir(res).value
    assert rep.filler_order_number is not None and rep.filler_order_number.type is None
    assert rep.placer_order_number is not None and rep.placer_order_number.type is None
    assert [(i.system, i.value) for i in rep.identifiers] == [("urn:tie:report", "R1")]


def test_untyped_report_identifier_is_the_filler_number() -> None:
    res = report(identifier=[{"system": "urn:tie:authority:LAB", "value": "F9"}], result=[])
    rep = report_from_fhir(res).value
    assert rep.filler_order_number is not None and rep.filler_order_number.value == "F9"
    assert rep.placer_order_number is None


def test_placer_from_based_on() -> None:
    res = report(
        identifier=[{"system": "urn:tie:authority:LAB", "value": "F9", "type": FILL}],
        basedOn=[{"identifier": {"system": "urn:tie:authority:EPR", "value": "P1", "type": PLAC}}],
        result=[],
    )
    rep = report_from_fhir(res).value
    assert rep.placer_order_number is not None and rep.placer_order_number.value == "P1"


def test_report_status_value_set() -> None:
    with pytest.raises(InvalidValue) as err:
        report_from_fhir(report(status="done", result=[]))
    assert err.value.field == "DiagnosticReport.status"


def test_panel_observation_needs_the_event_path() -> None:
    res = potassium(component=[{"code": {"text": "x"}, "valueQuantity": {"value": 1}}])
    with pytest.raises(InvalidValue) as err:
        observation_from_fhir(res)
    assert err.value.field == "Observation.component"


def test_service_request() -> None:
    res = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:tie:authority:EPR", "value": "P1"}],
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "code": {"coding": [{"system": systems.LOCAL_LAB, "code": "FBC"}]},
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2026-01-15T09:00:00Z",
        "requester": {"identifier": {"system": systems.GMC_NUMBER, "value": "C1"}},
        "reasonCode": [
            {"text": "anaemia?"},
            {"coding": [{"system": systems.SNOMED_CT, "code": "271737000"}], "text": "Anaemia"},
            {"text": "second free text"},
        ],
        "note": [{"text": "fasting"}],
        "occurrencePeriod": {"start": "2026-01-16T09:00:00Z", "end": "2026-01-16T10:00:00Z"},
    }
    mapped = service_request_from_fhir(res)
    sr = mapped.value
    assert sr.placer_order_number is not None and sr.placer_order_number.value == "P1"
    assert (sr.status, sr.intent, sr.priority) == ("active", "order", "urgent")
    # the first text-only reasonCode is the relevant clinical information (HL7 OBR-13); the rest are reasons
    assert sr.notes == ("fasting",) and sr.clinical_information == "anaemia?"
    assert [r.text for r in sr.reason] == ["Anaemia", "second free text"]  # type: ignore[union-attr]
    assert isinstance(sr.occurrence, Period) and sr.occurrence.end is not None
    assert sr.occurrence.end.value == datetime(2026, 1, 16, 10, 0, tzinfo=UTC)
    assert uncovered_leaves(sr, "orders[0]", mapped.lineage, ignore=set()) == []
    res["intent"] = "wish"
    with pytest.raises(InvalidValue):
        service_request_from_fhir(res)
    res["intent"] = "order"
    res["identifier"] = []
    with pytest.raises(MissingRequiredField) as err:
        service_request_from_fhir(res)
    assert err.value.field == "ServiceRequest.identifier"


def test_allergy() -> None:
    mapped = allergy_from_fhir(allergy())
    a = mapped.value
    assert (a.clinical_status, a.verification_status, a.type, a.category, a.criticality) == (
        "active",
        "confirmed",
        "allergy",
        ("medication",),
        "high",
    )
    assert a.onset is not None and a.onset.precision == "year"
    assert a.reactions[0].severity == "moderate"
    assert uncovered_leaves(a, "allergies[0]", mapped.lineage, ignore=set()) == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda r: r["clinicalStatus"]["coding"][0].update(code="gone"),
            "AllergyIntolerance.clinicalStatus.coding[0].code",
        ),
        (
            lambda r: r["clinicalStatus"]["coding"][0].update(system="urn:x"),
            "AllergyIntolerance.clinicalStatus",
        ),
        (lambda r: r.update(category=["pollen"]), "AllergyIntolerance.category[0].c"),
        (lambda r: r.update(criticality="very"), "AllergyIntolerance.criticality"),
        (lambda r: r["reaction"][0].update(severity="fatal"), "AllergyIntolerance.reaction[0].severity"),
    ],
)
def test_allergy_value_sets(mutate: Any, field: str) -> None:
    res = allergy()
    mutate(res)
    with pytest.raises(InvalidValue) as err:
        allergy_from_fhir(res)
    assert err.value.field == field


def test_condition() -> None:
    res = {
        "resourceType": "Condition",
        "identifier": [{"system": "urn:tie:condition", "value": "C1"}],
        "clinicalStatus": {"coding": [{"system": systems.CONDITION_CLINICAL_STATUS, "code": "active"}]},
        "verificationStatus": {
            "coding": [{"system": systems.CONDITION_VERIFICATION_STATUS, "code": "confirmed"}]
        },
        "category": [
            {"coding": [{"system": systems.SNOMED_CT, "code": "394658006"}]},
            {"coding": [{"system": systems.CONDITION_CATEGORY, "code": "problem-list-item"}]},
        ],
        "code": {"coding": [{"system": systems.SNOMED_CT, "code": "195967001", "display": "Asthma"}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2010-05-01",
    }
    mapped = condition_from_fhir(res)
    c = mapped.value
    assert (c.clinical_status, c.verification_status, c.category) == (
        "active",
        "confirmed",
        "problem-list-item",
    )
    assert uncovered_leaves(c, "conditions[0]", mapped.lineage, ignore=set()) == []
    res["category"][1]["coding"][0]["code"] = "symptom"
    with pytest.raises(InvalidValue) as err:
        condition_from_fhir(res)
    assert err.value.field == "Condition.category[1].coding[0].code"


def test_medication_request_and_statement_are_kept_distinct() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": "urn:tie:rx", "value": "RX1"}],
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "#med"},
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med",
                "code": {"coding": [{"system": systems.SNOMED_CT, "code": "39732311000001104"}]},
            }
        ],
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2026-01-15",
        "dosageInstruction": [{"text": "500mg three times a day"}],
    }
    mr = medication_request_from_fhir(request).value
    assert mr.medication.codings[0].code == "39732311000001104"  # type: ignore[union-attr]
    assert mr.dosage_text == "500mg three times a day"
    statement = {
        "resourceType": "MedicationStatement",
        "identifier": [{"system": "urn:tie:ms", "value": "MS1"}],
        "status": "active",
        "medicationCodeableConcept": {"text": "paracetamol"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2026-01-01"},
        "dosage": [{"text": "1g prn"}],
    }
    ms = medication_statement_from_fhir(statement).value
    assert ms.effective is not None and ms.effective.start is not None and ms.dosage_text == "1g prn"
    request["medicationReference"] = {"reference": "Medication/absent"}
    with pytest.raises(MissingRequiredField) as err:
        medication_request_from_fhir(request)
    assert err.value.field == "MedicationRequest.medicationReference"


def test_document_reference_refuses_inline_data() -> None:
    res = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:tie:doc", "value": "D1"},
        "status": "current",
        "type": {"coding": [{"system": systems.SNOMED_CT, "code": "373942005"}]},
        "subject": {"reference": "Patient/p1"},
        "date": "2026-01-15T09:00:00Z",
        "content": [
            {"attachment": {"contentType": "application/pdf", "url": "https://blob/doc", "size": 10}}
        ],
    }
    d = document_reference_from_fhir(res).value
    assert d.identifiers[0].value == "D1" and d.content[0].url == "https://blob/doc"
    res["content"][0]["attachment"]["data"] = "JVBERi0="
    with pytest.raises(InvalidValue) as err:
        document_reference_from_fhir(res)
    assert err.value.field == "DocumentReference.content[0].attachment.data"


def test_report_notes_from_the_r5_note_extension() -> None:
    ext = "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note"
    res = report(result=[], extension=[{"url": ext, "valueAnnotation": {"text": "sample haemolysed"}}])
    mapped = report_from_fhir(res)
    assert mapped.value.notes == ("sample haemolysed",)
    assert uncovered_leaves(mapped.value, "reports[0]", mapped.lineage, ignore=set()) == []
