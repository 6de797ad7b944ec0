"""timeutil's fast paths give exactly what the general code gives: HL7 TS parsing (direct read of the common
shapes vs shared.hl7v2.datatypes.parse_dtm), birth dates, and FHIR formatting (isoformat vs field by field).

The reference implementations below are the ones the fast paths replaced, kept here as the oracle."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.canonical.model import ClinicalDateTime, PartialDate
from shared.mapping import timeutil
from shared.mapping.timeutil import (
    UK,
    TimeFormatError,
    birth_date_from_hl7,
    from_hl7,
    to_fhir,
    to_fhir_instant,
)


def _reference_from_hl7(text: str) -> ClinicalDateTime | type[TimeFormatError] | None:
    try:
        return timeutil._from_hl7_general(text)
    except TimeFormatError:
        return TimeFormatError


def _fast(text: str) -> ClinicalDateTime | type[TimeFormatError] | None:
    try:
        return from_hl7(text)
    except TimeFormatError:
        return TimeFormatError


def _reference_birth_date(text: str) -> PartialDate | type[TimeFormatError] | None:
    if not text.strip() or text.strip() == '""':
        return None
    digits = text.strip()[:8]
    # ASCII digits only: the replaced code used \d, which also took e.g. Arabic-Indic digits as a year
    if not re.fullmatch(r"[0-9]{4}([0-9]{2}){0,2}", digits):
        return TimeFormatError
    try:
        return PartialDate(
            year=int(digits[:4]),
            month=int(digits[4:6]) if len(digits) >= 6 else None,
            day=int(digits[6:8]) if len(digits) >= 8 else None,
        )
    except ValueError:
        return TimeFormatError


def _birth(text: str) -> PartialDate | type[TimeFormatError] | None:
    try:
        return birth_date_from_hl7(text)
    except TimeFormatError:
        return TimeFormatError


def _offset(value: datetime) -> str:
    off = value.utcoffset() or timedelta(0)
    total = int(off.total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{sign}{total // 60:02d}:{total % 60:02d}"


def _reference_to_fhir(t: ClinicalDateTime) -> str:
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


_digits = st.sampled_from([4, 6, 8, 10, 12, 14]).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
)
_plausible = st.builds(
    lambda d, frac, tz, pad: f"{' ' if pad else ''}{d}{frac}{tz}{' ' if pad else ''}",
    st.one_of(
        _digits,
        st.builds(
            lambda y, mo, dd, h, mi, s: f"{y:04d}{mo:02d}{dd:02d}{h:02d}{mi:02d}{s:02d}",
            st.integers(1, 9999),
            st.integers(0, 13),
            st.integers(0, 32),
            st.integers(0, 25),
            st.integers(0, 61),
            st.integers(0, 61),
        ),
    ),
    st.one_of(st.just(""), st.text(alphabet="0123456789", min_size=1, max_size=5).map(lambda f: "." + f)),
    st.one_of(
        st.just(""),
        st.builds(
            lambda s, h, m: f"{s}{h:02d}{m:02d}",
            st.sampled_from("+-"),
            st.integers(0, 16),
            st.integers(0, 70),
        ),
    ),
    st.booleans(),
)
_anything = st.text(alphabet='0123456789+-. "²٣aT:', max_size=22)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_plausible, _anything))
def test_from_hl7_fast_path_equals_the_general_parser(text: str) -> None:
    assert _fast(text) == _reference_from_hl7(text)


@settings(max_examples=800, deadline=None)
@given(st.one_of(_digits, _anything, st.builds(lambda d, t: d + t, _digits, _anything)))
def test_birth_date_equals_the_validated_model(text: str) -> None:
    assert _birth(text) == _reference_birth_date(text)


_zones = st.sampled_from(
    [UK, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-3, minutes=-30))]
)


@settings(max_examples=1500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    _zones,
    st.sampled_from(["year", "month", "day", "hour", "minute", "second", "millisecond"]),
)
def test_to_fhir_equals_the_field_by_field_format(naive: datetime, zone: object, precision: str) -> None:
    t = ClinicalDateTime(value=naive.replace(tzinfo=zone), precision=precision)  # type: ignore[arg-type]
    assert to_fhir(t) == _reference_to_fhir(t)
    v = t.value
    assert to_fhir_instant(t) == (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}{_offset(v)}"
    )


def test_local_mean_time_offsets_with_seconds_are_written_to_the_minute() -> None:
    t = ClinicalDateTime(value=datetime(1800, 6, 1, 12, 0, tzinfo=UK), precision="second")
    assert t.value.utcoffset() == timedelta(minutes=-1, seconds=-15)
    assert to_fhir(t) == _reference_to_fhir(t) == "1800-06-01T12:00:00-00:02"
