"""Suspected unescaped delimiters (issue 10, case 7): warnings by default, errors in strict mode."""

from __future__ import annotations

import pytest

from shared.hl7v2 import Message, limits, parse_message
from shared.hl7v2.validation import DELIMITER_CHECK, Issue, ValidationResult, validate

GOOD_NHS = "9434765919"
PID = f"PID|1||{GOOD_NHS}^^^NHS^NH~H123^^^RXX^MR||ZEBEDEE^QUIXOTE||19800101|F"
OBR = "OBR|1|ORD1|LAB1|{obr4}|||20260115093000"
OBX = "OBX|1|{type}|{obx3}||{value}|{units}|{range}|N|||F"


def _oru(
    *,
    obr4: str = "UE^Urea and electrolytes^L",
    value_type: str = "NM",
    obx3: str = "NA^Sodium^L",
    value: str = "140",
    units: str = "mmol/L",
    reference_range: str = "133-146",
    version: str = "2.5.1",
    extra: tuple[str, ...] = (),
    pid: str = PID,
) -> Message:
    segments = [
        f"MSH|^~\\&|LIMS|LAB|TIE|TRUST|20260115110500||ORU^R01^ORU_R01|LAB0001|P|{version}",
        pid,
        OBR.format(obr4=obr4),
        OBX.format(type=value_type, obx3=obx3, value=value, units=units, range=reference_range),
        *extra,
    ]
    return parse_message("\r".join(segments) + "\r")


def _found(result: ValidationResult) -> list[tuple[str, str, str | None, int | None, int | None, int | None]]:
    return [
        (i.severity, i.code, i.segment, i.field, i.repetition, i.component) for i in result.delimiter_issues
    ]


def test_clean_message_has_no_delimiter_findings() -> None:
    result = validate(_oru())
    assert result.issues == ()


def test_ampersand_in_a_code_is_a_warning_at_the_component() -> None:
    """``U&E`` means the test "U&E"; the parser sees CE.1 ``U`` with a second sub-component ``E``."""
    result = validate(_oru(obr4="U&E^Urea and electrolytes^L"))
    [issue] = result.delimiter_issues
    assert (issue.severity, issue.code, issue.segment, issue.occurrence, issue.field, issue.component) == (
        "W",
        "102",
        "OBR",
        1,
        4,
        1,
    )
    assert issue.check == DELIMITER_CHECK
    assert issue.location == "OBR[1]-4[1].1"
    assert result.ok and result.ack_code == "AA"  # a warning: the message is still accepted


def test_unit_split_at_a_power_of_ten_is_a_warning() -> None:
    result = validate(_oru(units="x10^9/L"))
    assert _found(result) == [("W", "102", "OBX", 6, 1, 1)]
    assert "power of ten" in result.delimiter_issues[0].text


@pytest.mark.parametrize("units", ["10^9/L", "X10^12/L", "*10^-3"])
def test_other_power_of_ten_spellings(units: str) -> None:
    assert _found(validate(_oru(units=units))) == [("W", "102", "OBX", 6, 1, 1)]


def test_reference_range_with_a_caret_is_a_primitive_holding_components() -> None:
    result = validate(_oru(reference_range="3.5-11.0 x10^9/L"))
    assert _found(result) == [("W", "102", "OBX", 7, 1, 2)]
    assert "is a primitive but holds components" in result.delimiter_issues[0].text


def test_components_beyond_the_widest_definition_of_the_type() -> None:
    # OBX-3 is CE (6 components) in v2.5.1 and CWE (22) from v2.7: only a 23rd component is beyond reach.
    within = "^".join(f"C{i}" for i in range(1, 23))
    assert _found(validate(_oru(obx3=within))) == []
    beyond = within + "^C23"
    assert _found(validate(_oru(obx3=beyond))) == [("W", "102", "OBX", 3, 1, 23)]


def test_newer_layouts_in_older_versions_are_not_reported() -> None:
    """Senders mix versions: a v2.5 PL (11 components) in a v2.3 message is not a delimiter problem."""
    pv1 = "PV1|1|I|WARD1^BAY2^BED3^RXX^^^^^^^LOCAL"
    message = parse_message(
        "\r".join(
            [
                "MSH|^~\\&|PAS|RXX|TIE|TRUST|20240305101500||ADT^A01|C1|P|2.3",
                "EVN|A01|20240305101500",
                PID,
                pv1,
            ]
        )
        + "\r"
    )
    assert validate(message).delimiter_issues == ()


