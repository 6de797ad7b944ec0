"""ORU^R01 -> ResultReport / Observation: grouping, value types, ranges, flags, statuses, notes, errors."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.canonical import identity
from shared.canonical.model import (
    Attachment,
    ClinicalDateTime,
    Coding,
    Concept,
    EncounterStatus,
    EventKind,
    Observation,
    Quantity,
    Range,
    ReferenceRange,
)
from shared.mapping.errors import InvalidValue, MissingRequiredField, UnmappedSourceCode
from shared.mapping.hl7v2_in import map_bytes
from shared.terminology import systems
from tests.unit.mapping.hl7v2_in.hl7in_samples import PV1, event, message, oru, seg

OBR = "OBR|1|ORD1^EPR|LAB1^LIMS|UE^Urea and electrolytes^EXAMPLE-TRUST-LAB|||20260115093000" + "|" * 18 + "F"


def obx(
    vtype: str, value: str, *, n: int = 1, code: str = "X^Test^LIMS", units: str = "", more: str = ""
) -> str:
    return f"OBX|{n}|{vtype}|{code}||{value}|{units}|{more}"


def one(*segments: str) -> Observation:
    (report,) = event(oru(OBR, *segments)).reports
    (result,) = report.results
    return result


def value_of(vtype: str, value: str, units: str = "") -> object:
    return one(obx(vtype, value, units=units) + "||||F").value


def test_default_report() -> None:
    ev = event(oru())
    assert ev.kind is EventKind.RESULT
    (report,) = ev.reports
    assert report.status == "final"
    assert (
        report.placer_order_number is not None
        and report.placer_order_number.system == "urn:tie:authority:EPR"
    )
    assert report.filler_order_number is not None
    assert (report.filler_order_number.system, report.filler_order_number.value) == (
        "urn:tie:authority:LIMS",
        "LAB1",
    )
    assert (report.placer_order_number.type, report.filler_order_number.type) == ("PLAC", "FILL")
    assert report.effective == ClinicalDateTime(value=datetime(2026, 1, 15, 9, 30, tzinfo=UTC))
    assert isinstance(report.code, Concept)
    assert report.code.codings[0].system == systems.LOCAL_LAB  # the trust's lab system, sender's code first
    (sodium,) = report.results
    assert sodium.status == "final"
    assert sodium.value == Quantity(value=Decimal("140"), unit="mmol/L", code="mmol/L", system=systems.UCUM)
    assert isinstance(sodium.code, Concept)
    assert [c.system for c in sodium.code.codings] == [systems.LOCAL_LAB, systems.LOINC]
    assert sodium.code.coding(systems.LOINC).code == "2951-2"  # type: ignore[union-attr]
    assert sodium.reference_range == (
        ReferenceRange(
            low=Quantity(value=Decimal("133"), unit="mmol/L", code="mmol/L", system=systems.UCUM),
            high=Quantity(value=Decimal("146"), unit="mmol/L", code="mmol/L", system=systems.UCUM),
            text="133-146",
        ),
    )
    (flag,) = sodium.interpretation
    assert isinstance(flag, Concept) and flag.coding(systems.V3_OBSERVATION_INTERPRETATION) is not None
    assert sodium.effective == report.effective  # no OBX-14: the OBR-7 time
    assert sodium.sequence == 1
    assert ev.key == identity.result_key(ev.patient, report.filler_order_number, report.code)


def test_numeric_units_ucum_rules() -> None:
    assert value_of("NM", "104", "IU/L") == Quantity(value=Decimal("104"), unit="IU/L")  # not UCUM as spelt
    assert value_of("NM", "7.5", "mmol/L^millimoles per litre^UCUM") == Quantity(
        value=Decimal("7.5"), unit="millimoles per litre", code="mmol/L", system=systems.UCUM
    )
    assert value_of("NM", "60", "beats/min^^ISO") == Quantity(value=Decimal("60"), unit="beats/min")
    assert value_of("NM", "-1.25") == Quantity(value=Decimal("-1.25"))


@pytest.mark.parametrize(
    ("units", "unit", "code", "system"),
    [
        ("mmol/l", "mmol/l", "mmol/L", systems.UCUM),  # valid UCUM ignoring case: the c/s code
        ("MMOL/L", "MMOL/L", "mmol/L", systems.UCUM),
        ("umol/l", "umol/l", "umol/L", systems.UCUM),
        ("g/l", "g/l", "g/L", systems.UCUM),
        ("10*9/l", "10*9/l", "10*9/L", systems.UCUM),
        ("mmol/l^millimoles per litre^UCUM", "millimoles per litre", "mmol/L", systems.UCUM),
        ("x10*9/L", "x10*9/L", None, None),  # not UCUM: the text, no system
        ("IU/L", "IU/L", None, None),  # UCUM spells it [iU]/L: never a guessed code
        ("mmol/L^^99LOCAL", "mmol/L", None, None),  # a local system is not UCUM
    ],
)
def test_units_case_insensitive_ucum(units: str, unit: str, code: str | None, system: str | None) -> None:
    assert value_of("NM", "7.5", units) == Quantity(value=Decimal("7.5"), unit=unit, code=code, system=system)


@pytest.mark.parametrize(
    ("text", "comparator", "number"), [("<7", "<", "7"), (">=10.5", ">=", "10.5"), ("> 2", ">", "2")]
)
def test_numeric_with_comparator_prefix(text: str, comparator: str, number: str) -> None:
    assert value_of("NM", text) == Quantity(value=Decimal(number), comparator=comparator)


@pytest.mark.parametrize("text", ["?7", "1,000", "7 mmol", "1e5"])
def test_unparseable_number_raises(text: str) -> None:
    with pytest.raises(InvalidValue) as err:
        map_bytes(oru(OBR, obx("NM", text) + "||||F"))
    assert (err.value.field, err.value.error_code) == ("OBX(1)-5", "102")
    assert text not in str(err.value)


def test_text_values() -> None:
    assert value_of("ST", "Positive") == "Positive"
    assert value_of("TX", "line one~line two") == "line one\nline two"
    assert value_of("FT", "first\\.br\\second") == "first\nsecond"
    assert value_of("ST", '""') is None


def test_coded_value_kept_as_sent() -> None:
    value = value_of("CWE", "27268008^Salmonella^SCT")
    assert value == Concept(
        codings=(Coding(system=systems.SNOMED_CT, code="27268008", display="Salmonella"),), text="Salmonella"
    )


def test_date_values_bst_and_gmt() -> None:
    assert value_of("DT", "20260701") == ClinicalDateTime(
        value=datetime(2026, 6, 30, 23, 0, tzinfo=UTC), precision="day"
    )
    assert value_of("TS", "20260115083000") == ClinicalDateTime(
        value=datetime(2026, 1, 15, 8, 30, tzinfo=UTC)
    )
    assert value_of("DTM", "202607010830+0000") == ClinicalDateTime(
        value=datetime(2026, 7, 1, 8, 30, tzinfo=UTC), precision="minute"
    )


def test_structured_numeric() -> None:
    assert value_of("SN", "<^5") == Quantity(value=Decimal("5"), comparator="<")
    assert value_of("SN", "^10^-^20", "g/L") == Range(
        low=Quantity(value=Decimal("10"), unit="g/L", code="g/L", system=systems.UCUM),
        high=Quantity(value=Decimal("20"), unit="g/L", code="g/L", system=systems.UCUM),
    )
    assert value_of("SN", "^1^:^128") == "1:128"
    assert value_of("SN", "^2^+") == "2+"
    with pytest.raises(InvalidValue):
        map_bytes(oru(OBR, obx("SN", "<>^5") + "||||F"))


def test_encapsulated_data_is_metadata_only() -> None:
    pdf = b"%PDF-1.4 fabricated report"
    data = base64.b64encode(pdf).decode()
    result = one(obx("ED", f"LAB^AP^PDF^Base64^{data}") + "||||F")
    assert result.value == Attachment(
        content_type="application/pdf", size=len(pdf), sha256=hashlib.sha256(pdf).hexdigest()
    )
    assert (
        data
        not in map_bytes(oru(OBR, obx("ED", f"LAB^AP^PDF^Base64^{data}") + "||||F")).value.model_dump_json()
    )
    with pytest.raises(InvalidValue) as err:
        map_bytes(oru(OBR, obx("ED", "LAB^AP^PDF^Base64^not base64!") + "||||F"))
    assert err.value.field == "OBX(1)-5.5"


def test_coded_value_carrying_base64_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        map_bytes(oru(OBR, obx("CE", "^IGene^application/pdf^Base64^JVBERi0xLjQK") + "||||F"))
    assert err.value.field == "OBX(1)-5"


def test_reference_pointer() -> None:
    assert value_of("RP", "https://pacs.example/img/1^PACS^IM^JPEG") == Attachment(
        url="https://pacs.example/img/1", content_type="image/jpeg"
    )


def test_value_type_errors() -> None:
    with pytest.raises(InvalidValue) as err:
        map_bytes(oru(OBR, obx("XYZ", "1") + "||||F"))
    assert (err.value.field, err.value.error_code) == ("OBX(1)-2", "103")
    with pytest.raises(MissingRequiredField) as err2:
        map_bytes(oru(OBR, obx("", "1") + "||||F"))
    assert err2.value.field == "OBX(1)-2"
    with pytest.raises(InvalidValue) as err3:
        map_bytes(oru(OBR, obx("NM", "60~120") + "||||F"))
    assert err3.value.field == "OBX(1)-5"


def test_empty_value_is_no_value() -> None:
    result = one(obx("NM", "") + "||||I")
    assert result.value is None and result.status == "registered"


@pytest.mark.parametrize(
    ("text", "low", "high"), [("35-104", "35", "104"), ("6.6 - 26.0", "6.6", "26.0"), (">7.2", None, None)]
)
def test_reference_ranges(text: str, low: str | None, high: str | None) -> None:
    (rr,) = one(obx("NM", "7", more=text) + "||||F").reference_range
    assert rr.text == text
    assert (rr.low.value if rr.low else None) == (Decimal(low) if low else None)
    assert (rr.high.value if rr.high else None) == (Decimal(high) if high else None)


def test_abnormal_flags() -> None:
    result = one(obx("NM", "7", more="|H~HI") + "||F")
    high, local = result.interpretation
    assert isinstance(high, Concept) and high.coding(systems.V3_OBSERVATION_INTERPRETATION) is not None
    assert isinstance(local, Concept) and [c.code for c in local.codings] == ["HI"]  # kept as sent


def test_observation_status() -> None:
    assert one(obx("NM", "7") + "||||C").status == "corrected"
    assert one(obx("NM", "7") + "||||").status == "unknown"  # empty: the source does not say
    with pytest.raises(UnmappedSourceCode) as err:
        map_bytes(oru(OBR, obx("NM", "7") + "||||?"))
    assert (err.value.field, err.value.error_code) == ("OBX(1)-11", "103")


def test_report_status() -> None:
    (report,) = event(oru(OBR[:-1] + "X", obx("NM", "7") + "||||X")).reports
    assert report.status == "cancelled"
    (report,) = event(oru(OBR[:-1], obx("NM", "7") + "||||F")).reports
    assert report.status == "unknown"
    with pytest.raises(UnmappedSourceCode) as err:
        map_bytes(oru(OBR[:-1] + "Z", obx("NM", "7") + "||||F"))
    assert err.value.field == "OBR(1)-25"


def test_order_numbers_from_orc_when_obr_has_none() -> None:
    obr = "OBR|1|||UE^U and E^LIMS" + "|" * 21 + "F"
    (report,) = event(oru("ORC|RE|P9^EPR|F9^LIMS", obr, obx("NM", "1") + "||||F")).reports
    assert report.placer_order_number is not None and report.placer_order_number.value == "P9"
    assert report.filler_order_number is not None and report.filler_order_number.value == "F9"
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(oru(obr, obx("NM", "1") + "||||F"))
    assert err.value.field == "OBR-3"


def test_filler_without_namespace_takes_the_sending_application() -> None:
    obr = "OBR|1||F77|UE^U and E^LIMS" + "|" * 21 + "F"
    (report,) = event(oru(obr, obx("NM", "1") + "||||F")).reports
    assert report.filler_order_number is not None
    assert report.filler_order_number.system == "urn:tie:authority:LIMS"  # MSH-3


def test_grouping_notes_specimens_and_several_reports() -> None:
    obr2 = "OBR|2|ORD2^EPR|LAB2^LIMS|FBC^Full blood count^EXAMPLE-TRUST-LAB|||20260115100000" + "|" * 18 + "P"
    ev = event(
        oru(
            "OBX|1|ST|ADT^Not in a report^LIMS||x||||||F",
            "ORC|RE|ORD1^EPR|LAB1^LIMS",
            OBR,
            "NTE|1||Report comment",
            obx("NM", "140", code="NA^Sodium^EXAMPLE-TRUST-LAB") + "||||F|||20260115091500",
            "NTE|1||first line~second line",
            "NTE|2||",
            "SPM|1|S1||BLD",
            obx("ST", "specimen observation", n=2) + "||||F",
            "ORC|RE|ORD2^EPR|LAB2^LIMS",
            obr2,
            obx("NM", "130", code="HB^Haemoglobin^EXAMPLE-TRUST-LAB") + "||||P",
        )
    )
    first, second = ev.reports
    assert first.notes == ("Report comment",)
    (sodium,) = first.results  # the pre-OBR OBX and the specimen OBX are not results
    assert sodium.notes == ("first line\nsecond line",)
    assert sodium.effective == ClinicalDateTime(value=datetime(2026, 1, 15, 9, 15, tzinfo=UTC))  # OBX-14
    assert second.status == "preliminary"
    assert second.results[0].status == "preliminary"
    assert isinstance(second.code, Concept)
    assert ev.key == identity.result_key(
        ev.patient, first.filler_order_number, first.code
    )  # keyed on the first report


def test_report_and_result_need_codes() -> None:
    with pytest.raises(MissingRequiredField) as err:
        map_bytes(oru("OBR|1|ORD1^EPR|LAB1^LIMS|" + "|" * 21 + "F", obx("NM", "1") + "||||F"))
    assert err.value.field == "OBR(1)-4"
    with pytest.raises(MissingRequiredField) as err2:
        map_bytes(oru(OBR, obx("NM", "1", code="") + "||||F"))
    assert err2.value.field == "OBX(1)-3"
    with pytest.raises(MissingRequiredField) as err3:
        map_bytes(oru("ORC|RE|ORD1^EPR|LAB1^LIMS"))
    assert err3.value.field == "OBR"


def test_result_context_encounter_when_pv1_is_complete() -> None:
    assert event(oru(pv1=True)).encounter is not None
    assert event(oru()).encounter is None


def test_performers() -> None:
    result = one(obx("NM", "1") + "||||F|||||C1234567^JONES^ANNA^^^DR^^^GMC|||||||THE LAB^^LAB01")
    practitioner, org = result.performer
    assert practitioner.identifiers[0].system == systems.GMC_NUMBER
    assert (org.name, org.ods_code) == ("THE LAB", "LAB01")  # type: ignore[union-attr]


def test_result_names_its_encounter_even_without_admit_or_discharge_time() -> None:
    ev = event(oru(pv1=True))
    assert ev.encounter is not None and ev.encounter.status is EncounterStatus.IN_PROGRESS  # PV1-44 set
    head, pid, *body = [line for line in oru().decode().split("\r") if line]
    named = event(message(head, pid, seg("PV1", {**PV1, 44: ""}), *body)).encounter
    assert named is not None and named.status is EncounterStatus.UNKNOWN  # named, state not said
    assert named.identifiers[0].value == "V0000123"
    no_visit = message(head, pid, seg("PV1", {**PV1, 19: ""}), *body)
    assert event(no_visit).encounter is None  # no visit number: nothing to link to, not an error
