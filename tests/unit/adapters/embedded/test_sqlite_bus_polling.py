"""Embedded bus polling (issue 18): idle receives are reads, the sweep still runs, publishes wake waiters."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, OutboundMessage, ReceivedMessage
from shared.messaging.topology import SubscriptionSpec, TopicSpec
from tests.helpers import wait_for

LOCK = timedelta(seconds=30)
TOPO = (
    TopicSpec("work", (SubscriptionSpec("w", lock_duration=LOCK),), duplicate_detection_window=None),
    TopicSpec(
        "sessions",
        (SubscriptionSpec("s", requires_session=True, lock_duration=LOCK),),
        duplicate_detection_window=None,
    ),
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_idle_receive_does_not_need_the_write_lock(tmp_path: Path) -> None:
    """Another connection holds the write lock: an empty poll still answers (a read), it does not wait
    for the lock and fail as the busy bus it would be for a write."""
    path = tmp_path / "bus.sqlite3"
    with SqliteBus(path, TOPO, busy_timeout=0.05) as bus:
        bus.publish("work", [OutboundMessage(body=b"x")])
        (taken,) = bus.receive("work", "w")  # locked: nothing left to claim
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            assert bus.receive("work", "w") == []
            assert bus.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION) == []
            writer.execute("ROLLBACK")
        finally:
            writer.close()
        bus.complete(taken)


def test_sweep_runs_when_the_only_session_is_held_by_another_receiver(tmp_path: Path) -> None:
    """Nothing claimable for b (a holds the session), yet b's poll still dead-letters the expired message."""
    clock = FakeClock()
    path = tmp_path / "bus.sqlite3"
    with SqliteBus(path, TOPO, clock=clock) as a, SqliteBus(path, TOPO, clock=clock) as b:
        a.publish(
            "sessions",
            [
                OutboundMessage(body=b"first", session_id="p1"),
                OutboundMessage(body=b"second", session_id="p1", time_to_live=timedelta(seconds=10)),
            ],
        )
        (first,) = a.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION)
        clock.now += timedelta(seconds=11)  # "second" expired; a's locks (30 s) still hold
        assert b.receive("sessions", "s", session_id=NEXT_AVAILABLE_SESSION) == []
        (dead,) = b.peek("sessions", "s", dead_letter=True)
        assert (dead.body, dead.dead_letter_reason) == (b"second", "TTLExpiredException")
        a.complete(first)


def test_publish_wakes_a_receiver_waiting_on_the_same_instance(tmp_path: Path) -> None:
    """With a poll interval far longer than the join bound, only the in-process wake-up delivers in time."""
    with SqliteBus(tmp_path / "bus.sqlite3", TOPO, poll_interval=120.0) as bus:
        got: list[ReceivedMessage] = []
        waiting = threading.Event()

        def receiver() -> None:
            waiting.set()
            got.extend(bus.receive("work", "w", max_wait=120.0))

        thread = threading.Thread(target=receiver, daemon=True)
        thread.start()
        assert waiting.wait(10)
        bus.publish("work", [OutboundMessage(body=b"wake")])
        thread.join(30)
        assert not thread.is_alive()
        assert [m.body for m in got] == [b"wake"]


def test_waiting_receivers_of_one_instance_share_the_idle_read(tmp_path: Path) -> None:
    """Between the first and the last check of a receive, the has-work read is skipped when the subscription
    was found empty less than a poll interval ago and nothing woke the instance since; the first and the
    last check always read, so a receive sees what another process committed before it started or ends."""
    path = tmp_path / "bus.sqlite3"
    with SqliteBus(path, TOPO, poll_interval=60.0) as bus, SqliteBus(path, TOPO) as other:
        reads: list[str] = []
        skipped: list[bool] = []
        found, seen_empty = bus._work_found, bus._seen_empty

        def counted(sub: Any, session_id: str | None) -> bool:
            reads.append(sub.spec.name)
            return found(sub, session_id)

        def judged(key: tuple[str, str], generation: int) -> bool:
            skipped.append(seen_empty(key, generation))
            return skipped[-1]

        bus._work_found = counted  # type: ignore[method-assign]
        bus._seen_empty = judged  # type: ignore[method-assign]
        wake = bus._wake[("work", "w")]

        # A waiting receiver woken without a publish (spuriously) skips the read; a publish through the
        # instance wakes it again, and then it reads.
        got: list[ReceivedMessage] = []
        waiting = threading.Thread(target=lambda: got.extend(bus.receive("work", "w", max_wait=60.0)))
        waiting.start()
        wait_for(lambda: reads == ["w"] and len(wake._waiters) == 1)  # type: ignore[attr-defined]
        with wake:
            wake.notify_all()
        wait_for(lambda: skipped == [True])
        bus.publish("work", [OutboundMessage(body=b"woken", message_id="m-1")])
        waiting.join(60)
        assert [m.message_id for m in got] == ["m-1"]
        assert reads == ["w", "w"]  # the first check and the one after the publish; not the spurious wake
        bus.complete(got[0])

        # The first check reads: another process's message is seen by a receive that does not wait.
        other.publish("work", [OutboundMessage(body=b"from another process", message_id="m-2")])
        (theirs,) = bus.receive("work", "w")
        assert theirs.message_id == "m-2"
        bus.complete(theirs)

        # The last check before the deadline reads too, even right after an empty read.
        reads.clear()
        assert bus.receive("work", "w", max_wait=0.0) == []
        assert bus.receive("work", "w", max_wait=0.05) == []
        assert reads == ["w", "w", "w"]
