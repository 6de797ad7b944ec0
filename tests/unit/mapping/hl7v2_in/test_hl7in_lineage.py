"""Lineage: every populated canonical leaf is covered; coded fields name their concept map and version,
other fields the rules version; lineage off costs nothing; errors never carry patient data."""

from __future__ import annotations

import base64

import pytest

from shared.hl7v2 import parse_path
from shared.mapping.errors import MappingError
from shared.mapping.hl7v2_in import RULES_VERSION, map_bytes
from shared.terminology import load_concept_map
from tests.unit.mapping.hl7v2_in.hl7in_samples import (
    NHS,
    NHS_BAD,
    adt,
    entries_for,
    mapped,
    message,
    msh,
    orm,
    oru,
    seg,
    uncovered_leaves,
)

_PDF = base64.b64encode(b"%PDF-1.4 fabricated").decode()
OBR = "OBR|1|ORD1^EPR|LAB1^LIMS|UE^Urea and electrolytes^EXAMPLE-TRUST-LAB|||20260115093000" + "|" * 18 + "F"

MESSAGES = {
    "A01": adt("A01", pv1={6: "OLD^1^2^RRV", 8: "G7654321^BROWN^TOM^^^DR^^^GMP", 36: "01"}),
    "A01 full PID": adt(
        "A01",
        pid={
            5: "SMITH^JOHN^PAUL DAVID^JR^MR^PHD^^^^^^20200101^20251231~JONES^JOHN",
            11: "1 HIGH STREET^FLAT 2^LONDON^GREATER LONDON^NW1 2BU^GBR^H^^^^^^20200101^20251231"
            "~&Mill Lane&4^^LEEDS^^LS1 4AP^GBR^M",
            13: "020 7946 0000^PRN^PH~^NET^Internet^a@example.org~0113000000",
            14: "0113111111^WPN^PH",
            2: "EXT1^^^RRV",
            4: "ALT1^^^OTHER",
            29: "20260101093000",
            32: "NSTS01",
        },
        pv1={50: "ALT9^^^OTHERPAS^VN"},
        before_pv1=(seg("PD1", {3: "THE SURGERY^^Y01234", 12: "Y"}),),
    ),
    "A02": adt("A02", pv1={6: "WARD9^BAY1^BED1^RRV"}, evn={6: "20260701125900"}),
    "A03": adt("A03", pv1={45: "20260705100000", 36: "01"}),
    "A04": adt("A04", pv1={2: "O"}),
    "A05": adt("A05", pv1={44: ""}, extra=(seg("PV2", {8: "20260710090000"}),)),
    "A08": adt("A08", pv1={2: "R", 45: "20260705100000"}),
    "A11": adt("A11"),
    "A13": adt("A13", pv1={45: "20260705100000"}),
    "A28": adt("A28", pid={8: "X", 30: "N", 19: "9449305552", 3: "RRV1^^^RRV"}),
    "A31": adt("A31", pid={3: "A1^^^&2.16.840.1.113883.19&ISO^MR"}),
    "A40": message(
        msh("ADT^A40"),
        seg("EVN", {1: "A40", 2: "20260701120000"}),
        seg("PID", {3: f"{NHS}^^^NHS^NH"}),
        seg("MRG", {1: "RRV7654321^^^RRV^MR~9449305552^^^NHS^NH"}),
    ),
    "ORU default": oru(pv1=True),
    "ORU encounter state unknown": message(
        msh("ORU^R01^ORU_R01", f3="LIMS", f4="LAB"),
        seg("PID", {3: f"{NHS}^^^NHS^NH"}),
        seg("PV1", {2: "O", 19: "V1^^^RRV", 50: "ALT1"}),
        OBR,
        "OBX|1|NM|NA^Sodium^EXAMPLE-TRUST-LAB||140|mmol/L|133-146|N|||F",
    ),
    "ORU values": oru(
        "ORC|RE|ORD1^EPR|LAB1^LIMS",
        OBR,
        "NTE|1||Report comment",
        "OBX|1|SN|A^A^LIMS||^10^-^20|g/L|10-20|H~HI|||C|||20260115091500||C1234567^JONES^ANNA^^^DR^^^GMC"
        "|||||||THE LAB^^LAB01",
        "NTE|1||a note",
        "OBX|2|SN|B^B^LIMS||<^5|mmol/L^^UCUM||||F",
        "OBX|3|SN|C^C^LIMS||^1^:^128||||||F",
        "OBX|4|CWE|D^D^LIMS||27268008^Salmonella^SCT^SAL^Salmonella sp^L||||||F",
        "OBX|5|DT|E^E^LIMS||20260701||||||F",
        f"OBX|6|ED|F^F^LIMS||LAB^AP^PDF^Base64^{_PDF}||||||F",
        "OBX|7|RP|G^G^LIMS||https://pacs.example/1^PACS^IM^JPEG||||||F",
        "OBX|8|TX|H^H^LIMS||one~two||||||F",
        "OBX|9|NM|I^I^LIMS||<7|%||||F",
    ),
    "ORM": orm(
        "ORC|NW|ORD1^EPR|F1^LAB||SC||||20260301085900|||C1234567^JONES^ANNA^^^DR^^^GMC",
        "TQ1|1||||||||S",
        "NTE|1||note",
        "OBR|1|ORD1^EPR||FBC^Full blood count^EXAMPLE-TRUST-LAB"
        + "|" * 27
        + "^chest pain~R07^Chest pain^I10",
    ),
}