def test_subcomponents_in_numeric_values() -> None:
    nm = validate(_oru(value="5&1"))
    assert _found(nm) == [("W", "102", "OBX", 5, 1, 1)]
    assert "is a primitive but holds sub-components" in nm.delimiter_issues[0].text
    sn = validate(_oru(value_type="SN", value=">^5&2"))
    assert _found(sn) == [("W", "102", "OBX", 5, 1, 2)]


def test_obx5_uses_the_type_named_in_obx2() -> None:
    assert _found(validate(_oru(value_type="NM", value="5^3"))) == [("W", "102", "OBX", 5, 1, 2)]
    assert _found(validate(_oru(value_type="CE", value="A^B^L"))) == []
    assert _found(validate(_oru(value_type="ZZ", value="5^3&1"))) == []  # unknown type: not checked


def test_repeated_non_repeating_field() -> None:
    pid = PID.replace("|F", "|F~M")  # PID-8 administrative sex never repeats
    result = validate(_oru(pid=pid))
    assert _found(result) == [("W", "102", "PID", 8, 2, None)]


def test_composite_component_with_too_many_subcomponents() -> None:
    # CX.4 assigning authority is HD: three sub-components at most.
    pid = PID.replace("^^^NHS^NH", "^^^NHS&2.16.840.1.113883.2.1.4.1&ISO&EXTRA^NH")
    assert _found(validate(_oru(pid=pid))) == [("W", "102", "PID", 3, 1, 4)]


@pytest.mark.parametrize(
    "obr4",
    [
        "UE^Urea and electrolytes^L^^^",  # empty trailing components lose nothing
        "UE&^Urea and electrolytes^L",  # an empty trailing sub-component neither
        "U\\T\\E^Urea and electrolytes^L",  # the correctly escaped form
    ],
)
def test_harmless_or_escaped_forms_are_not_reported(obr4: str) -> None:
    assert validate(_oru(obr4=obr4)).delimiter_issues == ()


def test_strict_mode_reports_errors() -> None:
    result = validate(_oru(obr4="U&E^Urea and electrolytes^L", units="x10^9/L"), strict_delimiters=True)
    assert _found(result) == [("E", "102", "OBR", 4, 1, 1), ("E", "102", "OBX", 6, 1, 1)]
    assert not result.reject and result.ack_code == "AE"


def test_other_errors_are_collected_before_delimiter_findings() -> None:
    """Delimiter findings run last, so they never push a real error out of ``max_issues``."""
    noisy = "~".join("U&E" for _ in range(5))
    pid = PID.replace(GOOD_NHS, "9434765918")  # bad check digit
    result = validate(_oru(obr4=noisy, pid=pid), max_issues=2)
    assert [i.text for i in result.errors] == ["NHS number fails Modulus 11 check"]
    assert result.truncated


def test_segments_outside_the_structure_are_not_checked() -> None:
    result = validate(_oru(extra=("ZXX|U&E^1^2^3^4^5^6^7^8^9^10^11^12^13^14^15^16^17^18^19^20^21^22^23",)))
    assert result.delimiter_issues == ()


def test_texts_hold_positions_never_values() -> None:
    result = validate(
        _oru(
            obr4="SECRETCODE&X^Urea and electrolytes^L",
            units="x10^9/L",
            reference_range="3.5-11.0 x10^9/L",
            value="5&1",
        )
    )
    assert len(result.delimiter_issues) == 4
    for issue in result.delimiter_issues:
        for value in ("SECRETCODE", "Urea", "x10", "9/L", "3.5", "5&1"):
            assert value not in issue.text


def test_one_finding_per_problem_in_a_long_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linear work: each repetition is split once; a long field gives one finding per repetition."""
    monkeypatch.setattr(limits, "MAX_FIELD_REPETITIONS", 10_000)  # else rejected by the bound first
    field = "~".join(f"C{i}&X" for i in range(1000))  # OBR-4 does not repeat, each repetition is bad
    result = validate(_oru(obr4=field), max_issues=10_000)
    issues: tuple[Issue, ...] = result.delimiter_issues
    assert len(issues) == 1 + 1000  # the repetition itself plus one per repetition's CE.1
    assert {i.repetition for i in issues if i.component == 1} == set(range(1, 1001))
