"""NCRONTAB schedules as Azure Functions timer triggers use them.

Six fields ``{second} {minute} {hour} {day} {month} {day-of-week}`` (five-field CRON is accepted too,
seconds = 0), each ``*``, a number, a range ``a-b``, a list ``a,b``, a step ``*/n`` or ``a-b/n``; month and
day names (``Jan``, ``Mon``); day-of-week 0 or 7 = Sunday. When both day-of-month and day-of-week are
restricted, a time matches if either does (Vixie cron semantics, which NCRONTAB follows). A TimeSpan
(``hh:mm:ss``, as App Service plans allow) means "every interval".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


class ScheduleError(ValueError):
    pass


def _field(text: str, lo: int, hi: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step in {text!r}")
            step = int(step_text)
        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = hi if step > 1 else start
        if not (lo <= start <= hi and lo <= end <= hi) or start > end:
            raise ScheduleError(f"value out of range in {text!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int] | None) -> int:
    if text.isdigit():
        return int(text)
    if names and text.lower()[:3] in names:
        return names[text.lower()[:3]]
    raise ScheduleError(f"bad value {text!r}")


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        expr = expression.strip()
        if re.fullmatch(r"(\d+\.)?\d{1,2}:\d{2}:\d{2}", expr):
            days_part, _, clock = expr.rpartition(".")
            h, m, s = (int(x) for x in clock.split(":"))
            interval = timedelta(days=int(days_part or 0), hours=h, minutes=m, seconds=s)
            if interval <= timedelta(0):
                raise ScheduleError("interval must be positive")
            empty: frozenset[int] = frozenset()
            return cls(expr, empty, empty, empty, empty, empty, empty, False, False, interval)
        parts = expr.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise ScheduleError(f"expected 6 fields in schedule {expression!r}")
        sec, minute, hour, day, month, dow = parts
        weekdays = frozenset(0 if d == 7 else d for d in _field(dow, 0, 7, _DAYS))
        return cls(
            expr,
            _field(sec, 0, 59),
            _field(minute, 0, 59),
            _field(hour, 0, 23),
            _field(day, 1, 31),
            _field(month, 1, 12, _MONTHS),
            weekdays,
            day_restricted=day != "*" and not day.startswith("*/"),
            weekday_restricted=dow != "*" and not dow.startswith("*/"),
        )

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after: datetime) -> datetime:
        """The first scheduled time strictly after ``after`` (same tzinfo)."""
        if self.interval is not None:
            return after + self.interval
        t = after.replace(microsecond=0) + timedelta(seconds=1)
        limit = after + timedelta(days=366 * 5)
        while t <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            if t.second not in self.seconds:
                t += timedelta(seconds=1)
                continue
            return t
        raise ScheduleError(f"schedule {self.expression!r} never fires")
