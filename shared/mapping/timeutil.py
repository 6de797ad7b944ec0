"""Clinical time conversions between HL7 v2 TS/DTM, FHIR dateTime/instant and the canonical model.

HL7 v2 times without an offset are UK local time: they are read in ``Europe/London`` (GMT in winter,
BST in summer), so ``20260701120000`` is 11:00Z and ``20260115120000`` is 12:00Z. In the autumn overlap
hour the first (BST) occurrence is used, and a time in the spring gap is moved forward, as zoneinfo does;
both are documented limitations of offset-less sources. Precision is kept both ways: a month-precision
HL7 time becomes ``YYYY-MM`` in FHIR, not a fabricated first-of-month midnight.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from shared.canonical.model import ClinicalDateTime, PartialDate, Precision
from shared.hl7v2.datatypes import Hl7DataTypeError, parse_dtm
from shared.hl7v2.datatypes import Precision as Hl7Precision
from shared.mapping._construct import builder

UK = ZoneInfo("Europe/London")

#: Trusted constructors: every value built here is timezone-aware (UK or an explicit offset) and a
#: PartialDate is checked to be a calendar date before it is built.
_new_time = builder(ClinicalDateTime)
_new_partial_date = builder(PartialDate)
_PRECISION_BY_DIGITS: dict[int, Precision] = {
    4: "year",
    6: "month",
    8: "day",
    10: "hour",
    12: "minute",
    14: "second",
}
#: Explicit HL7 offsets seen so far (``+0100`` -> tzinfo); bounded by the few offsets senders use.
_OFFSETS: dict[str, timezone] = {}
_MAX_OFFSET_HOURS = 14

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


def _offset_tz(text: str) -> timezone | None:
    """``+HHMM`` / ``-HHMM`` -> tzinfo (``None`` when out of range: the caller falls back and raises)."""
    tz = _OFFSETS.get(text)
    if tz is None:
        hours, minutes = int(text[1:3]), int(text[3:5])
        if hours > _MAX_OFFSET_HOURS or minutes > 59 or (hours == _MAX_OFFSET_HOURS and minutes):
            return None
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-delta if text[0] == "-" else delta)
        if len(_OFFSETS) < 64:
            _OFFSETS[text] = tz
    return tz


def from_hl7(text: str | None) -> ClinicalDateTime | None:
    """HL7 TS/DTM -> canonical; ``None`` for empty or HL7 null. Raises :class:`TimeFormatError`.

    The common shapes (4-14 digits, optional ``+/-HHMM``, no fraction) are read directly; anything else
    goes through :func:`shared.hl7v2.datatypes.parse_dtm` - same results (tested both ways)."""
    if text is None:
        return None
    if text[:1] == " " or text[-1:] == " ":
        text = text.strip()
    n = len(text)
    digits = n if n <= 14 else n - 5
    precision = _PRECISION_BY_DIGITS.get(digits)
    if (
        precision is not None
        and text.isascii()
        and text[:digits].isdigit()
        and (n == digits or (text[digits] in "+-" and text[digits + 1 :].isdigit()))
    ):
        tz = UK if n == digits else _offset_tz(text[digits:])
        if tz is not None:
            try:
                value = datetime(
                    int(text[0:4]),
                    int(text[4:6]) if digits > 4 else 1,
                    int(text[6:8]) if digits > 6 else 1,
                    int(text[8:10]) if digits > 8 else 0,
                    int(text[10:12]) if digits > 10 else 0,
                    int(text[12:14]) if digits > 12 else 0,
                    tzinfo=tz,
                )
            except ValueError:
                raise TimeFormatError("not an HL7 date/time") from None
            return _new_time(value=value, precision=precision)
    return _from_hl7_general(text)


def _from_hl7_general(text: str) -> ClinicalDateTime | None:
    """:func:`from_hl7` through the HL7 data-type parser (fractions, malformed values)."""
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
    """HL7 DT/TS birth date -> PartialDate (the date part as sent, no time zone conversion)."""
    if text is None:
        return None
    stripped = text.strip()
    if not stripped or stripped == '""':
        return None
    digits = stripped[:8]
    if len(digits) not in (4, 6, 8) or not (digits.isascii() and digits.isdigit()):
        raise TimeFormatError("not an HL7 date")
    year = int(digits[:4])
    month = int(digits[4:6]) if len(digits) >= 6 else None
    day = int(digits[6:8]) if len(digits) >= 8 else None
    # PartialDate's own checks (year 1-9999, month 1-12, a real calendar day), then a trusted build.
    try:
        date(year, 1 if month is None else month, 1 if day is None else day)
    except ValueError as exc:
        raise TimeFormatError("not a calendar date") from exc
    return _new_partial_date(year=year, month=month, day=day)


def _offset(value: datetime) -> str:
    off = value.utcoffset() or timedelta(0)
    total = int(off.total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{sign}{total // 60:02d}:{total % 60:02d}"


#: ``isoformat`` slice length per date precision (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``).
_DATE_CUT: dict[str, int] = {"year": 4, "month": 7, "day": 10}


def to_fhir(t: ClinicalDateTime) -> str:
    """FHIR dateTime at the recorded precision; times keep their UK offset (``+01:00`` in BST)."""
    v = t.value
    cut = _DATE_CUT.get(t.precision)
    if cut is not None:
        return v.date().isoformat()[:cut]
    off = v.utcoffset()
    if off is not None and off.seconds % 60 == 0 and not off.microseconds:  # isoformat's +HH:MM form
        return v.isoformat(timespec="milliseconds" if t.precision == "millisecond" else "seconds")
    base = v.replace(microsecond=0).isoformat()[:19]  # an offset with seconds (pre-1900 local mean time)
    if t.precision == "millisecond":
        base += f".{v.microsecond // 1000:03d}"
    return base + _offset(v)


def to_fhir_instant(t: ClinicalDateTime) -> str:
    """FHIR instant (always to the second, with offset)."""
    v = t.value
    off = v.utcoffset()
    if off is not None and off.seconds % 60 == 0 and not off.microseconds:  # isoformat's +HH:MM form
        return v.isoformat(timespec="seconds")
    return v.replace(microsecond=0).isoformat()[:19] + _offset(v)


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
