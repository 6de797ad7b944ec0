"""Test support shared by the idempotency and outbox suites (unit and contract)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

T = TypeVar("T")


class FakeClock:
    """A settable, thread-safe UTC clock."""

    def __init__(self, start: datetime = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds, **delta)


class SimulatedCrash(BaseException):
    """Stands for the process dying at a given point (not an Exception: nothing may handle it)."""


class Counter:
    """Thread-safe effect counter keyed by idempotency key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def hit(self, key: str) -> int:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


def race(count: int, action: Callable[[int], T], *, timeout: float = 30) -> list[T | BaseException]:
    """Run ``action(i)`` on ``count`` threads released together; results or exceptions, by index."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not run")] * count

    def run(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[index] = action(index)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads)
    return results


class Losers:
    """Lets the winner of a race hold its lease until every other racer has returned (no sleeps)."""

    def __init__(self, expected: int) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._expected = expected

    def lost(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def wait(self, timeout: float = 20) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._count >= self._expected, timeout)

    def run(self, action: Callable[[], T]) -> T:
        """``action()``; an exception counts as a lost race and is re-raised."""
        try:
            return action()
        except BaseException:
            self.lost()
            raise
