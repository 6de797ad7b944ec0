"""Embedded SQLite message bus (shared/adapters/embedded/sqlite_bus.py): Service Bus semantics that matter."""

from __future__ import annotations

import gc
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.errors import PermanentError, TransientError
from shared.messaging.errors import (
    BusUnavailable,
    InvalidFilter,
    MessageLockLost,
    MessageTooLarge,
    SessionLockLost,
    SubscriptionNotFound,
    TopicNotFound,
)
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, MessageBus, OutboundMessage, PropertyValue
from shared.messaging.topology import TOPOLOGY, SubscriptionSpec, TopicSpec

REPO_ROOT = Path(__file__).resolve().parents[4]

LOCK = timedelta(seconds=30)
TOPO: tuple[TopicSpec, ...] = (
    TopicSpec(
        "events",
        (
            SubscriptionSpec("all"),
            SubscriptionSpec("adt", filter="kind = 'ADT'"),
            SubscriptionSpec("urgent-adt", filter="priority >= 5 AND sys.Label LIKE 'ADT%'"),
        ),
        duplicate_detection_window=timedelta(minutes=10),
        max_message_bytes=1024,
    ),
    TopicSpec(
        "work",
        (
            SubscriptionSpec("w", max_delivery_count=3, lock_duration=LOCK),
            SubscriptionSpec(
                "drop-expired",
                lock_duration=LOCK,
                default_ttl=timedelta(minutes=5),
                dead_letter_on_expiry=False,
            ),
        ),
        duplicate_detection_window=None,
    ),
    TopicSpec(
        "ttl",
        (SubscriptionSpec("t", lock_duration=LOCK, default_ttl=timedelta(minutes=5)),),
    ),
    TopicSpec(
        "sessions",
        (SubscriptionSpec("s", requires_session=True, lock_duration=LOCK, max_delivery_count=2),),
    ),
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bus" / "bus.sqlite3"


@pytest.fixture
def bus(db_path: Path, clock: FakeClock) -> Iterator[SqliteBus]:
    instance = SqliteBus(db_path, TOPO, clock=clock)
    yield instance
    instance.close()


def msg(body: bytes = b"x", **kwargs: object) -> OutboundMessage:
    return OutboundMessage(body=body, **kwargs)  # type: ignore[arg-type]


# Opening, topology --------------------------------------------------------------------------------------


def test_creates_database_and_parent_directories_in_wal_mode(db_path: Path, clock: FakeClock) -> None:
    assert not db_path.parent.exists()
    with SqliteBus(db_path, TOPO, clock=clock) as bus:
        assert isinstance(bus, MessageBus)
        assert db_path.exists()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_default_topology_is_the_platform_topology(tmp_path: Path) -> None:
    with SqliteBus(tmp_path / "b.db") as bus:
        assert [t.name for t in bus.topology()] == [t.name for t in TOPOLOGY]


def test_invalid_subscription_filter_fails_at_open(tmp_path: Path) -> None:
    bad = (TopicSpec("t", (SubscriptionSpec("s", filter="kind ="),)),)
    with pytest.raises(InvalidFilter):
        SqliteBus(tmp_path / "b.db", bad)


def test_reopening_with_changed_topology_keeps_messages(db_path: Path, clock: FakeClock) -> None:
    with SqliteBus(db_path, TOPO, clock=clock) as bus:
        bus.publish("work", [msg(b"keep")])
    changed = (TopicSpec("work", (SubscriptionSpec("w", max_delivery_count=9, lock_duration=LOCK),)),)
    with SqliteBus(db_path, changed, clock=clock) as bus:
        (info,) = bus.topology()
        assert info.subscriptions[0].max_delivery_count == 9
        assert info.subscriptions[0].active_count == 1
        assert [m.body for m in bus.receive("work", "w")] == [b"keep"]


def test_unknown_topic_and_subscription(bus: SqliteBus) -> None:
    with pytest.raises(TopicNotFound):
        bus.publish("nope", [msg()])
    with pytest.raises(TopicNotFound):
        bus.receive("nope", "all")
    with pytest.raises(SubscriptionNotFound):
        bus.receive("events", "nope")
    with pytest.raises(SubscriptionNotFound):
        bus.peek("events", "nope")
    assert issubclass(TopicNotFound, PermanentError)


def test_topology_reports_counts(bus: SqliteBus) -> None:
    bus.publish("events", [msg(application_properties={"kind": "ADT"}), msg(application_properties={})])
    (received,) = bus.receive("events", "adt")
    bus.dead_letter(received, reason="Bad")
    info = {t.name: t for t in bus.topology()}
    subs = {s.name: s for s in info["events"].subscriptions}
    assert (subs["all"].active_count, subs["all"].dead_letter_count) == (2, 0)
    assert (subs["adt"].active_count, subs["adt"].dead_letter_count) == (0, 1)
    assert subs["adt"].filter == "kind = 'ADT'"
    assert info["events"].duplicate_detection_window == timedelta(minutes=10)
    assert {s.name for s in info["sessions"].subscriptions if s.requires_session} == {"s"}


def test_closed_bus_is_unavailable(db_path: Path) -> None:
    bus = SqliteBus(db_path, TOPO)
    bus.close()
    bus.close()  # idempotent
    with pytest.raises(BusUnavailable):
        bus.publish("work", [msg()])
    with pytest.raises(BusUnavailable):
        bus.peek("work", "w")


def test_naive_clock_is_rejected(db_path: Path) -> None:
    bus = SqliteBus(db_path, TOPO, clock=lambda: datetime(2025, 1, 1))
    try:
        with pytest.raises(ValueError, match="timezone-aware"):
            bus.publish("work", [msg()])
    finally:
        bus.close()


# Publishing ----------------------------------------------------------------------------------------------


def test_fan_out_follows_subscription_filters(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish(
        "events",
        [
            msg(b"1", application_properties={"kind": "ADT", "priority": 7}, subject="ADT^A01"),
            msg(b"2", application_properties={"kind": "ORU", "priority": 9}, subject="ORU^R01"),
            msg(b"3", application_properties={"kind": "ADT", "priority": 1}, subject="ADT^A08"),
            msg(b"4", application_properties={"priority": 9}, subject="ADT^A03"),
        ],
    )
    assert [m.body for m in bus.peek("events", "all")] == [b"1", b"2", b"3", b"4"]
    assert [m.body for m in bus.peek("events", "adt")] == [b"1", b"3"]
    assert [m.body for m in bus.peek("events", "urgent-adt")] == [b"1", b"4"]
    # Copies share the topic's sequence number and metadata.
    first_all = bus.peek("events", "all")[0]
    first_adt = bus.peek("events", "adt")[0]
    assert first_all.sequence_number == first_adt.sequence_number
    assert first_all.message_id == first_adt.message_id
    assert first_all.enqueued_time == clock.now
    assert first_all.delivery_count == 0
    assert first_all.lock_token is None


def test_message_fields_and_property_types_round_trip(bus: SqliteBus, clock: FakeClock) -> None:
    props: dict[str, PropertyValue] = {"s": "text", "i": 42, "f": 2.5, "b": True, "zero": 0, "no": False}
    bus.publish(
        "work",
        [
            OutboundMessage(
                body=b"\x00\xffbinary",
                message_id="mid-1",
                correlation_id="corr",
                content_type="application/fhir+json",
                subject="Bundle",
                application_properties=props,
                time_to_live=timedelta(minutes=1),
            )
        ],
    )
    (m,) = bus.receive("work", "w")
    assert m.body == b"\x00\xffbinary"
    assert (m.message_id, m.correlation_id, m.content_type, m.subject) == (
        "mid-1",
        "corr",
        "application/fhir+json",
        "Bundle",
    )
    assert dict(m.application_properties) == props
    assert [type(m.application_properties[k]) for k in props] == [str, int, float, bool, int, bool]
    assert m.expires_at == clock.now + timedelta(minutes=1)
    assert m.topic == "work"
    assert m.subscription == "w"


def test_message_id_defaults_to_unique_uuid_hex(bus: SqliteBus) -> None:
    bus.publish("work", [msg(), msg()])
    ids = [m.message_id for m in bus.peek("work", "w")]
    assert len(set(ids)) == 2
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_sequence_numbers_are_monotonic_per_topic_across_instances(
    bus: SqliteBus, db_path: Path, clock: FakeClock
) -> None:
    bus.publish("work", [msg(), msg()])
    bus.publish("events", [msg()])
    with SqliteBus(db_path, TOPO, clock=clock) as other:
        other.publish("work", [msg()])
    bus.publish("work", [msg()])
    assert [m.sequence_number for m in bus.peek("work", "w")] == [1, 2, 3, 4]
    assert [m.sequence_number for m in bus.peek("events", "all")] == [1]


def test_oversized_message_rejects_the_whole_batch(bus: SqliteBus) -> None:
    with pytest.raises(MessageTooLarge):
        bus.publish("events", [msg(b"ok"), msg(b"x" * 1025)])
    assert bus.peek("events", "all") == []
    bus.publish("events", [msg(b"x" * 1024)])  # exactly at the limit is accepted
    assert len(bus.peek("events", "all")) == 1


def test_invalid_property_rejects_the_whole_batch(bus: SqliteBus) -> None:
    with pytest.raises(TypeError):
        bus.publish("work", [msg(b"ok"), msg(application_properties={"bad": [1, 2]})])
    assert bus.peek("work", "w") == []


def test_duplicate_detection_within_and_after_window(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("events", [msg(b"first", message_id="dup")])
    clock.advance(minutes=9, seconds=59)
    bus.publish("events", [msg(b"second", message_id="dup"), msg(b"other", message_id="other")])
    assert [m.body for m in bus.peek("events", "all")] == [b"first", b"other"]
    # The window counts from the first acceptance, not from the dropped duplicate.
    clock.advance(seconds=1)
    bus.publish("events", [msg(b"third", message_id="dup")])
    assert [m.body for m in bus.peek("events", "all")] == [b"first", b"other", b"third"]
    assert [m.sequence_number for m in bus.peek("events", "all")] == [1, 2, 3]


def test_duplicate_detection_inside_one_batch_and_per_topic(bus: SqliteBus) -> None:
    bus.publish("events", [msg(b"a", message_id="same"), msg(b"b", message_id="same")])
    bus.publish("ttl", [msg(b"c", message_id="same")])
    assert [m.body for m in bus.peek("events", "all")] == [b"a"]
    assert [m.body for m in bus.peek("ttl", "t")] == [b"c"]


def test_duplicate_detection_survives_reopen(db_path: Path, clock: FakeClock) -> None:
    with SqliteBus(db_path, TOPO, clock=clock) as bus:
        bus.publish("events", [msg(b"a", message_id="same")])
    with SqliteBus(db_path, TOPO, clock=clock) as bus:
        bus.publish("events", [msg(b"b", message_id="same")])
        assert [m.body for m in bus.peek("events", "all")] == [b"a"]


def test_topic_without_duplicate_detection_keeps_duplicates(bus: SqliteBus) -> None:
    bus.publish("work", [msg(b"a", message_id="same"), msg(b"b", message_id="same")])
    assert [m.body for m in bus.peek("work", "w")] == [b"a", b"b"]


# Peek-lock -----------------------------------------------------------------------------------------------


def test_receive_locks_in_sequence_order(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(str(i).encode()) for i in range(5)])
    first = bus.receive("work", "w", max_messages=2)
    assert [m.body for m in first] == [b"0", b"1"]
    assert all(m.delivery_count == 1 and m.lock_token for m in first)
    assert all(m.locked_until == clock.now + LOCK for m in first)
    assert first[0].lock_token != first[1].lock_token
    rest = bus.receive("work", "w", max_messages=10)
    assert [m.body for m in rest] == [b"2", b"3", b"4"]
    assert bus.receive("work", "w") == []
    peeked = bus.peek("work", "w")
    assert len(peeked) == 5
    assert all(p.lock_token is None and p.locked_until == clock.now + LOCK for p in peeked)


def test_complete_removes_the_message(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"a"), msg(b"b")])
    (a,) = bus.receive("work", "w")
    bus.complete(a)
    clock.advance(minutes=5)
    assert [m.body for m in bus.receive("work", "w", max_messages=5)] == [b"b"]
    with pytest.raises(MessageLockLost):
        bus.complete(a)


