"""NHS number validation (NHS Data Dictionary, "NHS NUMBER").

An NHS number is ten decimal digits. The tenth is a Modulus 11 check digit over the first nine:

1. multiply digits 1..9 by the weights 10, 9, 8, ... 2 and add the products;
2. take the remainder of that sum divided by 11;
3. the check digit is ``11 - remainder``; a result of 11 becomes 0, and a result of **10 means the
   nine-digit stem is never issued**, so any number whose stem yields 10 is invalid.

Presentation: the Data Dictionary presents NHS numbers as ``3 3 4`` groups (``943 476 5919``). Input
may carry that spacing, or hyphens in its place (``943-476-5919``), and surrounding whitespace; any
other character (letters, dots, non-ASCII digits) makes the value invalid. Grouping is not enforced:
senders are inconsistent about where the spaces go and the digits alone carry the meaning.

Repeated-digit numbers (``0000000000``, ``1111111111``, ``9999999999``, ...): the Data Dictionary
defines validity by the check digit alone, and several of these pass it (e.g. ``9999999999``), so
:func:`is_valid_nhs_number` accepts them. They are never allocated to real patients and in practice
appear as placeholders (e.g. UCLH test feeds use ``9999999999``), so :func:`is_repeated_digit_nhs_number`
lets callers flag them (the HL7 validator reports them as a warning) without declaring them invalid.

No function here puts the number into an exception message or log line.
"""

from __future__ import annotations

import re

from shared.errors import PermanentError

_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_SEPARATORS = re.compile(r"[ \-]")
_TEN_DIGITS = re.compile(r"[0-9]{10}")
_NINE_DIGITS = re.compile(r"[0-9]{9}")


class InvalidNhsNumber(PermanentError):
    """The value is not a valid NHS number. The text never contains the value."""

    code = "invalid-nhs-number"


def nhs_check_digit(stem: str) -> int | None:
    """Check digit for a nine-digit stem, or ``None`` when the stem can never be issued (result 10).

    Raises :class:`ValueError` when ``stem`` is not exactly nine ASCII digits.
    """
    if not _NINE_DIGITS.fullmatch(stem):
        raise ValueError("NHS number stem must be nine ASCII digits")
    total = sum(int(d) * w for d, w in zip(stem, _WEIGHTS, strict=True))
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def _digits(value: str) -> str | None:
    """The ten digits of ``value`` with presentation separators removed, or ``None`` if malformed."""
    if not isinstance(value, str):
        return None
    compact = _SEPARATORS.sub("", value.strip())
    if not _TEN_DIGITS.fullmatch(compact):
        return None
    return compact


def is_valid_nhs_number(value: str) -> bool:
    """True when ``value`` is ten digits (spaces/hyphens tolerated) with a correct Modulus 11 check digit."""
    digits = _digits(value)
    if digits is None:
        return False
    expected = nhs_check_digit(digits[:9])
    return expected is not None and expected == int(digits[9])


def normalise_nhs_number(value: str) -> str:
    """Return the bare ten-digit form of a valid NHS number.

    Raises :class:`InvalidNhsNumber` (a :class:`~shared.errors.PermanentError`) when the value is malformed
    or fails the check digit; the exception text says which, never what the value was.
    """
    digits = _digits(value)
    if digits is None:
        raise InvalidNhsNumber("NHS number must be 10 digits (spaces or hyphens allowed between groups)")
    expected = nhs_check_digit(digits[:9])
    if expected is None or expected != int(digits[9]):
        raise InvalidNhsNumber("NHS number fails Modulus 11 check")
    return digits


def is_repeated_digit_nhs_number(value: str) -> bool:
    """True when ``value`` is ten copies of one digit (a placeholder, never an allocated number)."""
    digits = _digits(value)
    return digits is not None and len(set(digits)) == 1


def format_nhs_number(value: str) -> str:
    """Presentation form ``NNN NNN NNNN`` of a valid NHS number (raises :class:`InvalidNhsNumber`)."""
    digits = normalise_nhs_number(value)
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}"
