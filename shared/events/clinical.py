"""Clinical events on the ``clinical-events`` topic: a CloudEvents 1.0 envelope around a canonical event.

Structured-mode CloudEvents JSON. Attributes: ``id`` = the clinical-event key (also the Service Bus
``message_id``, so duplicate detection drops a re-published event), ``type`` =
``uk.nhs.tie.clinical.<kind>``, ``source`` = ``urn:tie:source:<application>[:<facility>]``, ``time`` = when
the event was recorded, ``dataschema`` = the canonical schema version; extension attributes
``tieeventkey``, ``tiepatientkey`` (hashed), ``tiecorrelationid``, ``tiesensitivity``. State-carrying: the
``data`` member is the whole canonical event, so consumers need no call-back.

Service Bus properties mirror what subscriptions filter on (``tie_event_kind``, ``tie_sensitivity``...);
``session_id`` is the hashed patient key (per-patient FIFO).
"""

from __future__ import annotations

import json
from typing import Any

from shared.canonical.identity import patient_session_id
from shared.canonical.model import ClinicalEvent
from shared.mapping.timeutil import to_fhir_instant
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import TOPIC_CLINICAL
from shared.observability.correlation import MESSAGE_PROPERTY as CORRELATION_PROPERTY

SPEC_VERSION = "1.0"
SCHEMA = "urn:tie:schema:canonical-clinical-event:1.0"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TOPIC = TOPIC_CLINICAL


def envelope(event: ClinicalEvent) -> dict[str, Any]:
    source = f"urn:tie:source:{event.source.application}"
    if event.source.facility:
        source += f":{event.source.facility}"
    attributes: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event.key.value,
        "source": source,
        "type": f"uk.nhs.tie.clinical.{event.kind.value}",
        "datacontenttype": "application/json",
        "dataschema": SCHEMA,
        "tieeventkey": event.key.value,
        "tiepatientkey": patient_session_id(event.patient),
        "tiesensitivity": event.sensitivity.value,
    }
    when = event.recorded_at or event.occurred_at
    if when is not None:
        attributes["time"] = to_fhir_instant(when)
    if event.provenance.correlation_id:
        attributes["tiecorrelationid"] = event.provenance.correlation_id
    attributes["data"] = json.loads(event.model_dump_json(exclude_defaults=True))
    return attributes


def to_message(event: ClinicalEvent) -> OutboundMessage:
    body = json.dumps(envelope(event), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    properties: dict[str, str | int | float | bool] = {
        "tie_event_kind": event.kind.value,
        "tie_event_key": event.key.value,
        "tie_sensitivity": event.sensitivity.value,
        "tie_schema": SCHEMA,
    }
    if event.provenance.correlation_id:
        properties[CORRELATION_PROPERTY] = event.provenance.correlation_id
    return OutboundMessage(
        body=body,
        message_id=event.key.value,
        session_id=patient_session_id(event.patient),
        correlation_id=event.provenance.correlation_id,
        content_type=CONTENT_TYPE,
        subject=event.kind.value,
        application_properties=properties,
    )


def from_message(body: bytes) -> ClinicalEvent:
    """Parse an envelope back into the canonical event (validated)."""
    doc = json.loads(body)
    if doc.get("specversion") != SPEC_VERSION or doc.get("dataschema") != SCHEMA:
        raise ValueError("not a clinical event envelope of a supported version")
    return ClinicalEvent.model_validate(doc["data"])
