"""HL7 -> canonical (hl7v2_in) -> HL7 (hl7v2_out) -> canonical keeps what both directions carry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.canonical.model import ClinicalEvent, EventKind
from shared.hl7v2.validation import validate
from shared.mapping.hl7v2_out import to_adt_a08, to_oru_r01
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER, seg

hl7v2_in = pytest.importorskip("shared.mapping.hl7v2_in")

A01 = "\r".join(
    [
        "MSH|^~\\&|PAS|RX1|TIE|RX1|20260701101600||ADT^A01^ADT_A01|MSG1|P|2.5.1",
        "EVN|A01|20260701101600",
        seg(
            "PID",
            {
                1: "1",
                2: "EXT5^^^RX9^PI",
                3: "9434765919^^^NHS^NH~MRN123^^^RX1^MR~L999^^^ODS^PI~X77^^^&1.2.826.0.1.285&ISO^PI",
                4: "ALT1^^^OTHERPAS",
                5: "Smith^Jane^Anne Marie^MBE^Mrs^PhD^L^^^^^20200101~Jones^Jane^^^^^M~Janey^^^^^^A",
                7: "20101022",
                8: "F",
                11: "1 Trevelyan Square^Boar Lane^Leeds^West Yorkshire^LS1 6AE^GBR^H"
                "~2&Low St^^York^^YO1 1AA^^M~&Mill Lane&4^^Leeds^^LS2 2AA^^N",
                13: "0113 496 0000^PRN^PH~07700 900123^PRS^CP~^NET^Internet^jane@example.org~0113 496 0001",
                14: "0113 496 0999^WPN^PH",
                16: "M^Married^HL70002",
                22: "A^British^NHSETH",
                29: "20260115030000",
                30: "Y",
                32: "NSTS02",
            },
        ),
        "PD1|||Example Surgery^^^^^^^^^B82005|||||||||Y",
        seg(
            "PV1",
            {
                1: "1",
                2: "I",
                3: "WARD7^R2^B4^RX101^^^^^Ward 7",
                4: "EM",
                6: "AMU^^^RX101",
                7: "C1234567^Who^Alan^^^Dr^^^GMC",
                8: "G7654321^Dolittle^John^^^Dr^^^GMP",
                10: "MED",
                14: "19",
                19: "V0001^^^RX1^VN",
                36: "19",
                44: "20260701101500",
                45: "20260705160000",
                50: "ALTV9^^^OTHERPAS^AN",
            },
        ),
    ]
)


def _in(text: str | bytes) -> ClinicalEvent:
    data = text.encode() if isinstance(text, str) else text
    return hl7v2_in.map_bytes(data).value  # type: ignore[no-any-return]


def test_adt_round_trip_keeps_patient_and_encounter() -> None:
    first = _in(A01)
    msg = to_adt_a08(first, HEADER)
    assert not [i for i in validate(msg).issues if i.severity == "E"]
    again = _in(msg.encode())
    assert again.kind is EventKind.ENCOUNTER_UPDATE
    p, q = first.patient, again.patient
    assert q.nhs_number == p.nhs_number
    assert q.identifiers == p.identifiers
    assert q.names == p.names
    assert q.birth_date == p.birth_date
    assert q.gender == p.gender
    assert q.addresses == p.addresses
    assert [(n.use) for n in p.names] == ["official", "maiden", None]  # XPN.7 L, M, A (alias: no use)
    assert [(a.lines[0], a.use, a.type) for a in p.addresses] == [
        ("1 Trevelyan Square", "home", None),
        ("2 Low St", None, "postal"),
        ("4 Mill Lane", None, None),  # N (birth address): no FHIR use or type
    ]
    assert [(c.system, c.use) for c in p.telecom] == [
        ("phone", "home"),
        ("phone", "mobile"),
        ("email", None),
        ("phone", "home"),
        ("phone", "work"),
    ]
    # a bare number comes back with the XTN.2/3 it was written with (PRN^PH): the source codes may differ
    assert [(c.system, c.value, c.use) for c in q.telecom] == [(c.system, c.value, c.use) for c in p.telecom]
    assert p.nhs_number is not None and p.nhs_number.verification_status == "02"
    assert [i.value for i in p.identifiers] == ["MRN123", "L999", "X77", "EXT5", "ALT1"]
    assert q.deceased == p.deceased
    assert q.general_practitioner == p.general_practitioner
    assert q.sensitivity == p.sensitivity
    assert q.marital_status == p.marital_status and q.ethnicity == p.ethnicity
    assert q.model_copy(update={"telecom": p.telecom}) == p
    e, f = first.encounter, again.encounter
    assert e is not None and f is not None
    assert f.identifiers == e.identifiers and [i.value for i in e.identifiers] == ["V0001", "ALTV9"]
    assert f.encounter_class == e.encounter_class
    assert f.period == e.period
    assert f.location == e.location and f.prior_location == e.prior_location
    assert (f.attending, f.referring) == (e.attending, e.referring)
    assert (f.priority, f.service_type, f.admit_source, f.discharge_disposition) == (
        e.priority,
        e.service_type,
        e.admit_source,
        e.discharge_disposition,
    )
    # A01 says in-progress; the A08 derives 'finished' from PV1-45 (the discharge time is known)
    assert f.status.value == "finished"


ORU = "\r".join(
    [
        "MSH|^~\\&|LIMS|LAB|TIE|RX1|20260115110500||ORU^R01^ORU_R01|MSG2|P|2.5.1",
        "PID|1||9434765919^^^NHS^NH||Smith^Jane||20101022|F",
        "ORC|RE|P456^EPR|F123^LAB",
        seg(
            "OBR",
            {
                1: "1",
                2: "P456^EPR",
                3: "F123^LAB",
                4: "UE^U\\T\\E^EXAMPLE-TRUST-LAB",
                7: "20260115093000",
                22: "20260115110000",
                24: "CH",
                25: "F",
            },
        ),
        "NTE|1||fasting sample",
        seg(
            "OBX",
            {
                1: "1",
                2: "NM",
                3: "K^Potassium^EXAMPLE-TRUST-LAB",
                5: "5.9",
                6: "mmol/L^^UCUM",
                7: "3.5-5.3",
                8: "H",
                11: "F",
                14: "20260115093000",
            },
        ),
        "NTE|1||haemolysed",
        seg(
            "OBX",
            {
                1: "2",
                2: "SN",
                3: "GFR^eGFR^EXAMPLE-TRUST-LAB",
                5: ">^90",
                6: "mL/min/{1.73_m2}",
                7: ">90",
                11: "F",
            },
        ),
        seg(
            "OBX",
            {1: "3", 2: "CWE", 3: "CULT^Culture^EXAMPLE-TRUST-LAB", 5: "10828004^Positive^SCT", 11: "P"},
        ),
        seg("OBX", {1: "4", 2: "ST", 3: "COM^Comment^EXAMPLE-TRUST-LAB", 5: "see report", 11: "C"}),
        seg(
            "OBX",
            {1: "5", 2: "SN", 3: "RNG^Range^EXAMPLE-TRUST-LAB", 5: "^10^-^20", 6: "g/L", 11: "F", 8: "N"},
        ),
        seg("OBX", {1: "6", 2: "TS", 3: "DT^Date^EXAMPLE-TRUST-LAB", 5: "20260110", 11: "F"}),
        seg("OBX", {1: "7", 2: "NM", 3: "X^Unknown status^EXAMPLE-TRUST-LAB", 5: "1"}),
    ]
)


def test_oru_round_trip_keeps_codes_values_units_ranges_statuses() -> None:
    first = _in(ORU)
    msg = to_oru_r01(first, HEADER)
    assert not [i for i in validate(msg).issues if i.severity == "E"]
    again = _in(msg.encode())
    assert again.kind is EventKind.RESULT
    assert again.key == first.key
    (r1,), (r2,) = first.reports, again.reports
    assert (r2.code, r2.status, r2.category) == (r1.code, r1.status, r1.category)
    assert (r2.placer_order_number, r2.filler_order_number) == (
        r1.placer_order_number,
        r1.filler_order_number,
    )
    assert (r2.effective, r2.issued, r2.notes) == (r1.effective, r1.issued, r1.notes)
    assert len(r2.results) == len(r1.results) == 7
    for a, b in zip(r1.results, r2.results, strict=True):
        assert b.code == a.code
        assert b.value == a.value
        assert b.status == a.status
        assert b.reference_range == a.reference_range
        assert b.interpretation == a.interpretation
        assert (b.effective, b.notes, b.sequence) == (a.effective, a.notes, a.sequence)
    assert r2 == r1
    assert again.patient == first.patient


def _with_field(text: str, segment: str, n: int, value: str) -> str:
    """``text`` with field ``n`` of its first ``segment`` set to ``value``."""
    line = next(x for x in text.split("\r") if x.startswith(segment + "|"))
    fields = line.split("|")
    fields += [""] * (n + 1 - len(fields))
    fields[n] = value
    return text.replace(line, "|".join(fields), 1)


def test_fields_the_model_now_carries_go_out_and_read_back() -> None:
    """OBX-4 sub-id, OBR-16 ordering provider, PV1-18 patient type and EVN-5 operator: kept both ways."""
    adt = _with_field(_with_field(A01, "EVN", 5, "OP1^Clerk^Anne^^^^^^RX1"), "PV1", 18, "NHS")
    first = _in(adt)
    assert first.encounter is not None and first.encounter.patient_type is not None
    assert [p.identifiers[0].value for p in first.provenance.operators] == ["OP1"]
    text = to_adt_a08(first, replace(HEADER, sending_facility="RX1")).to_er7()
    segments = {x.split("|")[0]: x.split("|") for x in text.split("\r") if x}
    assert segments["EVN"][5].split("^")[:3] == ["OP1", "Clerk", "Anne"]
    assert segments["PV1"][18] == "NHS"
    again = _in(text.encode())
    assert again.encounter is not None
    assert again.encounter.patient_type == first.encounter.patient_type
    assert again.provenance.operators == first.provenance.operators

    oru = _with_field(ORU, "OBR", 16, "C1234567^Who^Alan^^^Dr^^^GMC")
    oru = _with_field(oru, "OBX", 4, "1a")
    (report,) = _in(oru).reports
    assert [p.identifiers[0].value for p in report.ordering_providers] == ["C1234567"]
    assert [o.sub_id for o in report.results][:2] == ["1a", None]
    text = to_oru_r01(_in(oru), HEADER).to_er7()
    segments = {x.split("|")[0]: x.split("|") for x in reversed(text.split("\r")) if x}  # the first of each
    assert segments["OBR"][16].split("^")[:3] == ["C1234567", "Who", "Alan"]
    assert segments["OBX"][4] == "1a"
    (again_report,) = _in(text.encode()).reports
    assert again_report.ordering_providers == report.ordering_providers
    assert [o.sub_id for o in again_report.results] == [o.sub_id for o in report.results]
