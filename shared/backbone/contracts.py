"""Event contracts of the three backbone topics: a versioned envelope, JSON Schemas, validation.

Every event is a CloudEvents 1.0 structured-mode JSON document (``specversion``, ``id``, ``source``,
``type``, ``time``, ``datacontenttype``, ``dataschema``, ``subject``) with TIE extension attributes:

=====================  ==================================================================================
``tieschemaversion``   version of this envelope contract (``1.0``); a consumer accepts ``1.x``
``tieeventkey``        the clinical-event identity (:mod:`shared.canonical.identity`); on
                       ``clinical-events`` ``id`` (= Service Bus ``message_id``) is key~digest~message
``tieeventdigest``     the clinical-event content digest (``docs/event-identity.md``)
``tiepatientkey``      hashed patient key - the Service Bus ``session_id`` (per-patient FIFO)
``tiecorrelationid``   the correlation ID of the message that caused the event
``tiesourcesystem``    the sending application (and facility) as the source named it
``tiesensitivity``     ``normal`` / ``restricted`` / ``very-restricted`` (PDS confidentiality)
=====================  ==================================================================================

The schemas are checked into the repository (``shared/backbone/schemas/*.json``, JSON Schema 2020-12)
and are validated **on publish and on consume** (:func:`validate`, :func:`decode`): a producer cannot put a
malformed event on a topic, and a consumer never acts on one (it fails permanently -> dead-letter).

Notification vs state-carrying, per topic
-----------------------------------------
* ``clinical-events`` - **state-carrying**: ``data`` is the whole canonical event, so write-back
  subscribers need no call-back to the source system (which may be an HL7 sender that cannot answer
  queries) and a replay months later still has everything. Sensitive: the bus and its dead-letter
  sub-queues hold patient data (encrypted at rest in Azure).
* ``operational-events`` - **notification**: write-back outcomes (completed / failed / parked) with
  identifiers, statuses and downstream responses only (flat scalars, enforced by the schema). Detail
  lives in the journal, read by correlation ID.
* ``platform-events`` - **notification** for alerting: dead-letters recorded, dead-letter backlog,
  circuit opened / closed, write-back conflicts, messages stuck in flight; ``data.severity`` drives alert
  rules.

Errors name the JSON path and the failing schema keyword, never the offending value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from shared.backbone._fastschema import Check, compile_schema
from shared.backbone.errors import ContractViolation
from shared.messaging.ports import OutboundMessage, PropertyValue
from shared.messaging.topology import TOPIC_CLINICAL, TOPIC_OPERATIONAL, TOPIC_PLATFORM
from shared.observability.correlation import MESSAGE_PROPERTY as CORRELATION_PROPERTY

SPEC_VERSION: Final = "1.0"
#: Version of the TIE envelope contract (``tieschemaversion``). Minor versions only add optional members.
SCHEMA_VERSION: Final = "1.0"
DATA_CONTENT_TYPE: Final = "application/json"
#: Service Bus ``content_type`` of every backbone event.
CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"

CLINICAL_DATASCHEMA: Final = "urn:tie:schema:canonical-clinical-event:1.0"
OPERATIONAL_DATASCHEMA: Final = "urn:tie:schema:operational-event:1.0"
PLATFORM_DATASCHEMA: Final = "urn:tie:schema:platform-event:1.0"

#: Application properties (what subscription filters see) set on every backbone event.
EVENT_TYPE_PROPERTY: Final = "tie_event_type"
SCHEMA_PROPERTY: Final = "tie_schema"
SEVERITY_PROPERTY: Final = "tie_severity"

Severity = Literal["info", "warning", "error", "critical"]
Scalar = str | int | float | bool | None
PlatformEventType = Literal[
    "deadletter.recorded",
    "deadletter.backlog",
    "circuit.opened",
    "circuit.closed",
    "writeback.conflict",
    "message.stuck",
    "certificate.expiring",
    "certificate.expired",
    "identity.review-required",
    "mesh.quarantined",
    "reconcile.variance",
    "reconcile.completed",
]


@dataclass(frozen=True, slots=True)
class TopicContract:
    topic: str
    schema_id: str
    schema_file: str
    dataschema: str
    type_prefix: str
    #: ``True``: ``data`` carries the full state; ``False``: identifiers only (notification).
    state_carrying: bool
    #: Whether events carry a session id (the patient key) for per-patient ordering.
    sessions: bool


CONTRACTS: Final[Mapping[str, TopicContract]] = {
    TOPIC_CLINICAL: TopicContract(
        TOPIC_CLINICAL,
        "urn:tie:schema:clinical-event-envelope:1.0",
        "clinical-event-1.0.json",
        CLINICAL_DATASCHEMA,
        "uk.nhs.tie.clinical.",
        state_carrying=True,
        sessions=True,
    ),
    TOPIC_OPERATIONAL: TopicContract(
        TOPIC_OPERATIONAL,
        "urn:tie:schema:operational-event-envelope:1.0",
        "operational-event-1.0.json",
        OPERATIONAL_DATASCHEMA,
        "uk.nhs.tie.operational.",
        state_carrying=False,
        sessions=False,
    ),
    TOPIC_PLATFORM: TopicContract(
        TOPIC_PLATFORM,
        "urn:tie:schema:platform-event-envelope:1.0",
        "platform-event-1.0.json",
        PLATFORM_DATASCHEMA,
        "uk.nhs.tie.platform.",
        state_carrying=False,
        sessions=False,
    ),
}

ENVELOPE_SCHEMA_FILE: Final = "envelope-1.0.json"
_lock = threading.Lock()


def schema_text(file_name: str) -> str:
    """The checked-in schema file (``shared/backbone/schemas/<file_name>``)."""
    return resources.files("shared.backbone").joinpath("schemas", file_name).read_text(encoding="utf-8")


@cache
def _registry() -> Registry[Any]:
    files = [ENVELOPE_SCHEMA_FILE, *(c.schema_file for c in CONTRACTS.values())]
    pairs = []
    for name in files:
        document = json.loads(schema_text(name))
        pairs.append((str(document["$id"]), Resource.from_contents(document)))
    return Registry().with_resources(pairs)


@cache
def _validator(topic: str) -> Draft202012Validator:
    contract = contract_for(topic)
    schema = _registry().contents(contract.schema_id)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


@cache
def _fast_check(topic: str) -> Check:
    contract = contract_for(topic)
    registry = _registry()
    return compile_schema(registry.contents(contract.schema_id), registry.contents)


def contract_for(topic: str) -> TopicContract:
    try:
        return CONTRACTS[topic]
    except KeyError:
        raise ContractViolation(
            topic, path="$", keyword="topic", reason="no contract for this topic"
        ) from None


def _violation(topic: str, error: ValidationError) -> ContractViolation:
    return ContractViolation(topic, path=error.json_path, keyword=str(error.validator))


def validate(topic: str, document: Mapping[str, Any]) -> None:
    """Raise :class:`ContractViolation` unless ``document`` satisfies ``topic``'s schema.

    The compiled fast path (:mod:`shared.backbone._fastschema`) decides; ``jsonschema`` (the reference
    implementation) is consulted to name the failing element, and has the last word: if it finds the
    document valid after all, it is accepted.
    """
    with _lock:  # compile once; checking is thread-safe
        check = _fast_check(topic)
        validator = _validator(topic)
    if check(document):
        return
    error = best_match(validator.iter_errors(document))
    if error is None:
        return
    raise _violation(topic, error)


def decode(topic: str, body: bytes) -> dict[str, Any]:
    """Parse a received event body and validate it against ``topic``'s schema (consume side)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ContractViolation(topic, path="$", keyword="json", reason="body is not JSON") from None
    if not isinstance(document, dict):
        raise ContractViolation(topic, path="$", keyword="type", reason="body is not a JSON object")
    validate(topic, document)
    return document


def encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def instant(moment: datetime | None = None) -> str:
    """A CloudEvents ``time``: RFC 3339 UTC with milliseconds."""
    utc = (moment or datetime.now(UTC)).astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _notification(
    topic: str,
    event_type: str,
    *,
    event_id: str,
    subject: str,
    data: Mapping[str, Scalar],
    correlation_id: str | None,
    event_key: str | None,
    patient_key: str | None,
    time: datetime | None,
) -> dict[str, Any]:
    contract = contract_for(topic)
    document: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": "urn:tie:platform",
        "type": contract.type_prefix + event_type,
        "subject": subject,
        "time": instant(time),
        "datacontenttype": DATA_CONTENT_TYPE,
        "dataschema": contract.dataschema,
        "tieschemaversion": SCHEMA_VERSION,
        "data": dict(data),
    }
    if correlation_id:
        document["tiecorrelationid"] = correlation_id
    if event_key:
        document["tieeventkey"] = event_key
    if patient_key:
        document["tiepatientkey"] = patient_key
    return document


def operational_event(
    event_type: Literal["writeback.completed", "writeback.failed", "writeback.parked"],
    *,
    event_id: str,
    downstream: str,
    subscription: str,
    status: str,
    correlation_id: str | None = None,
    event_key: str | None = None,
    details: Mapping[str, Scalar] | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """An ``operational-events`` notification (validated when encoded by :func:`to_outbound`)."""
    data: dict[str, Scalar] = {"downstream": downstream, "subscription": subscription, "status": status}
    data.update(details or {})
    return _notification(
        TOPIC_OPERATIONAL,
        event_type,
        event_id=event_id,
        subject=f"writeback/{downstream}",
        data=data,
        correlation_id=correlation_id,
        event_key=event_key,
        patient_key=None,
        time=time,
    )


def platform_event(
    event_type: PlatformEventType,
    *,
    event_id: str,
    subject: str,
    severity: Severity,
    correlation_id: str | None = None,
    event_key: str | None = None,
    details: Mapping[str, Scalar] | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """A ``platform-events`` notification for alerting (validated when encoded by :func:`to_outbound`)."""
    data: dict[str, Scalar] = {"severity": severity}
    data.update(details or {})
    return _notification(
        TOPIC_PLATFORM,
        event_type,
        event_id=event_id,
        subject=subject,
        data=data,
        correlation_id=correlation_id,
        event_key=event_key,
        patient_key=None,
        time=time,
    )


def to_outbound(topic: str, document: Mapping[str, Any], *, session_id: str | None = None) -> OutboundMessage:
    """Validate ``document`` against ``topic``'s schema and wrap it as a bus message.

    ``message_id`` = the event ``id`` (duplicate detection); ``correlation_id`` = ``tiecorrelationid``;
    application properties carry the event type, schema and (platform) severity for subscription filters.
    """
    validate(topic, document)
    properties: dict[str, PropertyValue] = {
        EVENT_TYPE_PROPERTY: str(document["type"]),
        SCHEMA_PROPERTY: str(document["dataschema"]),
    }
    correlation_id = document.get("tiecorrelationid")
    if correlation_id:
        properties[CORRELATION_PROPERTY] = str(correlation_id)
    severity = document.get("data", {}).get("severity")
    if topic == TOPIC_PLATFORM and isinstance(severity, str):
        properties[SEVERITY_PROPERTY] = severity
    return OutboundMessage(
        body=encode(document),
        message_id=str(document["id"]),
        session_id=session_id,
        correlation_id=str(correlation_id) if correlation_id else None,
        content_type=CONTENT_TYPE,
        subject=str(document.get("subject") or document["type"]),
        application_properties=properties,
    )
