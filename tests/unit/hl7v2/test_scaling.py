"""Issue 12: HL7 v2 work is linear in the input (operation counts, not timings) and absurd input is
rejected by explicit bounds (AR, ERR with the table 0357 code and the location).

Timings live in bench/hl7_scaling.py. Here the work is measured as the number of characters of PID-3
scanned by string operations: a counting ``str`` subclass stands in for the field's text, so every
whole-field ``split``/``partition``/``find``/``count``/``in`` is counted whichever module performs it.
Re-splitting the whole field per repetition (the old behaviour) makes that count grow with the square of
the repetitions.
All data is synthetic (NHS test-range number).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import SupportsIndex

import pytest

from shared.hl7v2 import Message, limits, parse_message
from shared.hl7v2.ack import build_ack, choose_ack_codes
from shared.hl7v2.validation import LIMIT_CHECK, validate
from shared.mapping.hl7v2_in import map_message

MSH = "MSH|^~\\&|PAS|RXX01|TIE|RXX01|20240315143012||ADT^A01^ADT_A01|MSG000123456|P|2.5|||AL|NE"
EVN = "EVN|A01|20240315143000"
PV1 = "PV1|1|I|RXX01W12^BAY2^BED05|E" + "|" * 15 + "VN00987654^^^RXX01^VN" + "|" * 25 + "20240315142500"


def _message(reps: int, prefix: str = "A", pid5: str = "TESTPATIENT^ALEX", extra: int = 0) -> Message:
    ids = ["9434765919^^^NHS^NH"] + [f"{prefix}{i:07d}^^^RXX01^MR" for i in range(1, reps)]
    pid = f"PID|1||{'~'.join(ids)}||{pid5}||19800229|F"
    segments = [MSH, EVN, pid, PV1] + [f"NTE|{i}||note" for i in range(1, extra + 1)]
    return parse_message("\r".join(segments) + "\r")


class _CountingStr(str):
    """A field's text that adds the length it is scanned over to ``scanned[0]`` on each whole-string scan."""

    scanned: list[int]

    def split(self, sep: str | None = None, maxsplit: SupportsIndex = -1) -> list[str]:  # type: ignore[override]
        self.scanned[0] += len(self)
        return super().split(sep, maxsplit)

    def find(self, *args: object) -> int:  # type: ignore[override]
        self.scanned[0] += len(self)
        return super().find(*args)  # type: ignore[arg-type]

    def count(self, *args: object) -> int:  # type: ignore[override]
        self.scanned[0] += len(self)
        return super().count(*args)  # type: ignore[arg-type]

    def partition(self, sep: str) -> tuple[str, str, str]:
        self.scanned[0] += len(self)
        return super().partition(sep)

    def __contains__(self, key: object) -> bool:
        self.scanned[0] += len(self)
        return super().__contains__(key)  # type: ignore[operator]


def _pid3_scanned(msg: Message, work: Callable[[Message], object]) -> int:
    """Characters of PID-3 scanned while ``work(msg)`` runs."""
    pid = msg.segment("PID")
    assert pid is not None
    pid.raw_field(3)  # split the segment into fields, then swap PID-3's text for the counting one
    fields = pid._fields
    assert fields is not None
    counting = _CountingStr(fields[3])
    counting.scanned = [0]
    fields[3] = counting
    work(msg)
    return counting.scanned[0]


def _validate(msg: Message) -> object:
    result = validate(msg)
    assert result.ok, [i.location for i in result.issues]
    return result


def _map(msg: Message) -> object:
    return map_message(msg)


def _validate_and_map(msg: Message) -> object:
    _validate(msg)
    return map_message(msg)


@pytest.mark.parametrize("work", [_validate, _map, _validate_and_map], ids=["validate", "map", "both"])
def test_pid3_work_grows_linearly_with_repetitions(work: Callable[[Message], object]) -> None:
    # 45 and 90 repetitions: both within limits.MAX_FIELD_REPETITIONS, so the full checks run.
    small = _pid3_scanned(_message(45, "A"), work)
    large = _pid3_scanned(_message(90, "B"), work)
    assert small > 0  # the counter sees the work at all
    # Linear: doubling the field doubles the characters scanned (plus a constant); quadratic gives ~4x.
    assert large <= 2 * small + 2_000, (small, large)


