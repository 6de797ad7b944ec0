"""The same clinical event arriving as HL7 v2 or as a FHIR write gets the same ClinicalEvent.key."""

from __future__ import annotations

from typing import Any

import pytest

from shared.canonical import identity
from shared.canonical.model import ClinicalEvent, EventKind
from shared.mapping.fhir_in import event_from_fhir, patient_from_fhir
from shared.terminology import systems

hl7v2_in = pytest.importorskip("shared.mapping.hl7v2_in")

A01 = "\r".join(
    [
        "MSH|^~\\&|PAS|RX1|TIE|RX1|20260701101600||ADT^A01^ADT_A01|MSG1|P|2.5.1",
        "EVN|A01|20260701101600",
        "PID|1||9434765919^^^NHS^NH~MRN123^^^RX1^MR||Smith^Jane^Anne||20101022|F|||"
        "1 Trevelyan Square^Boar Lane^Leeds^West Yorkshire^LS1 6AE",
        "PD1|||Example Surgery^^^^^^^^^B82005",
        "PV1|1|I|WARD7^R2^B4^RX101||||C1234567^Who^Alan^^^Dr^^^GMC"
        + "|" * 12
        + "V0001^^^RX1^VN"
        + "|" * 25
        + "20260701101500",
    ]
)

ORU = "\r".join(
    [
        "MSH|^~\\&|LIMS|LAB|TIE|RX1|20260115110500||ORU^R01^ORU_R01|MSG2|P|2.5.1",
        "PID|1||9434765919^^^NHS^NH||Smith^Jane||20101022|F",
        "OBR|1|P456^EPR|F123^LAB|UE^U\\T\\E^EXAMPLE-TRUST-LAB|||20260115093000" + "|" * 18 + "F",
        "OBX|1|NM|K^Potassium^EXAMPLE-TRUST-LAB||5.9|mmol/L^^UCUM|3.5-5.3|H|||F",
    ]
)


def hl7(text: str) -> ClinicalEvent:
    return hl7v2_in.map_bytes(text.encode()).value  # type: ignore[no-any-return]


def fhir_patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": systems.NHS_NUMBER, "value": "9434765919"},
            {"system": "urn:tie:authority:RX1", "value": "MRN123"},
        ],
        "name": [{"family": "Smith", "given": ["Jane", "Anne"]}],
        "gender": "female",
        "birthDate": "2010-10-22",
    }


def fhir_admission() -> dict[str, Any]:
    """The A01 above as a FHIR client would write it: the visit number in the identifier system the HL7
    path derives (``urn:tie:authority:`` + PV1-19.4), the admission time with its BST offset."""
    return {
        "resourceType": "Encounter",
        "meta": {"lastUpdated": "2026-07-01T10:16:30+01:00"},
        "identifier": [
            {
                "type": {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "VN"}]},
                "system": "urn:tie:authority:RX1",
                "value": "V0001",
            }
        ],
        "status": "in-progress",
        "class": {"system": systems.V3_ACT_CODE, "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-07-01T09:15:00Z"},
    }


def test_hl7_a01_and_fhir_encounter_create_have_the_same_key() -> None:
    from_hl7 = hl7(A01)
    patient = patient_from_fhir(fhir_patient()).value
    from_fhir = event_from_fhir(fhir_admission(), interaction="create", patient=patient).value
    assert from_hl7.kind is from_fhir.kind is EventKind.ADMISSION
    assert from_fhir.key == from_hl7.key
    # the subject given by reference in the write's context gives the same key too
    via_context = event_from_fhir(
        fhir_admission(), interaction="create", patient=None, context={"Patient/p1": fhir_patient()}
    ).value
    assert via_context.key == from_hl7.key


def test_a_different_admission_time_is_the_same_event_with_different_content() -> None:
    res = fhir_admission()
    res["period"]["start"] = "2026-07-01T10:15:00Z"  # 11:15 BST, not the A01's 10:15
    patient = patient_from_fhir(fhir_patient()).value
    corrected = event_from_fhir(res, interaction="create", patient=patient).value
    original = hl7(A01)
    assert corrected.key == original.key  # one admission (patient + visit): a corrected time is an update
    assert identity.event_digest(corrected) != identity.event_digest(original)


def _bundle_context(event: ClinicalEvent) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    fhir_out = pytest.importorskip("shared.mapping.fhir_out")
    bundle = fhir_out.to_bundle(event).value
    context: dict[str, dict[str, Any]] = {}
    by_type: dict[str, dict[str, Any]] = {}
    for entry in bundle["entry"]:
        res = entry["resource"]
        context[entry["fullUrl"]] = res
        if "id" in res:
            context[f"{res['resourceType']}/{res['id']}"] = res
        by_type.setdefault(res["resourceType"], res)
    return context, by_type


def test_hl7_a01_through_fhir_out_and_back_in_keeps_the_key_and_the_clinical_content() -> None:
    from_hl7 = hl7(A01)
    context, resources = _bundle_context(from_hl7)
    back = event_from_fhir(resources["Encounter"], interaction="create", patient=None, context=context).value
    assert back.kind is EventKind.ADMISSION and back.key == from_hl7.key
    # HL7 v2 update directives (what the message did not state: PD1-12 absent) do not cross FHIR, whose
    # resources carry the whole state (docs/update-semantics.md); the clinical content does.
    assert from_hl7.patient.defaulted == ("sensitivity",) and back.patient.defaulted == ()
    assert back.patient == from_hl7.patient.model_copy(update={"defaulted": ()})
    enc, orig = back.encounter, from_hl7.encounter
    assert enc is not None and orig is not None
    assert (enc.identifiers, enc.status, enc.period, enc.location, enc.attending) == (
        orig.identifiers,
        orig.status,
        orig.period,
        orig.location,
        orig.attending,
    )


def test_hl7_oru_through_fhir_out_and_back_in_keeps_the_result_key() -> None:
    from_hl7 = hl7(ORU)
    context, resources = _bundle_context(from_hl7)
    back = event_from_fhir(
        resources["DiagnosticReport"], interaction="create", patient=None, context=context
    ).value
    assert back.kind is EventKind.RESULT and back.key == from_hl7.key
    (r1,), (r2,) = from_hl7.reports, back.reports
    assert (r2.filler_order_number, r2.placer_order_number) == (
        r1.filler_order_number.model_copy(update={"type": None}),  # type: ignore[union-attr]
        r1.placer_order_number.model_copy(update={"type": None}),  # type: ignore[union-attr]
    )
    assert [o.value for o in r2.results] == [o.value for o in r1.results]
    assert [o.code for o in r2.results] == [o.code for o in r1.results]
    assert [o.reference_range for o in r2.results] == [o.reference_range for o in r1.results]
