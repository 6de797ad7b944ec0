"""Accept inbound messages at the edge and process them from the ingest topic.

Edge (HTTP function, MLLP listener): :func:`accept` publishes the message to ``tie-ingest`` and journals
it; only after ``publish`` returns (the bus has it durably) does the caller acknowledge the sender.

Bus side (Service Bus trigger): :func:`process` dispatches on the ``tie_channel`` application property to
the channel's processor (registry: :data:`shared.ingest.channels.PROCESSORS`). An unknown channel or a
processor failure raises, so the trigger abandons the message; after the subscription's max delivery
count the bus dead-letters it (nothing is dropped).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.audit.trail import AuditTrail
from shared.ingest.errors import MissingProperty, UnsupportedChannel
from shared.journal import Journal
from shared.messaging.ports import REPLAY_COUNT_PROPERTY, MessageBus, OutboundMessage, PropertyValue
from shared.messaging.topology import TOPIC_INGEST
from shared.observability.correlation import MESSAGE_PROPERTY as CORRELATION_PROPERTY

CHANNEL_PROPERTY = "tie_channel"
SOURCE_PROPERTY = "tie_source"


@dataclass(frozen=True, slots=True)
class Accepted:
    correlation_id: str
    message_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An ingest-topic message as the processor sees it (built by the trigger adapter)."""

    body: bytes
    message_id: str
    correlation_id: str
    channel: str
    content_type: str | None
    delivery_count: int
    properties: Mapping[str, PropertyValue]

    @property
    def is_replay(self) -> bool:
        return int(self.properties.get(REPLAY_COUNT_PROPERTY, 0) or 0) > 0


@dataclass(frozen=True, slots=True)
class ProcessorContext:
    """What a channel processor may use: the ports, nothing global."""

    bus: MessageBus
    journal: Journal
    #: Where transformations are audited (``None``: not audited; see docs/audit.md).
    audit: AuditTrail | None = None


Processor = Callable[[InboundMessage, ProcessorContext], str]
"""Processes one message; returns a short outcome for the journal (e.g. ``"published admission"``)."""


def raw_processor(message: InboundMessage, context: ProcessorContext) -> str:
    """The ``raw`` channel: accepted bytes are only journaled (a smoke-test channel)."""
    return "journaled"


def accept(
    bus: MessageBus,
    journal: Journal,
    *,
    body: bytes,
    channel: str,
    correlation_id: str,
    content_type: str | None,
    source: str,
    message_id: str | None = None,
    extra_properties: Mapping[str, PropertyValue] | None = None,
    journal_receipt: bool = True,
) -> Accepted:
    """Publish to the ingest topic (durable once this returns) and journal the receipt.

    The caller has checked ``channel`` against the registry. ``message_id`` drives the bus's duplicate
    detection: pass a deterministic one when a sender may retransmit.
    """
    message_id = message_id or uuid.uuid4().hex
    properties: dict[str, PropertyValue] = {
        CHANNEL_PROPERTY: channel,
        SOURCE_PROPERTY: source,
        CORRELATION_PROPERTY: correlation_id,
    }
    if extra_properties:
        properties.update(extra_properties)
    if journal_receipt:
        journal.record(correlation_id, "received", channel=channel, source=source, size=len(body))
    bus.publish(
        TOPIC_INGEST,
        [
            OutboundMessage(
                body=body,
                message_id=message_id,
                correlation_id=correlation_id,
                content_type=content_type,
                application_properties=properties,
            )
        ],
    )
    journal.record(correlation_id, "published", topic=TOPIC_INGEST, message_id=message_id)
    return Accepted(correlation_id=correlation_id, message_id=message_id, channel=channel)


def inbound_from_properties(
    *,
    body: bytes,
    message_id: str,
    correlation_id: str | None,
    content_type: str | None,
    delivery_count: int,
    properties: Mapping[str, PropertyValue],
) -> InboundMessage:
    channel = properties.get(CHANNEL_PROPERTY)
    if not isinstance(channel, str) or not channel:
        raise MissingProperty(f"message {message_id} has no {CHANNEL_PROPERTY} property")
    corr = correlation_id or properties.get(CORRELATION_PROPERTY) or message_id
    return InboundMessage(
        body=body,
        message_id=message_id,
        correlation_id=str(corr),
        channel=channel,
        content_type=content_type,
        delivery_count=delivery_count,
        properties=properties,
    )


def process(message: InboundMessage, context: ProcessorContext, processors: Mapping[str, Processor]) -> str:
    """Run the channel's processor; journal the outcome. Raises on failure (the trigger abandons)."""
    journal = context.journal
    processor = processors.get(message.channel)
    if processor is None:
        journal.record(
            message.correlation_id,
            "failed",
            message_id=message.message_id,
            delivery_count=message.delivery_count,
            error_code=UnsupportedChannel.code,
        )
        raise UnsupportedChannel(f"no processor for channel {message.channel!r}")
    try:
        outcome = processor(message, context)
    except Exception as exc:
        code = getattr(exc, "code", type(exc).__name__)
        journal.record(
            message.correlation_id,
            "failed",
            message_id=message.message_id,
            delivery_count=message.delivery_count,
            error_code=code,
        )
        if context.audit is not None:
            context.audit.transformed(
                correlation_id=message.correlation_id,
                channel=message.channel,
                message_id=message.message_id,
                received=message.body,
                produced=None,
                patient=None,
                event_key=None,
                error_code=str(code),
            )
        raise
    journal.record(
        message.correlation_id,
        "consumed",
        message_id=message.message_id,
        delivery_count=message.delivery_count,
        outcome=outcome,
        replay=message.is_replay,
    )
    return outcome