def test_lock_expiry_redelivers_with_higher_delivery_count(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"a")])
    (first,) = bus.receive("work", "w")
    clock.advance(seconds=29)
    assert bus.receive("work", "w") == []
    clock.advance(seconds=1)
    (second,) = bus.receive("work", "w")
    assert second.message_id == first.message_id
    assert second.delivery_count == 2
    assert second.lock_token != first.lock_token
    with pytest.raises(MessageLockLost):
        bus.complete(first)  # superseded lock
    bus.complete(second)
    assert bus.peek("work", "w") == []


def test_settling_after_lock_expiry_raises_lock_lost(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"a")])
    (m,) = bus.receive("work", "w")
    clock.advance(seconds=31)
    for settle in (bus.complete, bus.abandon, bus.renew_lock):
        with pytest.raises(MessageLockLost):
            settle(m)
    with pytest.raises(MessageLockLost):
        bus.dead_letter(m, reason="x")
    assert issubclass(MessageLockLost, TransientError)
    assert len(bus.peek("work", "w")) == 1


def test_settling_a_peeked_message_is_a_usage_error(bus: SqliteBus) -> None:
    bus.publish("work", [msg(b"a")])
    (peeked,) = bus.peek("work", "w")
    with pytest.raises(ValueError, match="peeked"):
        bus.complete(peeked)


