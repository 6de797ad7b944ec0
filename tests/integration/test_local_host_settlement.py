"""The local host hands a trigger that declares ``message_actions`` an actions object over the embedded bus,
and does not settle again what the trigger settled itself (functions/_servicebus.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from functions._servicebus import body_of, settle
from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.backbone.errors import DownstreamUnavailable, WriteBackUnmappable
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SERVICE_BUS_CONNECTION, SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tie.localhost.host import HostConfig, LocalHost

pytestmark = pytest.mark.timeout(60)

app = func.FunctionApp()


def _work(msg: Any) -> None:
    body = body_of(msg)
    if body == b"unmappable":
        raise WriteBackUnmappable("sample", "cannot be written", detail="charset ASCII at PID-5")
    if body == b"unavailable":
        raise DownstreamUnavailable("sample", "connection refused")


@app.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_INGEST,
    subscription_name=SUB_INGEST_PROCESSOR,
    connection=SERVICE_BUS_CONNECTION,
    auto_complete_messages=False,
)
def consume(msg: func.ServiceBusMessage, message_actions: Any) -> None:
    settle(msg, message_actions, lambda: _work(msg), function="consume")


#: body -> (completed, abandoned, dead-lettered, lock lost), delivery counts of what is left active, and
#: the dead letters (reason, description, delivery count).
CASES: list[tuple[bytes, tuple[int, int, int, int], list[int], list[tuple[str, str, int]]]] = [
    (b"ok", (1, 0, 0, 0), [], []),
    (b"unavailable", (0, 1, 0, 0), [1], []),  # abandoned: active again, delivered once so far
    (b"unmappable", (0, 0, 1, 0), [], [("writeback-unmappable", "charset ASCII at PID-5", 1)]),
]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LocalHost]:
    with SqliteBus(tmp_path / "bus.db") as bus:
        yield LocalHost(
            app=app,
            bus=bus,
            records=SqliteRecordStore(tmp_path / "records.db"),
            config=HostConfig(port=0, enable_timers=False),
        )


@pytest.mark.parametrize(("body", "stats", "active", "dead"), CASES, ids=[c[0].decode() for c in CASES])
def test_the_trigger_settles_once(
    host: LocalHost,
    body: bytes,
    stats: tuple[int, int, int, int],
    active: list[int],
    dead: list[tuple[str, str, int]],
) -> None:
    host.bus.publish(TOPIC_INGEST, [OutboundMessage(body=body, message_id="m-1")])
    (spec,) = host.bus_functions
    batch = host.bus.receive(TOPIC_INGEST, SUB_INGEST_PROCESSOR, max_wait=1.0)
    assert len(batch) == 1
    host._deliver(spec, batch)
    s = host.stats
    assert (s.completed, s.abandoned, s.dead_lettered, s.lock_lost) == stats
    assert [m.delivery_count for m in host.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)] == active
    assert [
        (m.dead_letter_reason, m.dead_letter_description, m.delivery_count)
        for m in host.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, dead_letter=True)
    ] == dead
