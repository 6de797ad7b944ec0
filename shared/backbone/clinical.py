"""Clinical events on the ``clinical-events`` topic: a CloudEvents 1.0 envelope around a canonical event.

Structured-mode CloudEvents JSON (the contract and its JSON Schema: :mod:`shared.backbone.contracts`,
``shared/backbone/schemas/clinical-event-1.0.json``). Attributes: ``id`` = :func:`version_id` (also the
Service Bus ``message_id``): the event key, its content digest and the message it came in, so the bus's
duplicate detection drops only a re-publication of the same event from the same message, never an update
or a resend whose fate the write-back must journal; ``tieeventdigest`` = the content digest; ``type`` =
``uk.nhs.tie.clinical.<kind>``, ``source`` = ``urn:tie:source:<application>[:<facility>]``, ``time`` = when
the event was recorded, ``dataschema`` = the canonical schema version; extension attributes
``tieschemaversion`` (envelope contract), ``tieeventkey``, ``tiepatientkey`` (hashed), ``tiecorrelationid``,
``tiesourcesystem``, ``tiesensitivity``. State-carrying: the ``data`` member is the whole canonical event,
so consumers need no call-back.

Validated against the schema when built (:func:`to_message`) and when read (:func:`from_message`).

Service Bus properties mirror what subscriptions filter on (``tie_event_kind``, ``tie_sensitivity``...);
``session_id`` is the hashed patient key (per-patient FIFO).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.backbone import contracts
from shared.canonical.identity import carrier_of, content_digest, patient_session_id
from shared.canonical.model import ClinicalEvent
from shared.mapping.timeutil import to_fhir_instant
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import TOPIC_CLINICAL
from shared.observability.correlation import MESSAGE_PROPERTY as CORRELATION_PROPERTY

SPEC_VERSION = contracts.SPEC_VERSION
SCHEMA = contracts.CLINICAL_DATASCHEMA
CONTENT_TYPE = contracts.CONTENT_TYPE
TOPIC = TOPIC_CLINICAL


def version_id(key: str, digest: str, carrier: str) -> str:
    """Bus message id of one version of an event as carried by one message: ``<key>~<digest 16>~<16>``
    (``carrier``: :func:`shared.canonical.identity.carrier_of` the event's provenance)."""
    carried = hashlib.sha256(carrier.encode("utf-8")).hexdigest()[:16]
    return f"{key}~{digest[:16]}~{carried}"


def envelope(event: ClinicalEvent) -> dict[str, Any]:
    system = event.source.application
    if event.source.facility:
        system += f":{event.source.facility}"
    data = json.loads(event.model_dump_json(exclude_defaults=True))
    digest = content_digest(data)
    attributes: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": version_id(event.key.value, digest, carrier_of(event.provenance)),
        "source": f"urn:tie:source:{system}",
        "type": f"uk.nhs.tie.clinical.{event.kind.value}",
        "datacontenttype": contracts.DATA_CONTENT_TYPE,
        "dataschema": SCHEMA,
        "tieschemaversion": contracts.SCHEMA_VERSION,
        "tieeventkey": event.key.value,
        "tieeventdigest": digest,
        "tiepatientkey": patient_session_id(event.patient),
        "tiesourcesystem": system,
        "tiesensitivity": event.sensitivity.value,
    }
    when = event.recorded_at or event.occurred_at
    if when is not None:
        attributes["time"] = to_fhir_instant(when)
    if event.provenance.correlation_id:
        attributes["tiecorrelationid"] = event.provenance.correlation_id
    attributes["data"] = data
    return attributes


def to_message(event: ClinicalEvent) -> OutboundMessage:
    """The bus message for ``event`` (schema-validated: raises
    :class:`~shared.backbone.errors.ContractViolation` for an event the contract does not allow)."""
    document = envelope(event)
    contracts.validate(TOPIC, document)
    properties: dict[str, str | int | float | bool] = {
        "tie_event_kind": event.kind.value,
        "tie_event_key": event.key.value,
        "tie_event_digest": document["tieeventdigest"],
        "tie_sensitivity": event.sensitivity.value,
        "tie_schema": SCHEMA,
        contracts.EVENT_TYPE_PROPERTY: document["type"],
    }
    if event.provenance.correlation_id:
        properties[CORRELATION_PROPERTY] = event.provenance.correlation_id
    return OutboundMessage(
        body=contracts.encode(document),
        message_id=str(document["id"]),
        session_id=document["tiepatientkey"],
        correlation_id=event.provenance.correlation_id,
        content_type=CONTENT_TYPE,
        subject=event.kind.value,
        application_properties=properties,
    )


def decode(body: bytes) -> tuple[dict[str, Any], ClinicalEvent]:
    """The validated envelope and the canonical event it carries (consume side).

    Raises :class:`~shared.backbone.errors.ContractViolation` (envelope) or pydantic's
    ``ValidationError`` (the canonical event itself).
    """
    document = contracts.decode(TOPIC, body)
    return document, ClinicalEvent.model_validate(document["data"])


def from_message(body: bytes) -> ClinicalEvent:
    """Parse an envelope back into the canonical event (envelope and event validated)."""
    return decode(body)[1]
