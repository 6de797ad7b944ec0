from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.canonical.model import PartialDate
from shared.mapping.timeutil import (
    TimeFormatError,
    birth_date_from_hl7,
    from_fhir,
    from_hl7,
    partial_date_from_fhir,
    to_fhir,
    to_fhir_instant,
    to_hl7,
)


@pytest.mark.parametrize(
    ("hl7", "utc", "precision", "fhir"),
    [
        ("20260115120000", datetime(2026, 1, 15, 12, tzinfo=UTC), "second", "2026-01-15T12:00:00+00:00"),
        ("20260701120000", datetime(2026, 7, 1, 11, tzinfo=UTC), "second", "2026-07-01T12:00:00+01:00"),
        ("202607011200", datetime(2026, 7, 1, 11, tzinfo=UTC), "minute", "2026-07-01T12:00:00+01:00"),
        ("20260701", datetime(2026, 6, 30, 23, tzinfo=UTC), "day", "2026-07-01"),
        ("202607", datetime(2026, 6, 30, 23, tzinfo=UTC), "month", "2026-07"),
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), "year", "2026"),
        ("20260701120000-0500", datetime(2026, 7, 1, 17, tzinfo=UTC), "second", "2026-07-01T12:00:00-05:00"),
        ("20260329013000", datetime(2026, 3, 29, 1, 30, tzinfo=UTC), "second", "2026-03-29T01:30:00+00:00"),
    ],
)
def test_hl7_times_are_uk_local_and_keep_precision(
    hl7: str, utc: datetime, precision: str, fhir: str
) -> None:
    t = from_hl7(hl7)
    assert t is not None
    assert t.value.astimezone(UTC) == utc
    assert t.precision == precision
    assert to_fhir(t) == fhir
    back = from_fhir(to_fhir(t))
    assert back.value.astimezone(UTC) == utc
    # FHIR dateTime has no minute/hour precision: a time is written to the second.
    assert back.precision == ("second" if precision in ("hour", "minute") else precision)


def test_round_trip_to_hl7_with_offset() -> None:
    t = from_hl7("20260701120000")
    assert t is not None
    assert to_hl7(t) == "20260701120000+0100"
    assert from_hl7(to_hl7(t)) == t
    assert to_fhir_instant(t) == "2026-07-01T12:00:00+01:00"


@pytest.mark.parametrize("empty", [None, "", "  ", '""'])
def test_empty_and_null(empty: str | None) -> None:
    assert from_hl7(empty) is None
    assert birth_date_from_hl7(empty) is None


@pytest.mark.parametrize("bad", ["2026-07-01", "20261301", "abc", "2026070112000099"])
def test_bad_hl7_times(bad: str) -> None:
    with pytest.raises(TimeFormatError):
        from_hl7(bad)


def test_birth_dates() -> None:
    assert birth_date_from_hl7("19800101") == PartialDate(year=1980, month=1, day=1)
    assert birth_date_from_hl7("198001") == PartialDate(year=1980, month=1)
    assert birth_date_from_hl7("19800101103000") == PartialDate(year=1980, month=1, day=1)
    with pytest.raises(TimeFormatError):
        birth_date_from_hl7("19800230")
    assert partial_date_from_fhir("1980-01") == PartialDate(year=1980, month=1)
    with pytest.raises(TimeFormatError):
        partial_date_from_fhir("1980-13-01")


@pytest.mark.parametrize("bad", ["2024-13-01T00:00:00Z", "2024-01-01T10:00", "yesterday"])
def test_bad_fhir_times(bad: str) -> None:
    with pytest.raises(TimeFormatError):
        from_fhir(bad)
