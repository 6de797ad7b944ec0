"""HL7 v2 update semantics in the canonical model: ``""`` deletes (``cleared``), an empty field says
nothing, and a value the mapper defaults because the sender did not say it is ``defaulted``
(docs/update-semantics.md)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from pydantic import ValidationError

from shared.canonical.model import Address, Concept, Encounter, EncounterStatus, Patient, Sensitivity
from shared.mapping.hl7v2_in.rules import RulesError, compile_rules
from shared.mapping.hl7v2_out import to_adt_a08
from tests.unit.mapping.hl7v2_in.hl7in_samples import NHS, adt, event, mapped, oru, seg, uncovered_leaves
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER

NULL = '""'


@pytest.mark.parametrize("lineage", [False, True])
def test_explicit_null_lists_the_deleted_patient_fields(lineage: bool) -> None:
    raw = adt(
        "A08",
        pid={5: "SMITH^JOHN", 7: NULL, 11: NULL, 16: NULL, 22: NULL, 32: NULL},
        before_pv1=(seg("PD1", {3: NULL}),),
    )
    patient = mapped(raw, lineage=lineage).value.patient
    assert patient.cleared == (
        "birth_date",
        "addresses",
        "marital_status",
        "ethnicity",
        "nhs_number.verification_status",
        "general_practitioner",
    )
    assert (patient.birth_date, patient.addresses, patient.ethnicity, patient.general_practitioner) == (
        None,
        (),
        None,
        None,
    )


def test_an_empty_field_clears_nothing() -> None:
    patient = event(adt("A08", pid={7: "", 11: "", 22: "", 32: ""})).patient
    assert patient.cleared == ()
    assert patient.addresses == ()


def test_a_field_that_still_has_a_value_is_not_cleared() -> None:
    # PID-29 "" (no death time) with PID-30 Y: the patient is deceased, stated.
    patient = event(adt("A08", pid={29: NULL, 30: "Y"})).patient
    assert patient.deceased is True and patient.cleared == ()
    assert event(adt("A08", pid={29: NULL})).patient.cleared == ("deceased",)
    # PID-13 "" with a business number in PID-14: telecom holds the work number.
    patient = event(adt("A08", pid={13: NULL, 14: "0113111111^WPN^PH"})).patient
    assert [c.value for c in patient.telecom] == ["0113111111"] and patient.cleared == ()


def test_a_verification_status_is_cleared_only_with_the_number_it_qualifies() -> None:
    assert event(adt("A08", pid={32: NULL})).patient.cleared == ("nhs_number.verification_status",)
    without_nhs = event(adt("A08", pid={3: "RRV1^^^RRV^MR", 32: NULL})).patient
    assert without_nhs.nhs_number is None and without_nhs.cleared == ()


def test_explicit_null_lists_the_deleted_encounter_fields() -> None:
    encounter = event(adt("A08", pv1={8: NULL, 36: NULL, 14: NULL})).encounter
    assert encounter is not None
    assert encounter.cleared == ("referring", "admit_source", "discharge_disposition")
    assert (encounter.referring, encounter.admit_source) == ((), None)
    assert [p.identifiers[0].value for p in encounter.attending] == ["C1234567"]  # PV1-7 as sent


def test_a_missing_pd1_12_is_a_default_not_a_statement() -> None:
    assert event(adt("A08")).patient.defaulted == ("sensitivity",)  # no PD1
    assert event(adt("A08", before_pv1=(seg("PD1", {3: "X^^Y1"}),))).patient.defaulted == ("sensitivity",)
    stated_normal = event(adt("A08", before_pv1=(seg("PD1", {12: "N"}),))).patient
    assert (stated_normal.sensitivity, stated_normal.defaulted) == (Sensitivity.NORMAL, ())
    deleted = event(adt("A08", before_pv1=(seg("PD1", {12: NULL}),))).patient  # "" lifts a restriction
    assert (deleted.sensitivity, deleted.defaulted) == (Sensitivity.NORMAL, ())
    restricted = event(adt("A08", before_pv1=(seg("PD1", {12: "Y"}),))).patient
    assert (restricted.sensitivity, restricted.defaulted) == (Sensitivity.RESTRICTED, ())


def test_an_a08_status_inferred_from_a_missing_pv1_45_is_defaulted() -> None:
    inferred = event(adt("A08")).encounter
    assert inferred is not None and (inferred.status, inferred.defaulted) == (
        EncounterStatus.IN_PROGRESS,
        ("status",),
    )
    discharged = event(adt("A08", pv1={45: "20260705100000"})).encounter
    assert discharged is not None and (discharged.status, discharged.defaulted) == (
        EncounterStatus.FINISHED,
        (),
    )
    admitted = event(adt("A01")).encounter  # the trigger states it
    assert admitted is not None and admitted.defaulted == ()
    context = event(oru(pv1=True)).encounter  # a result's encounter is referred to, never written
    assert context is not None and context.defaulted == ()


def test_cleared_and_defaulted_have_lineage() -> None:
    raw = adt("A08", pid={11: NULL}, pv1={36: NULL})
    result = mapped(raw)
    assert uncovered_leaves(result) == []
    sources = {(e.source, e.target) for e in result.lineage}
    assert ("PID-11", "patient.cleared") in sources and ("PV1-36", "encounter.cleared") in sources
    assert any(e.target == "patient.defaulted" for e in result.lineage)
    assert any(e.target == "encounter.defaulted" for e in result.lineage)


def test_a_field_is_not_both_cleared_and_given_a_value() -> None:
    with pytest.raises(ValidationError):
        Patient(
            identifiers=(),
            nhs_number={"value": NHS},
            addresses=(Address(city="LEEDS"),),
            cleared=("addresses",),
        )
    with pytest.raises(ValidationError):
        Encounter(
            status=EncounterStatus.FINISHED,
            encounter_class=Concept(text="inpatient"),
            discharge_disposition=Concept(text="home"),
            cleared=("discharge_disposition",),
        )
    with pytest.raises(ValidationError):
        Patient(nhs_number={"value": NHS}, cleared=("identifiers",))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "target"),
    [("PID-3", "patient.identifiers"), ("PV1-19", "encounter.identifiers"), ("PID-5.1", "patient.names")],
)
def test_rules_that_clear_what_the_model_cannot_are_rejected(field: str, target: str) -> None:
    doc: dict[str, Any] = json.loads(
        resources.files("shared.mapping.hl7v2_in").joinpath("rules.json").read_text("utf-8")
    )
    doc["explicit_null"]["fields"][field] = target
    with pytest.raises(RulesError):
        compile_rules(doc)


def test_hl7v2_out_writes_deletions_as_null_and_leaves_unstated_fields_empty() -> None:
    first = event(adt("A08", pid={11: NULL, 22: NULL}, pv1={36: NULL}, before_pv1=(seg("PD1", {3: NULL}),)))
    again = event(to_adt_a08(first, HEADER).encode())
    assert (
        again.patient.cleared == first.patient.cleared == ("addresses", "ethnicity", "general_practitioner")
    )
    assert again.encounter is not None and first.encounter is not None
    assert again.encounter.cleared == first.encounter.cleared == ("discharge_disposition",)
    assert again.patient.defaulted == ("sensitivity",)  # PD1-12 left empty: no change downstream
