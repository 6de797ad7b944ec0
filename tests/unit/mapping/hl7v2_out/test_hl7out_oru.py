"""canonical -> HL7 v2 ORU^R01."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from shared.canonical.model import (
    Attachment,
    Coding,
    Concept,
    EventKind,
    Organization,
    Quantity,
    Range,
    ReferenceRange,
)
from shared.hl7v2 import Message, parse_message
from shared.hl7v2.validation import validate
from shared.mapping.hl7v2_out import Hl7OutError, UnmappableCode, oru_r01, to_oru_r01
from shared.terminology import systems
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER, event, potassium, report, t


def oru(ev: object, **kw: object) -> Message:
    msg = to_oru_r01(ev, replace(HEADER, **kw))
    errors = [i for i in validate(msg).issues if i.severity == "E"]
    assert errors == [], errors
    return parse_message(msg.encode())


def result_event(*reports: object, **update: object) -> object:
    return event(EventKind.RESULT, reports=reports or (report(),), **update)


def test_structure_and_order_group() -> None:
    msg = oru(result_event())
    assert [s.name for s in msg.segments] == ["MSH", "PID", "PD1", "PV1", "ORC", "OBR", "OBX", "NTE"]
    assert msg.get("MSH-9.3") == "ORU_R01"
    assert msg.get("ORC-1") == "RE" and msg.raw("ORC-2") == "P456^EPR" and msg.raw("ORC-3") == "F123^LAB"
    assert msg.raw("OBR-2") == "P456^EPR" and msg.raw("OBR-3") == "F123^LAB"
    assert msg.raw("OBR-4") == "UE^U\\T\\E^EXAMPLE-TRUST-LAB"
    assert msg.get("OBR-4.2") == "U&E"
    assert msg.get("OBR-7") == "20260115093000+0000" and msg.get("OBR-22") == "20260115110000+0000"
    assert msg.get("OBR-25") == "F"


def test_numeric_result_units_range_flags_status_notes() -> None:
    msg = oru(result_event())
    assert msg.get("OBX-1") == "1" and msg.get("OBX-2") == "NM" and msg.get("OBX-5") == "5.9"
    assert msg.raw("OBX-3") == "K^Potassium^EXAMPLE-TRUST-LAB^2823-3^^LN"
    assert msg.raw("OBX-6") == "mmol/L^^UCUM"
    assert msg.get("OBX-7") == "3.5-5.3"
    assert msg.get("OBX-8") == "H"
    assert msg.get("OBX-11") == "F"
    assert msg.get("OBX-14") == "20260115093000+0000"
    assert msg.get("NTE-3") == "haemolysed"


@pytest.mark.parametrize(
    ("value", "vtype", "obx5"),
    [
        (Quantity(value=Decimal("7"), comparator="<"), "SN", "<^7"),
        (Quantity(value=Decimal("1E+2")), "NM", "100"),
        (Range(low=Quantity(value=Decimal(10)), high=Quantity(value=Decimal(20))), "SN", "^10^-^20"),
        (
            Concept(codings=(Coding(system=systems.SNOMED_CT, code="10828004", display="Positive"),)),
            "CWE",
            "10828004^Positive^SCT",
        ),
        ("no growth", "ST", "no growth"),
        ("line 1\nline 2", "TX", "line 1\\.br\\line 2"),
        (t(2026, 1, 15, 9, 30), "DTM", "20260115093000+0000"),
        (
            Attachment(url="https://blob.example/r.pdf", content_type="application/pdf"),
            "RP",
            "https://blob.example/r.pdf^^^application/pdf",
        ),
    ],
)
def test_value_types(value: object, vtype: str, obx5: str) -> None:
    obs = potassium(value=value, reference_range=(), interpretation=())
    msg = oru(result_event(report(results=(obs,))))
    assert msg.get("OBX-2") == vtype
    assert msg.raw("OBX-5") == obx5


def test_version_2_4_uses_ce_and_ts() -> None:
    obs = potassium(value=Concept(codings=(Coding(system=systems.SNOMED_CT, code="10828004"),)))
    msg = oru(result_event(report(results=(obs,))), version="2.4")
    assert msg.get("OBX-2") == "CE"


def test_attachment_without_url_cannot_be_written() -> None:
    obs = potassium(value=Attachment(content_type="application/pdf", size=10, sha256="0" * 64))
    with pytest.raises(Hl7OutError) as err:
        to_oru_r01(result_event(report(results=(obs,))), HEADER)
    assert err.value.field == "reports[0].results[0].value.url"


@pytest.mark.parametrize(("status", "code"), [("preliminary", "P"), ("corrected", "C"), ("cancelled", "X")])
def test_observation_status_reverse(status: str, code: str) -> None:
    msg = oru(result_event(report(results=(potassium(status=status),))))
    assert msg.get("OBX-11") == code


def test_ambiguous_reverse_status_is_refused() -> None:
    # observation 'amended' <- v2-0085 A and B (both narrower): no single code, so no message
    with pytest.raises(UnmappableCode) as err:
        to_oru_r01(result_event(report(results=(potassium(status="amended"),))), HEADER)
    assert err.value.field == "reports[0].results[0].status"
    with pytest.raises(UnmappableCode) as err:
        to_oru_r01(result_event(report(status="registered")), HEADER)
    assert err.value.field == "reports[0].status"


def test_unknown_status_is_written_as_an_empty_field() -> None:
    msg = oru(result_event(report(status="unknown", results=(potassium(status="unknown"),))))
    assert msg.get("OBR-25") is None and msg.get("OBX-11") is None


def test_interpretation_from_v3_only_and_unmappable_one() -> None:
    flag = Concept(codings=(Coding(system=systems.V3_OBSERVATION_INTERPRETATION, code="LL"),))
    msg = oru(result_event(report(results=(potassium(interpretation=(flag,)),))))
    assert msg.get("OBX-8") == "LL"
    bad = Concept(codings=(Coding(system=systems.SNOMED_CT, code="281302008"),))
    with pytest.raises(UnmappableCode) as err:
        to_oru_r01(result_event(report(results=(potassium(interpretation=(bad,)),))), HEADER)
    assert err.value.field == "reports[0].results[0].interpretation[0]"


def test_reference_range_without_text_is_written_from_bounds() -> None:
    rr = ReferenceRange(low=Quantity(value=Decimal("3.5")), high=Quantity(value=Decimal("5.3")))
    msg = oru(result_event(report(results=(potassium(reference_range=(rr,)),))))
    assert msg.get("OBX-7") == "3.5-5.3"


def test_report_notes_conclusion_and_performing_organisation() -> None:
    obs = potassium(performer=(Organization(ods_code="RX1", name="Pathology"),))
    rep = report(notes=("fasting sample",), conclusion="normal apart from K", results=(obs,))
    msg = oru(result_event(rep))
    names = [s.name for s in msg.segments]
    assert names[names.index("OBR") + 1 : names.index("OBX")] == ["NTE", "NTE"]
    assert msg.get("NTE(1)-3") == "fasting sample" and msg.get("NTE(2)-3") == "normal apart from K"
    assert msg.raw("OBX-23") == "Pathology^^^^^^^^^RX1"


def test_several_reports_and_no_encounter() -> None:
    second = report(
        filler_order_number=report().filler_order_number.model_copy(update={"value": "F124"}),  # type: ignore[union-attr]
        results=(potassium(sequence=1), potassium(sequence=2, notes=())),
    )
    msg = oru(result_event(report(), second, encounter=None))
    assert [s.name for s in msg.segments].count("OBR") == 2
    assert msg.segment("PV1") is None
    assert msg.get("OBR(2)-1") == "2" and msg.get("OBX(3)-1") == "2"


def test_category_needs_a_v2_0074_code() -> None:
    lab = Concept(codings=(Coding(system=systems.V2_0074_DIAGNOSTIC_SERVICE_SECTION, code="CH"),))
    assert oru(result_event(report(category=lab))).get("OBR-24") == "CH"
    # FHIR "laboratory" is broader than any one section: OBR-24 left empty, the report still written
    other = Concept(codings=(Coding(system=systems.OBSERVATION_CATEGORY, code="laboratory"),))
    mapped = oru_r01(result_event(report(category=other)), HEADER)
    assert mapped.value.get("OBR-24") is None and mapped.value.get("OBR-4") == "UE"
    [why] = [e.rule for e in mapped.lineage if e.target == "OBR(1)-24"]
    assert why == "no v2-0074 section for the category: OBR-24 left empty"


def test_an_oru_needs_a_report() -> None:
    with pytest.raises(Hl7OutError) as err:
        to_oru_r01(event(EventKind.RESULT), HEADER)
    assert err.value.field == "reports"


def test_lineage() -> None:
    mapped = oru_r01(result_event(), HEADER)
    pairs = {(e.source, e.target) for e in mapped.lineage}
    assert ("reports[0].results[0].value.value", "OBX(1)-5") in pairs
    assert ("reports[0].filler_order_number.value", "OBR(1)-3.1") in pairs
    status = next(e for e in mapped.lineage if e.target == "OBX(1)-11")
    assert status.table == "v2-0085-to-observation-status"
