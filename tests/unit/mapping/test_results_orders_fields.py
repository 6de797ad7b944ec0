"""Result and order fields through every path: HL7 v2 in -> canonical -> FHIR out -> canonical (FHIR in),
and canonical -> HL7 v2 out -> canonical. Observation category (from OBR-24), issued (OBR-22), performer
(OBX-16/23, else OBR-32); Specimen (SPM v2.5+, OBR-15 before); ServiceRequest occurrence (TQ1 / ORC-7 /
OBR-27), relevant clinical information (OBR-13) and notes (NTE)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.canonical.model import (
    ClinicalDateTime,
    ClinicalEvent,
    Coding,
    Concept,
    Identifier,
    Organization,
    Period,
    Practitioner,
    ResultReport,
    Specimen,
)
from shared.identifiers import systems as id_systems
from shared.mapping.fhir_in import report_from_fhir, service_request_from_fhir
from shared.mapping.fhir_out import to_bundle
from shared.mapping.hl7v2_in import map_bytes
from shared.mapping.hl7v2_out import to_oru_r01
from shared.terminology import systems
from tests.unit.mapping.hl7v2_in.hl7in_samples import PID, message, msh, seg, uncovered_leaves
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER
from tests.unit.mapping.test_identifier_systems import BASE, CONFIG, _clear

LAB = systems.OBSERVATION_CATEGORY
GMC = systems.GMC_NUMBER


def obr(**fields: str) -> str:
    base = {
        1: "1",
        2: "P456^EPR",
        3: "F123^LAB",
        4: "UE^U and E^EXAMPLE-TRUST-LAB",
        7: "20260115093000",
        22: "20260115104500",
        24: "CH",
        25: "F",
        32: "C3456789&Path&Pat&&&Dr&&&GMC",
    }
    base.update({int(k.removeprefix("f")): v for k, v in fields.items()})
    return seg("OBR", {k: v for k, v in base.items() if v})


SODIUM = "OBX|1|NM|NA^Sodium^EXAMPLE-TRUST-LAB||140|mmol/l|133-146|N|||F"
POTASSIUM = (
    "OBX|2|NM|K^Potassium^EXAMPLE-TRUST-LAB||5.9|mmol/L|3.5-5.3|H|||F|||20260115094500"
    "||G1112223^Obs^Olive^^^^^^GMC|||||||Path Lab^^^^^^^^^RX1"
)
SPM = seg(
    "SPM",
    {1: "1", 2: "SP123&LIMS^FS456&LAB", 4: "SER^Serum^HL70487", 17: "20260115090000", 18: "20260115100000"},
)


def oru(*body: str, version: str = "2.5.1") -> bytes:
    return message(
        msh("ORU^R01^ORU_R01", control_id="LAB1", f3="LIMS", f4="LAB", f12=version),
        seg("PID", PID),
        "ORC|RE|P456^EPR|F123^LAB",
        *body,
    )


def one_report(raw: bytes) -> ResultReport:
    (report,) = map_bytes(raw).value.reports
    return report


def uk(*parts: int) -> ClinicalDateTime:
    return ClinicalDateTime(value=datetime(*parts, tzinfo=UTC))  # January: GMT = UTC


# ------------------------------------------------------------------------------------------ HL7 in
def test_observation_category_issued_and_performer_from_the_obr() -> None:
    mapped = map_bytes(oru(obr(), SODIUM, POTASSIUM, SPM), lineage=True)
    (report,) = mapped.value.reports
    sodium, potassium = report.results
    lab = Concept(codings=(Coding(system=LAB, code="laboratory", display="Laboratory"),))
    assert sodium.category == lab and potassium.category == lab
    assert sodium.issued == potassium.issued == report.issued == uk(2026, 1, 15, 10, 45)
    interpreter = Practitioner(
        identifiers=(Identifier(system=GMC, value="C3456789", assigner="GMC"),),
        name=sodium.performer[0].name,  # type: ignore[union-attr]
    )
    assert report.performer == (interpreter,)
    assert sodium.performer == (interpreter,)  # no OBX-16/23: the principal result interpreter
    observer, org = potassium.performer  # OBX-16 and OBX-23 win
    assert isinstance(observer, Practitioner) and observer.identifiers[0].value == "G1112223"
    assert org == Organization(ods_code="RX1", name="Path Lab")
    assert uncovered_leaves(mapped) == []


@pytest.mark.parametrize(
    ("section", "category"),
    [
        ("HM", "laboratory"),
        ("MB", "laboratory"),
        ("RAD", "imaging"),
        ("EC", None),
        ("ZZLOCAL", None),
        ("", None),
    ],
)
def test_category_only_when_the_section_says_lab_or_imaging(section: str, category: str | None) -> None:
    (result,) = one_report(oru(obr(f24=section), SODIUM)).results
    if category is None:
        assert result.category is None  # never "laboratory" just because it came in an ORU
    else:
        assert isinstance(result.category, Concept)
        assert [(c.system, c.code) for c in result.category.codings] == [(LAB, category)]


def test_strict_mode_does_not_reject_a_non_lab_section() -> None:
    raw = oru(obr(f4="NA^Sodium^EXAMPLE-TRUST-LAB", f24="EC"), SODIUM)
    (report,) = map_bytes(raw, strict=True).value.reports
    assert report.results[0].category is None


def test_spm_specimen() -> None:
    report = one_report(oru(obr(), SODIUM, SPM, "OBX|1|ST|SPEC^Specimen note^L||ignored||||||F"))
    assert len(report.results) == 1  # OBX after SPM: specimen observations, not results
    (specimen,) = report.specimens
    assert [(i.system, i.value) for i in specimen.identifiers] == [
        ("urn:tie:authority:LIMS", "SP123"),
        ("urn:tie:authority:LAB", "FS456"),
    ]
    assert isinstance(specimen.type, Concept)
    assert [(c.system, c.code) for c in specimen.type.codings] == [
        (systems.V2_0487_SPECIMEN_TYPE, "SER"),
        (systems.SNOMED_CT, "119364003"),
    ]
    assert specimen.collected == uk(2026, 1, 15, 9, 0)
    assert specimen.received == uk(2026, 1, 15, 10, 0)
    assert specimen.sequence == 1


def test_unmapped_specimen_type_is_kept_as_sent_never_defaulted() -> None:
    spm = seg("SPM", {1: "1", 4: "XYZ^Local thing^HL70487"})
    (specimen,) = one_report(oru(obr(), SODIUM, spm)).specimens
    assert isinstance(specimen.type, Concept)
    # XYZ is not a code of HL7 table 0487 (whatever CWE.3 claims): the sender's (MSH-4 LAB) local system
    assert [(c.system, c.code) for c in specimen.type.codings] == [("urn:tie:codesystem:LAB:0487", "XYZ")]


def test_obr_15_specimen_before_v2_5() -> None:
    report = one_report(oru(obr(f15="BLD&Whole blood&HL70070", f14="20260115094000"), SODIUM, version="2.3"))
    (specimen,) = report.specimens
    assert isinstance(specimen.type, Concept)
    assert [(c.system, c.code) for c in specimen.type.codings] == [
        (systems.V2_0070_SPECIMEN_SOURCE, "BLD"),
        (systems.SNOMED_CT, "119297000"),
    ]
    assert specimen.collected == report.effective == uk(2026, 1, 15, 9, 30)
    assert specimen.received == uk(2026, 1, 15, 9, 40)
    assert one_report(oru(obr(), SODIUM)).specimens == ()  # no SPM, no OBR-15: no specimen


# ------------------------------------------------------------------------------------------ FHIR out
def bundle_of(raw: bytes) -> tuple[ClinicalEvent, dict[str, Any]]:
    ev = map_bytes(raw).value
    return ev, to_bundle(ev).value


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def context_of(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    out.update({f"{r['resourceType']}/{r['id']}": r for r in out.values() if "id" in r})
    return out


def test_fhir_observation_and_specimen() -> None:
    _, b = bundle_of(oru(obr(), SODIUM, POTASSIUM, SPM))
    (dr,) = resources(b, "DiagnosticReport")
    (sp,) = resources(b, "Specimen")
    assert dr["specimen"] == [{"reference": f"Specimen/{sp['id']}"}]
    assert sp["type"]["coding"][1] == {
        "system": systems.SNOMED_CT,
        "code": "119364003",
        "display": "Serum specimen",
    }
    assert sp["collection"] == {"collectedDateTime": "2026-01-15T09:00:00+00:00"}
    assert sp["receivedTime"] == "2026-01-15T10:00:00+00:00"
    assert sp["subject"] == dr["subject"]
    assert [i["value"] for i in sp["identifier"]] == ["SP123", "FS456"]
    sodium, potassium = resources(b, "Observation")
    for obs in (sodium, potassium):
        assert obs["category"] == [
            {"coding": [{"system": LAB, "code": "laboratory", "display": "Laboratory"}]}
        ]
        assert obs["issued"] == "2026-01-15T10:45:00+00:00"
        assert obs["specimen"] == {"reference": f"Specimen/{sp['id']}"}
    assert sodium["valueQuantity"]["system"] == systems.UCUM and sodium["valueQuantity"]["code"] == "mmol/L"
    assert sodium["valueQuantity"]["unit"] == "mmol/l"
    (interpreter,) = sodium["performer"]
    assert dr["performer"] == [interpreter]
    assert len(potassium["performer"]) == 2 and potassium["performer"] != sodium["performer"]
    # a Practitioner entry for each identified performer
    gmc = {i["value"] for p in resources(b, "Practitioner") for i in p["identifier"]}
    assert gmc == {"C3456789", "G1112223"}


def test_observation_names_no_specimen_when_the_report_has_several() -> None:
    spm2 = SPM.replace("SPM|1|SP123&LIMS^FS456&LAB", "SPM|2|SP124&LIMS")
    _, b = bundle_of(oru(obr(), SODIUM, SPM, spm2))
    assert len(resources(b, "Specimen")) == 2
    assert len(resources(b, "DiagnosticReport")[0]["specimen"]) == 2
    assert "specimen" not in resources(b, "Observation")[0]


# ------------------------------------------------------------------------------------------ FHIR in
def test_fhir_in_reads_the_new_fields_back() -> None:
    ev, b = bundle_of(oru(obr(), SODIUM, POTASSIUM, SPM))
    (dr,) = resources(b, "DiagnosticReport")
    back = report_from_fhir(dr, context=context_of(b)).value
    (original,) = ev.reports
    assert back.specimens == original.specimens
    assert back.performer == original.performer
    for was, now in zip(original.results, back.results, strict=True):
        assert (now.category, now.issued, now.performer) == (was.category, was.issued, was.performer)
        assert now.value == was.value  # the UCUM unit survives


def test_fhir_in_ignores_a_specimen_the_request_does_not_carry() -> None:
    _, b = bundle_of(oru(obr(), SODIUM, SPM))
    (dr,) = resources(b, "DiagnosticReport")
    context = {k: v for k, v in context_of(b).items() if not k.startswith("Specimen/")}
    assert report_from_fhir(dr, context=context).value.specimens == ()


# ------------------------------------------------------------------------------------------ HL7 out
@pytest.mark.parametrize("version", ["2.5.1", "2.3"])
def test_hl7_write_back_keeps_the_new_fields(version: str) -> None:
    body = (
        (obr(), SODIUM, POTASSIUM, SPM) if version >= "2.5" else (obr(f15="BLD&Whole blood&HL70070"), SODIUM)
    )
    first = map_bytes(oru(*body, version=version)).value
    msg = to_oru_r01(first, replace(HEADER, version=version))
    again = map_bytes(msg.encode()).value
    assert again.reports == first.reports
    assert again.key == first.key
    text = msg.encode().decode()
    if version >= "2.5":
        assert "\rSPM|1|SP123&LIMS^FS456&LAB||SER^Serum^HL70487^119364003^Serum specimen^SCT" in text
        assert text.count("G1112223") == 1 and "C3456789" not in text.split("\rOBX|1|")[1].split("\r")[0]
    else:
        assert "SPM|" not in text


# ------------------------------------------------------------------------------------------ orders
ORM_ORC = (
    "ORC|NW|ORD1^EPR|||SC||^^^20260116090000^20260116100000^R||20260115085900|||"
    "C1234567^JONES^ANNA^^^DR^^^GMC"
)
ORM_OBR = "OBR|1|ORD1^EPR||FBC^Full blood count^EXAMPLE-TRUST-LAB|||||||||?anaemia, on iron"


def orm(*segments: str) -> bytes:
    return message(msh("ORM^O01^ORM_O01", control_id="ORD1", f3="EPR", f4="RRV"), seg("PID", PID), *segments)


def test_order_timing_clinical_information_and_notes() -> None:
    mapped = map_bytes(orm(ORM_ORC, ORM_OBR, "NTE|1||Fasting sample"), lineage=True)
    (order,) = mapped.value.orders
    assert order.occurrence == Period(start=uk(2026, 1, 16, 9, 0), end=uk(2026, 1, 16, 10, 0))
    assert order.clinical_information == "?anaemia, on iron"
    assert order.notes == ("Fasting sample",)
    assert uncovered_leaves(mapped) == []
    sr = to_bundle(mapped.value).value["entry"][-1]["resource"]
    assert sr["resourceType"] == "ServiceRequest"
    assert sr["occurrencePeriod"] == {
        "start": "2026-01-16T09:00:00+00:00",
        "end": "2026-01-16T10:00:00+00:00",
    }
    assert sr["reasonCode"] == [{"text": "?anaemia, on iron"}]
    assert sr["note"] == [{"text": "Fasting sample"}]
    back = service_request_from_fhir(sr).value
    assert (back.occurrence, back.clinical_information, back.notes, back.reason) == (
        order.occurrence,
        order.clinical_information,
        order.notes,
        order.reason,
    )


@pytest.mark.parametrize(
    ("segments", "occurrence"),
    [
        (("TQ1|1||||||20260117080000",), uk(2026, 1, 17, 8, 0)),  # TQ1-7 start only: a dateTime
        ((), None),
    ],
)
def test_order_timing_sources(segments: tuple[str, ...], occurrence: object) -> None:
    orc = "ORC|NW|ORD1^EPR|||SC"
    ev = map_bytes(orm(orc, *segments, "OBR|1|ORD1^EPR||FBC^FBC^LIMS")).value
    (order,) = ev.orders
    assert order.occurrence == occurrence
    (sr,) = resources(to_bundle(ev).value, "ServiceRequest")
    if occurrence is None:
        assert not {"occurrenceDateTime", "occurrencePeriod"} & set(sr)
    else:
        assert sr["occurrenceDateTime"] == "2026-01-17T08:00:00+00:00" and "occurrencePeriod" not in sr
        assert service_request_from_fhir(sr).value.occurrence == occurrence


def test_obr_27_timing_when_there_is_no_orc_7() -> None:
    obr_27 = "OBR|1|ORD1^EPR||FBC^FBC^LIMS" + "|" * 23 + "^^^20260118070000"
    (order,) = map_bytes(orm("ORC|NW|ORD1^EPR|||SC", obr_27)).value.orders
    assert order.occurrence == uk(2026, 1, 18, 7, 0)


def test_specimen_model_is_additive() -> None:
    assert Specimen().identifiers == () and ResultReport.model_fields["specimens"].default == ()


# ------------------------------------------------------------------- consultant codes without XCN.9
@pytest.fixture
def trust() -> Iterator[None]:
    id_systems.override(id_systems.parse(CONFIG, "test"))
    _clear()
    yield
    id_systems.override(None)
    _clear()


@pytest.mark.usefixtures("trust")
def test_interpreter_and_requester_without_gmc_take_the_facilitys_consultant_code_system() -> None:
    """OBR-32 (CNN), ORC-12 and OBR-16 (XCN) without an assigning authority follow the identifier-system
    rules of docs/identifier-systems.md: the sending facility's ``practitioner`` URI."""
    raw = message(
        msh("ORU^R01^ORU_R01", control_id="LAB2", f3="LIMS", f4="RX1"),
        seg("PID", PID),
        obr(f32="C999&Path&Pat"),
        SODIUM,
    )
    (report,) = map_bytes(raw).value.reports
    (interpreter,) = report.performer
    assert isinstance(interpreter, Practitioner)
    assert (interpreter.identifiers[0].system, interpreter.identifiers[0].value) == (
        BASE + "consultant-code",
        "C999",
    )
    orc = "ORC|NW|ORD1^EPR|||SC|||||||C998^JONES^ANNA"
    raw = message(
        msh("ORM^O01^ORM_O01", control_id="ORD2", f3="EPR", f4="RX1"), seg("PID", PID), orc, ORM_OBR
    )
    (order,) = map_bytes(raw).value.orders
    assert isinstance(order.requester, Practitioner)
    assert order.requester.identifiers[0].system == BASE + "consultant-code"
