"""Parsers and validators for HL7 v2 primitive data types: DTM/TS, DT, TM, NM, SI, ID and IS.

Each ``parse_*`` function returns a typed value or raises :class:`Hl7DataTypeError` (HL7 table 0357 code
``102`` "Data type error"). :func:`check_value` is the non-raising form used by the validator: it returns
a short reason (never the value itself) or ``None`` when the value conforms.

Formats follow HL7 v2.5.1 chapter 2A:

* **DTM** ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``. The number of digits present is the degree
  of precision (:class:`Precision`); an offset may follow any precision. A **TS** field is ``DTM^degree``;
  its first component is the DTM and the legacy second component is ignored here.
* **DT** ``YYYY[MM[DD]]``; **TM** ``HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ]``.
* **NM** optional leading ``+``/``-``, ASCII digits, optional decimal point. No exponent, no thousands
  separators, no whitespace. ``.5`` and ``5.`` are accepted (the standard only requires digits and an
  optional point).
* **SI** a non-negative integer of at most four digits.
* **ID** / **IS** coded values: checked only for length (when the field defines one) and for characters
  that cannot belong to a code (control characters). Table membership is the validator's job.

Calendar checks are real: month 01-12, day valid for the month (leap years included), hour 00-23,
minute and second 00-59 (no leap second), offsets at most 14 hours with minutes below 60.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Final

from shared.errors import PermanentError

__all__ = [
    "CHECKED_TYPES",
    "DATA_TYPE_ERROR",
    "Hl7DataTypeError",
    "Hl7Date",
    "Hl7DateTime",
    "Hl7Time",
    "Precision",
    "check_coded_value",
    "check_value",
    "parse_dt",
    "parse_dtm",
    "parse_nm",
    "parse_si",
    "parse_tm",
    "parse_ts",
]

#: HL7 table 0357 "Message error condition codes": 102 = Data type error.
DATA_TYPE_ERROR: Final = "102"

_MAX_OFFSET_HOURS: Final = 14
_SI_MAX_DIGITS: Final = 4


class Hl7DataTypeError(PermanentError):
    """A value does not conform to its HL7 data type. The text names the type, never the value."""

    code = "hl7-data-type"
    error_code: str = DATA_TYPE_ERROR

    def __init__(self, datatype: str, reason: str) -> None:
        super().__init__(f"{datatype}: {reason}")
        self.datatype = datatype
        self.reason = reason


class Precision(IntEnum):
    """Degree of precision of a DTM/DT/TM value; the integer is the number of date-time digits given."""

    YEAR = 4
    MONTH = 6
    DAY = 8
    HOUR = 10
    MINUTE = 12
    SECOND = 14


_DTM_RE: Final = re.compile(
    r"(?P<digits>[0-9]{4}(?:[0-9]{2}){0,5})(?:\.(?P<fraction>[0-9]{1,4}))?(?P<tz>[+-][0-9]{4})?"
)
_DT_RE: Final = re.compile(r"[0-9]{4}(?:[0-9]{2}){0,2}")
_TM_RE: Final = re.compile(
    r"(?P<digits>[0-9]{2}(?:[0-9]{2}){0,2})(?:\.(?P<fraction>[0-9]{1,4}))?(?P<tz>[+-][0-9]{4})?"
)
_NM_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_SI_RE: Final = re.compile(r"[0-9]{1,4}")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Hl7DateTime:
    """A parsed DTM (or TS component 1).

    ``value`` fills the digits that were not sent with their minimum (month/day 1, time 0). It is an aware
    ``datetime`` when the value carried an offset, naive otherwise (HL7 then means "sender's local time").
    """

    value: datetime
    precision: Precision
    fraction_digits: int = 0
    tz_offset: timedelta | None = None

    @property
    def is_aware(self) -> bool:
        return self.tz_offset is not None

    def isoformat(self) -> str:
        """ISO 8601 text truncated to the precision that was sent (``2024``, ``2024-03``, ``2024-03-05``,
        ``2024-03-05T10``..., seconds with the sent fraction digits), plus the offset when there was one."""
        v = self.value
        text = f"{v.year:04d}"
        if self.precision >= Precision.MONTH:
            text += f"-{v.month:02d}"
        if self.precision >= Precision.DAY:
            text += f"-{v.day:02d}"
        if self.precision >= Precision.HOUR:
            text += f"T{v.hour:02d}"
        if self.precision >= Precision.MINUTE:
            text += f":{v.minute:02d}"
        if self.precision >= Precision.SECOND:
            text += f":{v.second:02d}"
            if self.fraction_digits:
                text += "." + f"{v.microsecond:06d}"[: self.fraction_digits]
        if self.tz_offset is not None:
            text += _format_offset(self.tz_offset)
        return text


@dataclass(frozen=True, slots=True)
class Hl7Date:
    """A parsed DT. ``value`` fills missing month/day with 1; ``precision`` says what was sent."""

    value: date
    precision: Precision

    def isoformat(self) -> str:
        text = f"{self.value.year:04d}"
        if self.precision >= Precision.MONTH:
            text += f"-{self.value.month:02d}"
        if self.precision >= Precision.DAY:
            text += f"-{self.value.day:02d}"
        return text


@dataclass(frozen=True, slots=True)
class Hl7Time:
    """A parsed TM. ``value`` carries ``tzinfo`` when an offset was sent."""

    value: time
    precision: Precision
    fraction_digits: int = 0
    tz_offset: timedelta | None = None


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_offset(datatype: str, text: str | None) -> timedelta | None:
    if text is None:
        return None
    hours, minutes = int(text[1:3]), int(text[3:5])
    if hours > _MAX_OFFSET_HOURS or minutes > 59 or (hours == _MAX_OFFSET_HOURS and minutes):
        raise Hl7DataTypeError(datatype, "time zone offset out of range")
    delta = timedelta(hours=hours, minutes=minutes)
    return -delta if text[0] == "-" else delta


def _fraction_to_micro(fraction: str | None) -> tuple[int, int]:
    if not fraction:
        return 0, 0
    return int(fraction.ljust(6, "0")), len(fraction)


def _require_str(datatype: str, value: object) -> str:
    if not isinstance(value, str):
        raise Hl7DataTypeError(datatype, "value is not text")
    if value == "":
        raise Hl7DataTypeError(datatype, "value is empty")
    return value


def parse_dtm(value: str) -> Hl7DateTime:
    """Parse a DTM value (see module docstring for the format)."""
    text = _require_str("DTM", value)
    m = _DTM_RE.fullmatch(text)
    if m is None:
        raise Hl7DataTypeError("DTM", "not in YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ] format")
    digits = m.group("digits")
    precision = Precision(len(digits))
    if m.group("fraction") is not None and precision != Precision.SECOND:
        raise Hl7DataTypeError("DTM", "fractional seconds without seconds")
    parts = [int(digits[i : i + 2]) for i in range(4, len(digits), 2)]
    year = int(digits[:4])
    month, day, hour, minute, second = (parts + [None] * 5)[:5]
    micro, fraction_digits = _fraction_to_micro(m.group("fraction"))
    offset = _parse_offset("DTM", m.group("tz"))
    try:
        result = datetime(
            year,
            month if month is not None else 1,
            day if day is not None else 1,
            hour if hour is not None else 0,
            minute if minute is not None else 0,
            second if second is not None else 0,
            micro,
            tzinfo=timezone(offset) if offset is not None else None,
        )
    except ValueError:
        raise Hl7DataTypeError("DTM", "not a valid calendar date-time") from None
    return Hl7DateTime(result, precision, fraction_digits, offset)


def parse_ts(value: str) -> Hl7DateTime:
    """Parse a TS value given as its first component (the DTM). Same rules as :func:`parse_dtm`."""
    try:
        return parse_dtm(value)
    except Hl7DataTypeError as exc:
        raise Hl7DataTypeError("TS", exc.reason) from None


def parse_dt(value: str) -> Hl7Date:
    """Parse a DT value ``YYYY[MM[DD]]``."""
    text = _require_str("DT", value)
    if _DT_RE.fullmatch(text) is None:
        raise Hl7DataTypeError("DT", "not in YYYY[MM[DD]] format")
    try:
        result = date(
            int(text[:4]),
            int(text[4:6]) if len(text) >= 6 else 1,
            int(text[6:8]) if len(text) >= 8 else 1,
        )
    except ValueError:
        raise Hl7DataTypeError("DT", "not a valid calendar date") from None
    return Hl7Date(result, Precision(len(text)))


def parse_tm(value: str) -> Hl7Time:
    """Parse a TM value ``HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ]``."""
    text = _require_str("TM", value)
    m = _TM_RE.fullmatch(text)
    if m is None:
        raise Hl7DataTypeError("TM", "not in HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ] format")
    digits = m.group("digits")
    if m.group("fraction") is not None and len(digits) != 6:
        raise Hl7DataTypeError("TM", "fractional seconds without seconds")
    hour = int(digits[0:2])
    minute = int(digits[2:4]) if len(digits) >= 4 else 0
    second = int(digits[4:6]) if len(digits) >= 6 else 0
    micro, fraction_digits = _fraction_to_micro(m.group("fraction"))
    offset = _parse_offset("TM", m.group("tz"))
    try:
        result = time(hour, minute, second, micro, tzinfo=timezone(offset) if offset is not None else None)
    except ValueError:
        raise Hl7DataTypeError("TM", "not a valid time of day") from None
    return Hl7Time(result, Precision(len(digits) + 8), fraction_digits, offset)


def parse_nm(value: str) -> Decimal:
    """Parse an NM value to :class:`~decimal.Decimal` (exact; leading/trailing zeros are not significant)."""
    text = _require_str("NM", value)
    if _NM_RE.fullmatch(text) is None:
        raise Hl7DataTypeError("NM", "not an optionally signed decimal number")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex only admits Decimal-parsable text
        raise Hl7DataTypeError("NM", "not an optionally signed decimal number") from None


def parse_si(value: str) -> int:
    """Parse an SI (sequence id): non-negative integer, at most four digits."""
    text = _require_str("SI", value)
    if _SI_RE.fullmatch(text) is None:
        raise Hl7DataTypeError("SI", f"not a non-negative integer of at most {_SI_MAX_DIGITS} digits")
    return int(text)


def check_coded_value(datatype: str, value: str, max_length: int | None = None) -> None:
    """Check an ID or IS value: no control characters and, when given, at most ``max_length`` characters."""
    text = _require_str(datatype, value)
    if _CONTROL_RE.search(text):
        raise Hl7DataTypeError(datatype, "contains control characters")
    if max_length is not None and len(text) > max_length:
        raise Hl7DataTypeError(datatype, f"longer than {max_length} characters")


def _check_id(value: str) -> None:
    check_coded_value("ID", value)


def _check_is(value: str) -> None:
    check_coded_value("IS", value)


_CHECKERS: Final[dict[str, Callable[[str], object]]] = {
    "DTM": parse_dtm,
    "TS": parse_ts,
    "DT": parse_dt,
    "TM": parse_tm,
    "NM": parse_nm,
    "SI": parse_si,
    "ID": _check_id,
    "IS": _check_is,
}

#: Data types :func:`check_value` knows how to check.
CHECKED_TYPES: Final = frozenset(_CHECKERS)


def check_value(datatype: str, value: str, *, max_length: int | None = None) -> str | None:
    """Return why ``value`` is not a valid ``datatype`` (text free of the value), or ``None`` if it is.

    Types outside :data:`CHECKED_TYPES` are not checked (``None``). ``max_length`` applies to ID/IS.
    For TS pass the first component (the DTM) only.
    """
    checker = _CHECKERS.get(datatype)
    if checker is None:
        return None
    try:
        if max_length is not None and datatype in ("ID", "IS"):
            check_coded_value(datatype, value, max_length)
        else:
            checker(value)
    except Hl7DataTypeError as exc:
        return str(exc)
    return None
