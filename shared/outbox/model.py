"""Outbox data: messages waiting to be published, the owner record that commits them, storage layout."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.messaging.ports import OutboundMessage, PropertyValue
from shared.outbox.errors import OutboxMessageInvalid
from shared.storage.ports import JsonDict

#: Field of an owner record's value holding its committed, not yet settled batches:
#: ``{batch id: {"entry": [partition key, row key], "messages": [message JSON, ...]}}``.
OUTBOX_FIELD = "outbox"


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The record whose conditional write commits a batch (domain state + messages in one write)."""

    table: str
    partition_key: str
    row_key: str


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A bus message to publish on ``topic`` once its batch is committed.

    ``message.message_id`` is required and must be deterministic (the clinical-event key, or derived from
    it): a re-publish after a crash is then dropped by the bus's duplicate detection.
    """

    topic: str
    message: OutboundMessage

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic:
            raise OutboxMessageInvalid("outbox message needs a topic")
        if not self.message.message_id:
            raise OutboxMessageInvalid(
                f"outbox message for topic {self.topic} needs a deterministic message_id "
                "(duplicate detection)"
            )

    def to_json(self) -> JsonDict:
        m = self.message
        return {
            "topic": self.topic,
            "body": base64.b64encode(m.body).decode("ascii"),
            "message_id": m.message_id,
            "session_id": m.session_id,
            "correlation_id": m.correlation_id,
            "content_type": m.content_type,
            "subject": m.subject,
            "properties": dict(m.application_properties),
            "ttl_s": None if m.time_to_live is None else m.time_to_live.total_seconds(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutboxMessage:
        ttl = data.get("ttl_s")
        properties: dict[str, PropertyValue] = dict(data.get("properties") or {})
        return cls(
            topic=str(data["topic"]),
            message=OutboundMessage(
                body=base64.b64decode(data["body"]),
                message_id=data["message_id"],
                session_id=data.get("session_id"),
                correlation_id=data.get("correlation_id"),
                content_type=data.get("content_type"),
                subject=data.get("subject"),
                application_properties=properties,
                time_to_live=None if ttl is None else timedelta(seconds=float(ttl)),
            ),
        )
