"""The consumer of the three audit subscriptions (``clinical-audit`` on ``clinical-events``,
``operational-audit`` on ``operational-events``, ``platform-audit`` on ``platform-events``): each event
becomes one audit record in the chain, so what the platform announced is kept tamper-evident too.

A record names the CloudEvent by id and type, the clinical-event key and the pseudonymous patient token
when the event has them, the correlation id, and the SHA-256 of the message body; of the event's data only
``status``, ``severity`` and ``downstream`` are kept (no clinical content, no identifier). A body that is
not a CloudEvent JSON object is still recorded (type ``unreadable``, its digest) rather than refused: an
audit consumer must not dead-letter what it cannot parse.

Exactly once per event: a first delivery appends; a redelivery (``delivery_count`` > 1: the consumer may
have appended and then lost the lock or crashed before completing) first looks the event up by its
``Message/<id>`` entity and subscription and appends only when it is not there (docs/audit.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from shared.audit.model import SUCCESS, Agent, AuditRecord, Entity
from shared.audit.trail import AuditTrail, sha256_hex
from shared.messaging.topology import SUB_CLINICAL_AUDIT, SUB_OPERATIONAL_AUDIT, SUB_PLATFORM_AUDIT

EVENT: Final = "event"
AUDIT_SUBSCRIPTIONS: Final = (SUB_CLINICAL_AUDIT, SUB_OPERATIONAL_AUDIT, SUB_PLATFORM_AUDIT)
_KEPT_DATA = ("status", "severity", "downstream")


def _document(body: bytes) -> Mapping[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _text(value: Any, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _already_recorded(trail: AuditTrail, subscription: str, message: Entity) -> AuditRecord | None:
    for entry in trail.log.search(entity=message.reference, limit=1000):
        record = AuditRecord.from_json(json.loads(entry.body))
        if record.category == EVENT and record.source == subscription:
            return record
    return None


def audit_bus_event(
    trail: AuditTrail,
    *,
    subscription: str,
    body: bytes,
    message_id: str,
    correlation_id: str | None,
    delivery_count: int = 1,
) -> AuditRecord:
    """Append the audit record of one event from an audit subscription (once: see the module doc)."""
    document = _document(body) or {}
    event_type = _text(document.get("type")) or "unreadable"
    entities = [Entity("Message", _text(document.get("id")) or message_id or "unknown")]
    if delivery_count > 1 and (found := _already_recorded(trail, subscription, entities[0])) is not None:
        return found
    key = _text(document.get("tieeventkey"))
    if key:
        entities.append(Entity("ClinicalEvent", key))
    patient = _text(document.get("tiepatientkey"))
    data = document.get("data")
    detail: dict[str, str | int | bool] = {"type": event_type}
    if isinstance(data, dict) and subscription != SUB_CLINICAL_AUDIT:
        detail.update({k: v for k in _KEPT_DATA if isinstance(v := data.get(k), str) and len(v) <= 100})
    return trail.record(
        category=EVENT,
        action="E",
        interaction="bus-event",
        outcome=SUCCESS,
        source=subscription,
        agent=Agent("system", _text(document.get("source")) or "unknown", verified=False),
        correlation_id=_text(document.get("tiecorrelationid")) or correlation_id or "",
        entities=entities,
        patients=[patient] if patient else [],
        digests={"input": sha256_hex(body)},
        detail=detail,
    )
