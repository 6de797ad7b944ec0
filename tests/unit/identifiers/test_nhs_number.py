from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import PermanentError
from shared.identifiers import (
    InvalidNhsNumber,
    format_nhs_number,
    is_repeated_digit_nhs_number,
    is_valid_nhs_number,
    nhs_check_digit,
    normalise_nhs_number,
)

KNOWN_VALID = ["9434765919", "9449305552", "9000000009", "4010232137", "9999999999"]


def _reference_check_digit(stem: str) -> int:
    """Independent restatement of the Data Dictionary rule (returns 10 for never-issued stems)."""
    total = 0
    for position, digit in enumerate(stem, start=1):
        total += int(digit) * (11 - position)
    result = 11 - total % 11
    return 0 if result == 11 else result


@pytest.mark.parametrize("number", KNOWN_VALID)
def test_known_valid_numbers(number: str) -> None:
    assert is_valid_nhs_number(number)
    assert normalise_nhs_number(number) == number


@pytest.mark.parametrize(
    "presented",
    ["943 476 5919", "943-476-5919", " 9434765919 ", "9434 765 919", "943 476 5919\t"],
)
def test_presentation_forms_are_tolerated(presented: str) -> None:
    assert is_valid_nhs_number(presented)
    assert normalise_nhs_number(presented) == "9434765919"


@pytest.mark.parametrize(
    "value",
    [
        "9434765918",  # wrong check digit
        "9434765910",
        "9449305553",
        "943476591",  # 9 digits
        "94347659190",  # 11 digits
        "",
        "          ",
        "943.476.5919",
        "943_476_5919",
        "94347659l9",  # letter l
        "\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669",  # Arabic-Indic digits
        "+9434765919",
        "943/476/5919",
    ],
)
def test_invalid_values(value: str) -> None:
    assert not is_valid_nhs_number(value)
    with pytest.raises(InvalidNhsNumber):
        normalise_nhs_number(value)


def test_check_digit_ten_is_never_valid() -> None:
    # Stems whose Modulus 11 result is 10 are never issued, whatever the tenth digit.
    stems = [f"{n:09d}" for n in range(200) if _reference_check_digit(f"{n:09d}") == 10]
    assert stems, "expected at least one never-issued stem in the first 200"
    for stem in stems:
        assert nhs_check_digit(stem) is None
        for last in "0123456789":
            assert not is_valid_nhs_number(stem + last)


def test_error_text_does_not_echo_the_number() -> None:
    with pytest.raises(InvalidNhsNumber) as excinfo:
        normalise_nhs_number("9434765918")
    assert "9434765918" not in str(excinfo.value)
    assert "943" not in str(excinfo.value)
    assert isinstance(excinfo.value, PermanentError)
    with pytest.raises(InvalidNhsNumber) as excinfo2:
        normalise_nhs_number("12345")
    assert "12345" not in str(excinfo2.value)


def test_non_string_input_is_invalid() -> None:
    assert not is_valid_nhs_number(9434765919)  # type: ignore[arg-type]


def test_repeated_digit_detection() -> None:
    assert is_repeated_digit_nhs_number("9999999999")
    assert is_repeated_digit_nhs_number("000 000 0000")
    assert not is_repeated_digit_nhs_number("9434765919")
    assert not is_repeated_digit_nhs_number("99999")
    # Which repeated-digit numbers pass Modulus 11 follows from the rule, not from a list:
    for d in "0123456789":
        number = d * 10
        assert is_valid_nhs_number(number) == (_reference_check_digit(d * 9) == int(d))


def test_format() -> None:
    assert format_nhs_number("9434765919") == "943 476 5919"
    with pytest.raises(InvalidNhsNumber):
        format_nhs_number("9434765918")


def test_stem_must_be_nine_digits() -> None:
    with pytest.raises(ValueError):
        nhs_check_digit("12345678")
    with pytest.raises(ValueError):
        nhs_check_digit("12345678a")


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[0-9]{9}", fullmatch=True))
def test_computed_check_digit_accepted_unless_ten(stem: str) -> None:
    expected = _reference_check_digit(stem)
    if expected == 10:
        assert nhs_check_digit(stem) is None
        assert not any(is_valid_nhs_number(stem + d) for d in "0123456789")
    else:
        assert nhs_check_digit(stem) == expected
        assert is_valid_nhs_number(stem + str(expected))
        assert is_valid_nhs_number(f"{stem[:3]} {stem[3:6]} {stem[6:]}{expected}")
        for wrong in "0123456789":
            if int(wrong) != expected:
                assert not is_valid_nhs_number(stem + wrong)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=14))
def test_arbitrary_text_never_raises_unexpectedly(value: str) -> None:
    valid = is_valid_nhs_number(value)
    if valid:
        assert normalise_nhs_number(value).isdigit()
    else:
        with pytest.raises(InvalidNhsNumber):
            normalise_nhs_number(value)
