"""One delivery of a bus message to a subscriber, independent of the trigger that carried it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.messaging.ports import PropertyValue, ReceivedMessage, replay_count
from shared.observability.correlation import MESSAGE_PROPERTY as CORRELATION_PROPERTY

#: Application property on a copy released from the parking lot: the parked record's row key.
PARKED_ROW_PROPERTY = "tie_parked_row"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a subscriber needs of a delivered message (built by the trigger adapter or a test pump)."""

    topic: str
    subscription: str
    body: bytes
    message_id: str
    delivery_count: int = 1
    correlation_id: str | None = None
    session_id: str | None = None
    content_type: str | None = None
    subject: str | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)

    @property
    def is_replay(self) -> bool:
        """Delivered from a dead-letter replay (``tie_replay_count`` > 0)."""
        return replay_count(self.properties) > 0

    @property
    def parked_row(self) -> str | None:
        """Row key of the parked record this copy was released from, if it is a released copy."""
        value = self.properties.get(PARKED_ROW_PROPERTY)
        return value if isinstance(value, str) and value else None

    @property
    def correlation(self) -> str:
        """The correlation ID (message property, else the application property, else the message id)."""
        value = self.correlation_id or self.properties.get(CORRELATION_PROPERTY)
        return str(value) if value else self.message_id

    @classmethod
    def from_received(cls, message: ReceivedMessage) -> Delivery:
        return cls(
            topic=message.topic,
            subscription=message.subscription,
            body=message.body,
            message_id=message.message_id,
            delivery_count=message.delivery_count,
            correlation_id=message.correlation_id,
            session_id=message.session_id,
            content_type=message.content_type,
            subject=message.subject,
            properties=dict(message.application_properties),
        )
