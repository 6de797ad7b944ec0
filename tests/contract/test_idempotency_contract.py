"""The idempotency guard and outbox behave the same on every RecordStore backend.

One store implementation (:class:`RecordStorePersistence`) runs on SQLite and on Azure Table Storage
(Azurite, marked ``azurite``), relying only on the port's conditional insert and ETag compare-and-swap.
Each test uses fresh tables (Azurite is shared by the session).
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.errors import PermanentError
from shared.idempotency import (
    IdempotencyAlreadyInProgress,
    IdempotencyConfig,
    IdempotencyGuard,
    IdempotencyPayloadConflict,
    IdempotencyStatus,
    IdempotencyStoredFailure,
    RecordStorePersistence,
    WithMessages,
)
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SubscriptionSpec, TopicSpec
from shared.outbox import OUTBOX_FIELD, Outbox, OutboxMessage, OutboxRelay, OwnerRef
from shared.storage.errors import ConcurrencyConflict
from shared.storage.ports import RecordStore
from tests.unit.idempotency.support import Counter, FakeClock, Losers, SimulatedCrash, race

LEASE = timedelta(seconds=30)
TOPIC, SUB = "clinical-events", "audit"


@pytest.fixture
def tables() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:16]
    return f"idem{suffix}", f"outbox{suffix}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(records: RecordStore, tables: tuple[str, str]) -> RecordStorePersistence:
    return RecordStorePersistence(records, table=tables[0])


@pytest.fixture
def guard(store: RecordStorePersistence, clock: FakeClock) -> IdempotencyGuard:
    return IdempotencyGuard(
        store,
        IdempotencyConfig(
            namespace="contract",
            clock=clock,
            in_progress_lease=LEASE,
            expires_after=timedelta(days=1),
            is_final_failure=lambda exc: isinstance(exc, Rejected),
        ),
    )


class Rejected(PermanentError):
    code = "rejected"


def now_ms(clock: FakeClock) -> int:
    return int(clock().timestamp() * 1000)


def test_stored_result_is_returned_without_rerunning(guard: IdempotencyGuard) -> None:
    effects = Counter()
    first = guard.run("event-1", {"v": 1}, lambda: {"n": effects.hit("e")})
    second = guard.run("event-1", {"v": 1}, lambda: {"n": effects.hit("e")})
    assert (first.result, second.result) == ({"n": 1}, {"n": 1})
    assert (first.replayed_from_store, second.replayed_from_store) == (False, True)
    record = guard.inspect("event-1")
    assert record is not None and record.status is IdempotencyStatus.COMPLETED
    assert record.duplicates_observed == 1


def test_concurrent_first_deliveries_run_once(guard: IdempotencyGuard) -> None:
    effects = Counter()
    losers = Losers(5)

    def deliver(_: int) -> object:
        def effect() -> str:
            effects.hit("k")
            losers.wait()
            return "applied"

        return losers.run(lambda: guard.run("k", None, effect))

    results = race(6, deliver)
    assert effects.counts == {"k": 1}
    assert sum(isinstance(r, IdempotencyAlreadyInProgress) for r in results) == 5


def test_exactly_one_taker_of_an_abandoned_lease(
    guard: IdempotencyGuard, store: RecordStorePersistence, clock: FakeClock
) -> None:
    held = store.acquire(
        key_hash=guard.key_hash("k"),
        namespace="contract",
        payload_hash=None,
        is_replay=False,
        now_ms=now_ms(clock),
        lease_ms=int(LEASE.total_seconds() * 1000),
        expires_after_ms=86_400_000,
    ).held
    assert held is not None
    clock.advance(LEASE.total_seconds())
    effects = Counter()
    losers = Losers(4)

    def deliver(_: int) -> object:
        def effect() -> str:
            effects.hit("k")
            losers.wait()
            return "taken over"

        return losers.run(lambda: guard.run("k", None, effect))

    results = race(5, deliver)
    assert effects.counts == {"k": 1}
    [winner] = [r for r in results if not isinstance(r, BaseException)]
    assert winner.took_over and winner.attempt == 2  # type: ignore[union-attr]
    with pytest.raises(ConcurrencyConflict):  # the crashed holder's late completion is refused
        store.complete(held, result="late", now_ms=now_ms(clock), expires_after_ms=1000)


def test_payload_conflict_is_surfaced(guard: IdempotencyGuard) -> None:
    guard.run("k", {"ward": "A"}, lambda: 1)
    with pytest.raises(IdempotencyPayloadConflict) as info:
        guard.run("k", {"ward": "B"}, lambda: 2)
    assert info.value.classification == "correction"
    assert info.value.stored_payload_hash == guard.payload_hash({"ward": "A"})


def test_failure_releases_and_final_failure_is_stored(guard: IdempotencyGuard) -> None:
    calls = Counter()

    def transient() -> str:
        if calls.hit("t") == 1:
            raise ConnectionError("downstream reset")
        return "ok"

    with pytest.raises(ConnectionError):
        guard.run("t", None, transient)
    assert guard.inspect("t") is None
    assert guard.run("t", None, transient).result == "ok"

    def rejected() -> str:
        calls.hit("r")
        raise Rejected("AR")

    with pytest.raises(Rejected):
        guard.run("r", None, rejected)
    with pytest.raises(IdempotencyStoredFailure):
        guard.run("r", None, rejected)
    assert calls.counts["r"] == 1
    assert guard.run("r", None, lambda: "fixed", is_replay=True).applied_by_replay


def test_expiry_and_purge(guard: IdempotencyGuard, store: RecordStorePersistence, clock: FakeClock) -> None:
    effects = Counter()
    guard.run("k", {"v": 1}, lambda: effects.hit("k"))
    guard.run("gone", None, lambda: 1)
    clock.advance(days=1)
    assert not guard.run("k", {"v": 2}, lambda: effects.hit("k")).replayed_from_store
    assert effects.counts == {"k": 2}
    assert store.purge_expired(now_ms=now_ms(clock)) == 1
    assert guard.inspect("gone") is None and guard.inspect("k") is not None


def test_replays_are_tagged_and_change_nothing(guard: IdempotencyGuard) -> None:
    effects = Counter()
    guard.run("k", None, lambda: effects.hit("k"))
    for _ in range(2):
        assert guard.run("k", None, lambda: effects.hit("k"), is_replay=True).replayed_from_store
    record = guard.inspect("k")
    assert record is not None and record.replays_observed == 2 and not record.by_replay
    assert effects.counts == {"k": 1}


def test_duplicated_deliveries_apply_each_effect_once(guard: IdempotencyGuard) -> None:
    keys = [f"e{i}" for i in range(40)]
    pending = [k for k in keys for _ in range(3)]
    lock = threading.Lock()
    effects = Counter()

    def worker(_: int) -> None:
        while True:
            with lock:
                if not pending:
                    return
                key = pending.pop(0)
            try:
                guard.run(key, {"k": key}, lambda key=key: effects.hit(key))
            except IdempotencyAlreadyInProgress:
                with lock:
                    pending.append(key)

    assert all(r is None for r in race(4, worker, timeout=120))
    assert effects.counts == dict.fromkeys(keys, 1)


def test_outbox_batch_committed_before_a_crash_is_published_by_a_new_relay(
    records: RecordStore,
    tables: tuple[str, str],
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bus = SqliteBus(tmp_path / "bus.sqlite3", (TopicSpec(TOPIC, (SubscriptionSpec(SUB),)),), clock=clock)
    try:
        outbox = Outbox(records, table=tables[1], clock=clock)
        guard = IdempotencyGuard(
            RecordStorePersistence(records, table=tables[0]),
            IdempotencyConfig(namespace="map", clock=clock),
            outbox=outbox,
            bus=bus,
        )
        message = OutboxMessage(TOPIC, OutboundMessage(body=b"{}", message_id="admission-1"))

        def crash(*args: Any) -> None:
            raise SimulatedCrash

        monkeypatch.setattr(bus, "publish", crash)
        with pytest.raises(SimulatedCrash):
            guard.run_and_publish("admission-1", None, lambda: WithMessages("r", [message]))
        monkeypatch.undo()
        assert bus.peek(TOPIC, SUB) == []

        relay = OutboxRelay(Outbox(records, table=tables[1], clock=clock), bus, clock=clock)
        assert relay.relay_once().published == 1
        assert relay.relay_once().progressed == 0
        assert [m.message_id for m in bus.peek(TOPIC, SUB)] == ["admission-1"]
        assert records.query(tables[1]) == []
        [record] = records.query(tables[0])
        assert record.value[OUTBOX_FIELD] == {}
    finally:
        bus.close()


def test_relay_recognises_an_uncommitted_batch_by_the_owner_etag(
    records: RecordStore, tables: tuple[str, str], tmp_path: Path, clock: FakeClock
) -> None:
    """The ETag a write returns equals the one a later read returns (else live writers' entries would be
    dropped as orphans); a fenced owner refuses the late commit on every backend."""
    bus = SqliteBus(tmp_path / "bus.sqlite3", (TopicSpec(TOPIC, (SubscriptionSpec(SUB),)),), clock=clock)
    try:
        outbox = Outbox(records, table=tables[1], clock=clock)
        relay = OutboxRelay(outbox, bus, orphan_grace=timedelta(minutes=5), clock=clock)
        created = records.insert(tables[0], "p", "r", {"state": 0})
        message = OutboxMessage(TOPIC, OutboundMessage(body=b"{}", message_id="e1"))
        batch = outbox.prepare(OwnerRef(tables[0], "p", "r"), created.etag, [message])
        assert relay.relay_once().waiting == 1
        clock.advance(minutes=5)
        report = relay.relay_once()
        assert (report.orphaned, report.fenced) == (1, 1)
        with pytest.raises(ConcurrencyConflict):
            outbox.commit(batch, {"state": 1})
        assert bus.peek(TOPIC, SUB) == [] and records.query(tables[1]) == []

        current = records.get(tables[0], "p", "r")
        assert current is not None
        batch = outbox.prepare(OwnerRef(tables[0], "p", "r"), current.etag, [message])
        outbox.commit(batch, {"state": 2})
        assert relay.relay_once().published == 1
        assert [m.message_id for m in bus.peek(TOPIC, SUB)] == ["e1"]
        stored = records.get(tables[0], "p", "r")
        assert stored is not None and stored.value == {"state": 2, OUTBOX_FIELD: {}}
    finally:
        bus.close()