@pytest.mark.parametrize("name", list(MESSAGES))
def test_every_populated_leaf_has_lineage(name: str) -> None:
    result = mapped(MESSAGES[name])
    assert uncovered_leaves(result) == []


@pytest.mark.parametrize("name", list(MESSAGES))
def test_lineage_sources_are_hl7_paths_and_tables_are_versioned(name: str) -> None:
    for entry in mapped(MESSAGES[name]).lineage:
        if entry.source is not None:
            parse_path(entry.source)  # raises unless it is an HL7 path
        else:
            assert entry.rule  # derived values say why
        if entry.table is not None:
            assert entry.table_version == load_concept_map(entry.table).version
        else:
            assert entry.table_version == RULES_VERSION


def test_coded_field_lineage_names_map_and_version() -> None:
    result = mapped(MESSAGES["A01"])
    (gender,) = entries_for(result.lineage, "patient.gender")
    assert (gender.source, gender.table) == ("PID-8", "v2-0001-to-administrative-gender")
    assert gender.table_version == load_concept_map("v2-0001-to-administrative-gender").version
    (given,) = entries_for(result.lineage, "patient.names[0].given[0]")
    assert given.source == "PID-5[1].2" and given.table_version == RULES_VERSION


def test_lineage_is_not_recorded_unless_asked() -> None:
    result = map_bytes(MESSAGES["A01"])
    assert result.lineage == ()
    assert result.value == mapped(MESSAGES["A01"]).value  # same event either way


def test_lineage_covers_only_what_was_produced() -> None:
    lineage = mapped(adt("A28", pid={29: "", 30: ""})).lineage
    assert not [e for e in lineage if e.target.startswith("patient.deceased")]


ERRORS = [
    (adt("A28", pid={3: f"{NHS_BAD}^^^NHS^NH", 5: "SECRETNAME^ALICE"}), False),
    (adt("A28", pid={3: f"{NHS}^^^NHS^NH~9449305552^^^NHS^NH", 5: "SECRETNAME^ALICE"}), False),
    (adt("A28", pid={7: "19800231", 5: "SECRETNAME^ALICE"}), False),
    (adt("A28", pid={8: "SECRETNAME"}), True),
    (adt("A28", pid={30: "SECRETNAME"}), False),
    (adt("A01", pv1={44: "SECRETNAME"}), False),
    (oru(OBR, "OBX|1|NM|X^X^LIMS||SECRETNAME||||||F"), False),
    (oru(OBR, "OBX|1|NM|X^X^LIMS||1||||||SECRETNAME"), False),
    (oru(OBR, "OBX|1|ED|X^X^LIMS||A^B^C^Base64^SECRETNAME!||||||F"), False),
]


@pytest.mark.parametrize(("raw", "strict"), ERRORS)
def test_errors_carry_no_patient_data(raw: bytes, strict: bool) -> None:
    with pytest.raises(MappingError) as err:
        map_bytes(raw, strict=strict)
    text = f"{err.value} {err.value.args!r} {err.value.reason} {err.value.__cause__} {err.value.__context__}"
    for secret in ("SECRETNAME", "ALICE", NHS, NHS_BAD, "9449305552"):
        assert secret not in text
    assert err.value.field is not None