def test_renew_lock_extends_the_lock(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"a")])
    (m,) = bus.receive("work", "w")
    clock.advance(seconds=20)
    assert bus.renew_lock(m) == clock.now + LOCK
    clock.advance(seconds=20)  # past the original lock, inside the renewed one
    assert bus.receive("work", "w") == []
    bus.complete(m)
    assert bus.peek("work", "w") == []


def test_abandon_redelivers_then_dead_letters_at_max_delivery_count(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"poison", message_id="p")])
    for expected_count in (1, 2, 3):
        (m,) = bus.receive("work", "w")
        assert m.delivery_count == expected_count
        bus.abandon(m)
    assert bus.receive("work", "w") == []
    (dead,) = bus.peek("work", "w", dead_letter=True)
    assert dead.message_id == "p"
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert dead.dead_letter_description == "Message could not be consumed after 3 delivery attempts."
    assert dead.dead_lettered_at == clock.now
    assert dead.delivery_count == 3
    assert dead.expires_at is None


def test_lock_expiry_at_max_delivery_count_dead_letters(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"slow")])
    for _ in range(3):
        (m,) = bus.receive("work", "w")
        clock.advance(seconds=31)
    assert m.delivery_count == 3
    assert bus.receive("work", "w") == []
    (dead,) = bus.peek("work", "w", dead_letter=True)
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert "after 3 delivery attempts" in (dead.dead_letter_description or "")


