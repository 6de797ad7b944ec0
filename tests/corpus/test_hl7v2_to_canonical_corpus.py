"""Map every ADT / ORU / ORM message of the public corpora with shared.mapping.hl7v2_in.

* Each message maps, or raises a :class:`~shared.mapping.errors.MappingError` that EXPECTED_FAILURES lists
  (exception type, HL7 field, why) - no other exception type, and no listed file may start to map silently.
* Every mapped event has lineage for every populated canonical leaf.
* FHIR-Converter pairs: patient gender / family name, the visit number and admit instant, and the number of
  DiagnosticReports agree with Microsoft's expected FHIR output where both sides carry them.

Sources: fhir-converter SampleData/Hl7v2, uclh-emap (Adt, LabOrders, VitalSigns, PatientAllergies), nw-gmsa
genomics. Files are read in place; the test skips cleanly when ../shared/corpora is absent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from shared.hl7v2 import Message, parse_message
from shared.mapping.errors import (
    InvalidValue,
    MappingError,
    MissingRequiredField,
    UnmappedSourceCode,
    UnsupportedEvent,
)
from shared.mapping.hl7v2_in import map_message
from shared.mapping.lineage import uncovered
from tests.helpers import corpus_missing

pytestmark = pytest.mark.corpus

CORPORA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora").resolve()
SOURCES = (
    ("fhir-converter/data/SampleData/Hl7v2", "*.hl7"),
    ("uclh-emap/hl7-reader/src/test/resources", "**/*.txt"),
    ("nw-gmsa-nhs-genomics/Specifications", "**/*.txt"),
)
IN_SCOPE = frozenset({"ADT", "ORU", "ORM"})

_FC = "fhir-converter/data/SampleData/Hl7v2/"
_UCLH = "uclh-emap/hl7-reader/src/test/resources/"
_GMSA = "nw-gmsa-nhs-genomics/Specifications/"

#: path -> (exception type, HL7 field, why the message cannot be mapped safely).
EXPECTED_FAILURES: dict[str, tuple[type[MappingError], str, str]] = {
    _FC + "ADT-A13-01.hl7": (
        MissingRequiredField,
        "PV1-45",
        "A13 without the discharge time being cancelled: the discharge event it cancels cannot be identified",
    ),
    _FC + "ADT-A40-02.hl7": (
        InvalidValue,
        "PID(2)",
        "two PID/MRG merge pairs in one message; one event per message, so it is refused, not half-mapped",
    ),
    _FC + "ADT01-28.hl7": (MissingRequiredField, "PV1-19", "A01 with no visit number: no encounter identity"),
    _FC + "ADT04-251.hl7": (
        MissingRequiredField,
        "PV1-19",
        "A04 with no visit number: no encounter identity",
    ),
    _FC + "ADT04-23.hl7": (
        UnmappedSourceCode,
        "PID-13[1].3",
        "XTN.3 holds 'JP:1234567', not a v2-0202 equipment type: ContactPoint.system cannot be read",
    ),
    _FC + "LAB-ORM-1.hl7": (
        UnmappedSourceCode,
        "ORC(1)-5",
        "ORC-5 (order status, v2-0038) holds 'NW', an order-control code: the status cannot be read",
    ),
    _FC + "ORM-O01-04.hl7": (UnsupportedEvent, "MSH-9", "dietary order (ODS), not a service order (OBR)"),
    _FC + "ORM-O01-05.hl7": (UnsupportedEvent, "MSH-9", "supply order (RQD), not a service order (OBR)"),
    _FC + "ORM-O01-06.hl7": (UnsupportedEvent, "MSH-9", "pharmacy order (RXO), not a service order (OBR)"),
    _FC + "SIU_12.hl7": (UnsupportedEvent, "MSH-9", "ADT^A60 (allergy update) is not a supported trigger"),
    _UCLH + "Adt/generic/A06.txt": (UnsupportedEvent, "MSH-9", "A06 (change outpatient to inpatient)"),
    _UCLH + "Adt/generic/A17.txt": (UnsupportedEvent, "MSH-9", "A17 (swap patients)"),
    _UCLH + "Adt/generic/A29.txt": (UnsupportedEvent, "MSH-9", "A29 (delete person information)"),
    _UCLH + "Adt/generic/A45.txt": (UnsupportedEvent, "MSH-9", "A45 (move visit information)"),
    _UCLH + "Adt/generic/A47.txt": (UnsupportedEvent, "MSH-9", "A47 (change patient identifier list)"),
    _UCLH + "PatientAllergies/2019_05_multiple_allergies.txt": (
        UnsupportedEvent,
        "MSH-9",
        "ADT^A60 allergies",
    ),
    _UCLH + "LabOrders/co_path/oru_r01_corrupt_bytes.txt": (
        MissingRequiredField,
        "OBX(2)-3",
        "upstream error case: the ED report is split over OBX segments with no observation identifier",
    ),
    _UCLH + "LabOrders/imaging/oru_r01_imaging_result.txt": (
        InvalidValue,
        "PV1-44",
        "PV1-44 has 16 digits: not an HL7 date/time",
    ),
    _UCLH + "LabOrders/winpath/orm_o01_nw.txt": (
        MissingRequiredField,
        "MSH-3",
        "MSH-3 and MSH-4 are empty: no source system and no namespace for the unqualified visit number",
    ),
    _UCLH + "LabOrders/winpath/oru_ro1_numeric.txt": (
        InvalidValue,
        "OBX(4)-5",
        "upstream leniency test: NM value '?7' is not a number (policy numeric_unparseable = raise)",
    ),
    _UCLH + "LabOrders/winpath/oru_ro1_text.txt": (
        UnmappedSourceCode,
        "OBX(4)-11",
        "upstream error case: result status '?' is not in v2-0085; a guessed status changes the meaning",
    ),
    _UCLH + "VitalSigns/MixedHL7Message.txt": (
        MissingRequiredField,
        "OBR(1)-4",
        "OBR without a universal service identifier: the report has no code",
    ),
    _GMSA + "ManchesterFoundationTrust/ORU_R01_PDF.txt": (
        InvalidValue,
        "OBX(1)-5.5",
        "the specification example truncates the base64 PDF to 'JVBERi0x...': it does not decode",
    ),
    _GMSA + "NWGMSA/ORU_R01_PDF.txt": (
        InvalidValue,
        "OBX(1)-5",
        "OBX-2 says CE but the value is an ED (base64 PDF): refused rather than put the data in a code",
    ),
}


#: FHIR-Converter pairs whose DiagnosticReport count differs by design: path -> why.
REPORT_COUNT_DIFFERS = {
    _FC + "ORU-R01-01.hl7": "FHIR-Converter also makes a DiagnosticReport of each RP OBX outside an OBR "
    "group (the one after PID, the one in the SPM specimen group); here only OBR groups are reports",
}


def _files() -> list[tuple[str, Message]]:
    out: list[tuple[str, Message]] = []
    for folder, pattern in SOURCES:
        for path in sorted((CORPORA / folder).glob(pattern)):
            msg = parse_message(path.read_bytes())
            if (msg.message_type or "").upper() in IN_SCOPE:
                out.append((str(path.relative_to(CORPORA)), msg))
    return out


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, Message]]:
    if not CORPORA.is_dir():
        corpus_missing("../shared/corpora is not present")
    files = _files()
    assert len(files) >= 60, "fewer corpus messages than expected: the corpora layout changed"
    return files


def _leaves(model: BaseModel) -> list[str]:
    out: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, BaseModel):
            for name in type(node).model_fields:
                value = getattr(node, name)
                if value is not None and value != ():
                    walk(value, f"{path}.{name}" if path else name)
        elif isinstance(node, tuple):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
        else:
            out.append(path)

    walk(model, "")
    return out


def test_every_message_maps_or_fails_as_listed(corpus: list[tuple[str, Message]]) -> None:
    failures: dict[str, tuple[type[MappingError], str | None]] = {}
    mapped = 0
    for name, msg in corpus:
        try:
            result = map_message(msg, lineage=True)
        except MappingError as exc:
            failures[name] = (type(exc), exc.field)
            continue
        mapped += 1
        assert uncovered(_leaves(result.value), result.lineage) == [], name
        assert result.value.provenance.message_id == msg.control_id
    expected = {name: (kind, field) for name, (kind, field, _why) in EXPECTED_FAILURES.items()}
    assert failures == expected
    assert mapped >= 40


def test_expected_failure_reasons_are_documented() -> None:
    for name, (_kind, field, why) in EXPECTED_FAILURES.items():
        assert field and len(why) > 15, name


def _pairs() -> list[dict[str, str]]:
    with (CORPORA / "fhir-converter" / "PAIRS.tsv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.get("entry", []):
        res = entry["resource"]
        out.setdefault(res["resourceType"], []).append(res)
    return out


def test_agrees_with_fhir_converter_expected_output(corpus: list[tuple[str, Message]]) -> None:
    from shared.mapping.timeutil import from_fhir

    base = CORPORA / "fhir-converter"
    compared = 0
    for row in _pairs():
        name = f"fhir-converter/{row['input']}"
        if name in EXPECTED_FAILURES:
            continue
        msg = parse_message((base / row["input"]).read_bytes())
        if (msg.message_type or "").upper() not in IN_SCOPE:
            continue
        ev = map_message(msg).value
        expected = _by_type(json.loads((base / row["expected"]).read_text(encoding="utf-8")))
        if "Patient" in expected:
            patient = expected["Patient"][0]
            if isinstance(ev.patient.gender, str):
                assert ev.patient.gender == patient.get("gender"), name
            if ev.patient.names and patient.get("name"):
                assert ev.patient.names[0].family == patient["name"][0].get("family"), name
        if ev.encounter is not None and "Encounter" in expected:
            encounter = expected["Encounter"][0]
            visit = [
                i["value"]
                for i in encounter.get("identifier", [])
                if any(c.get("code") == "VN" for c in i.get("type", {}).get("coding", []))
            ]
            assert visit == [ev.encounter.identifiers[0].value], name
            start = encounter.get("period", {}).get("start")
            if start and ev.encounter.period is not None and ev.encounter.period.start is not None:
                assert from_fhir(start).value == ev.encounter.period.start.value, name
        if msg.message_type == "ORU" and "DiagnosticReport" in expected and name not in REPORT_COUNT_DIFFERS:
            assert len(ev.reports) == len(expected["DiagnosticReport"]), name
        compared += 1
    assert compared >= 20
