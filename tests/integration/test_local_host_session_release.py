"""On a session subscription the local host completes the last message and gives up the session in one bus
transaction when the bus can (the embedded bus), and releases it separately when not; either way another
receiver may take the session's next message at once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from functions._servicebus import body_of, settle
from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.backbone.errors import DownstreamUnavailable
from shared.messaging.errors import MessageLockLost
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, CompleteAndRelease, OutboundMessage
from shared.messaging.topology import (
    SERVICE_BUS_CONNECTION,
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_CLINICAL,
)
from tie.localhost.host import HostConfig, LocalHost

pytestmark = pytest.mark.timeout(60)

app = func.FunctionApp()


@app.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_CLINICAL,
    subscription_name=SUB_WRITEBACK_FHIR,
    connection=SERVICE_BUS_CONNECTION,
    is_sessions_enabled=True,
)
def write_back(msg: func.ServiceBusMessage) -> None:
    _work(msg)


@app.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_CLINICAL,
    subscription_name=SUB_WRITEBACK_HL7V2,
    connection=SERVICE_BUS_CONNECTION,
    is_sessions_enabled=True,
    auto_complete_messages=False,
)
def write_back_settling(msg: func.ServiceBusMessage, message_actions: Any) -> None:
    """Settles its own message, as the production write-back triggers do (functions/events.py)."""
    settle(msg, message_actions, lambda: _work(msg), function="write_back_settling")


def _work(msg: Any) -> None:
    if body_of(msg) == b"fail":
        raise DownstreamUnavailable("sample", "downstream said no")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """COMMITs on the bus file from connections opened after this fixture."""
    seen: list[str] = []
    real = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(database, *args, **kwargs)
        if Path(database).name == "bus.db":
            conn.set_trace_callback(
                lambda sql: seen.append(sql) if sql.upper().startswith("COMMIT") else None
            )
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return seen


@pytest.fixture
def buses(tmp_path: Path) -> Iterator[tuple[SqliteBus, SqliteBus, Clock]]:
    clock = Clock()
    with SqliteBus(tmp_path / "bus.db", clock=clock) as a, SqliteBus(tmp_path / "bus.db", clock=clock) as b:
        yield a, b, clock


def host_on(bus: Any, tmp_path: Path) -> LocalHost:
    return LocalHost(
        app=app,
        bus=bus,
        records=SqliteRecordStore(tmp_path / "records.db"),
        config=HostConfig(port=0, enable_timers=False),
    )


class WithoutCapability:
    """The same bus seen through the port only (as the Service Bus adapter would be)."""

    def __init__(self, inner: SqliteBus) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "complete_and_release":
            raise AttributeError(name)
        return getattr(self._inner, name)


def publish(bus: SqliteBus, *bodies: bytes) -> None:
    bus.publish(
        TOPIC_CLINICAL,
        [OutboundMessage(body=b, message_id=f"m-{i}", session_id="patient-1") for i, b in enumerate(bodies)],
    )


# (subscription: the host settles / the trigger settles itself, bus has the capability, function body)
# -> bus COMMITs for settling + releasing, (completed, abandoned)
CASES: list[tuple[str, bool, bytes, int, tuple[int, int]]] = [
    (sub, capable, body, commits, settled)
    for sub in (SUB_WRITEBACK_FHIR, SUB_WRITEBACK_HL7V2)
    for capable, body, commits, settled in (
        (True, b"ok", 1, (1, 0)),
        (False, b"ok", 2, (1, 0)),
        (True, b"fail", 2, (0, 1)),  # abandoned, then released on its own
    )
]


@pytest.mark.parametrize(("sub", "capable", "body", "bus_commits", "settled"), CASES)
def test_the_session_is_free_for_another_receiver_after_delivery(
    commits: list[str],
    buses: tuple[SqliteBus, SqliteBus, Clock],
    tmp_path: Path,
    sub: str,
    capable: bool,
    body: bytes,
    bus_commits: int,
    settled: tuple[int, int],
) -> None:
    a, b, _ = buses
    host = host_on(a if capable else WithoutCapability(a), tmp_path)
    assert isinstance(host.bus, CompleteAndRelease) is capable
    publish(a, body, b"next")
    (spec,) = [f for f in host.bus_functions if f.subscription == sub]
    batch = a.receive(TOPIC_CLINICAL, sub, session_id=NEXT_AVAILABLE_SESSION)
    assert [m.body for m in batch] == [body]
    before = len(commits)
    host._deliver_and_release(spec, batch)
    assert (host.stats.completed, host.stats.abandoned) == settled
    assert len(commits) - before == bus_commits
    # Another receiver takes the session at once (no waiting for a session lock to expire).
    taken = b.receive(TOPIC_CLINICAL, sub, session_id="patient-1", max_messages=5)
    assert [m.body for m in taken] == ([b"next"] if body == b"ok" else [body, b"next"])


def test_a_lost_lock_settles_nothing_and_the_session_stays_with_its_new_holder(
    buses: tuple[SqliteBus, SqliteBus, Clock],
) -> None:
    a, b, clock = buses
    publish(a, b"ok")
    (first,) = a.receive(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, session_id="patient-1")
    clock.now += timedelta(minutes=10)  # both locks expire; b takes the session
    (again,) = b.receive(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, session_id="patient-1")
    with pytest.raises(MessageLockLost):
        a.complete_and_release(first)
    assert a.receive(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, session_id="patient-1") == []  # still b's
    b.complete_and_release(again)
    assert a.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR) == []