def test_explicit_dead_letter_keeps_reason_and_description(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"a", message_id="m1"), msg(b"b")])
    (m,) = bus.receive("work", "w")
    clock.advance(seconds=5)
    bus.dead_letter(m, reason="ValidationFailed", description="PID-3 missing")
    (dead,) = bus.peek("work", "w", dead_letter=True)
    assert (dead.message_id, dead.body) == ("m1", b"a")
    assert dead.dead_letter_reason == "ValidationFailed"
    assert dead.dead_letter_description == "PID-3 missing"
    assert dead.dead_lettered_at == clock.now
    assert [p.body for p in bus.peek("work", "w")] == [b"b"]
    assert [r.body for r in bus.receive("work", "w", max_messages=5)] == [b"b"]


def test_receive_waits_for_a_message_published_meanwhile(bus: SqliteBus) -> None:
    timer = threading.Timer(0.15, lambda: bus.publish("work", [msg(b"late")]))
    timer.start()
    try:
        got = bus.receive("work", "w", max_wait=5.0)
    finally:
        timer.join()
    assert [m.body for m in got] == [b"late"]


def test_receive_with_max_wait_returns_empty_when_nothing_arrives(bus: SqliteBus) -> None:
    started = time.monotonic()
    assert bus.receive("work", "w", max_wait=0.1) == []
    assert time.monotonic() - started >= 0.1


