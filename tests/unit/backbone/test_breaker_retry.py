"""Circuit breaker (shared through the record store) and exponential backoff with full jitter."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.backbone.breaker import BreakerConfig, BreakerState, CircuitBreaker, Permit
from shared.backbone.retry import Backoff, RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


CONFIG = BreakerConfig(
    failure_threshold=3,
    cooldown=timedelta(seconds=10),
    max_cooldown=timedelta(seconds=35),
    probe_lease=timedelta(seconds=5),
    cache_ttl=timedelta(0),
)


@pytest.fixture
def records(tmp_path: Path) -> SqliteRecordStore:
    return SqliteRecordStore(tmp_path / "r.sqlite3")


def breaker(records: SqliteRecordStore, clock: Clock, **kw: object) -> CircuitBreaker:
    return CircuitBreaker(records, "fhir", CONFIG, clock=clock, rng=random.Random(1), **kw)  # type: ignore[arg-type]


def test_opens_after_threshold_consecutive_failures_and_parks(records: SqliteRecordStore) -> None:
    clock = Clock()
    b = breaker(records, clock)
    assert b.permit() is Permit.PROCEED
    assert b.record_failure("e1") is None and b.record_failure("e2") is None
    assert b.permit() is Permit.PROCEED
    opened = b.record_failure("downstream-unavailable")
    assert opened is not None and opened.old is BreakerState.CLOSED and opened.new is BreakerState.OPEN
    snapshot = b.snapshot(fresh=True)
    assert snapshot.failures == 3 and snapshot.last_error == "downstream-unavailable" and snapshot.trips == 1
    assert snapshot.open_until is not None
    wait = (snapshot.open_until - clock.now).total_seconds()
    assert 10 <= wait <= 12  # cooldown plus up to 20 % jitter
    assert b.permit() is Permit.PARK
    assert not b.due_for_probe()


def test_a_success_resets_the_consecutive_count(records: SqliteRecordStore) -> None:
    b = breaker(records, Clock())
    b.record_failure("e")
    b.record_failure("e")
    assert b.record_success() is None  # closed -> closed is not a transition
    assert b.snapshot(fresh=True).failures == 0
    b.record_failure("e")
    b.record_failure("e")
    assert b.snapshot(fresh=True).state is BreakerState.CLOSED


def test_half_open_probe_is_granted_to_exactly_one_caller_then_closes(records: SqliteRecordStore) -> None:
    clock = Clock()
    first, second = breaker(records, clock), breaker(records, clock)  # two processes, one record
    for _ in range(3):
        first.record_failure("e")
    assert second.permit() is Permit.PARK  # the other instance sees the shared state
    clock.advance(13)
    assert first.due_for_probe()
    permits = [first.permit(), second.permit()]
    assert sorted(p.value for p in permits) == ["park", "probe"]
    assert first.snapshot(fresh=True).state is BreakerState.HALF_OPEN
    closed = (first if permits[0] is Permit.PROBE else second).record_success()
    assert closed is not None and closed.new is BreakerState.CLOSED
    assert second.permit() is Permit.PROCEED and first.snapshot(fresh=True).trips == 1


def test_failed_probe_reopens_with_doubled_cooldown_up_to_the_maximum(records: SqliteRecordStore) -> None:
    clock = Clock()
    b = breaker(records, clock)
    for _ in range(3):
        b.record_failure("e")
    cooldowns = []
    for _ in range(3):
        clock.advance(100)
        assert b.permit() is Permit.PROBE
        reopened = b.record_failure("e")
        assert reopened is not None and reopened.old is BreakerState.HALF_OPEN
        cooldowns.append(reopened.snapshot.cooldown_s)
    assert cooldowns == [20.0, 35.0, 35.0]


def test_a_probe_whose_holder_vanished_can_be_taken_after_the_probe_lease(records: SqliteRecordStore) -> None:
    clock = Clock()
    b = breaker(records, clock)
    for _ in range(3):
        b.record_failure("e")
    clock.advance(13)
    assert b.permit() is Permit.PROBE
    assert b.permit() is Permit.PARK  # probe in progress
    clock.advance(6)  # the prober died: its lease ran out
    assert b.due_for_probe() and b.permit() is Permit.PROBE


def test_the_closed_hot_path_reads_the_store_once_per_cache_period(records: SqliteRecordStore) -> None:
    reads = 0
    original = records.get

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    records.get = counting  # type: ignore[method-assign]
    config = BreakerConfig(cache_ttl=timedelta(seconds=60))
    b = CircuitBreaker(records, "hl7v2", config)
    for _ in range(100):
        assert b.permit() is Permit.PROCEED
        assert b.record_success() is None
    assert reads == 1


def test_concurrent_failures_are_all_counted(records: SqliteRecordStore) -> None:
    b = CircuitBreaker(records, "fhir", BreakerConfig(failure_threshold=1000, cache_ttl=timedelta(0)))
    threads = [threading.Thread(target=lambda: [b.record_failure("e") for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.snapshot(fresh=True).failures == 40


def test_breaker_config_validation() -> None:
    with pytest.raises(ValueError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerConfig(cooldown=timedelta(seconds=10), max_cooldown=timedelta(seconds=5))


# -- backoff -------------------------------------------------------------------------------------------------


def test_backoff_ceiling_grows_exponentially_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=5.0, factor=2.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.ceiling(10_000) == 5.0
    with pytest.raises(ValueError):
        backoff.ceiling(0)


def test_full_jitter_spreads_over_the_whole_interval() -> None:
    backoff = Backoff(base=1.0, cap=100.0)
    rng = random.Random(7)
    draws = [backoff.delay(4, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    assert min(draws) < 0.5 and max(draws) > 7.5  # not clustered at the ceiling
    assert 3.5 < sum(draws) / len(draws) < 4.5


def test_retry_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        Backoff(base=-1)
