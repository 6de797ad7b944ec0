"""The audit subscriptions are consumed by the registered function app: every event published on
``clinical-events``, ``operational-events`` and ``platform-events`` lands in the audit log exactly once
(ids and contents) - a duplicate publish and a redelivery included - and nothing expires into dead-letter.

The bus runs on an injected clock, so "after the TTL" is a clock step, not a wait."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func

from functions import audit_consumer
from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.audit.bus_events import audit_bus_event
from shared.backbone import clinical, contracts
from shared.hl7v2 import parse_message
from shared.mapping.hl7v2_in import map_message
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import (
    SUB_CLINICAL_AUDIT,
    SUB_OPERATIONAL_AUDIT,
    SUB_PLATFORM_AUDIT,
    TOPIC_CLINICAL,
    TOPIC_OPERATIONAL,
    TOPIC_PLATFORM,
    topic_spec,
)
from shared.wiring import Container
from tests.helpers import running_host, wait_for
from tests.unit.backbone.support import adt, nhs_numbers
from tie.localhost.discovery import describe, load_app
from tie.localhost.host import HostConfig, LocalHost

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
AUDITED = {
    TOPIC_CLINICAL: SUB_CLINICAL_AUDIT,
    TOPIC_OPERATIONAL: SUB_OPERATIONAL_AUDIT,
    TOPIC_PLATFORM: SUB_PLATFORM_AUDIT,
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_function_app_registers_the_audit_consumer_on_the_three_subscriptions() -> None:
    served = {
        (s.topic, s.subscription): s.name
        for s in describe(load_app("function_app"))
        if s.kind == "serviceBus" and s.subscription in AUDITED.values()
    }
    assert served == {
        (TOPIC_CLINICAL, SUB_CLINICAL_AUDIT): "audit_clinical",
        (TOPIC_OPERATIONAL, SUB_OPERATIONAL_AUDIT): "audit_operational",
        (TOPIC_PLATFORM, SUB_PLATFORM_AUDIT): "audit_platform",
    }


def _events() -> list[tuple[str, OutboundMessage]]:
    nhs = nhs_numbers(2)
    out: list[tuple[str, OutboundMessage]] = []
    for n, number in enumerate(nhs):
        event = map_message(
            parse_message(adt(f"C{n}", nhs=number, visit=f"V{n}")), correlation_id=f"corr-{n}"
        ).value
        out.append((TOPIC_CLINICAL, clinical.to_message(event)))
    writeback = {"downstream": "fhir", "subscription": "writeback-fhir"}
    for document in (
        contracts.operational_event(
            "writeback.completed", event_id="wb-0", status="201", correlation_id="corr-0", **writeback
        ),
        contracts.operational_event(
            "writeback.failed", event_id="wb-1", status="422", correlation_id="corr-1", **writeback
        ),
    ):
        out.append((TOPIC_OPERATIONAL, contracts.to_outbound(TOPIC_OPERATIONAL, document)))
    for document in (
        contracts.platform_event(
            "circuit.opened", event_id="pl-0", subject="circuit/fhir", severity="warning"
        ),
        contracts.platform_event("circuit.closed", event_id="pl-1", subject="circuit/fhir", severity="info"),
    ):
        out.append((TOPIC_PLATFORM, contracts.to_outbound(TOPIC_PLATFORM, document)))
    out.append((TOPIC_PLATFORM, OutboundMessage(body=b"\xff not json", message_id="raw-1")))
    return out


def _expected(topic: str, message: OutboundMessage) -> dict[str, Any]:
    """The record the issue asks for, read off the published message (not computed by the consumer)."""
    try:
        envelope = json.loads(message.body)
    except UnicodeDecodeError:
        envelope = {}
    entities = [{"type": "Message", "id": envelope.get("id", message.message_id)}]
    if "tieeventkey" in envelope:
        entities.append({"type": "ClinicalEvent", "id": envelope["tieeventkey"]})
    detail = {"type": envelope.get("type", "unreadable")}
    if topic != TOPIC_CLINICAL:
        data = envelope.get("data", {})
        detail.update({k: data[k] for k in ("status", "severity", "downstream") if k in data})
    return {
        "category": "event",
        "action": "E",
        "interaction": "bus-event",
        "outcome": "0",
        "status": "",
        "source": AUDITED[topic],
        "agent": {"type": "system", "id": envelope.get("source", "unknown"), "verified": False},
        "correlation_id": envelope.get("tiecorrelationid") or message.correlation_id or "",
        "entities": entities,
        "patients": [envelope["tiepatientkey"]] if "tiepatientkey" in envelope else [],
        "digests": {"input": hashlib.sha256(message.body).hexdigest()},
        "detail": detail,
    }


def _records(container: Container) -> list[dict[str, Any]]:
    out = []
    for entry in container.audit.log.entries():
        record = json.loads(entry.body)
        if record["interaction"] != "bus-event":
            continue
        del record["id"], record["recorded"]
        out.append(record)
    return out


def test_each_published_event_is_recorded_once_and_nothing_dead_letters(
    tmp_path: Path, container: Container
) -> None:
    clock = Clock()
    bus = SqliteBus(tmp_path / "bus.sqlite3", clock=clock)
    events = _events()
    for topic, message in events:
        bus.publish(topic, [message])
    bus.publish(TOPIC_CLINICAL, [events[0][1]])  # a duplicate publish (same message id): dropped by the bus

    # A redelivery: an earlier consumer appended the record of the first clinical event, then lost the
    # message before completing it (it is delivered again with delivery_count 2).
    (taken,) = bus.receive(TOPIC_CLINICAL, SUB_CLINICAL_AUDIT, max_messages=1)
    assert taken.message_id == events[0][1].message_id
    audit_bus_event(
        container.audit,
        subscription=SUB_CLINICAL_AUDIT,
        body=taken.body,
        message_id=taken.message_id,
        correlation_id=taken.correlation_id,
    )
    bus.abandon(taken)

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(audit_consumer.bp)
    host = LocalHost(app, bus, container.records, HostConfig(port=0, enable_http=False, enable_timers=False))

    def drained() -> bool:
        return len(_records(container)) >= len(events) and all(
            bus.peek(topic, sub, max_messages=1) == [] for topic, sub in AUDITED.items()
        )

    with running_host(host):
        wait_for(drained, timeout=120)

    got = _records(container)
    assert got[0] == _expected(*events[0])  # appended before the host ran

    def key(record: dict[str, Any]) -> str:
        return json.dumps(record, sort_keys=True)

    assert sorted(map(key, got)) == sorted(key(_expected(topic, message)) for topic, message in events)
    ids = [r["entities"][0]["id"] for r in got]
    assert len(ids) == len(set(ids)) == len(events)

    # After the subscriptions' TTL nothing they held expires into dead-letter: they were all consumed.
    ttl = max(
        s.default_ttl for t, name in AUDITED.items() for s in topic_spec(t).subscriptions if s.name == name
    )
    clock.now = T0 + ttl + timedelta(days=1)
    for topic, sub in AUDITED.items():
        assert bus.receive(topic, sub, max_messages=10) == []
        assert bus.peek(topic, sub, dead_letter=True) == []

    # ... whereas an event nobody consumes does expire into dead-letter (the check above can fail).
    bus.publish(TOPIC_PLATFORM, [OutboundMessage(body=b"{}", message_id="unconsumed")])
    clock.now += timedelta(days=15)
    assert bus.receive(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT, max_messages=10) == []
    assert [m.message_id for m in bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT, dead_letter=True)] == [
        "unconsumed"
    ]
    bus.close()
