"""Clinical time conversions between HL7 v2 TS/DTM, FHIR dateTime/instant and the canonical model.

HL7 v2 times without an offset are UK local time: they are read in ``Europe/London`` (GMT in winter,
BST in summer), so ``20260701120000`` is 11:00Z and ``20260115120000`` is 12:00Z. In the autumn overlap
hour the first (BST) occurrence is used, and a time in the spring gap is moved forward, as zoneinfo does;
both are documented limitations of offset-less sources. Precision is kept both ways: a month-precision
HL7 time becomes ``YYYY-MM`` in FHIR, not a fabricated first-of-month midnight.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from shared.canonical.model import ClinicalDateTime, PartialDate, Precision
from shared.hl7v2.datatypes import Hl7DataTypeError, parse_dtm
from shared.hl7v2.datatypes import Precision as Hl7Precision

UK = ZoneInfo("Europe/London")

_FROM_HL7: dict[Hl7Precision, Precision] = {
    Hl7Precision.YEAR: "year",
    Hl7Precision.MONTH: "month",
    Hl7Precision.DAY: "day",
    Hl7Precision.HOUR: "hour",
    Hl7Precision.MINUTE: "minute",
    Hl7Precision.SECOND: "second",
}


class TimeFormatError(ValueError):
    """A time value cannot be read (the mapper turns it into a data-absent reason or a typed error)."""


def from_hl7(text: str | None) -> ClinicalDateTime | None:
    """HL7 TS/DTM -> canonical; ``None`` for empty or HL7 null. Raises :class:`TimeFormatError`."""
    if text is None:
        return None
    text = text.strip()
    if not text or text == '""':
        return None
    try:
        parsed = parse_dtm(text)
    except Hl7DataTypeError as exc:
        raise TimeFormatError("not an HL7 date/time") from exc
    value = parsed.value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UK)
    precision: Precision = _FROM_HL7[parsed.precision]
    if parsed.fraction_digits:
        precision = "millisecond"
    return ClinicalDateTime(value=value, precision=precision)


def birth_date_from_hl7(text: str | None) -> PartialDate | None:
    if text is None or not text.strip() or text.strip() == '""':
        return None
    digits = text.strip()[:8]
    if not re.fullmatch(r"\d{4}(\d{2}){0,2}", digits):
        raise TimeFormatError("not an HL7 date")
    try:
        return PartialDate(
            year=int(digits[:4]),
            month=int(digits[4:6]) if len(digits) >= 6 else None,
            day=int(digits[6:8]) if len(digits) >= 8 else None,
        )
    except ValueError as exc:
        raise TimeFormatError("not a calendar date") from exc


def _offset(value: datetime) -> str:
    off = value.utcoffset() or timedelta(0)
    total = int(off.total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{sign}{total // 60:02d}:{total % 60:02d}"


def to_fhir(t: ClinicalDateTime) -> str:
    """FHIR dateTime at the recorded precision; times keep their UK offset (``+01:00`` in BST)."""
    v = t.value
    if t.precision == "year":
        return f"{v.year:04d}"
    if t.precision == "month":
        return f"{v.year:04d}-{v.month:02d}"
    if t.precision == "day":
        return f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
    base = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if t.precision == "millisecond":
        base += f".{v.microsecond // 1000:03d}"
    return base + _offset(v)


def to_fhir_instant(t: ClinicalDateTime) -> str:
    """FHIR instant (always to the second, with offset)."""
    v = t.value
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}{_offset(v)}"


_FHIR = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?"
)


def from_fhir(text: str) -> ClinicalDateTime:
    """FHIR date/dateTime/instant -> canonical. Dates without a time are UK-local midnight at day
    (month/year) precision."""
    m = _FHIR.fullmatch(text.strip())
    if not m:
        raise TimeFormatError("not a FHIR dateTime")
    year, month, day = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
    try:
        if m["H"] is None:
            precision: Precision = "day" if m["d"] else ("month" if m["m"] else "year")
            return ClinicalDateTime(value=datetime(year, month, day, tzinfo=UK), precision=precision)
        tz = m["tz"]
        tzinfo: timezone | ZoneInfo = (
            UTC
            if tz == "Z"
            else timezone((1 if tz[0] == "+" else -1) * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        )
        micro = int((m["f"] or "0")[:6].ljust(6, "0"))
        value = datetime(year, month, day, int(m["H"]), int(m["M"]), int(m["S"] or 0), micro, tzinfo=tzinfo)
    except ValueError as exc:
        raise TimeFormatError("not a calendar date/time") from exc
    precision = "millisecond" if m["f"] else ("second" if m["S"] else "minute")
    return ClinicalDateTime(value=value, precision=precision)


def partial_date_from_fhir(text: str) -> PartialDate:
    m = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", text.strip())
    if not m:
        raise TimeFormatError("not a FHIR date")
    try:
        return PartialDate(year=int(m[1]), month=int(m[2]) if m[2] else None, day=int(m[3]) if m[3] else None)
    except ValueError as exc:
        raise TimeFormatError("not a calendar date") from exc


_HL7_DIGITS: dict[Precision, int] = {
    "year": 4,
    "month": 6,
    "day": 8,
    "hour": 10,
    "minute": 12,
    "second": 14,
    "millisecond": 14,
}


def to_hl7(t: ClinicalDateTime) -> str:
    """Canonical -> HL7 DTM in UK local time with an explicit offset (e.g. ``20260701120000+0100``)."""
    local = t.value.astimezone(UK)
    digits = local.strftime("%Y%m%d%H%M%S")[: _HL7_DIGITS[t.precision]]
    if t.precision in ("year", "month", "day"):
        return digits
    if t.precision == "millisecond":
        digits += f".{local.microsecond // 1000:03d}"
    return digits + _offset(local).replace(":", "")
