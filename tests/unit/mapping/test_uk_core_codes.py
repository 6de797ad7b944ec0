"""NHS Data Dictionary codes in HL7 v2 (PID-16/22, PV1-4/14/36) -> UK Core code systems and extensions
(fhir_out) -> the same canonical values (fhir_in) -> the codes the sender sent (hl7v2_out)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shared.canonical.model import ClinicalEvent, Concept
from shared.mapping.fhir_in import encounter_from_fhir, patient_from_fhir
from shared.mapping.fhir_out import to_bundle
from shared.mapping.hl7v2_in import map_bytes
from shared.mapping.hl7v2_out import to_adt_a08, to_adt_a31
from shared.terminology import systems
from tests.unit.mapping.hl7v2_in.hl7in_samples import adt
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER

EXT_ADMISSION_METHOD = systems.EXT_ADMISSION_METHOD
#: The sending facility's (MSH-4 RRV) local code system for an HL7 table, by table number.
_LOCAL = "urn:tie:codesystem:RRV:"


def _event(pid: dict[int, str], pv1: dict[int, str], trigger: str = "A03") -> ClinicalEvent:
    return map_bytes(adt(trigger, pid=pid, pv1={45: "20260702100000", **pv1})).value  # type: ignore[no-any-return]


def _resources(ev: ClinicalEvent) -> dict[str, dict[str, Any]]:
    bundle = to_bundle(ev).value
    return {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}


def _codings(cc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [(c.get("system"), c["code"], c.get("userSelected")) for c in cc["coding"]]


UK = {16: "P", 22: "N^^NHSETH"}
UK_PV1 = {4: "2A", 14: "51", 36: "79"}


def test_nhs_codes_become_uk_core_codings_and_extensions() -> None:
    res = _resources(_event(UK, UK_PV1))
    patient, encounter = res["Patient"], res["Encounter"]
    (eth,) = [e for e in patient["extension"] if e["url"] == systems.EXT_ETHNIC_CATEGORY]
    assert _codings(eth["valueCodeableConcept"]) == [(systems.ETHNIC_CATEGORY_ENGLAND, "N", None)]
    assert _codings(patient["maritalStatus"]) == [(systems.PERSON_MARITAL_STATUS_ENGLAND, "P", None)]
    hosp = encounter["hospitalization"]
    (method,) = hosp["extension"]
    assert method["url"] == EXT_ADMISSION_METHOD
    assert _codings(method["valueCodeableConcept"]) == [(systems.ADMISSION_METHOD_ENGLAND, "2A", None)]
    assert _codings(hosp["admitSource"]) == [(systems.SOURCE_OF_ADMISSION_ENGLAND, "51", None)]
    assert _codings(hosp["dischargeDisposition"]) == [(systems.DISCHARGE_DESTINATION_ENGLAND, "79", None)]
    assert "priority" not in encounter  # an admission method is not a priority
    assert "v2-0189" not in str(res) and "v2-0023" not in str(res) and "v2-0112" not in str(res)


# (PV1-4 sent, admission method code, priority codings (system, code, userSelected))
PV1_4 = [
    ("21", "21", None),
    ("E", None, [(systems.V2_0007_ADMISSION_TYPE, "E", None), (systems.V3_ACT_PRIORITY, "EM", None)]),
    ("ZZ", None, [(_LOCAL + "0007", "ZZ", False)]),  # not an HL7 0007 code: the sender's own
]


@pytest.mark.parametrize(("sent", "method", "priority"), PV1_4)
def test_pv1_4_is_an_admission_method_or_a_priority_never_both(
    sent: str, method: str | None, priority: list[tuple[str, str, Any]] | None
) -> None:
    encounter = _resources(_event({}, {4: sent}))["Encounter"]
    methods = encounter.get("hospitalization", {}).get("extension", [])
    assert [m["valueCodeableConcept"]["coding"][0]["code"] for m in methods] == ([method] if method else [])
    assert (_codings(encounter["priority"]) if "priority" in encounter else None) == priority


# Unknown codes: kept as sent under the sender's local code system (none of them is a code of the HL7
# table the field is drawn from), marked userSelected=false (never a default that looks like a real code).
UNKNOWN = [
    ("Patient", lambda r: r["maritalStatus"], _LOCAL + "0002", "Q"),
    ("Patient", lambda r: r["extension"][0]["valueCodeableConcept"], _LOCAL + "0189", "ZZ"),
    ("Encounter", lambda r: r["hospitalization"]["admitSource"], _LOCAL + "0023", "X1"),
    ("Encounter", lambda r: r["hospitalization"]["dischargeDisposition"], _LOCAL + "0112", "X2"),
]


@pytest.mark.parametrize(("rtype", "element", "system", "code"), UNKNOWN)
def test_unknown_codes_are_kept_as_sent_not_user_selected(
    rtype: str, element: Any, system: str, code: str
) -> None:
    res = _resources(_event({16: "Q", 22: "ZZ"}, {14: "X1", 36: "X2"}))
    assert _codings(element(res[rtype])) == [(system, code, False)]


@pytest.mark.parametrize(
    ("pid", "pv1"), [(UK, UK_PV1), ({16: "Q", 22: "ZZ"}, {4: "ZZ", 14: "X1", 36: "X2"}), ({}, {4: "E"})]
)
def test_fhir_in_reads_back_what_fhir_out_writes(pid: dict[int, str], pv1: dict[int, str]) -> None:
    ev = _event(pid, pv1)
    res = _resources(ev)
    patient = patient_from_fhir(res["Patient"], lineage=False).value
    encounter = encounter_from_fhir(res["Encounter"], lineage=False).value
    assert ev.encounter is not None
    assert (patient.ethnicity, patient.marital_status) == (ev.patient.ethnicity, ev.patient.marital_status)
    for attr in ("admission_method", "priority", "admit_source", "discharge_disposition"):
        assert getattr(encounter, attr) == getattr(ev.encounter, attr), attr


@pytest.mark.parametrize(
    ("pid", "pv1"),
    [(UK, UK_PV1), ({16: "Q", 22: "A^White - British^NHSETHNIC"}, {4: "12", 14: "19", 36: "19"})],
)
def test_hl7_write_back_sends_the_original_codes(pid: dict[int, str], pv1: dict[int, str]) -> None:
    ev = _event(pid, pv1)
    # on behalf of the sender: a local code's CWE.3 is its table's id, scoped by the reader to MSH-4
    text = to_adt_a08(ev, replace(HEADER, sending_facility="RRV")).to_er7()
    segments = {s.split("|")[0]: s.split("|") for s in text.split("\r") if s}
    assert segments["PID"][16].split("^")[0] == pid[16]
    assert segments["PID"][22].split("^")[0] == pid[22].split("^")[0]
    assert [segments["PV1"][n] for n in (4, 14, 36)] == [pv1[4], pv1[14], pv1[36]]
    again = map_bytes(text.encode()).value
    assert again.encounter is not None and ev.encounter is not None
    assert (again.patient.ethnicity, again.patient.marital_status) == (
        ev.patient.ethnicity,
        ev.patient.marital_status,
    )
    assert again.encounter.admission_method == ev.encounter.admission_method
    assert isinstance(again.encounter.admit_source, Concept)


# XTN (PID-13): equipment type CP fixes the use 'mobile' whatever XTN.2 says (HL7 v2-to-FHIR).
TELECOM = [
    ("07700 900123^PRN^CP", ("phone", "mobile")),
    ("07700 900123^ORN^CP", ("phone", "mobile")),
    ("07700 900123^^CP", ("phone", "mobile")),
    ("020 7946 0000^PRN^PH", ("phone", "home")),
    ("020 7946 0000^WPN^PH", ("phone", "work")),
]


@pytest.mark.parametrize(("sent", "expected"), TELECOM)
def test_cellular_phone_is_a_mobile(sent: str, expected: tuple[str, str]) -> None:
    patient = _event({13: sent}, {}).patient
    assert [(c.system, c.use) for c in patient.telecom] == [expected]
    (telecom,) = _resources(_event({13: sent}, {}))["Patient"]["telecom"]
    assert (telecom["system"], telecom["use"]) == expected


# PD1-3 (practice, ODS) and PD1-4 (registered GP): GMP / GMC from XCN.9, else from XCN.13.
GP = [
    ("G8123456^SMITH^JANE^^^DR^^^GMP", systems.GMP_NUMBER),
    ("G8123456^SMITH^JANE^^^DR^^^^^^^GMP", systems.GMP_NUMBER),
    ("C1234567^SMITH^JANE^^^DR^^^GMC", systems.GMC_NUMBER),
    ("C1234567^SMITH^JANE^^^DR^^^^^^^GMC", systems.GMC_NUMBER),
]


@pytest.mark.parametrize(("pd1_4", "system"), GP)
def test_registered_gp_is_a_practitioner_beside_the_practice(pd1_4: str, system: str) -> None:
    pd1 = f"PD1|||Example Surgery^^^^^^^^^B82005|{pd1_4}"
    ev = map_bytes(adt("A28", before_pv1=(pd1,))).value
    gp = ev.patient.registered_gp
    assert gp is not None and [(i.system, i.value) for i in gp.identifiers] == [(system, pd1_4.split("^")[0])]
    bundle = to_bundle(ev).value
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    patient = next(r for r in by_url.values() if r["resourceType"] == "Patient")
    refs = [by_url[g["reference"]] for g in patient["generalPractitioner"]]
    assert [(r["resourceType"], r["identifier"][0]["system"], r["identifier"][0]["value"]) for r in refs] == [
        ("Organization", systems.ODS_ORGANIZATION_CODE, "B82005"),
        ("Practitioner", system, pd1_4.split("^")[0]),
    ]
    back = patient_from_fhir(patient, context=by_url, lineage=False).value
    assert (back.general_practitioner, back.registered_gp) == (ev.patient.general_practitioner, gp)
    again = map_bytes(to_adt_a31(ev, HEADER).encode()).value
    back_gp = again.patient.registered_gp
    assert back_gp is not None and back_gp.name == gp.name
    assert [(i.system, i.value) for i in back_gp.identifiers] == [(i.system, i.value) for i in gp.identifiers]


def test_registered_gp_cleared_by_the_hl7_null() -> None:
    ev = map_bytes(adt("A31", before_pv1=('PD1|||Example Surgery^^^^^^^^^B82005|""',))).value
    assert ev.patient.registered_gp is None and "registered_gp" in ev.patient.cleared