def test_receive_argument_validation(bus: SqliteBus) -> None:
    with pytest.raises(ValueError):
        bus.receive("work", "w", max_messages=0)
    with pytest.raises(ValueError):
        bus.receive("work", "w", max_wait=-1)
    with pytest.raises(ValueError, match="does not use sessions"):
        bus.receive("work", "w", session_id="s1")
    with pytest.raises(ValueError, match="requires sessions"):
        bus.receive("sessions", "s")


# Time to live --------------------------------------------------------------------------------------------


def test_ttl_expiry_moves_to_dead_letter(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish(
        "ttl",
        [
            msg(b"short", time_to_live=timedelta(seconds=10)),
            msg(b"capped", time_to_live=timedelta(hours=1)),  # capped at the 5-minute default
            msg(b"default"),
        ],
    )
    assert [m.expires_at for m in bus.peek("ttl", "t")] == [
        clock.now + timedelta(seconds=10),
        clock.now + timedelta(minutes=5),
        clock.now + timedelta(minutes=5),
    ]
    clock.advance(seconds=10)
    assert [m.body for m in bus.receive("ttl", "t", max_messages=5)] == [b"capped", b"default"]
    (dead,) = bus.peek("ttl", "t", dead_letter=True)
    assert dead.body == b"short"
    assert dead.dead_letter_reason == "TTLExpiredException"
    assert dead.dead_lettered_at == clock.now


def test_locked_message_does_not_expire_until_its_lock_ends(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("ttl", [msg(b"a", time_to_live=timedelta(seconds=10))])
    (m,) = bus.receive("ttl", "t")
    clock.advance(seconds=20)
    assert bus.receive("ttl", "t") == []
    bus.complete(m)  # still locked (30 s), so it can be settled after its TTL
    assert bus.peek("ttl", "t", dead_letter=True) == []


def test_expired_message_is_dropped_without_dead_letter_on_expiry(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"a", time_to_live=timedelta(seconds=1))])
    clock.advance(seconds=2)
    assert bus.receive("work", "drop-expired") == []
    assert bus.peek("work", "drop-expired") == []
    assert bus.peek("work", "drop-expired", dead_letter=True) == []
    # The same expiry on a subscription that dead-letters expired messages:
    assert bus.receive("work", "w") == []
    assert [m.dead_letter_reason for m in bus.peek("work", "w", dead_letter=True)] == ["TTLExpiredException"]


# Replay and purge ----------------------------------------------------------------------------------------


def _dead_letter_all(bus: SqliteBus, topic: str, sub: str) -> None:
    for m in bus.receive(topic, sub, max_messages=50):
        bus.dead_letter(m, reason="Test")


def test_replay_dead_letters_returns_them_as_new_messages(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"a", application_properties={"k": "v"}), msg(b"b")])
    _dead_letter_all(bus, "work", "w")
    old = {m.body: m.sequence_number for m in bus.peek("work", "w", dead_letter=True)}
    clock.advance(minutes=1)
    assert bus.replay_dead_letters("work", "w") == 2
    assert bus.peek("work", "w", dead_letter=True) == []
    replayed = bus.receive("work", "w", max_messages=5)
    assert [m.body for m in replayed] == [b"a", b"b"]
    for m in replayed:
        assert m.delivery_count == 1  # count restarted from zero
        assert m.application_properties["tie_replay_count"] == 1
        assert m.application_properties["tie_replay_subscription"] == "w"
        assert m.sequence_number > max(old.values())
        assert m.enqueued_time == clock.now
        assert m.dead_letter_reason is None
    assert replayed[0].application_properties["k"] == "v"
    # A second replay increments the counter.
    for m in replayed:
        bus.dead_letter(m, reason="Again")
    assert bus.replay_dead_letters("work", "w") == 2
    assert [m.application_properties["tie_replay_count"] for m in bus.peek("work", "w")] == [2, 2]


