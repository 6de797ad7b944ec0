"""hl7v2_in's hot-path shortcuts give exactly the answers of the code they stand in for: the NHS-number
declaration test on pre-split components (vs shared.hl7v2.validation.asserts_nhs_number), the inline
Modulus 11 check (vs shared.identifiers.nhs_number), and reuse of a patient / encounter for a repeated
PID / PV1 (vs mapping afresh)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.hl7v2 import parse_message
from shared.hl7v2.validation import asserts_nhs_number
from shared.identifiers.nhs_number import (
    InvalidNhsNumber,
    is_repeated_digit_nhs_number,
    normalise_nhs_number,
)
from shared.mapping.errors import InvalidValue
from shared.mapping.hl7v2_in import map_message
from shared.mapping.hl7v2_in._context import Rep
from shared.mapping.hl7v2_in.patient import _nhs_value
from shared.mapping.hl7v2_in.rules import RULES

_part = st.sampled_from(
    ["", "NHS", "nhs", " NHS ", "RRV", "NH", "HN", "MR", '""', "2.16.840.1.113883.2.1.4.1"]
)
_cx = st.builds(
    lambda v, a1, a2, a3, t, extra: f"{v}^^^{a1}&{a2}&{a3}^{t}{extra}",
    st.sampled_from(["9434765919", "", "X1"]),
    _part,
    _part,
    st.sampled_from(["", "ISO"]),
    st.one_of(_part, st.builds(lambda a, b: f"{a}&{b}", _part, _part)),
    st.sampled_from(["", "^RRV", "^"]),
)
_short = st.builds(lambda v, a: f"{v}^^^{a}", st.sampled_from(["9434765919", ""]), _part) | st.sampled_from(
    ["9434765919", "9434765919^", "9434765919^^^", "", "9434765919^^^NHS\\T\\X^NH"]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(_cx, _short), min_size=1, max_size=3))
def test_nhs_declaration_on_split_components_equals_the_validators(reps: list[str]) -> None:
    msg = parse_message(
        ("MSH|^~\\&|A|B|C|D|20260101||ADT^A28|1|P|2.5.1\rPID|1||" + "~".join(reps) + "\r").encode()
    )
    pid = msg.segment("PID")
    assert pid is not None
    for rep in range(1, pid.repetition_count(3) + 1):
        assert Rep(pid, 3, rep).asserts_nhs_number() == asserts_nhs_number(pid, 3, rep), reps


def _reference(raw: str) -> str | type[Exception] | None:
    try:
        number = normalise_nhs_number(raw)
    except InvalidNhsNumber:
        return InvalidValue
    return None if is_repeated_digit_nhs_number(number) else number


def _fast(raw: str) -> str | type[Exception] | None:
    try:
        return _nhs_value(raw, 3)
    except InvalidValue:
        return InvalidValue


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789", min_size=10, max_size=10),
        st.text(alphabet="0123456789 -٣a", min_size=8, max_size=13),
        st.sampled_from(["9434765919", "943 476 5919", "9999999999", "0000000000", "4010232137"]),
    )
)
def test_inline_modulus_11_equals_the_identifier_module(raw: str) -> None:
    assert _fast(raw) == _reference(raw)


def test_a_repeated_pid_and_pv1_reuse_the_same_patient_and_encounter() -> None:
    from bench.convert import messages

    first, second = messages("adt", 2)
    RULES.memo.clear()
    a = map_message(parse_message(first)).value
    b = map_message(parse_message(first)).value
    assert a.patient is b.patient and a.encounter is b.encounter  # reused
    assert map_message(parse_message(first), lineage=True).value == a  # the lineage path maps afresh
    other = map_message(parse_message(second)).value
    assert other.patient != a.patient and other.encounter != a.encounter
    # another trigger with the same PV1 text is not reused: status and period depend on the trigger
    a08 = first.replace(b"ADT^A01", b"ADT^A08").replace(b"EVN|A01", b"EVN|A08")
    assert map_message(parse_message(a08)).value.encounter is not a.encounter
