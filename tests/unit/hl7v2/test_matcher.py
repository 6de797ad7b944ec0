from __future__ import annotations

import pytest

from shared.hl7v2.structures import GroupRef, SegmentRef, resolve_structure
from shared.hl7v2.structures.matcher import StructureProblem, match_structure


def _root(event: str, version: str = "2.5.1") -> GroupRef:
    message_type, _, trigger = event.partition("^")
    resolved = resolve_structure(message_type, trigger, version)
    assert resolved is not None
    definitions, structure_id = resolved
    return definitions.structures[structure_id]


def _problems(event: str, segments: str, version: str = "2.5.1") -> list[tuple[str, str, int | None, int]]:
    return [
        (p.kind, p.segment, p.index if p.index is not None else p.expected_at, p.count)
        for p in match_structure(_root(event, version), segments.split())
    ]


@pytest.mark.parametrize(
    ("event", "segments"),
    [
        ("ADT^A01", "MSH EVN PID PV1"),
        (
            "ADT^A01",
            "MSH SFT EVN PID PD1 ROL NK1 NK1 PV1 PV2 ROL DB1 OBX OBX AL1 DG1 DRG PR1 ROL PR1 GT1 IN1 IN2 IN3",
        ),
        ("ADT^A01", "MSH EVN PID PV1 IN1 IN2 IN1 IN1 ACC UB1 UB2 PDA"),
        ("ADT^A02", "MSH EVN PID PV1 PV2"),
        ("ADT^A03", "MSH EVN PID PV1 DG1 PR1 OBX"),
        ("ADT^A11", "MSH EVN PID PV1"),
        ("ADT^A12", "MSH EVN PID PD1 PV1 PV2 DB1 OBX OBX DG1"),
        ("ADT^A40", "MSH EVN PID MRG PID PD1 MRG PV1"),
        ("ORU^R01", "MSH PID PV1 ORC OBR NTE OBX NTE OBX SPM OBX OBR OBX"),
        ("ORU^R01", "MSH OBR OBX"),  # patient group optional
        ("ORU^R01", "MSH PID OBR OBX PID OBR OBX"),  # repeated PATIENT_RESULT
        ("ORM^O01", "MSH PID PV1 ORC OBR NTE OBX NTE ORC RXO"),
        ("ORM^O01", "MSH ORC"),
        ("ACK", "MSH MSA ERR ERR"),
    ],
)
def test_conforming_sequences(event: str, segments: str) -> None:
    assert _problems(event, segments) == []


def test_missing_required_segment() -> None:
    assert _problems("ADT^A01", "MSH PID PV1") == [("missing", "EVN", 1, 1)]
    assert _problems("ACK", "MSH ERR") == [("missing", "MSA", 1, 1)]


def test_swapped_segments_report_one_missing_and_one_out_of_order() -> None:
    assert _problems("ADT^A01", "MSH EVN PV1 PID") == [
        ("missing", "PID", 2, 1),
        ("out_of_order", "PID", 3, 1),
    ]


def test_cardinality_exceeded() -> None:
    assert _problems("ADT^A01", "MSH EVN PID PV1 PV1") == [("too_many", "PV1", 4, 1)]
    assert _problems("ADT^A01", "MSH EVN EVN PID PV1") == [("too_many", "EVN", 2, 1)]


def test_z_and_unknown_segments_are_tolerated_as_unexpected() -> None:
    problems = match_structure(_root("ADT^A01"), ["MSH", "EVN", "PID", "ZPD", "PV1", "ZZZ", "QRD"])
    assert [(p.kind, p.segment, p.index) for p in problems] == [
        ("unexpected", "ZPD", 3),
        ("unexpected", "ZZZ", 5),
        ("unexpected", "QRD", 6),
    ]
    assert not any(p.is_error for p in problems)


def test_consecutive_strays_are_folded() -> None:
    assert _problems("ORM^O01", "MSH PID PV1 ORC NTE NTE NTE OBR OBX", version="2.3") == [
        ("out_of_order", "NTE", 4, 3)
    ]


def test_consecutive_unexpected_segments_are_folded() -> None:
    assert _problems("ADT^A01", "MSH EVN PID ZPD ZPD ZPD ZPV ZPD PV1") == [
        ("unexpected", "ZPD", 3, 3),
        ("unexpected", "ZPV", 6, 1),
        ("unexpected", "ZPD", 7, 1),
    ]


def test_required_group_entered_by_inner_segment() -> None:
    # OBX with no OBR: one "missing OBR", the OBX segments are placed in the observation group.
    assert _problems("ORU^R01", "MSH PID OBX OBX") == [("missing", "OBR", 2, 1)]
    assert _problems("ADT^A40", "MSH EVN MRG") == [("missing", "PID", 2, 1)]


def test_matching_resumes_after_a_stray_segment() -> None:
    # PD1 after PV1 is out of place; matching continues from PV1, so PV2 and OBX still match.
    problems = _problems("ADT^A01", "MSH EVN PID PV1 PD1 PV2 OBX")
    assert problems == [("out_of_order", "PD1", 4, 1)]


def test_choice_group() -> None:
    assert _problems("ORM^O01", "MSH PID ORC RQD NTE") == []
    # Two alternatives of a choice in one order detail: the second one is out of place.
    assert _problems("ORM^O01", "MSH PID ORC OBR RXO") == [("out_of_order", "RXO", 4, 1)]


def test_version_specific_structures() -> None:
    # v2.8 ORU_R01 allows OBX directly under the patient (PATIENT_OBSERVATION); v2.5.1 does not.
    assert _problems("ORU^R01", "MSH PID OBX PV1 ORC OBR OBX", version="2.8") == []
    assert _problems("ORU^R01", "MSH PID OBX PV1 ORC OBR OBX", version="2.5.1") != []


def test_synthetic_structure_with_nullable_required_group() -> None:
    # A required group whose members are all optional is satisfied by nothing.
    root = GroupRef(
        "T",
        "sequence",
        1,
        1,
        (
            SegmentRef("MSH", 1, 1),
            GroupRef("G", "sequence", 1, None, (SegmentRef("AAA", 0, 1), SegmentRef("BBB", 0, None))),
            SegmentRef("CCC", 1, 1),
        ),
    )
    assert match_structure(root, ["MSH", "CCC"]) == []
    assert match_structure(root, ["MSH", "AAA", "BBB", "AAA", "CCC"]) == []
    assert match_structure(root, ["MSH", "AAA", "AAA"]) == [
        StructureProblem("missing", "CCC", None, expected_at=3, group="T")
    ]


def test_empty_input() -> None:
    assert [p.kind for p in match_structure(_root("ACK"), [])] == ["missing", "missing"]
