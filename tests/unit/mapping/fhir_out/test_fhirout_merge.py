"""shared.mapping.fhir_out.merge: an HL7 v2 update merged into a stored resource, element by element."""

from __future__ import annotations

from typing import Any

import pytest

from shared.fhir import profiles
from shared.mapping.fhir_out.merge import merge_update, retire
from shared.mapping.hl7v2_in import map_bytes
from tests.unit.mapping.hl7v2_in.hl7in_samples import NHS, adt

A08 = map_bytes(adt("A08", before_pv1=())).value
VERIFIED = {
    "url": profiles.EXT_NHS_NUMBER_VERIFICATION,
    "valueCodeableConcept": {"coding": [{"system": "x", "code": "01"}]},
}


def patient(**members: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **members}


def test_a_choice_element_and_a_primitive_extension_hold_one_value() -> None:
    stored = patient(
        deceasedDateTime="2026-01-01", _gender={"extension": [{"url": "dar"}]}, meta={"versionId": "3"}
    )
    merged = merge_update(A08, stored, patient(deceasedBoolean=False, gender="male"))
    assert merged == patient(deceasedBoolean=False, gender="male")


def test_identifiers_merge_by_system_and_keep_the_same_identifiers_extensions() -> None:
    stored = patient(
        identifier=[
            {"extension": [VERIFIED], "system": profiles.NHS_NUMBER_SYSTEM, "value": NHS},
            {"system": "urn:tie:authority:RRV", "value": "OLD"},
            {"system": "https://other.example/id", "value": "KEPT"},
        ]
    )
    new = patient(
        identifier=[
            {"system": profiles.NHS_NUMBER_SYSTEM, "value": NHS},
            {"system": "urn:tie:authority:RRV", "value": "NEW"},
        ]
    )
    assert merge_update(A08, stored, new)["identifier"] == [
        {"extension": [VERIFIED], "system": profiles.NHS_NUMBER_SYSTEM, "value": NHS},
        {"system": "urn:tie:authority:RRV", "value": "NEW"},
        {"system": "https://other.example/id", "value": "KEPT"},
    ]


def test_meta_keeps_what_the_server_or_another_writer_added() -> None:
    stored = patient(
        meta={
            "versionId": "2",
            "lastUpdated": "x",
            "profile": ["p-old"],
            "tag": [{"code": "t"}],
            "source": "s",
        }
    )
    merged = merge_update(A08, stored, patient(meta={"profile": ["p-new"]}))
    assert merged["meta"] == {"profile": ["p-new", "p-old"], "tag": [{"code": "t"}], "source": "s"}


def test_elements_the_message_does_not_know_survive() -> None:
    stored = patient(contact=[{"name": {"family": "NEXT"}}], communication=[{"language": {"text": "cy"}}])
    merged = merge_update(A08, stored, patient(name=[{"family": "SMITH"}]))
    assert merged == patient(
        contact=[{"name": {"family": "NEXT"}}],
        communication=[{"language": {"text": "cy"}}],
        name=[{"family": "SMITH"}],
    )


def test_results_are_whole_replacements() -> None:
    with pytest.raises(ValueError, match="whole replacements"):
        merge_update(A08, {"resourceType": "Observation"}, {"resourceType": "Observation"})


def test_retire_marks_the_record_inactive_and_links_the_survivor_once() -> None:
    stored = patient(identifier=[{"system": "s", "value": "v"}], meta={"versionId": "4"})
    survivor = {"reference": "Patient/p2", "type": "Patient"}
    retired = retire(stored, survivor)
    assert retired == patient(
        identifier=[{"system": "s", "value": "v"}],
        active=False,
        link=[{"other": survivor, "type": "replaced-by"}],
    )
    assert retire(retired, survivor) == retired


A02 = map_bytes(adt("A02", pv1={3: "WARD2^B^1^RRV", 6: "WARD1^BAY2^BED3^RRV"})).value
A12 = map_bytes(adt("A12", pv1={3: "WARD1^BAY2^BED3^RRV", 6: "WARD2^B^1^RRV"})).value


def encounter(*locations: tuple[str, str], **members: Any) -> dict[str, Any]:
    entries = [{"location": {"reference": f"Location/{ref}"}, "status": status} for ref, status in locations]
    return {"resourceType": "Encounter", "id": "e1", "status": "in-progress", "location": entries, **members}


def test_a_cancelled_transfer_removes_its_ward_and_makes_the_prior_one_current_again() -> None:
    """After A01 (w0), A01's move to w1 and A02 to w2: A12 names w1 as current again. w2 - the ward of the
    cancelled transfer - is removed (R4 Encounter.location.status has no entered-in-error, and
    ``completed`` would say the patient was there); w1 is active; the older history and the rest stay."""
    period = {"start": "2026-07-01T11:55:00+01:00"}
    stored = encounter(("w2", "active"), ("w1", "completed"), ("w0", "completed"), period=period)
    new = encounter(("w1", "active"))
    merged = merge_update(A12, stored, new)
    assert merged == encounter(("w1", "active"), ("w0", "completed"), period=period)
    # The same message read as a transfer keeps w2 as history: the trigger is what removes it.
    assert (
        merge_update(A02, stored, new)["location"]
        == encounter(("w1", "active"), ("w2", "completed"), ("w0", "completed"))["location"]
    )


def test_a_cancelled_transfer_with_no_current_ward_stored_removes_nothing() -> None:
    stored = encounter(("w1", "completed"), ("w0", "completed"))
    merged = merge_update(A12, stored, encounter(("w1", "active")))
    assert merged["location"] == encounter(("w1", "active"), ("w0", "completed"))["location"]