def test_replay_only_selected_sequence_numbers(bus: SqliteBus) -> None:
    bus.publish("work", [msg(b"a"), msg(b"b"), msg(b"c")])
    _dead_letter_all(bus, "work", "w")
    seq = {m.body: m.sequence_number for m in bus.peek("work", "w", dead_letter=True)}
    assert bus.replay_dead_letters("work", "w", sequence_numbers=[seq[b"b"], 9999]) == 1
    assert [m.body for m in bus.peek("work", "w")] == [b"b"]
    assert [m.body for m in bus.peek("work", "w", dead_letter=True)] == [b"a", b"c"]
    assert bus.replay_dead_letters("work", "w", sequence_numbers=[]) == 0


def test_replay_after_max_delivery_allows_full_delivery_count_again(bus: SqliteBus) -> None:
    bus.publish("work", [msg(b"p")])
    for _ in range(3):
        bus.abandon(bus.receive("work", "w")[0])
    assert bus.replay_dead_letters("work", "w") == 1
    for expected in (1, 2, 3):
        (m,) = bus.receive("work", "w")
        assert m.delivery_count == expected
        bus.abandon(m)
    (dead,) = bus.peek("work", "w", dead_letter=True)
    assert dead.application_properties["tie_replay_count"] == 1


def test_purge_dead_letters_older_than(bus: SqliteBus, clock: FakeClock) -> None:
    bus.publish("work", [msg(b"old")])
    _dead_letter_all(bus, "work", "w")
    clock.advance(days=2)
    bus.publish("work", [msg(b"new")])
    _dead_letter_all(bus, "work", "w")
    clock.advance(hours=1)
    assert bus.purge_dead_letters("work", "w", older_than=timedelta(days=1)) == 1
    assert [m.body for m in bus.peek("work", "w", dead_letter=True)] == [b"new"]
    assert bus.purge_dead_letters("work", "w", older_than=timedelta(0)) == 1
    assert bus.peek("work", "w", dead_letter=True) == []
    with pytest.raises(ValueError):
        bus.purge_dead_letters("work", "w", older_than=timedelta(seconds=-1))


# Sessions ------------------------------------------------------------------------------------------------


def _publish_sessions(bus: SqliteBus) -> None:
    bus.publish(
        "sessions",
        [
            msg(b"s1-1", session_id="s1"),
            msg(b"s2-1", session_id="s2"),
            msg(b"s1-2", session_id="s1"),
            msg(b"s1-3", session_id="s1"),
            msg(b"s2-2", session_id="s2"),
        ],
    )


def test_message_without_session_id_is_dead_lettered_on_session_subscription(bus: SqliteBus) -> None:
    bus.publish("sessions", [msg(b"orphan")])
    assert bus.peek("sessions", "s") == []
    (dead,) = bus.peek("sessions", "s", dead_letter=True)
    assert dead.dead_letter_reason == "SessionIdIsMissing"
    assert bus.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION) == []
    assert bus.replay_dead_letters("sessions", "s") == 0  # cannot be delivered, stays dead-lettered
    assert len(bus.peek("sessions", "s", dead_letter=True)) == 1


def test_session_messages_are_fifo_and_never_overtake_a_locked_one(bus: SqliteBus) -> None:
    _publish_sessions(bus)
    (first,) = bus.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION)
    assert (first.session_id, first.body) == ("s1", b"s1-1")  # oldest head first
    assert bus.receive("sessions", "s", session_id="s1") == []  # s1-2 waits for s1-1
    bus.complete(first)
    batch = bus.receive("sessions", "s", session_id="s1", max_messages=10)
    assert [m.body for m in batch] == [b"s1-2", b"s1-3"]
    assert all(m.session_id == "s1" for m in batch)
    bus.abandon(batch[0])
    bus.complete(batch[1])  # settling out of order is allowed; delivery stays ordered
    (again,) = bus.receive("sessions", "s", session_id="s1", max_messages=10)
    assert (again.body, again.delivery_count) == (b"s1-2", 2)


def test_next_available_session_skips_sessions_with_locked_head(bus: SqliteBus) -> None:
    _publish_sessions(bus)
    (a,) = bus.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION)
    (b,) = bus.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION)
    assert (a.session_id, b.session_id) == ("s1", "s2")
    assert bus.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION) == []


