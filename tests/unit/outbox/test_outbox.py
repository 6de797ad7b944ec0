"""Transactional outbox: crash windows between "stored" and "published", relay, fencing, parking.

A crash is simulated by raising :class:`SimulatedCrash` (a BaseException nothing handles) at one step;
a *new* Outbox/relay/guard instance on the same SQLite files then plays the restarted process. The bus is
the embedded :class:`SqliteBus` (duplicate detection by ``message_id``, window on an injected clock).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.errors import PermanentError
from shared.idempotency import (
    IdempotencyConfig,
    IdempotencyConfigError,
    IdempotencyGuard,
    IdempotencyLeaseLost,
    RecordStorePersistence,
    WithMessages,
)
from shared.messaging.errors import BusUnavailable
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SubscriptionSpec, TopicSpec
from shared.outbox import (
    OUTBOX_FIELD,
    PARKED_PARTITION,
    Outbox,
    OutboxMessage,
    OutboxMessageInvalid,
    OutboxRelay,
    OwnerRef,
    carry_forward,
)
from shared.storage.errors import ConcurrencyConflict
from shared.storage.names import TABLE_IDEMPOTENCY, TABLE_OUTBOX
from tests.unit.idempotency.support import Counter, FakeClock, SimulatedCrash

CLINICAL = "clinical-events"
OPERATIONAL = "operational-events"
SUB = "audit"
WINDOW = timedelta(minutes=10)
LEASE = timedelta(seconds=30)
GRACE = timedelta(minutes=5)
TOPOLOGY = (
    TopicSpec(CLINICAL, (SubscriptionSpec(SUB),), duplicate_detection_window=WINDOW),
    TopicSpec(OPERATIONAL, (SubscriptionSpec(SUB),), duplicate_detection_window=WINDOW),
)


class World:
    """One 'process' worth of objects over shared files; :meth:`restart` builds a fresh set."""

    def __init__(self, tmp_path: Path, clock: FakeClock) -> None:
        self.tmp_path = tmp_path
        self.clock = clock
        self._open: list[Any] = []
        self.restart()

    def restart(self) -> None:
        self.records = SqliteRecordStore(self.tmp_path / "records.sqlite3")
        self.bus = SqliteBus(self.tmp_path / "bus.sqlite3", TOPOLOGY, clock=self.clock)
        self._open += [self.records, self.bus]
        self.outbox = Outbox(self.records, clock=self.clock)
        self.guard = IdempotencyGuard(
            RecordStorePersistence(self.records),
            IdempotencyConfig(namespace="map", clock=self.clock, in_progress_lease=LEASE),
            outbox=self.outbox,
            bus=self.bus,
        )
        self.relay = OutboxRelay(self.outbox, self.bus, orphan_grace=GRACE, clock=self.clock)

    def published(self, topic: str = CLINICAL) -> list[str]:
        return [m.message_id for m in self.bus.peek(topic, SUB, max_messages=1000)]

    def entries(self) -> list[Any]:
        return self.records.query(TABLE_OUTBOX)

    def close(self) -> None:
        for item in self._open:
            item.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(tmp_path: Path, clock: FakeClock) -> Iterator[World]:
    w = World(tmp_path, clock)
    yield w
    w.close()


def event_message(key: str, topic: str = CLINICAL, body: bytes = b"{}") -> OutboxMessage:
    return OutboxMessage(
        topic,
        OutboundMessage(
            body=body,
            message_id=key,
            session_id="patient-1",
            correlation_id="corr-1",
            content_type="application/json",
            subject="admission",
            application_properties={"kind": "admission", "v": 1, "replay": False, "weight": 1.5},
            time_to_live=timedelta(days=1),
        ),
    )


def mapped(key: str, effects: Counter | None = None) -> Callable[[], WithMessages[str]]:
    def effect() -> WithMessages[str]:
        if effects is not None:
            effects.hit(key)
        return WithMessages(f"mapped:{key}", [event_message(key)])

    return effect


# -- messages ---------------------------------------------------------------------------------------------


def test_outbox_message_round_trips_through_json() -> None:
    original = event_message("admission-1", body=bytes(range(256)))
    assert OutboxMessage.from_json(original.to_json()) == original


def test_outbox_messages_need_a_deterministic_id_and_a_topic() -> None:
    with pytest.raises(OutboxMessageInvalid) as info:
        OutboxMessage(CLINICAL, OutboundMessage(body=b"x"))
    assert isinstance(info.value, PermanentError)
    with pytest.raises(OutboxMessageInvalid):
        OutboxMessage("", OutboundMessage(body=b"x", message_id="k"))


# -- happy path -------------------------------------------------------------------------------------------


def test_run_and_publish_publishes_once_and_leaves_nothing_pending(world: World) -> None:
    effects = Counter()
    outcome = world.guard.run_and_publish("admission-1", {"p": 1}, mapped("admission-1", effects))
    assert outcome.result == "mapped:admission-1" and outcome.published is True
    [message] = world.bus.peek(CLINICAL, SUB)
    assert message.message_id == "admission-1" and message.session_id == "patient-1"
    assert dict(message.application_properties) == {
        "kind": "admission",
        "v": 1,
        "replay": False,
        "weight": 1.5,
    }
    assert world.entries() == []
    [record] = world.records.query(TABLE_IDEMPOTENCY)
    assert record.value[OUTBOX_FIELD] == {} and record.value["status"] == "COMPLETED"

    again = world.guard.run_and_publish("admission-1", {"p": 1}, mapped("admission-1", effects))
    assert again.replayed_from_store and again.published is True
    assert effects.counts == {"admission-1": 1} and world.published() == ["admission-1"]


def test_effect_without_messages_writes_no_outbox_entry(world: World) -> None:
    outcome = world.guard.run_and_publish("k", None, lambda: WithMessages("r", []))
    assert outcome.published is True and world.entries() == [] and world.published() == []


def test_batch_spanning_topics_is_published_in_order(world: World) -> None:
    batch = [event_message("a"), event_message("b", OPERATIONAL), event_message("c")]
    world.guard.run_and_publish("k", None, lambda: WithMessages(None, batch))
    assert world.published(CLINICAL) == ["a", "c"] and world.published(OPERATIONAL) == ["b"]


def test_guard_needs_outbox_and_bus_for_publishing(world: World, tmp_path: Path) -> None:
    plain = IdempotencyGuard(RecordStorePersistence(world.records))
    with pytest.raises(IdempotencyConfigError):
        plain.run_and_publish("k", None, lambda: WithMessages(1))
    other = SqliteRecordStore(tmp_path / "other.sqlite3")
    try:
        with pytest.raises(IdempotencyConfigError):
            IdempotencyGuard(RecordStorePersistence(other), outbox=world.outbox, bus=world.bus)
    finally:
        other.close()


def test_effect_must_return_with_messages(world: World) -> None:
    with pytest.raises(TypeError):
        world.guard.run_and_publish("k", None, lambda: "plain")  # type: ignore[arg-type,return-value]
    assert world.guard.inspect("k") is None


# -- crash windows ----------------------------------------------------------------------------------------


def crash_on_publish(monkeypatch: pytest.MonkeyPatch, bus: SqliteBus) -> None:
    def publish(topic: str, messages: Any) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(bus, "publish", publish)


def test_crash_after_store_before_publish_the_relay_publishes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_on_publish(monkeypatch, world.bus)
    with pytest.raises(SimulatedCrash):
        world.guard.run_and_publish("admission-1", None, mapped("admission-1"))
    monkeypatch.undo()
    assert world.published() == [] and len(world.entries()) == 1

    world.restart()
    report = world.relay.relay_once()
    assert (report.published, report.messages, report.orphaned) == (1, 1, 0)
    assert world.published() == ["admission-1"]
    assert world.entries() == []
    assert world.relay.relay_once().progressed == 0  # nothing left


def test_crash_after_store_a_redelivery_publishes_before_the_relay(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    effects = Counter()
    crash_on_publish(monkeypatch, world.bus)
    with pytest.raises(SimulatedCrash):
        world.guard.run_and_publish("admission-1", None, mapped("admission-1", effects))
    monkeypatch.undo()
    world.restart()
    outcome = world.guard.run_and_publish("admission-1", None, mapped("admission-1", effects))
    assert outcome.replayed_from_store and outcome.published is True
    assert effects.counts == {"admission-1": 1}
    assert world.published() == ["admission-1"] and world.entries() == []


def test_crash_after_publish_before_settle_republish_is_deduplicated(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(world.outbox, "settle", crash)
    with pytest.raises(SimulatedCrash):
        world.guard.run_and_publish("admission-1", None, mapped("admission-1"))
    assert world.published() == ["admission-1"] and len(world.entries()) == 1

    world.restart()
    report = world.relay.relay_once()
    assert report.published == 1  # published again ...
    assert world.published() == ["admission-1"]  # ... and dropped by duplicate detection
    assert world.entries() == []


def test_republish_beyond_the_window_is_absorbed_by_the_consumer_guard(
    world: World, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    def crash(*args: Any) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(world.outbox, "settle", crash)
    with pytest.raises(SimulatedCrash):
        world.guard.run_and_publish("admission-1", {"p": 1}, mapped("admission-1"))
    world.restart()
    clock.advance(WINDOW.total_seconds() + 1)  # the relay was down longer than the window
    world.relay.relay_once()
    copies = world.bus.peek(CLINICAL, SUB)
    assert [m.message_id for m in copies] == ["admission-1", "admission-1"]  # bus let it through

    consumer = IdempotencyGuard(
        RecordStorePersistence(world.records), IdempotencyConfig(namespace="writeback", clock=clock)
    )
    effects = Counter()
    outcomes = [consumer.run(m.message_id, m.body, lambda: effects.hit("writeback")) for m in copies]
    assert effects.counts == {"writeback": 1}
    assert [o.replayed_from_store for o in outcomes] == [False, True]


def test_crash_before_commit_publishes_nothing_and_the_redelivery_publishes_once(
    world: World, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(world.guard.store, "complete", crash)
    with pytest.raises(SimulatedCrash):
        world.guard.run_and_publish("admission-1", None, mapped("admission-1"))
    monkeypatch.undo()
    assert len(world.entries()) == 1
    world.restart()
    report = world.relay.relay_once()
    assert report.waiting == 1 and world.published() == []  # the writer might still commit

    clock.advance(LEASE.total_seconds())  # the message lock expired too: redelivered, lease taken over
    outcome = world.guard.run_and_publish("admission-1", None, mapped("admission-1"))
    assert outcome.took_over and outcome.published is True
    report = world.relay.relay_once()
    assert (report.orphaned, report.fenced, report.published) == (1, 0, 0)
    assert world.published() == ["admission-1"] and world.entries() == []


def test_orphan_is_fenced_after_the_grace_so_a_late_writer_cannot_commit(
    world: World, clock: FakeClock
) -> None:
    owner = OwnerRef("domain", "p", "r")
    created = world.records.insert("domain", "p", "r", {"state": 0})
    batch = world.outbox.prepare(owner, created.etag, [event_message("e1")])
    assert world.relay.relay_once().waiting == 1
    clock.advance(GRACE.total_seconds())
    report = world.relay.relay_once()
    assert (report.orphaned, report.fenced) == (1, 1)
    with pytest.raises(ConcurrencyConflict):  # the writer wakes up and tries to commit
        world.outbox.commit(batch, {"state": 1})
    stored = world.records.get("domain", "p", "r")
    assert stored is not None and stored.value == {"state": 0}
    assert world.published() == [] and world.entries() == []


def test_writer_fenced_by_the_relay_gets_lease_lost_and_the_retry_publishes_once(
    world: World, clock: FakeClock
) -> None:
    def stuck_effect() -> WithMessages[str]:
        # An entry left at the owner's current ETag (a stuck attempt) is fenced while this effect runs
        # far beyond its lease and the relay's grace.
        owner = world.guard.store.owner_ref(world.guard.key_hash("k"))
        assert owner is not None
        current = world.records.get(owner.table, owner.partition_key, owner.row_key)
        assert current is not None
        world.outbox.prepare(owner, current.etag, [event_message("k")])
        clock.advance(GRACE.total_seconds())
        assert world.relay.relay_once().fenced == 1
        return WithMessages("late", [event_message("k")])

    with pytest.raises(IdempotencyLeaseLost):
        world.guard.run_and_publish("k", None, stuck_effect)
    assert world.published() == []
    retry = world.guard.run_and_publish("k", None, mapped("k"))
    assert retry.took_over and retry.published is True
    world.relay.relay_once()
    assert world.published() == ["k"] and world.entries() == []


# -- bus outages and poison -------------------------------------------------------------------------------


def test_bus_outage_leaves_the_batch_to_the_relay(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(topic: str, messages: Any) -> None:
        raise BusUnavailable("bus down")

    monkeypatch.setattr(world.bus, "publish", down)
    for key in ("a", "b"):
        outcome = world.guard.run_and_publish(key, None, mapped(key))
        assert outcome.published is False and not outcome.replayed_from_store
    report = world.relay.relay_once()
    assert report.failed == 1 and report.published == 0  # stops at the first failure
    monkeypatch.undo()
    report = world.relay.relay_once()
    assert report.published == 2 and sorted(world.published()) == ["a", "b"]
    assert world.entries() == []


def test_poison_batch_is_parked_not_retried_forever(world: World) -> None:
    world.guard.run_and_publish(
        "k", None, lambda: WithMessages(1, [event_message("k", topic="no-such-topic")])
    )
    world.guard.run_and_publish("ok", None, mapped("ok"))
    assert world.published() == ["ok"]
    report = world.relay.relay_once()
    assert report.parked == 1
    [parked] = world.outbox.entries(PARKED_PARTITION)
    assert parked.last_error == "topic-not-found" and parked.attempts == 1
    assert world.relay.relay_once().progressed == 0  # parked entries are not scanned again


def test_parked_batches_can_be_requeued_after_a_fix(world: World) -> None:
    world.guard.run_and_publish("k", None, lambda: WithMessages(1, [event_message("k", topic="later-topic")]))
    assert world.relay.relay_once().parked == 1
    fixed = (*TOPOLOGY, TopicSpec("later-topic", (SubscriptionSpec(SUB),)))
    bus = SqliteBus(world.tmp_path / "bus.sqlite3", fixed, clock=world.clock)  # topology fixed
    try:
        assert world.outbox.requeue_parked() == 1
        assert world.outbox.entries(PARKED_PARTITION) == []
        report = OutboxRelay(world.outbox, bus, clock=world.clock).relay_once()
        assert report.published == 1
        assert [m.message_id for m in bus.peek("later-topic", SUB)] == ["k"]
        assert world.outbox.pending_count() == 0
    finally:
        bus.close()


# -- generic owners ---------------------------------------------------------------------------------------


def test_generic_owner_commits_state_and_messages_in_one_write(world: World) -> None:
    created = world.records.insert("domain", "p", "r", {"state": "new"})
    batch = world.outbox.prepare(OwnerRef("domain", "p", "r"), created.etag, [event_message("e1")])
    committed = world.outbox.commit(batch, {"state": "stored"})
    assert committed.value["state"] == "stored" and batch.batch_id in committed.value[OUTBOX_FIELD]
    assert world.outbox.publish(world.bus, batch)
    stored = world.records.get("domain", "p", "r")
    assert stored is not None and stored.value == {"state": "stored", OUTBOX_FIELD: {}}
    assert world.published() == ["e1"] and world.entries() == []


def test_stale_commit_is_refused_and_its_entry_dropped(world: World) -> None:
    created = world.records.insert("domain", "p", "r", {"state": 0})
    batch = world.outbox.prepare(OwnerRef("domain", "p", "r"), created.etag, [event_message("e1")])
    world.records.update("domain", "p", "r", {"state": "someone else"}, etag=created.etag)
    with pytest.raises(ConcurrencyConflict):
        world.outbox.commit(batch, {"state": 1})
    report = world.relay.relay_once()
    assert report.orphaned == 1 and report.fenced == 0 and world.published() == []


def test_carry_forward_keeps_unsettled_batches() -> None:
    old = {"state": 1, OUTBOX_FIELD: {"b1": {"messages": []}}}
    assert carry_forward(old, {"state": 2}) == {"state": 2, OUTBOX_FIELD: {"b1": {"messages": []}}}
    assert carry_forward({"state": 1}, {"state": 2}) == {"state": 2}


# -- relay loops ------------------------------------------------------------------------------------------


def test_run_until_idle_drains_more_than_one_pass(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    crash_on_publish(monkeypatch, world.bus)
    for i in range(7):
        with pytest.raises(SimulatedCrash):
            world.guard.run_and_publish(f"k{i}", None, mapped(f"k{i}"))
    monkeypatch.undo()
    total = world.relay.run_until_idle(max_seconds=10, limit=3)
    assert total.published == 7 and sorted(world.published()) == [f"k{i}" for i in range(7)]


def test_run_forever_relays_until_stopped(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    crash_on_publish(monkeypatch, world.bus)
    with pytest.raises(SimulatedCrash):
        world.guard.run_and_publish("k", None, mapped("k"))
    monkeypatch.undo()
    stop = threading.Event()
    totals: list[Any] = []
    thread = threading.Thread(target=lambda: totals.append(world.relay.run_forever(stop, interval=0.01)))
    thread.start()
    for _ in range(500):
        if world.published():
            break
        stop.wait(0.01)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert world.published() == ["k"] and totals[0].published == 1


def test_concurrent_relays_publish_each_message_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    crash_on_publish(monkeypatch, world.bus)
    for i in range(20):
        with pytest.raises(SimulatedCrash):
            world.guard.run_and_publish(f"k{i}", None, mapped(f"k{i}"))
    monkeypatch.undo()
    relays = [
        OutboxRelay(Outbox(world.records, clock=world.clock), world.bus, clock=world.clock) for _ in range(3)
    ]
    threads = [threading.Thread(target=r.run_until_idle, kwargs={"max_seconds": 10}) for r in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(world.published()) == sorted(f"k{i}" for i in range(20))
    assert world.entries() == []


# -- fault-style ------------------------------------------------------------------------------------------


def test_random_crashes_lose_nothing_and_publish_nothing_twice(
    world: World, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """60 events; each first attempt crashes at a random step; redelivery + relay finish the job."""
    rng = random.Random(6)
    keys = [f"admission-{i:03d}" for i in range(60)]
    points = ["none", "before-commit", "before-publish", "before-settle"]
    chosen = {k: rng.choice(points) for k in keys}

    def crash(*args: Any, **kwargs: Any) -> None:
        raise SimulatedCrash

    for key in keys:
        point = chosen[key]
        with monkeypatch.context() as patch:
            if point == "before-commit":
                patch.setattr(world.guard.store, "complete", crash)
            elif point == "before-publish":
                patch.setattr(world.bus, "publish", crash)
            elif point == "before-settle":
                patch.setattr(world.outbox, "settle", crash)
            with contextlib.suppress(SimulatedCrash):
                world.guard.run_and_publish(key, {"k": key}, mapped(key))
        if point != "none":
            world.restart()  # the process died

    world.relay.relay_once(limit=1000)  # a relay pass while the stuck leases are still live
    clock.advance(LEASE.total_seconds())
    outcomes = [world.guard.run_and_publish(key, {"k": key}, mapped(key)) for key in keys]  # redeliveries
    clock.advance(GRACE.total_seconds())
    world.relay.run_until_idle(max_seconds=10)

    published = world.published()
    print(
        "\noutbox fault: crash points "
        + ", ".join(f"{p}={sum(1 for k in keys if chosen[k] == p)}" for p in points)
        + f"; published={len(published)} distinct={len(set(published))} "
        + f"lost={len(set(keys) - set(published))}"
    )
    assert sorted(published) == sorted(keys)  # every event once: none lost, none twice
    assert world.entries() == []
    assert all(o.published for o in outcomes)
    assert all(r.value[OUTBOX_FIELD] == {} for r in world.records.query(TABLE_IDEMPOTENCY))
