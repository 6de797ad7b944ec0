"""Search values and their text forms: value types, escaping, string normalisation, FHIR date ranges
(epoch microseconds) with the prefixes' predicate, and literal references."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


#: Range bounds standing for "unbounded" (microseconds since the epoch, fit in SQLite's 64-bit integers).
NEG_INF = -(2**62)


POS_INF = 2**62
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``system`` None = any system (plain ``code``); ``""`` = no system (``|code``).
    ``code`` None = any code (``system|``)."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: str
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    type: str | None
    id: str


@dataclass(frozen=True, slots=True)
class StringValue:
    text: str
    norm: str


Value = TokenValue | DateValue | ReferenceValue | StringValue | bool


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` not preceded by a backslash escape; escapes are kept for :func:`unescape`."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """Undo FHIR search escaping (``\\,`` ``\\|`` ``\\$`` ``\\\\``)."""
    return re.sub(r"\\(.)", r"\1", text)


def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form used by string search (NFKD, marks dropped, casefolded)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch of a timezone-aware datetime (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _micros(moment)


def date_range(text: str) -> tuple[int, int] | None:
    """The half-open range ``[lo, hi)`` (epoch microseconds) a FHIR date/dateTime/instant denotes.

    Precision sets the width (year, month, day, minute, second, fraction digits). None if unparseable.
    """
    value = text.strip()
    # An unencoded '+' in a query string arrives as a space: "2020-01-01T10:00:00 01:00".
    if len(value) > 6 and value[-6] == " " and value[-3] == ":":
        value = value[:-6] + "+" + value[-5:]
    match = _DATE_RE.match(value)
    if not match:
        return None
    g = match.groupdict()
    try:
        tz: timezone = UTC
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
            if hours > 14 or minutes > 59:
                return None
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        year = int(g["y"])
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=tz)
            return _bounded(start, lambda: datetime(year + 1, 1, 1, tzinfo=tz))
        month = int(g["m"])
        if g["d"] is None:
            start = datetime(year, month, 1, tzinfo=tz)
            nxt = (year + 1, 1) if month == 12 else (year, month + 1)
            return _bounded(start, lambda: datetime(nxt[0], nxt[1], 1, tzinfo=tz))
        day = int(g["d"])
        if g["H"] is None:
            start = datetime(year, month, day, tzinfo=tz)
            return _bounded(start, lambda: start + timedelta(days=1))
        start = datetime(year, month, day, int(g["H"]), int(g["M"]), int(g["S"] or 0), tzinfo=tz)
        if g["S"] is None:
            width = timedelta(minutes=1)
        elif g["f"] is None:
            width = timedelta(seconds=1)
        else:
            digits = g["f"][:6]
            start = start.replace(microsecond=int(digits.ljust(6, "0")))
            width = timedelta(microseconds=10 ** (6 - len(digits)))
        return _bounded(start, lambda: start + width)
    except (ValueError, OverflowError):
        return None


def _bounded(start: datetime, end: Any) -> tuple[int, int]:
    try:
        hi = _micros(end())
    except (ValueError, OverflowError):
        hi = POS_INF
    return _micros(start), hi


def date_predicate(prefix: str, p_lo: int, p_hi: int, r_lo: int, r_hi: int) -> bool:
    """Does resource range R match search range P under ``prefix``? (``ap`` expects a widened P.)"""
    within = r_lo >= p_lo and r_hi <= p_hi
    if prefix == "eq":
        return within
    if prefix == "ne":
        return not within
    if prefix == "gt":
        return r_hi > p_hi
    if prefix == "lt":
        return r_lo < p_lo
    if prefix == "ge":
        return r_hi > p_hi or within
    if prefix == "le":
        return r_lo < p_lo or within
    if prefix == "sa":
        return r_lo >= p_hi
    if prefix == "eb":
        return r_hi <= p_lo
    if prefix == "ap":
        return r_lo < p_hi and r_hi > p_lo
    raise ValueError(prefix)


_REF_RE = re.compile(r"^(?:.*/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def parse_reference(text: str) -> tuple[str, str] | None:
    """``(type, id)`` of a literal reference (relative, absolute or version-specific); None otherwise
    (contained ``#x``, ``urn:`` references, logical references)."""
    if text.startswith(("#", "urn:")):
        return None
    match = _REF_RE.match(text)
    if not match:
        return None
    return match["type"], match["id"]