def test_session_lock_is_exclusive_between_receivers(db_path: Path, clock: FakeClock) -> None:
    with SqliteBus(db_path, TOPO, clock=clock) as a, SqliteBus(db_path, TOPO, clock=clock) as b:
        _publish_sessions(a)
        (first,) = a.receive("sessions", "s", session_id="s1")
        a.complete(first)
        # a still holds s1 (its session lock outlives the message), so b is refused s1 ...
        assert b.receive("sessions", "s", session_id="s1") == []
        # ... and NEXT_AVAILABLE gives b the other session.
        other = b.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION, max_messages=5)
        assert [(m.session_id, m.body) for m in other] == [("s2", b"s2-1"), ("s2", b"s2-2")]
        with pytest.raises(SessionLockLost):
            b.release_session("sessions", "s", "s1")
        a.receive("sessions", "s", session_id="s1")  # a keeps receiving its session
        assert b.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION) == []


def test_release_session_hands_it_to_another_receiver(db_path: Path, clock: FakeClock) -> None:
    with SqliteBus(db_path, TOPO, clock=clock) as a, SqliteBus(db_path, TOPO, clock=clock) as b:
        _publish_sessions(a)
        (first,) = a.receive("sessions", "s", session_id="s1")
        a.complete(first)
        assert b.receive("sessions", "s", session_id="s1") == []
        a.release_session("sessions", "s", "s1")
        a.release_session("sessions", "s", "s1")  # releasing twice is harmless
        assert [m.body for m in b.receive("sessions", "s", session_id="s1", max_messages=5)] == [
            b"s1-2",
            b"s1-3",
        ]


def test_session_lock_expiry_hands_the_session_over(db_path: Path, clock: FakeClock) -> None:
    with SqliteBus(db_path, TOPO, clock=clock) as a, SqliteBus(db_path, TOPO, clock=clock) as b:
        _publish_sessions(a)
        (first,) = a.receive("sessions", "s", session_id="s1")  # a crashes without settling
        clock.advance(seconds=29)
        assert b.receive("sessions", "s", session_id="s1") == []
        clock.advance(seconds=1)
        (taken,) = b.receive("sessions", "s", session_id="s1")
        assert (taken.body, taken.delivery_count) == (b"s1-1", 2)
        with pytest.raises(MessageLockLost):
            a.complete(first)
        assert a.receive("sessions", "s", session_id="s1") == []


def test_settlement_renews_the_session_lock(db_path: Path, clock: FakeClock) -> None:
    with SqliteBus(db_path, TOPO, clock=clock) as a, SqliteBus(db_path, TOPO, clock=clock) as b:
        _publish_sessions(a)
        (first,) = a.receive("sessions", "s", session_id="s1")
        clock.advance(seconds=20)
        a.complete(first)  # session lock now runs to t+50 s
        clock.advance(seconds=20)
        assert b.receive("sessions", "s", session_id="s1") == []
        clock.advance(seconds=11)
        assert [m.body for m in b.receive("sessions", "s", session_id="s1")] == [b"s1-2"]


def test_session_message_dead_letters_at_max_delivery_count(bus: SqliteBus) -> None:
    _publish_sessions(bus)
    for _ in range(2):
        (m,) = bus.receive("sessions", "s", session_id="s2")
        bus.abandon(m)
    (dead,) = bus.peek("sessions", "s", dead_letter=True)
    assert (dead.body, dead.dead_letter_reason) == (b"s2-1", "MaxDeliveryCountExceeded")
    assert [m.body for m in bus.receive("sessions", "s", session_id="s2")] == [b"s2-2"]


# Concurrency, multiple instances, crash ----------------------------------------------------------------


def _drain(bus: SqliteBus, sink: list[str], stop_at: int, counter: list[int], lock: threading.Lock) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with lock:
            if counter[0] >= stop_at:
                return
        got = bus.receive("work", "w", max_messages=3, max_wait=0.05)
        for m in got:
            sink.append(m.message_id)
            bus.complete(m)
        with lock:
            counter[0] += len(got)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("instances", [1, 2])
