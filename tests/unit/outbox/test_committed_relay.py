"""The relay for batches a store committed with its own writes (:mod:`shared.outbox.committed`): grace for
the writer, publish-then-settle, bus outages, poison batches, bus-sized runs. The committed outbox is the
embedded FHIR store's table; the bus is the embedded bus (duplicate detection by ``message_id``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.errors import TransientError
from shared.fhirstore.ports import CommitEvents, WriteResult
from shared.messaging.errors import BusUnavailable, MessageTooLarge
from shared.messaging.ports import MessageBus, OutboundMessage
from shared.messaging.topology import SubscriptionSpec, TopicSpec
from shared.outbox import CommittedBatch, CommittedBatchRelay, OutboxMessage
from shared.outbox.committed import chunks, send_batch

TOPIC = "clinical-events"
SUB = "audit"
TOPOLOGY = (TopicSpec(TOPIC, (SubscriptionSpec(SUB),)),)
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def ms(self) -> int:
        return int(self.now.timestamp() * 1000)


class Bus:
    """The embedded bus with scripted publish failures (one per call, in order; None = deliver)."""

    def __init__(self, inner: SqliteBus) -> None:
        self.inner = inner
        self.failures: list[Exception | None] = []
        self.calls: list[list[str]] = []

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.calls.append([m.body.decode() for m in messages])
        self.inner.publish(topic, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class World:
    def __init__(self, tmp: Path) -> None:
        self.clock = Clock()
        self.repo = SqliteFhirRepository(tmp / "fhir.sqlite3", clock=self.clock)
        self.sqlite_bus = SqliteBus(tmp / "bus.sqlite3", TOPOLOGY)
        self.bus = Bus(self.sqlite_bus)
        self.relayed: list[str] = []
        self.relay = CommittedBatchRelay(
            self.repo,
            self.bus,
            grace=timedelta(seconds=2),
            clock=self.clock.ms,
            on_published=lambda batch: self.relayed.append(batch.batch_id),
        )

    def commit(self, *labels: str) -> CommittedBatch:
        """A write whose transaction commits messages ``labels``; returns its batch."""
        events: CommitEvents[WriteResult] = CommitEvents(lambda reader, result: [_message(x) for x in labels])
        self.repo.create({"resourceType": "Organization", "name": "Ward"}, events=events)
        (batch,) = events.committed
        return batch

    def delivered(self) -> list[str]:
        out: list[str] = []
        while batch := self.sqlite_bus.receive(TOPIC, SUB, max_messages=50):
            for message in batch:
                self.sqlite_bus.complete(message)
                out.append(message.body.decode())
        return out

    def close(self) -> None:
        self.repo.close()
        self.sqlite_bus.close()


def _message(label: str) -> OutboxMessage:
    return OutboxMessage(TOPIC, OutboundMessage(body=label.encode(), message_id=f"id-{label}"))


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.close()


def test_batches_within_the_grace_are_left_to_their_writer(w: World) -> None:
    w.commit("a")
    w.clock.now += timedelta(seconds=1)
    report = w.relay.relay_once()
    assert (report.published, report.progressed) == (0, 0) and w.delivered() == []
    w.clock.now += timedelta(seconds=1)
    report = w.relay.relay_once()
    assert (report.published, report.messages) == (1, 1)
    assert w.delivered() == ["a"] and w.repo.pending_batches() == []


def test_relay_publishes_in_commit_order_settles_and_reports(w: World) -> None:
    first = w.commit("a1", "a2")
    second = w.commit("b")
    w.clock.now += timedelta(minutes=1)
    report = w.relay.run_until_idle(max_seconds=5)
    assert (report.published, report.messages) == (2, 3)
    assert w.delivered() == ["a1", "a2", "b"]
    assert w.relayed == [first.batch_id, second.batch_id]
    assert w.repo.pending_batches() == [] and w.relay.relay_once().progressed == 0


def test_a_bus_outage_stops_the_pass_and_the_next_pass_publishes(w: World) -> None:
    w.commit("a")
    w.commit("b")
    w.clock.now += timedelta(minutes=1)
    w.bus.failures = [BusUnavailable("down")]
    report = w.relay.relay_once()
    assert (report.failed, report.published) == (1, 0), "stops at the first outage"
    assert len(w.repo.pending_batches()) == 2 and w.delivered() == []
    assert w.relay.run_until_idle(max_seconds=5).published == 2
    assert w.delivered() == ["a", "b"]


def test_a_batch_the_bus_refuses_for_good_is_parked_and_does_not_block(w: World) -> None:
    poison = w.commit("poison")
    w.commit("fine")
    w.clock.now += timedelta(minutes=1)
    w.bus.failures = [MessageTooLarge("too large")]
    report = w.relay.relay_once()
    assert (report.parked, report.published) == (1, 1)
    assert w.delivered() == ["fine"]
    assert [b.batch_id for b in w.repo.parked_batches()] == [poison.batch_id]
    assert w.repo.pending_batches() == []


def test_a_republished_batch_is_dropped_by_duplicate_detection(w: World) -> None:
    """Crash after publishing, before settling: the relay publishes again with the same message ids."""
    batch = w.commit("a")
    send_batch(w.bus, batch.messages)  # the writer published, then died
    w.clock.now += timedelta(minutes=1)
    assert w.relay.relay_once().published == 1
    assert w.delivered() == ["a"]


def test_a_failing_after_publish_step_does_not_undo_the_publish(w: World) -> None:
    def journal_down(batch: CommittedBatch) -> None:
        raise TransientError("journal unavailable")

    relay = CommittedBatchRelay(w.repo, w.bus, clock=w.clock.ms, on_published=journal_down)
    w.commit("a")
    w.clock.now += timedelta(minutes=1)
    assert relay.relay_once().published == 1
    assert w.delivered() == ["a"] and w.repo.pending_batches() == []


def test_chunks_fit_bus_batches_and_keep_order() -> None:
    messages = [
        OutboundMessage(body=b"x" * size, message_id=str(i)) for i, size in enumerate([4, 4, 4, 9, 1])
    ]
    runs = [[m.message_id for m in run] for run in chunks(messages, max_bytes=10, max_messages=2)]
    assert runs == [["0", "1"], ["2"], ["3", "4"]]


def test_send_batch_publishes_runs_per_topic_in_order(w: World) -> None:
    bus: MessageBus = w.bus
    other = OutboxMessage("other-topic", OutboundMessage(body=b"o", message_id="o"))
    w.bus.failures = [None, BusUnavailable("down")]
    with pytest.raises(BusUnavailable):
        send_batch(bus, [_message("a"), other, _message("b")])
    assert w.bus.calls == [["a"]], "stops at the failure: what follows is not published"
