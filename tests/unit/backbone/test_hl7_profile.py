"""Outbound HL7 v2 profiles: trigger events as themselves or collapsed, MSH-3..6/12/15..18 from the profile,
the wire character set (UTF-8 declared, 8859/1, ASCII without diacritics); refusals name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.backbone.errors import WriteBackUnmappable
from shared.backbone.hl7_profile import OutboundProfile, load_profile, to_ascii
from shared.backbone.hl7_writeback import Hl7MllpDownstream
from shared.canonical.model import ClinicalEvent, EventKind, HumanName
from shared.errors import ConfigurationError
from shared.hl7v2 import parse_message
from shared.hl7v2.validation import validate
from shared.mapping.hl7v2_in import map_bytes
from tests.unit.backbone.support import event, nhs_numbers
from tests.unit.mapping.hl7v2_in import hl7in_samples as v2

NHS = nhs_numbers(1)[0]


def _event(kind: EventKind = EventKind.ADMISSION, *, family: str | None = None) -> ClinicalEvent:
    e = event("P1", nhs=NHS, visit="VP1")
    e = e.model_copy(update={"kind": kind})
    if kind in (EventKind.PATIENT_CREATED, EventKind.PATIENT_UPDATED):
        e = e.model_copy(update={"encounter": None})
    if family is not None:
        names = (HumanName(family=family, given=("ZOË",)),)
        e = e.model_copy(update={"patient": e.patient.model_copy(update={"names": names})})
    return e


def _msh(payload: bytes, codec: str = "utf-8") -> list[str]:
    return payload.split(b"\r", 1)[0].decode(codec).split("|")


@pytest.mark.parametrize(
    ("kind", "native", "collapsed"),
    [
        (EventKind.ADMISSION, "ADT^A01^ADT_A01", "ADT^A08^ADT_A01"),
        (EventKind.TRANSFER, "ADT^A02^ADT_A02", "ADT^A08^ADT_A01"),
        (EventKind.DISCHARGE, "ADT^A03^ADT_A03", "ADT^A08^ADT_A01"),
        (EventKind.REGISTRATION, "ADT^A04^ADT_A01", "ADT^A08^ADT_A01"),
        (EventKind.PRE_ADMISSION, "ADT^A05^ADT_A05", "ADT^A08^ADT_A01"),
        (EventKind.ENCOUNTER_UPDATE, "ADT^A08^ADT_A01", "ADT^A08^ADT_A01"),
        (EventKind.CANCEL_ADMISSION, "ADT^A11^ADT_A09", "ADT^A08^ADT_A01"),
        (EventKind.CANCEL_TRANSFER, "ADT^A12^ADT_A12", "ADT^A08^ADT_A01"),
        (EventKind.CANCEL_DISCHARGE, "ADT^A13^ADT_A01", "ADT^A08^ADT_A01"),
        (EventKind.PATIENT_CREATED, "ADT^A28^ADT_A05", "ADT^A31^ADT_A05"),
        (EventKind.PATIENT_UPDATED, "ADT^A31^ADT_A05", "ADT^A31^ADT_A05"),
    ],
)
def test_trigger_events_native_or_collapsed(kind: EventKind, native: str, collapsed: str) -> None:
    e = _event(kind)
    for events, expected in (("native", native), ("collapsed", collapsed)):
        payload = Hl7MllpDownstream(None, profile=OutboundProfile(events=events)).message_for(e)  # type: ignore[arg-type]
        message = parse_message(payload)
        assert message.raw("MSH-9") == expected
        assert message.get("EVN-1") == expected.split("^")[1]
    # each trigger is its own message: another MSH-10 for another trigger of the same event
    ids = {
        parse_message(Hl7MllpDownstream(None, profile=OutboundProfile(events=ev)).message_for(e)).control_id  # type: ignore[arg-type]
        for ev in ("native", "collapsed")
    }
    assert len(ids) == (1 if native == collapsed else 2)


def test_a_cancel_transfer_written_natively_reads_back_as_the_same_cancellation() -> None:
    """A12 out (native): validates as ADT_A12 and reads back with the same key, the same cancelled
    transfer (EVN-6 kept) and the same locations - PV1-3 where the patient stays, PV1-6 the cancelled one."""
    raw = v2.adt(
        "A12",
        pv1={3: "WARD1^BAY2^BED3^RRV", 6: "WARD2^B^1^RRV"},
        evn={2: "20260702130000", 6: "20260702120000"},
    )
    original = map_bytes(raw).value
    payload = Hl7MllpDownstream(None, profile=OutboundProfile(events="native")).message_for(original)  # type: ignore[arg-type]
    message = parse_message(payload)
    checked = validate(message)
    assert (checked.ack_code, checked.structure_id) == ("AA", "ADT_A12")
    back = map_bytes(payload).value
    assert (back.kind, back.key, back.cancels) == (original.kind, original.key, original.cancels)
    assert back.encounter is not None and original.encounter is not None
    assert back.encounter.location == original.encounter.location
    assert back.encounter.prior_location == original.encounter.prior_location


def test_msh_fields_come_from_the_profile() -> None:
    profile = OutboundProfile(
        version="2.4",
        sending_application="TIEAPP",
        sending_facility="RGT01",
        receiving_application="PAS",
        receiving_facility="RXX01",
        country="GBR",
        accept_ack="AL",
        application_ack="NE",
    )
    fields = _msh(Hl7MllpDownstream(None, profile=profile).message_for(_event()))
    assert (fields[2], fields[3], fields[4], fields[5]) == ("TIEAPP", "RGT01", "PAS", "RXX01")
    assert (fields[11], fields[14], fields[15], fields[16], fields[17]) == (
        "2.4",
        "AL",
        "NE",
        "GBR",
        "UNICODE UTF-8",
    )


def test_utf8_is_declared_and_sent_as_utf8() -> None:
    payload = Hl7MllpDownstream(None).message_for(_event(family="SEÁN"))
    assert _msh(payload)[17] == "UNICODE UTF-8"
    assert "SEÁN^ZOË".encode() in payload
    assert map_bytes(payload).value.patient.names[0].family == "SEÁN"  # reads back as sent


def test_8859_1_is_declared_and_sent_as_latin1() -> None:
    ds = Hl7MllpDownstream(None, profile=OutboundProfile(charset="8859/1"))
    payload = ds.message_for(_event(family="SEÁN"))
    assert _msh(payload, "latin-1")[17] == "8859/1"
    assert "SEÁN^ZOË".encode("latin-1") in payload
    assert map_bytes(payload).value.patient.names[0].family == "SEÁN"
    with pytest.raises(WriteBackUnmappable) as info:
        ds.message_for(_event(family="ŁUKASZ"))  # not in Latin-1
    assert info.value.detail == "charset 8859/1 at PID-5"
    assert "ŁUKASZ" not in str(info.value)


def test_ascii_writes_letters_without_diacritics_and_refuses_what_has_no_ascii_form() -> None:
    ds = Hl7MllpDownstream(None, profile=OutboundProfile(charset="ASCII"))
    payload = ds.message_for(_event(family="Siobhán"))
    assert payload.isascii()
    assert _msh(payload)[17:18] in ([], [""])  # MSH-18 empty: ASCII, the HL7 default
    assert b"Siobhan^ZOE" in payload
    with pytest.raises(WriteBackUnmappable) as info:
        ds.message_for(_event(family="STRAßE"))
    assert info.value.detail == "charset ASCII at PID-5"
    assert "STRA" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("SEAN", ("SEAN", None)), ("SEÁN", ("SEAN", None)), ("ZOË", ("ZOE", None)), ("Øre", ("Øre", 0))],
)
def test_to_ascii(text: str, expected: tuple[str, int | None]) -> None:
    assert to_ascii(text) == expected


@pytest.mark.parametrize(
    "data",
    [
        {"version": "3.0"},
        {"charset": "UTF-16"},
        {"events": "some"},
        {"accept_ack": "YES"},
        {"country": "UK"},
        {"colour": "blue"},
        {"version": 2.4},
        [],
    ],
)
def test_invalid_profiles_are_refused(data: object) -> None:
    with pytest.raises(ConfigurationError):
        OutboundProfile.from_json(data)


def test_load_profile(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"version": "2.4", "charset": "ASCII", "events": "native"}), "utf-8")
    assert load_profile(path) == OutboundProfile(version="2.4", charset="ASCII", events="native")
    assert load_profile(None) == OutboundProfile()
    path.write_text("{", "utf-8")
    with pytest.raises(ConfigurationError):
        load_profile(path)
    with pytest.raises(ConfigurationError):
        load_profile(tmp_path / "missing.json")


def test_the_production_downstream_takes_the_profile_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.backbone.runtime import hl7_profile
    from shared.config.settings import Settings

    path = tmp_path / "profile.json"
    path.write_text(
        json.dumps({"version": "2.4", "events": "native", "receiving_facility": "RXX01"}), "utf-8"
    )
    monkeypatch.setenv("TIE_WRITEBACK_HL7_PROFILE_FILE", str(path))
    monkeypatch.setenv("TIE_WRITEBACK_HL7_RECEIVING_APPLICATION", "PAS")
    monkeypatch.setenv("TIE_WRITEBACK_HL7_RECEIVING_FACILITY", "IGNORED")
    assert hl7_profile(Settings()) == OutboundProfile(
        version="2.4", events="native", receiving_application="PAS", receiving_facility="RXX01"
    )
    monkeypatch.delenv("TIE_WRITEBACK_HL7_PROFILE_FILE")
    assert hl7_profile(Settings()) == OutboundProfile(
        receiving_application="PAS", receiving_facility="IGNORED"
    )


@pytest.mark.parametrize("profile", [OutboundProfile(), OutboundProfile(version="2.4", charset="ASCII")])
def test_a_uk_core_lab_observation_from_fhir_arrives_as_oru_r01(profile: OutboundProfile) -> None:
    """category = laboratory has no single v2-0074 section: OBR-24 is left empty (lineage says why) and the
    result is sent, instead of the whole report being refused."""
    from shared.mapping.fhir_in import event_from_fhir, patient_from_fhir
    from shared.terminology import systems
    from tests.unit.mapping.fhir_in.fhirin_helpers import pds_patient, potassium

    obs = potassium(identifier=[{"system": "urn:tie:authority:LAB", "value": "F1"}])
    obs["category"] = [{"coding": [{"system": systems.OBSERVATION_CATEGORY, "code": "laboratory"}]}]
    subject = pds_patient()
    # v3-MaritalStatus M has no way back to HL7 table 0002 yet (hl7uk-0002 map): not what this test is about
    subject.pop("maritalStatus")
    e = event_from_fhir(obs, interaction="create", patient=patient_from_fhir(subject).value).value
    assert e.kind is EventKind.RESULT and e.reports[0].category is not None
    message = parse_message(Hl7MllpDownstream(None, profile=profile).message_for(e))
    assert message.raw("MSH-9") == "ORU^R01^ORU_R01" and message.version == profile.version
    assert message.get("OBR-24") is None
    assert (message.get("OBR-3"), message.get("OBX-3"), message.get("OBX-5")) == (
        "F1",
        obs["code"]["coding"][0]["code"],
        str(obs["valueQuantity"]["value"]),
    )


@pytest.mark.parametrize("charset", ["UNICODE UTF-8", "8859/1", "ASCII"])
def test_delimiters_in_values_are_escaped_on_the_wire(charset: str) -> None:
    family = "O'NEIL & SONS|A^B~C\\D"
    profile = OutboundProfile(charset=charset)
    payload = Hl7MllpDownstream(None, profile=profile).message_for(_event(family=family))
    pid = next(seg for seg in payload.split(b"\r") if seg.startswith(b"PID|"))
    assert b"O'NEIL \\T\\ SONS\\F\\A\\S\\B\\R\\C\\E\\D^" in pid
    assert map_bytes(payload).value.patient.names[0].family == family
