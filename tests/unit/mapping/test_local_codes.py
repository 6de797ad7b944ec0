"""Senders' local codes in HL7 table fields (issue 11, docs/conformance.md "Senders' local codes").

A code that no concept map translates and that is not a code of the field's HL7 table goes under the
sending facility's local code system (configured URI, else ``urn:tie:codesystem:<facility>:<table>``), keeps
its text, is ``userSelected=false`` where the field has a map, is counted per field and flagged in lineage;
a genuine HL7 table code keeps the table's system. FHIR in and HL7 write-back give the original code back;
event identity does not change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from shared.canonical.model import ClinicalEvent, Concept
from shared.mapping.fhir_in import encounter_from_fhir, patient_from_fhir
from shared.mapping.fhir_out import to_bundle
from shared.mapping.fhir_out._bundle import clear_caches as clear_fhir_out_caches
from shared.mapping.hl7v2_in import map_bytes
from shared.mapping.hl7v2_in.rules import RULES, STRICT_RULES
from shared.mapping.hl7v2_out import to_adt_a08
from shared.terminology import local_systems, systems
from tests.unit.mapping.hl7v2_in.hl7in_samples import adt
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER

HOSPITAL_SERVICE = "https://fhir.example-trust.nhs.uk/CodeSystem/hospital-service"
CONFIG = {
    "version": "1.0.0",
    "facilities": {"RRV": {"name": "Example Trust (fictional)", "systems": {"0069": HOSPITAL_SERVICE}}},
}
#: PV1-10 an NHS treatment function code, PV1-14 / PV1-36 / PID-22 / PID-16 local words and codes.
LOCAL_PID = {16: "Married^Married", 22: "Z2^Not stated (local)"}
LOCAL_PV1 = {10: "110", 14: "Usual", 36: "Dead", 45: "20260702100000"}  # IS fields: codes only


def _clear() -> None:
    for rules in (RULES, STRICT_RULES):
        rules.memo.clear()
        for rule in rules.coded.values():
            rule.memo.clear()
    clear_fhir_out_caches()
    local_systems.reset_unmapped()


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    _clear()
    yield
    local_systems.override(None)
    _clear()


def _event(pid: dict[int, str], pv1: dict[int, str], **msh: str) -> ClinicalEvent:
    return map_bytes(adt("A03", pid=pid, pv1=pv1, msh_fields=msh)).value  # type: ignore[no-any-return]


def _codings(value: Any) -> list[tuple[str | None, str, bool | None]]:
    assert isinstance(value, Concept)
    return [(c.system, c.code, c.user_selected) for c in value.codings]


def _resources(ev: ClinicalEvent) -> dict[str, dict[str, Any]]:
    return {e["resource"]["resourceType"]: e["resource"] for e in to_bundle(ev).value["entry"]}


def test_local_codes_take_the_senders_default_system_and_are_counted() -> None:
    ev = _event(LOCAL_PID, LOCAL_PV1)
    enc = ev.encounter
    assert enc is not None
    local = "urn:tie:codesystem:RRV:"
    assert _codings(enc.service_type) == [(local + "0069", "110", None)]  # no map: no userSelected
    assert _codings(enc.admit_source) == [(local + "0023", "Usual", False)]
    assert _codings(enc.discharge_disposition) == [(local + "0112", "Dead", False)]
    assert _codings(ev.patient.ethnicity) == [(local + "0189", "Z2", False)]
    assert _codings(ev.patient.marital_status) == [(local + "0002", "Married", False)]
    ethnicity = ev.patient.ethnicity
    assert isinstance(ethnicity, Concept) and ethnicity.text == "Not stated (local)"  # the original text
    assert ethnicity.codings[0].display == "Not stated (local)"
    assert local_systems.unmapped_counts() == {
        "encounter.service_type": 1,
        "encounter.admit_source": 1,
        "encounter.discharge_disposition": 1,
        "patient.ethnicity": 1,
        "patient.marital_status": 1,
    }


def test_genuine_hl7_table_codes_keep_the_table_system() -> None:
    ev = _event({16: "C"}, {10: "MED", 14: "1", 45: "20260702100000"})
    assert ev.encounter is not None
    assert _codings(ev.encounter.service_type) == [(systems.v2_table_system("0069"), "MED", None)]
    assert _codings(ev.encounter.admit_source) == [(systems.v2_table_system("0023"), "1", False)]
    assert _codings(ev.patient.marital_status) == [(systems.v2_table_system("0002"), "C", False)]
    assert local_systems.unmapped_counts() == {}


def test_a_coding_system_name_claiming_the_table_does_not_make_a_code_of_it() -> None:
    ev = _event({22: "Z2^Local^HL70189"}, {45: "20260702100000"})
    assert _codings(ev.patient.ethnicity) == [("urn:tie:codesystem:RRV:0189", "Z2", False)]


def test_the_system_is_scoped_to_the_sender_not_remembered_across_senders() -> None:
    first = _event({}, LOCAL_PV1)
    other = _event({}, LOCAL_PV1, f4="RX9")  # same PV1 text from another facility
    no_facility = _event({}, LOCAL_PV1, f4="")  # MSH-3 (PAS) then
    systems_seen = [
        _codings(e.encounter.service_type)[0][0]
        for e in (first, other, no_facility)
        if e.encounter is not None
    ]
    assert systems_seen == [
        "urn:tie:codesystem:RRV:0069",
        "urn:tie:codesystem:RX9:0069",
        "urn:tie:codesystem:PAS:0069",
    ]


def test_a_configured_facility_gets_its_trusts_uri() -> None:
    local_systems.override(local_systems.parse(CONFIG, "test"))
    mapped = map_bytes(adt("A03", pid=LOCAL_PID, pv1=LOCAL_PV1), lineage=True)
    enc = mapped.value.encounter
    assert _codings(enc.service_type) == [(HOSPITAL_SERVICE, "110", None)]
    assert _codings(enc.admit_source) == [("urn:tie:codesystem:RRV:0023", "Usual", False)]  # not configured
    flagged = sorted(e.rule for e in mapped.lineage if "UNMAPPED local code" in e.rule)
    assert len(flagged) == 5
    assert any("HL7 table 0069" in r and ", configured" in r for r in flagged)
    assert any("HL7 table 0023" in r and "default urn:tie:codesystem (not configured)" in r for r in flagged)
    assert not any(code in r for r in flagged for code in ("110", "Usual", "Dead", "Z2", "Married"))


def test_fhir_in_reads_local_codes_back_and_maps_the_default_urn_of_a_configured_facility() -> None:
    ev = _event(LOCAL_PID, LOCAL_PV1)
    res = _resources(ev)
    enc_json = res["Encounter"]
    assert enc_json["serviceType"]["coding"] == [{"system": "urn:tie:codesystem:RRV:0069", "code": "110"}]
    assert enc_json["hospitalization"]["admitSource"]["coding"][0]["userSelected"] is False
    assert "v2-0069" not in str(res) and "v2-0023" not in str(res) and "v2-0112" not in str(res)
    assert "v2-0189" not in str(res) and "v2-0002" not in str(res)
    patient = patient_from_fhir(res["Patient"], lineage=False).value
    encounter = encounter_from_fhir(enc_json, lineage=False).value
    assert (patient.ethnicity, patient.marital_status) == (ev.patient.ethnicity, ev.patient.marital_status)
    assert ev.encounter is not None
    for attr in ("service_type", "admit_source", "discharge_disposition"):
        assert getattr(encounter, attr) == getattr(ev.encounter, attr), attr
    # a client still sending the default URN once the Trust has configured the facility's system
    local_systems.override(local_systems.parse(CONFIG, "test"))
    again = encounter_from_fhir(enc_json, lineage=False).value
    assert _codings(again.service_type) == [(HOSPITAL_SERVICE, "110", None)]


def test_hl7_write_back_sends_the_original_codes_and_reads_back_the_same() -> None:
    ev = _event(LOCAL_PID, LOCAL_PV1)
    text = to_adt_a08(ev, replace(HEADER, sending_facility="RRV")).to_er7()  # on behalf of the sender
    segments = {s.split("|")[0]: s.split("|") for s in text.split("\r") if s}
    pid, pv1 = segments["PID"], segments["PV1"]
    assert [pv1[10], pv1[14], pv1[36]] == ["110", "Usual", "Dead"]  # IS fields: the code as sent
    assert pid[16].split("^")[0] == "Married" and pid[22].split("^")[0] == "Z2"
    # CWE.3: the table's id (HL7 0396 HL7nnnn, an ID of at most 20 characters), not the local URI
    assert pid[22].split("^")[2] == "HL70189"
    again = map_bytes(text.encode()).value
    assert (again.patient.ethnicity, again.patient.marital_status) == (
        ev.patient.ethnicity,
        ev.patient.marital_status,
    )
    assert again.encounter is not None and ev.encounter is not None
    for attr in ("service_type", "admit_source", "discharge_disposition"):
        assert getattr(again.encounter, attr) == getattr(ev.encounter, attr), attr
    # PV1-10/14/36 are IS fields, with no coding-system slot: written under another facility, the code is
    # the same but a reader scopes it to that facility (docs/conformance.md)
    other = map_bytes(to_adt_a08(ev, replace(HEADER, sending_facility="RX1")).encode()).value
    assert other.encounter is not None
    assert _codings(other.encounter.service_type) == [("urn:tie:codesystem:RX1:0069", "110", None)]
    # CWE too: the code travels, a reader scopes it to the message's sender
    assert _codings(other.patient.ethnicity) == [
        ("urn:tie:codesystem:RX1:0189" if c[0] == "urn:tie:codesystem:RRV:0189" else c[0], c[1], c[2])
        for c in _codings(ev.patient.ethnicity)
    ]


def test_a_mapped_code_outside_the_table_keeps_its_target_on_the_round_trip() -> None:
    ev = _event({16: "9"}, {45: "20260702100000"})  # NHS 'not known': not an HL7 0002 code
    expected = [("urn:tie:codesystem:RRV:0002", "9", None), (systems.V3_NULL_FLAVOR, "UNK", None)]
    assert _codings(ev.patient.marital_status) == expected
    assert local_systems.unmapped_counts() == {}  # mapped: not an unmapped code
    again = map_bytes(to_adt_a08(ev, replace(HEADER, sending_facility="RRV")).encode()).value
    assert _codings(again.patient.marital_status) == expected
    # written by another facility, the same code and target, scoped to that sender (CWE.3 is HL70002)
    other = map_bytes(to_adt_a08(ev, replace(HEADER, sending_facility="RX9")).encode()).value
    assert _codings(other.patient.marital_status) == [("urn:tie:codesystem:RX9:0002", "9", None), expected[1]]


def test_event_identity_does_not_depend_on_the_local_codes() -> None:
    with_codes = _event(LOCAL_PID, LOCAL_PV1)
    without = _event({16: "", 22: ""}, {10: "", 14: "", 36: "", 45: "20260702100000"})
    assert with_codes.key == without.key


def test_identifier_types_that_are_not_v2_0203_codes_are_text_not_codings() -> None:
    ev = _event({3: "RRV1234567^^^RRV^MEDREC~RRV7654321^^^RRV^MR"}, {45: "20260702100000"})
    patient_json = _resources(ev)["Patient"]
    types = [i.get("type") for i in patient_json["identifier"]]
    assert {"text": "MEDREC"} in types
    assert {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "MR"}]} in types
    back = patient_from_fhir(patient_json, lineage=False).value
    assert [(i.value, i.type) for i in back.identifiers] == [
        (i.value, i.type) for i in ev.patient.identifiers
    ]


def test_unmapped_local_codes_are_counted_per_message_when_the_reading_is_remembered() -> None:
    # Three patients and stays (no patient or encounter memo applies) with the same local codes, lineage
    # off: the code readers remember the first reading and count each later message again.
    for n in range(3):
        pid = {**LOCAL_PID, 3: f"RX{n}000001^^^RRV^MR"}
        _event(pid, {**LOCAL_PV1, 19: f"VN{n}000001^^^RRV^VN"})
    assert local_systems.unmapped_counts() == {
        "encounter.service_type": 3,
        "encounter.admit_source": 3,
        "encounter.discharge_disposition": 3,
        "patient.ethnicity": 3,
        "patient.marital_status": 3,
    }
