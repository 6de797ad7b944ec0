"""The audit-subscription consumer: each clinical, operational and platform event becomes one audit
record with the event's identity, key, patient token and digest - and nothing of its clinical content."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.bus_events import audit_bus_event
from shared.audit.trail import AuditTrail
from shared.backbone import clinical, contracts
from shared.hl7v2 import parse_message
from shared.mapping.hl7v2_in import map_message
from shared.messaging.topology import (
    SUB_CLINICAL_AUDIT,
    SUB_OPERATIONAL_AUDIT,
    SUB_PLATFORM_AUDIT,
    TOPIC_OPERATIONAL,
    TOPIC_PLATFORM,
)
from tests.unit.backbone.support import adt, nhs_numbers

(NHS,) = nhs_numbers(1)
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _stored(trail: AuditTrail) -> list[dict[str, Any]]:
    out = []
    for entry in trail.log.entries():
        record = json.loads(entry.body)
        del record["id"], record["recorded"]
        out.append(record)
    return out


def test_each_kind_of_event_becomes_one_record(tmp_path: Path) -> None:
    trail = AuditTrail(SqliteAuditLog(tmp_path / "a.sqlite3", key=b"e" * 32), clock=lambda: T0)
    event = map_message(parse_message(adt("C1", nhs=NHS, visit="V1")), correlation_id="corr-c").value
    clinical_msg = clinical.to_message(event)
    operational = contracts.to_outbound(
        TOPIC_OPERATIONAL,
        contracts.operational_event(
            "writeback.completed",
            event_id="wb-1",
            downstream="fhir",
            subscription="writeback-fhir",
            status="201",
            correlation_id="corr-c",
            event_key=event.key.value,
        ),
    )
    platform = contracts.to_outbound(
        TOPIC_PLATFORM,
        contracts.platform_event(
            "circuit.opened", event_id="pl-1", subject="circuit/fhir", severity="warning"
        ),
    )
    for subscription, message in (
        (SUB_CLINICAL_AUDIT, clinical_msg),
        (SUB_OPERATIONAL_AUDIT, operational),
        (SUB_PLATFORM_AUDIT, platform),
    ):
        audit_bus_event(
            trail,
            subscription=subscription,
            body=message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
        )
    audit_bus_event(
        trail, subscription=SUB_PLATFORM_AUDIT, body=b"\xff not json", message_id="m-x", correlation_id=None
    )

    common = {"category": "event", "action": "E", "interaction": "bus-event", "outcome": "0", "status": ""}
    envelope = json.loads(clinical_msg.body)
    assert _stored(trail) == [
        {
            **common,
            "source": SUB_CLINICAL_AUDIT,
            "agent": {"type": "system", "id": envelope["source"], "verified": False},
            "correlation_id": "corr-c",
            "entities": [
                {"type": "Message", "id": envelope["id"]},
                {"type": "ClinicalEvent", "id": event.key.value},
            ],
            "patients": [clinical_msg.session_id],
            "digests": {"input": hashlib.sha256(clinical_msg.body).hexdigest()},
            "detail": {"type": envelope["type"]},
        },
        {
            **common,
            "source": SUB_OPERATIONAL_AUDIT,
            "agent": {"type": "system", "id": "urn:tie:platform", "verified": False},
            "correlation_id": "corr-c",
            "entities": [{"type": "Message", "id": "wb-1"}, {"type": "ClinicalEvent", "id": event.key.value}],
            "patients": [],
            "digests": {"input": hashlib.sha256(operational.body).hexdigest()},
            "detail": {
                "downstream": "fhir",
                "status": "201",
                "type": "uk.nhs.tie.operational.writeback.completed",
            },
        },
        {
            **common,
            "source": SUB_PLATFORM_AUDIT,
            "agent": {"type": "system", "id": "urn:tie:platform", "verified": False},
            "correlation_id": "",
            "entities": [{"type": "Message", "id": "pl-1"}],
            "patients": [],
            "digests": {"input": hashlib.sha256(platform.body).hexdigest()},
            "detail": {"severity": "warning", "type": "uk.nhs.tie.platform.circuit.opened"},
        },
        {
            **common,
            "source": SUB_PLATFORM_AUDIT,
            "agent": {"type": "system", "id": "unknown", "verified": False},
            "correlation_id": "",
            "entities": [{"type": "Message", "id": "m-x"}],
            "patients": [],
            "digests": {"input": hashlib.sha256(b"\xff not json").hexdigest()},
            "detail": {"type": "unreadable"},
        },
    ]
    raw = b"".join(e.body.encode() for e in trail.log.entries())
    assert NHS.encode() not in raw
    trail.close()


def test_the_triggers_drain_the_three_audit_subscriptions_into_the_chain() -> None:
    """On the local host (embedded bus): nothing is left on an audit subscription to expire."""
    import azure.functions as func

    from functions import audit_consumer
    from shared.messaging.ports import OutboundMessage
    from shared.messaging.topology import TOPIC_CLINICAL
    from shared.wiring import get_container
    from tests.helpers import running_host, wait_for
    from tie.localhost.host import HostConfig, LocalHost

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(audit_consumer.bp)
    container = get_container()
    for topic, ident in ((TOPIC_CLINICAL, "c-1"), (TOPIC_OPERATIONAL, "o-1"), (TOPIC_PLATFORM, "p-1")):
        body = json.dumps({"id": ident, "type": f"test.{topic}", "source": "urn:test"}).encode()
        container.bus.publish(
            topic, [OutboundMessage(body=body, message_id=ident, correlation_id="corr-bus")]
        )
    host = LocalHost(
        app, container.bus, container.records, HostConfig(port=0, enable_http=False, enable_timers=False)
    )

    def recorded() -> list[tuple[str, str]] | None:
        found = [
            (json.loads(e.body)["source"], json.loads(e.body)["entities"][0]["id"])
            for e in container.audit.log.search(correlation_id="corr-bus")
        ]
        return found if len(found) == 3 else None

    with running_host(host):
        got = wait_for(recorded, timeout=120)
    assert sorted(got) == [
        (SUB_CLINICAL_AUDIT, "c-1"),
        (SUB_OPERATIONAL_AUDIT, "o-1"),
        (SUB_PLATFORM_AUDIT, "p-1"),
    ]
    for topic, sub in (
        (TOPIC_CLINICAL, SUB_CLINICAL_AUDIT),
        (TOPIC_OPERATIONAL, SUB_OPERATIONAL_AUDIT),
        (TOPIC_PLATFORM, SUB_PLATFORM_AUDIT),
    ):
        assert container.bus.peek(topic, sub, max_messages=10) == []


def test_a_redelivery_is_recorded_once_and_only_if_the_first_delivery_was_not(tmp_path: Path) -> None:
    trail = AuditTrail(SqliteAuditLog(tmp_path / "a.sqlite3", key=b"e" * 32), clock=lambda: T0)

    def deliver(message_id: str, subscription: str, count: int) -> str:
        body = json.dumps({"id": message_id, "type": "t", "source": "urn:test"}).encode()
        return audit_bus_event(
            trail,
            subscription=subscription,
            body=body,
            message_id=message_id,
            correlation_id=None,
            delivery_count=count,
        ).id

    first = deliver("m-1", SUB_PLATFORM_AUDIT, 1)
    cases = [
        # (message id, subscription, delivery count, a new record?)
        ("m-1", SUB_PLATFORM_AUDIT, 2, False),  # appended, then the lock was lost: not again
        ("m-1", SUB_PLATFORM_AUDIT, 5, False),
        ("m-2", SUB_PLATFORM_AUDIT, 2, True),  # the first delivery failed before appending
        ("m-2", SUB_PLATFORM_AUDIT, 3, False),
        ("m-1", SUB_OPERATIONAL_AUDIT, 2, True),  # same id on another subscription: its own event
    ]
    for message_id, subscription, count, new in cases:
        before = len(list(trail.log.entries()))
        got = deliver(message_id, subscription, count)
        assert (len(list(trail.log.entries())) == before + 1) is new, (message_id, subscription, count)
        if message_id == "m-1" and subscription == SUB_PLATFORM_AUDIT:
            assert got == first
    stored = [
        (json.loads(e.body)["source"], json.loads(e.body)["entities"][0]["id"]) for e in trail.log.entries()
    ]
    assert stored == [
        (SUB_PLATFORM_AUDIT, "m-1"),
        (SUB_PLATFORM_AUDIT, "m-2"),
        (SUB_OPERATIONAL_AUDIT, "m-1"),
    ]
    trail.close()