def test_concurrent_receivers_get_each_message_exactly_once(db_path: Path, instances: int) -> None:
    buses = [SqliteBus(db_path, TOPO) for _ in range(instances)]
    try:
        expected = [f"m{i}" for i in range(800)]
        for start in range(0, 800, 100):
            buses[0].publish("work", [msg(message_id=i) for i in expected[start : start + 100]])
        sinks: list[list[str]] = [[] for _ in range(4)]
        counter = [0]
        lock = threading.Lock()
        threads = [
            threading.Thread(target=_drain, args=(buses[i % instances], sinks[i], 800, counter, lock))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        delivered = [mid for sink in sinks for mid in sink]
        duplicates = [mid for mid, n in Counter(delivered).items() if n > 1]
        assert duplicates == []
        assert sorted(delivered) == sorted(expected)
        assert buses[0].peek("work", "w") == []
    finally:
        for b in buses:
            b.close()


def test_second_instance_sees_the_same_state(db_path: Path, clock: FakeClock) -> None:
    with SqliteBus(db_path, TOPO, clock=clock) as host, SqliteBus(db_path, TOPO, clock=clock) as cli:
        host.publish("work", [msg(b"a"), msg(b"b")])
        assert [m.body for m in cli.peek("work", "w")] == [b"a", b"b"]
        (a,) = host.receive("work", "w")
        assert [m.body for m in cli.receive("work", "w", max_messages=5)] == [b"b"]  # a is locked
        host.dead_letter(a, reason="Bad")
        assert [m.body for m in cli.peek("work", "w", dead_letter=True)] == [b"a"]
        assert cli.replay_dead_letters("work", "w") == 1
        (again,) = host.receive("work", "w")
        assert again.body == b"a"
        assert again.application_properties["tie_replay_count"] == 1


def test_crash_without_settlement_redelivers_after_lock_expiry(db_path: Path, clock: FakeClock) -> None:
    crashed = SqliteBus(db_path, TOPO, clock=clock)
    crashed.publish("work", [msg(b"precious", message_id="p1")])
    (m,) = crashed.receive("work", "w")
    assert m.delivery_count == 1
    del crashed, m  # no settlement, no close: the process "dies"
    gc.collect()
    with SqliteBus(db_path, TOPO, clock=clock) as restarted:
        assert restarted.receive("work", "w") == []  # still locked by the dead consumer
        clock.advance(seconds=30)
        (again,) = restarted.receive("work", "w")
        assert (again.message_id, again.body, again.delivery_count) == ("p1", b"precious", 2)
        restarted.complete(again)
        assert restarted.peek("work", "w") == []


_CONSUMER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from datetime import timedelta
from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.messaging.topology import SubscriptionSpec, TopicSpec
topo = (TopicSpec("work", (SubscriptionSpec("w", lock_duration=timedelta(seconds=30)),),
                  duplicate_detection_window=None),)
seen = []
with SqliteBus(sys.argv[2], topo) as bus:
    empty = 0
    while empty < 3:
        got = bus.receive("work", "w", max_messages=5, max_wait=0.2)
        empty = 0 if got else empty + 1
        for m in got:
            seen.append(m.message_id)
            bus.complete(m)
print(json.dumps(seen))
"""


@pytest.mark.timeout(90)
def test_separate_processes_share_the_bus_without_double_delivery(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    topo = (TopicSpec("work", (SubscriptionSpec("w", lock_duration=LOCK),), duplicate_detection_window=None),)
    expected = [f"p{i}" for i in range(300)]
    with SqliteBus(path, topo) as bus:
        bus.publish("work", [msg(message_id=i) for i in expected])
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _CONSUMER, str(REPO_ROOT), str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        # This process inspects while the others consume, as `tie bus` does next to the host.
        for _ in range(5):
            bus.topology()
            bus.peek("work", "w")
            time.sleep(0.02)
        outputs = [p.communicate(timeout=45) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
        delivered = [mid for out, _ in outputs for mid in json.loads(out)]
        assert sorted(delivered) == sorted(expected)
        assert len(delivered) == len(set(delivered))
        assert bus.peek("work", "w") == []
