from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tie.localhost.ncrontab import Schedule, ScheduleError

T0 = datetime(2026, 11, 21, 19, 0, 3, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(
    ("expr", "first", "second"),
    [
        (
            "*/5 * * * * *",
            datetime(2026, 11, 21, 19, 0, 5, tzinfo=UTC),
            datetime(2026, 11, 21, 19, 0, 10, tzinfo=UTC),
        ),
        (
            "0 */5 * * * *",
            datetime(2026, 11, 21, 19, 5, tzinfo=UTC),
            datetime(2026, 11, 21, 19, 10, tzinfo=UTC),
        ),
        ("0 0 9 * * Mon-Fri", datetime(2026, 11, 23, 9, tzinfo=UTC), datetime(2026, 11, 24, 9, tzinfo=UTC)),
        ("0 0 9 * * 1-5", datetime(2026, 11, 23, 9, tzinfo=UTC), datetime(2026, 11, 24, 9, tzinfo=UTC)),
        ("0 30 2 1 * *", datetime(2026, 12, 1, 2, 30, tzinfo=UTC), datetime(2027, 1, 1, 2, 30, tzinfo=UTC)),
        ("0 0 0 29 Feb *", datetime(2028, 2, 29, tzinfo=UTC), datetime(2032, 2, 29, tzinfo=UTC)),
        ("0 0 12 * * 0", datetime(2026, 11, 22, 12, tzinfo=UTC), datetime(2026, 11, 29, 12, tzinfo=UTC)),
        ("0 0 12 * * 7", datetime(2026, 11, 22, 12, tzinfo=UTC), datetime(2026, 11, 29, 12, tzinfo=UTC)),
        (
            "0 15,45 8 * * *",
            datetime(2026, 11, 22, 8, 15, tzinfo=UTC),
            datetime(2026, 11, 22, 8, 45, tzinfo=UTC),
        ),
        (
            "*/10 * * * *",
            datetime(2026, 11, 21, 19, 10, tzinfo=UTC),
            datetime(2026, 11, 21, 19, 20, tzinfo=UTC),
        ),
        ("00:05:00", T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)),
    ],
)
def test_next_occurrences(expr: str, first: datetime, second: datetime) -> None:
    schedule = Schedule.parse(expr)
    assert schedule.next_after(T0) == first
    assert schedule.next_after(first) == second


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # 1st of the month OR any Monday.
    schedule = Schedule.parse("0 0 0 1 * Mon")
    assert schedule.next_after(T0) == datetime(2026, 11, 23, tzinfo=UTC)
    assert schedule.next_after(datetime(2026, 11, 30, 1, tzinfo=UTC)) == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad", ["* * * *", "61 * * * * *", "*/0 * * * * *", "0 0 0 31 2 *", "x * * * * *", "00:00:00"]
)
def test_invalid(bad: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(bad).next_after(T0)
