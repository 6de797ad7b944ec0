"""The local functions host running a registered FunctionApp: HTTP, Service Bus triggers, timers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tests.helpers import http, running_host, wait_for
from tie import cli
from tie.localhost.discovery import load_app
from tie.localhost.host import TIMER_STATUS_TABLE, HostConfig, LocalHost

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sample() -> Any:
    from tests.fixtures import sample_app

    return sample_app


@pytest.fixture
def host(sample: Any) -> Iterator[LocalHost]:
    container = sample.install_container()
    config = HostConfig(port=0, receive_wait_seconds=0.1, enable_timers=False, max_concurrent_calls=2)
    h = LocalHost(app=sample.app, bus=container.bus, records=container.records, config=config)
    with running_host(h):
        yield h


def test_functions_are_discovered_from_the_registry(sample: Any) -> None:
    container = sample.install_container()
    h = LocalHost(app=sample.app, bus=container.bus, records=container.records, config=HostConfig(port=0))
    kinds = {f.name: f.kind for f in h.functions}
    assert kinds["get_item_by_number"] == "http"
    assert kinds["consume"] == "serviceBus"
    assert kinds["tick"] == "timer"
    assert "consume: serviceBusTrigger (tie-ingest/ingest-processor)" in h.banner()


def test_routes_methods_and_route_params(host: LocalHost) -> None:
    base = host.base_url
    assert http("GET", f"{base}/items/42").json() == {"by": "int", "id": 42}
    assert http("GET", f"{base}/items/widget").json() == {"by": "name", "name": "widget"}
    assert http("GET", f"{base}/items/widget/3").json() == {"by": "name", "name": "widget", "version": "3"}
    created = http("POST", f"{base}/items", body=b"\x00\x01payload")
    assert created.status == 201 and created.body == b"\x00\x01payload"
    files = http("GET", f"{base}/files/a/b/c.txt?x=1").json()
    assert files == {"path": "a/b/c.txt", "q": {"x": "1"}}
    hello = http("GET", f"{base}/async-hello")
    assert hello.status == 200 and hello.body == b"hello"


def test_unknown_route_is_404_json_with_correlation(host: LocalHost) -> None:
    res = http("GET", f"{host.base_url}/nope", headers={"X-Correlation-ID": "corr-404"})
    assert res.status == 404
    assert res.json()["error"]["correlationId"] == "corr-404"
    assert res.headers["X-Correlation-ID"] == "corr-404"
    outside = http("GET", f"http://127.0.0.1:{host.port}/elsewhere")
    assert outside.status == 404


def test_wrong_method_is_405_with_allow(host: LocalHost) -> None:
    res = http("DELETE", f"{host.base_url}/items")
    assert res.status == 405
    assert res.headers["Allow"] == "POST, PUT"
    assert res.json()["error"]["code"] == "method_not_allowed"


def test_exception_is_500_without_stack_or_payload(host: LocalHost) -> None:
    res = http("GET", f"{host.base_url}/boom")
    assert res.status == 500
    body = res.body.decode()
    assert "9434765919" not in body and "SMITH" not in body and "Traceback" not in body
    assert res.json()["error"]["correlationId"] == res.headers["X-Correlation-ID"]


def _publish(host: LocalHost, body: bytes, message_id: str) -> None:
    host.bus.publish(TOPIC_INGEST, [OutboundMessage(body=body, message_id=message_id)])


def test_service_bus_trigger_consumes_and_completes(host: LocalHost) -> None:
    _publish(host, b"hello", "m-1")
    rec = wait_for(lambda: host.records.get("consumed", "test", "m-1"))
    assert rec.value == {"delivery": 1, "effects": 1}
    wait_for(lambda: not host.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR))
    assert host.stats.completed >= 1


def test_poison_message_dead_letters_after_max_delivery_count_and_replays(
    host: LocalHost, capsys: pytest.CaptureFixture[str]
) -> None:
    _publish(host, b"poison", "m-poison")
    dead = wait_for(lambda: host.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, dead_letter=True))
    assert dead[0].message_id == "m-poison"
    assert dead[0].dead_letter_reason == "MaxDeliveryCountExceeded"
    assert host.stats.abandoned >= 3  # max delivery count of the test subscription
    assert host.records.get("consumed", "test", "m-poison") is None

    # The CLI lists it (no body unless asked) ...
    assert cli.main(["dlq", "list", TOPIC_INGEST, SUB_INGEST_PROCESSOR]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["messageId"] == "m-poison"
    assert listed[0]["reason"] == "MaxDeliveryCountExceeded"
    assert "body" not in listed[0]

    # ... a replay without a fix dead-letters again (nothing is lost), tagged as a replay ...
    assert cli.main(["dlq", "replay", TOPIC_INGEST, SUB_INGEST_PROCESSOR]) == 0
    assert "replayed 1" in capsys.readouterr().out
    again = wait_for(
        lambda: [
            m
            for m in host.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, dead_letter=True)
            if m.application_properties.get("tie_replay_count") == 1
        ]
    )
    assert again[0].message_id == "m-poison"


def test_permanent_failure_dead_letters_at_the_first_delivery_with_its_reason(host: LocalHost) -> None:
    _publish(host, b"unmappable", "m-unmappable")
    dead = wait_for(lambda: host.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, dead_letter=True))
    assert [
        (m.message_id, m.dead_letter_reason, m.dead_letter_description, m.delivery_count) for m in dead
    ] == [("m-unmappable", "writeback-unmappable", "charset ASCII at PID-5", 1)]
    assert (host.stats.dead_lettered, host.stats.abandoned) == (1, 0)


def test_replayed_message_is_processed_once_after_a_fix(host: LocalHost, sample: Any) -> None:
    _publish(host, b"poison-then-fixed", "m-fix")
    wait_for(lambda: host.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, dead_letter=True))
    # "Deploy the fix": this message's body no longer starts with b"poison" once rewritten by replay.
    # The sample handler treats bodies starting with b"poison" as poison, so publish a fixed copy is not
    # allowed (that would not be a replay). Instead patch the handler's behaviour for this body.
    original = sample.consume.__wrapped__ if hasattr(sample.consume, "__wrapped__") else None
    assert original is None  # the sample handler is a plain function
    spec = next(f for f in host.bus_functions if f.name == "consume")

    def fixed(msg: Any) -> None:
        host.records.upsert(
            "consumed", "test", msg.message_id, {"delivery": msg.delivery_count, "effects": 1}
        )

    object.__setattr__(spec, "user_function", fixed)
    assert host.bus.replay_dead_letters(TOPIC_INGEST, SUB_INGEST_PROCESSOR) == 1
    rec = wait_for(lambda: host.records.get("consumed", "test", "m-fix"))
    assert rec.value["effects"] == 1
    assert not host.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, dead_letter=True)


def test_timer_fires_on_schedule_and_reports_past_due(sample: Any) -> None:
    container = sample.install_container()
    # The host was "down" when the last occurrence was due: the status says Next was a minute ago.
    past = datetime.now(UTC) - timedelta(minutes=1)
    container.records.upsert(
        TIMER_STATUS_TABLE,
        "timers",
        "tick",
        {
            "Last": (past - timedelta(seconds=1)).isoformat(),
            "Next": past.isoformat(),
            "LastUpdated": past.isoformat(),
        },
    )
    config = HostConfig(port=0, enable_service_bus=False, enable_http=False)
    h = LocalHost(app=sample.app, bus=container.bus, records=container.records, config=config)
    with running_host(h):
        ticks = wait_for(
            lambda: len(container.records.query("ticks")) >= 3 and container.records.query("ticks")
        )
    values = [t.value for t in ticks]
    assert values[0]["past_due"] is True
    assert values[0]["Last"] == past.isoformat()
    assert all(v["past_due"] is False for v in values[1:3])
    status = container.records.get(TIMER_STATUS_TABLE, "timers", "tick")
    assert status is not None and datetime.fromisoformat(status.value["Next"]) > past


def test_real_function_app_is_loadable_by_the_host(container: Any) -> None:
    app = load_app("function_app")
    h = LocalHost(app=app, bus=container.bus, records=container.records, config=HostConfig(port=0))
    names = {f.name: f for f in h.functions}
    assert names["health"].kind == "http" and names["health"].methods == frozenset({"GET"})
    assert names["ingest_processor"].topic == TOPIC_INGEST