def test_repetitions_read_one_by_one_split_the_field_once() -> None:
    msg = _message(90)
    pid = msg.segment("PID")
    assert pid is not None
    pid.raw_field(3)
    fields = pid._fields
    assert fields is not None
    counting = _CountingStr(fields[3])
    counting.scanned = [0]
    fields[3] = counting
    values = [pid.get(3, rep, 1) for rep in range(1, pid.repetition_count(3) + 1)]
    elements = [pid.raw_element(3, rep, 4) for rep in range(1, 91)]
    assert values[0] == "9434765919" and values[-1] == "A0000089"
    assert elements[0] == "NHS" and elements[-1] == "RXX01"
    # One count (repetition_count), one partition (repetition 1) and one split, for all 90 repetitions read
    # twice; re-splitting per repetition would scan the field ~180 times.
    assert counting.scanned[0] <= 3 * len(counting)


def test_edit_invalidates_the_split_repetitions() -> None:
    msg = _message(3)
    pid = msg.segment("PID")
    assert pid is not None
    assert pid.get(3, 2) == "A0000001"
    pid.set(3, "X0000009", rep=2, comp=1)
    assert pid.get(3, 2) == "X0000009"
    assert pid.raw_element(3, 2, 1) == "X0000009"


# ---------------------------------------------------------------------------------------------- bounds


def _rejection(msg: Message) -> tuple[str, list[str]]:
    """(ACK code, ERR segments as ER7) for ``msg`` (MSH-15 ``AL``: enhanced mode, a commit ACK)."""
    result = validate(msg)
    plan = choose_ack_codes(msg, result)
    assert plan.commit is not None
    ack = build_ack(msg, code=plan.commit, issues=result.issues)
    return plan.commit, [s.raw for s in ack.segments_named("ERR")]


def test_repetitions_at_the_bound_are_accepted() -> None:
    result = validate(_message(limits.MAX_FIELD_REPETITIONS))
    assert result.ok and not result.reject


def test_too_many_repetitions_are_rejected_with_location() -> None:
    msg = _message(limits.MAX_FIELD_REPETITIONS + 1)
    result = validate(msg)
    assert result.reject and result.ack_code == "AR"
    [issue] = result.errors
    assert (issue.code, issue.location, issue.check) == ("102", "PID[1]-3[101]", LIMIT_CHECK)
    assert "9434765919" not in issue.text and "A0000" not in issue.text  # positions only, no values
    code, errs = _rejection(msg)
    assert code == "CR"
    assert errs == ["ERR||PID^1^3^101|102^Data type error^HL70357|E||||PID-3 has more than 100 repetitions"]


def test_pid3_of_8000_repetitions_is_rejected_before_field_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = validate.__globals__["_check_nhs_numbers"]

    def counting(*args: object) -> None:
        nonlocal calls
        calls += 1
        original(*args)

    monkeypatch.setitem(validate.__globals__, "_check_nhs_numbers", counting)
    result = validate(_message(8000))
    assert result.reject
    assert calls == 0  # the NHS-number check (and every other field check) never ran


def test_too_many_segments_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_SEGMENTS", 6)
    assert validate(_message(2, extra=2)).ok  # 6 segments
    result = validate(_message(2, extra=3))  # 7 segments
    assert result.reject
    [issue] = result.errors
    assert (issue.code, issue.segment, issue.segment_index, issue.check) == ("100", "NTE", 7, LIMIT_CHECK)
    assert issue.text == "Message has more than 6 segments"


def test_too_long_field_is_rejected() -> None:
    at_bound = "X" * limits.MAX_FIELD_LENGTH
    assert validate(_message(2, pid5=at_bound)).ok
    msg = _message(2, pid5=at_bound + "X")
    result = validate(msg)
    assert result.reject
    [issue] = result.errors
    assert (issue.code, issue.location) == ("102", "PID[1]-5")
    code, errs = _rejection(msg)
    assert code == "CR"
    assert errs == ["ERR||PID^1^5^1|102^Data type error^HL70357|E||||PID-5 is longer than 65536 characters"]


def test_field_overrides_allow_long_report_text() -> None:
    assert limits.FIELD_OVERRIDES[("OBX", 5)][1] is None
