"""The idempotency guard on the embedded store: states, transitions, leases, conflicts, replays.

Time is an injected :class:`FakeClock`; concurrency uses real threads against one SQLite file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.canonical.identity import make_key
from shared.canonical.model import EventKind
from shared.errors import PermanentError, TransientError
from shared.idempotency import (
    IdempotencyAlreadyInProgress,
    IdempotencyConfig,
    IdempotencyGuard,
    IdempotencyKeyError,
    IdempotencyLeaseLost,
    IdempotencyPayloadConflict,
    IdempotencyResultNotStorable,
    IdempotencyStatus,
    IdempotencyStoredFailure,
    PydanticSerializer,
    RecordStorePersistence,
    hash_key,
    idempotent,
)
from shared.idempotency.persistence import StoredRecord
from shared.storage.names import TABLE_IDEMPOTENCY
from tests.unit.idempotency.support import Counter, FakeClock, Losers, race

LEASE = timedelta(seconds=30)
LOCK = timedelta(seconds=60)


@pytest.fixture
def records(tmp_path: Path) -> Iterator[SqliteRecordStore]:
    store = SqliteRecordStore(tmp_path / "records.sqlite3")
    yield store
    store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(records: SqliteRecordStore) -> RecordStorePersistence:
    return RecordStorePersistence(records)


@pytest.fixture
def make_guard(store: RecordStorePersistence, clock: FakeClock) -> Callable[..., IdempotencyGuard]:
    def make(**settings: Any) -> IdempotencyGuard:
        settings.setdefault("in_progress_lease", LEASE)
        settings.setdefault("message_lock_duration", LOCK)
        return IdempotencyGuard(store, IdempotencyConfig(clock=clock, **settings))

    return make


@pytest.fixture
def guard(make_guard: Callable[..., IdempotencyGuard]) -> IdempotencyGuard:
    return make_guard(namespace="writeback")


def now_ms(clock: FakeClock) -> int:
    return int(clock().timestamp() * 1000)


# -- first run, stored outcome ----------------------------------------------------------------------------


def test_first_run_executes_and_stores_the_result(guard: IdempotencyGuard, clock: FakeClock) -> None:
    effects = Counter()
    outcome = guard.run("event-1", {"a": 1}, lambda: effects.hit("event-1") and {"id": "Encounter/9"})
    assert outcome.result == {"id": "Encounter/9"}
    assert not outcome.replayed_from_store and not outcome.took_over and outcome.attempt == 1
    assert outcome.key_hash == hash_key("writeback", "event-1")
    record = guard.inspect("event-1")
    assert record is not None
    assert record.status is IdempotencyStatus.COMPLETED
    assert record.status_at(now_ms(clock)) is IdempotencyStatus.COMPLETED
    assert record.result == {"id": "Encounter/9"}
    assert record.payload_hash == guard.payload_hash({"a": 1})
    assert record.expires_ms == now_ms(clock) + int(timedelta(days=30).total_seconds() * 1000)
    assert effects.counts == {"event-1": 1}


def test_retry_gets_the_stored_result_without_running_the_effect(guard: IdempotencyGuard) -> None:
    effects = Counter()

    def effect() -> dict[str, int]:
        return {"n": effects.hit("k")}

    first = guard.run("k", {"p": 1}, effect)
    second = guard.run("k", {"p": 1}, effect)
    third = guard.run("k", {"p": 1}, effect)
    assert effects.counts == {"k": 1}
    assert first.result == second.result == third.result == {"n": 1}
    assert second.replayed_from_store and third.replayed_from_store
    record = guard.inspect("k")
    assert record is not None and record.duplicates_observed == 2 and record.replays_observed == 0


def test_key_and_payload_are_not_stored(guard: IdempotencyGuard, records: SqliteRecordStore) -> None:
    guard.run("nhs|9434765919|admission", {"name": "TESTPATIENT"}, lambda: "ok")
    rows = records.query(TABLE_IDEMPOTENCY)
    assert len(rows) == 1
    text = repr(rows[0].value) + rows[0].row_key + rows[0].partition_key
    assert "9434765919" not in text and "TESTPATIENT" not in text


def test_namespaces_are_independent(make_guard: Callable[..., IdempotencyGuard]) -> None:
    effects = Counter()
    fhir, pas = make_guard(namespace="fhir"), make_guard(namespace="pas")
    fhir.run("k", None, lambda: effects.hit("fhir"))
    pas.run("k", None, lambda: effects.hit("pas"))
    fhir.run("k", None, lambda: effects.hit("fhir"))
    assert effects.counts == {"fhir": 1, "pas": 1}


def test_hl7_and_fhir_paths_share_the_clinical_event_key(guard: IdempotencyGuard) -> None:
    # Both edges derive the same key from the same admission (shared.canonical.identity).
    from_hl7 = make_key(
        EventKind.ADMISSION, "https://trust.example/visit", "VN00987654", "2024-03-15T14:25:00Z"
    )
    from_fhir = make_key(
        EventKind.ADMISSION, "https://trust.example/visit", "VN00987654", "2024-03-15T14:25:00Z"
    )
    effects = Counter()
    payload = {"encounter": "VN00987654", "start": "2024-03-15T14:25:00Z"}
    guard.run(from_hl7.value, payload, lambda: effects.hit("admission"))
    again = guard.run(from_fhir.value, payload, lambda: effects.hit("admission"))
    assert again.replayed_from_store and effects.counts == {"admission": 1}


# -- in progress, leases ----------------------------------------------------------------------------------


def test_same_key_while_in_progress_is_a_transient_error(guard: IdempotencyGuard, clock: FakeClock) -> None:
    seen: list[BaseException] = []

    def effect() -> str:
        clock.advance(5)
        try:
            guard.run("k", {"p": 1}, lambda: "inner")
        except IdempotencyAlreadyInProgress as exc:
            seen.append(exc)
        return "outer"

    assert guard.run("k", {"p": 1}, effect).result == "outer"
    assert len(seen) == 1
    exc = seen[0]
    assert isinstance(exc, TransientError) and isinstance(exc, IdempotencyAlreadyInProgress)
    assert exc.retry_after == pytest.approx(LEASE.total_seconds() - 5)
    assert exc.key_hash == hash_key("writeback", "k")


def crash_holding(
    store: RecordStorePersistence, guard: IdempotencyGuard, key: str, payload: Any, clock: FakeClock
) -> StoredRecord:
    """Acquire ``key`` as a worker that then dies (its IN_PROGRESS record stays behind)."""
    acquisition = store.acquire(
        key_hash=guard.key_hash(key),
        namespace=guard.config.namespace,
        payload_hash=guard.payload_hash(payload),
        is_replay=False,
        now_ms=now_ms(clock),
        lease_ms=int(LEASE.total_seconds() * 1000),
        expires_after_ms=int(guard.config.expires_after.total_seconds() * 1000),
    )
    assert acquisition.held is not None
    return acquisition.held


def test_abandoned_lease_is_taken_over_after_it_expires(
    guard: IdempotencyGuard, store: RecordStorePersistence, clock: FakeClock
) -> None:
    crash_holding(store, guard, "k", {"p": 1}, clock)
    effects = Counter()
    clock.advance(LEASE.total_seconds() - 1)
    with pytest.raises(IdempotencyAlreadyInProgress):
        guard.run("k", {"p": 1}, lambda: effects.hit("k"))
    assert effects.total() == 0

    clock.advance(1)
    outcome = guard.run("k", {"p": 1}, lambda: effects.hit("k"))
    assert outcome.took_over and outcome.attempt == 2 and not outcome.replayed_from_store
    assert effects.counts == {"k": 1}
    record = guard.inspect("k")
    assert record is not None and record.status is IdempotencyStatus.COMPLETED and record.attempt == 2


def test_late_holder_cannot_complete_after_a_takeover(
    guard: IdempotencyGuard, store: RecordStorePersistence, clock: FakeClock
) -> None:
    held = crash_holding(store, guard, "k", None, clock)
    clock.advance(LEASE.total_seconds())
    guard.run("k", None, lambda: "taker")
    from shared.storage.errors import ConcurrencyConflict

    with pytest.raises(ConcurrencyConflict):
        store.complete(held, result="late", now_ms=now_ms(clock), expires_after_ms=1000)
    record = guard.inspect("k")
    assert record is not None and record.result == "taker"


def test_effect_outliving_its_lease_reports_lease_lost(guard: IdempotencyGuard, clock: FakeClock) -> None:
    effects = Counter()

    def slow_effect() -> str:
        effects.hit("slow")
        clock.advance(LEASE.total_seconds() + 1)
        # another delivery of the same event takes the key over meanwhile
        assert guard.run("k", None, lambda: effects.hit("taker") and "taker").took_over
        return "slow"

    with pytest.raises(IdempotencyLeaseLost) as info:
        guard.run("k", None, slow_effect)
    assert isinstance(info.value, TransientError)
    record = guard.inspect("k")
    assert record is not None and record.result == "taker"
    assert effects.counts == {"slow": 1, "taker": 1}  # the double run is surfaced, not hidden


def test_exactly_one_taker_of_an_abandoned_lease(
    guard: IdempotencyGuard, store: RecordStorePersistence, clock: FakeClock
) -> None:
    crash_holding(store, guard, "k", None, clock)
    clock.advance(LEASE.total_seconds() + 1)
    effects = Counter()
    losers = Losers(5)

    def deliver(_: int) -> object:
        def effect() -> str:
            effects.hit("k")
            losers.wait()
            return "done"

        return losers.run(lambda: guard.run("k", None, effect))

    results = race(6, deliver)
    assert effects.counts == {"k": 1}
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, IdempotencyAlreadyInProgress) for r in results if r not in winners)


def test_concurrent_first_deliveries_run_the_effect_once(guard: IdempotencyGuard) -> None:
    effects = Counter()
    losers = Losers(7)

    def deliver(_: int) -> object:
        def effect() -> str:
            effects.hit("k")
            losers.wait()  # hold the lease while the others arrive
            return "applied"

        return losers.run(lambda: guard.run("k", {"p": 1}, effect))

    results = race(8, deliver)
    assert effects.counts == {"k": 1}
    outcomes = [r for r in results if not isinstance(r, BaseException)]
    assert [o.result for o in outcomes] == ["applied"]  # type: ignore[union-attr]
    assert sum(isinstance(r, IdempotencyAlreadyInProgress) for r in results) == 7
    assert guard.run("k", {"p": 1}, lambda: "never").result == "applied"


# -- payload conflicts ------------------------------------------------------------------------------------


def test_same_key_different_payload_is_a_correction_conflict(guard: IdempotencyGuard) -> None:
    effects = Counter()
    guard.run("k", {"ward": "W12", "bed": "5"}, lambda: effects.hit("k"))
    with pytest.raises(IdempotencyPayloadConflict) as info:
        guard.run("k", {"ward": "W14", "bed": "5"}, lambda: effects.hit("k"))
    exc = info.value
    assert isinstance(exc, PermanentError)
    assert exc.classification == "correction" and exc.dead_letter_reason == "IdempotencyPayloadConflict"
    assert exc.stored_payload_hash == guard.payload_hash({"ward": "W12", "bed": "5"})
    assert exc.received_payload_hash == guard.payload_hash({"ward": "W14", "bed": "5"})
    assert exc.status == "COMPLETED"
    assert "W14" not in str(exc) and "W12" not in str(exc)
    assert effects.counts == {"k": 1}
    # the stored outcome is untouched; the original payload still gets it
    assert guard.run("k", {"ward": "W12", "bed": "5"}, lambda: effects.hit("k")).replayed_from_store


def test_payload_conflict_is_detected_while_in_progress(guard: IdempotencyGuard) -> None:
    conflicts: list[IdempotencyPayloadConflict] = []

    def effect() -> str:
        try:
            guard.run("k", {"v": 2}, lambda: "other")
        except IdempotencyPayloadConflict as exc:
            conflicts.append(exc)
        return "first"

    guard.run("k", {"v": 1}, effect)
    assert len(conflicts) == 1 and conflicts[0].status == "IN_PROGRESS"


def test_payload_validation_subset_ignores_volatile_fields(
    make_guard: Callable[..., IdempotencyGuard],
) -> None:
    guard = make_guard(payload_validation=lambda event: event["resource"])
    effects = Counter()
    guard.run("k", {"resource": {"id": 1}, "received": "12:00"}, lambda: effects.hit("k"))
    repeat = guard.run("k", {"resource": {"id": 1}, "received": "12:05"}, lambda: effects.hit("k"))
    assert repeat.replayed_from_store and effects.counts == {"k": 1}
    with pytest.raises(IdempotencyPayloadConflict):
        guard.run("k", {"resource": {"id": 2}, "received": "12:05"}, lambda: effects.hit("k"))


def test_failing_payload_selector_is_a_permanent_key_error(
    make_guard: Callable[..., IdempotencyGuard],
) -> None:
    guard = make_guard(payload_validation=lambda event: event["resource"])
    effects = Counter()
    with pytest.raises(IdempotencyKeyError) as info:
        guard.run("k", {"no-resource": 1}, lambda: effects.hit("k"))
    assert isinstance(info.value, PermanentError) and "KeyError" in str(info.value)
    assert effects.total() == 0 and guard.inspect("k") is None


def test_no_payload_means_no_comparison(guard: IdempotencyGuard) -> None:
    guard.run("k", None, lambda: 1)
    assert guard.run("k", {"anything": True}, lambda: 2).result == 1
    assert guard.run("k2", {"a": 1}, lambda: 1).result == 1
    assert guard.run("k2", None, lambda: 2).result == 1


# -- failures ---------------------------------------------------------------------------------------------


class DownstreamBusy(TransientError):
    code = "downstream-busy"


class DownstreamRejected(PermanentError):
    code = "downstream-rejected"


def test_failed_effect_releases_the_key_and_the_retry_runs_again(guard: IdempotencyGuard) -> None:
    attempts = Counter()

    def flaky() -> str:
        if attempts.hit("k") == 1:
            raise DownstreamBusy("503")
        return "applied"

    with pytest.raises(DownstreamBusy):
        guard.run("k", {"p": 1}, flaky)
    assert guard.inspect("k") is None
    outcome = guard.run("k", {"p": 1}, flaky)
    assert outcome.result == "applied" and not outcome.replayed_from_store and outcome.attempt == 1
    assert attempts.counts == {"k": 2}


def test_permanent_failures_are_not_stored_by_default(guard: IdempotencyGuard) -> None:
    with pytest.raises(DownstreamRejected):
        guard.run("k", None, lambda: (_ for _ in ()).throw(DownstreamRejected("AR")))
    assert guard.inspect("k") is None  # a replay after the fix will run it


def test_final_failures_are_stored_and_only_a_replay_runs_again(
    make_guard: Callable[..., IdempotencyGuard],
) -> None:
    guard = make_guard(is_final_failure=lambda exc: isinstance(exc, DownstreamRejected))
    calls = Counter()
    fixed = False

    def effect() -> str:
        calls.hit("k")
        if not fixed:
            raise DownstreamRejected("AR: unknown ward")
        return "applied"

    with pytest.raises(DownstreamRejected):
        guard.run("k", {"p": 1}, effect)
    record = guard.inspect("k")
    assert record is not None and record.status is IdempotencyStatus.COMPLETED
    assert record.error == {"code": "downstream-rejected", "type": "DownstreamRejected"}
    assert "unknown ward" not in repr(record.to_value())

    with pytest.raises(IdempotencyStoredFailure) as info:  # redelivery: not re-run
        guard.run("k", {"p": 1}, effect)
    assert isinstance(info.value, PermanentError) and info.value.error_code == "downstream-rejected"
    assert calls.counts == {"k": 1}

    fixed = True
    replayed = guard.run("k", {"p": 1}, effect, is_replay=True)
    assert replayed.result == "applied" and replayed.took_over and replayed.applied_by_replay
    assert calls.counts == {"k": 2}
    again = guard.run("k", {"p": 1}, effect, is_replay=True)
    assert again.replayed_from_store and calls.counts == {"k": 2}


def test_transient_failures_are_not_stored_even_with_a_final_predicate(
    make_guard: Callable[..., IdempotencyGuard],
) -> None:
    guard = make_guard(is_final_failure=lambda exc: isinstance(exc, PermanentError))
    with pytest.raises(DownstreamBusy):
        guard.run("k", None, lambda: (_ for _ in ()).throw(DownstreamBusy("x")))
    assert guard.inspect("k") is None


def test_base_exception_in_the_effect_also_releases_the_key(
    guard: IdempotencyGuard, clock: FakeClock
) -> None:
    class Crash(BaseException):
        pass

    with pytest.raises(Crash):
        guard.run("k", None, lambda: (_ for _ in ()).throw(Crash()))
    # like Powertools; a real crash (SIGKILL) leaves the record to its lease: see the takeover tests
    assert guard.inspect("k") is None


# -- expiry -----------------------------------------------------------------------------------------------


def test_expired_record_is_treated_as_absent(
    make_guard: Callable[..., IdempotencyGuard], clock: FakeClock
) -> None:
    guard = make_guard(expires_after=timedelta(hours=1))
    effects = Counter()
    guard.run("k", {"v": 1}, lambda: effects.hit("k"))
    clock.advance(3599)
    assert guard.run("k", {"v": 1}, lambda: effects.hit("k")).replayed_from_store
    clock.advance(1)
    record = guard.inspect("k")
    assert record is not None and record.status_at(now_ms(clock)) is IdempotencyStatus.EXPIRED
    # expired: replaced, runs again, and its payload is not compared with the expired one
    outcome = guard.run("k", {"v": 2}, lambda: effects.hit("k"))
    assert not outcome.replayed_from_store and outcome.took_over and outcome.attempt == 2
    assert effects.counts == {"k": 2}


def test_purge_deletes_only_expired_records(
    make_guard: Callable[..., IdempotencyGuard], store: RecordStorePersistence, clock: FakeClock
) -> None:
    guard = make_guard(expires_after=timedelta(hours=1))
    for i in range(5):
        guard.run(f"old-{i}", None, lambda: 1)
    clock.advance(1800)
    guard.run("young", None, lambda: 1)
    clock.advance(1800)
    assert store.purge_expired(now_ms=now_ms(clock)) == 5
    assert guard.inspect("young") is not None and guard.inspect("old-0") is None
    assert store.purge_expired(now_ms=now_ms(clock)) == 0


# -- replays ----------------------------------------------------------------------------------------------


def test_replaying_something_already_applied_changes_nothing(guard: IdempotencyGuard) -> None:
    effects = Counter()
    first = guard.run("k", {"p": 1}, lambda: effects.hit("k"))
    assert not first.is_replay and not first.applied_by_replay
    r1 = guard.run("k", {"p": 1}, lambda: effects.hit("k"), is_replay=True)
    r2 = guard.run("k", {"p": 1}, lambda: effects.hit("k"), is_replay=True)
    assert effects.counts == {"k": 1}
    assert r1.replayed_from_store and r2.replayed_from_store and r1.is_replay
    assert not r1.applied_by_replay  # first applied by the original delivery
    record = guard.inspect("k")
    assert record is not None and (record.replays_observed, record.duplicates_observed) == (2, 0)
    assert not record.by_replay


def test_first_applied_by_a_replay_is_recorded(guard: IdempotencyGuard) -> None:
    effects = Counter()
    applied = guard.run("k", None, lambda: effects.hit("k"), is_replay=True)
    assert applied.is_replay and applied.applied_by_replay and not applied.replayed_from_store
    again = guard.run("k", None, lambda: effects.hit("k"), is_replay=True)
    assert again.replayed_from_store and again.applied_by_replay
    record = guard.inspect("k")
    assert record is not None and record.by_replay and record.replays_observed == 1
    assert effects.counts == {"k": 1}


def test_observation_counting_can_be_switched_off(make_guard: Callable[..., IdempotencyGuard]) -> None:
    guard = make_guard(record_observations=False)
    guard.run("k", None, lambda: 1)
    guard.run("k", None, lambda: 1, is_replay=True)
    record = guard.inspect("k")
    assert record is not None and record.replays_observed == 0


# -- results ----------------------------------------------------------------------------------------------


def test_json_results_round_trip(guard: IdempotencyGuard) -> None:
    first = guard.run("k", None, lambda: ("Encounter", 7))
    assert first.result == ("Encounter", 7)  # the caller's own value the first time
    assert guard.run("k", None, lambda: ("x", 0)).result == ["Encounter", 7]  # JSON round trip later


class WriteBack(BaseModel):
    resource: str
    version: int


def test_pydantic_results(make_guard: Callable[..., IdempotencyGuard]) -> None:
    guard = make_guard(serializer=PydanticSerializer(WriteBack))
    guard.run("k", None, lambda: WriteBack(resource="Encounter/1", version=2))
    again = guard.run("k", None, lambda: WriteBack(resource="x", version=0))
    assert again.replayed_from_store and again.result == WriteBack(resource="Encounter/1", version=2)


def test_unstorable_result_releases_the_key(guard: IdempotencyGuard) -> None:
    with pytest.raises(IdempotencyResultNotStorable) as info:
        guard.run("k", None, lambda: {"when": object()})
    assert isinstance(info.value, PermanentError)
    assert guard.inspect("k") is None
    with pytest.raises(IdempotencyResultNotStorable):
        guard.run("big", None, lambda: "x" * 300_000)
    assert guard.inspect("big") is None


# -- decorator --------------------------------------------------------------------------------------------


def test_decorator_keys_on_the_event_not_the_call(guard: IdempotencyGuard) -> None:
    effects = Counter()

    @idempotent(
        lambda: guard,
        key=lambda event, **_: event["key"],
        payload=lambda event, **_: event["body"],
        is_replay=lambda event, replay=False: replay,
    )
    def write_back(event: dict[str, Any], replay: bool = False) -> dict[str, Any]:
        effects.hit(event["key"])
        return {"written": event["body"]}

    assert write_back({"key": "e1", "body": "A", "http_request": 1}) == {"written": "A"}
    assert write_back({"key": "e1", "body": "A", "http_request": 2}) == {"written": "A"}
    assert write_back({"key": "e1", "body": "A"}, replay=True) == {"written": "A"}
    assert write_back({"key": "e2", "body": "B"}) == {"written": "B"}
    assert effects.counts == {"e1": 1, "e2": 1}
    with pytest.raises(IdempotencyPayloadConflict):
        write_back({"key": "e1", "body": "CHANGED"})
    assert write_back.__name__ == "write_back"
    record = guard.inspect("e1")
    assert record is not None and record.replays_observed == 1 and record.duplicates_observed == 1


# -- fault-style ------------------------------------------------------------------------------------------


def test_duplicated_deliveries_from_many_threads_apply_each_effect_once(guard: IdempotencyGuard) -> None:
    """200 events, each delivered 3 times, 4 worker threads: every effect exactly once."""
    keys = [f"admission-{i:04d}" for i in range(200)]
    deliveries = [k for k in keys for _ in range(3)]
    deliveries = deliveries[::2] + deliveries[1::2]  # interleave copies of the same event
    effects = Counter()
    queue_lock = threading.Lock()
    pending = list(deliveries)
    results: dict[str, set[str]] = {}
    stats = {"in_progress_retries": 0, "from_store": 0}

    def worker(_: int) -> None:
        while True:
            with queue_lock:
                if not pending:
                    return
                key = pending.pop(0)
            try:
                outcome = guard.run(key, {"event": key}, lambda key=key: f"{key}:{effects.hit(key)}")
            except IdempotencyAlreadyInProgress:
                with queue_lock:  # abandoned: the bus redelivers it later
                    pending.append(key)
                    stats["in_progress_retries"] += 1
                continue
            with queue_lock:
                results.setdefault(key, set()).add(outcome.result)
                stats["from_store"] += outcome.replayed_from_store

    outcome = race(4, worker, timeout=60)
    assert all(r is None for r in outcome)
    duplicates = sum(max(0, n - 1) for n in effects.counts.values())
    print(
        f"\nfault: sent={len(deliveries)} effects={effects.total()} duplicates={duplicates} "
        f"lost={len(keys) - len(effects.counts)} answered_from_store={stats['from_store']} "
        f"in_progress_retries={stats['in_progress_retries']}"
    )
    assert effects.counts == dict.fromkeys(keys, 1)
    assert results == {k: {f"{k}:1"} for k in keys}
    assert stats["from_store"] == 400
