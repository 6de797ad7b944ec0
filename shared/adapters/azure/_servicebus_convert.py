"""Conversions between the port's messages and SDK messages, replay copies and subscription rules
(:mod:`shared.adapters.azure.servicebus`)."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import isodate
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    RuleProperties,
    SqlRuleFilter,
    TrueRuleFilter,
)

from shared.adapters.azure._servicebus_errors import UnsupportedMessageBody
from shared.messaging.ports import (
    REPLAY_COUNT_PROPERTY,
    REPLAY_SUBSCRIPTION_PROPERTY,
    OutboundMessage,
    PropertyValue,
    ReceivedMessage,
    replay_count,
)

# Application properties the broker adds to dead-lettered messages; surfaced as fields, not properties.
_DEAD_LETTER_PROPERTY_KEYS = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})
_MAX_MESSAGE_ID_LENGTH = 128  # Service Bus limit on MessageId
_DEFAULT_MAX_DELIVERY_COUNT = 10  # Service Bus default when the service omits it
_DEFAULT_LOCK_DURATION = timedelta(seconds=60)


# --------------------------------------------------------------------------------------------------------
# Mapping between the port's dataclasses and SDK messages


def _ttl_for_sdk(ttl: timedelta | None) -> timedelta | None:
    # The SDK stores whole seconds (it truncates); round up so a sub-second TTL does not become "none".
    if ttl is None:
        return None
    return timedelta(seconds=max(1, math.ceil(ttl.total_seconds())))


def _to_sdk_message(message: OutboundMessage) -> ServiceBusMessage:
    properties: dict[str | bytes, Any] = {str(k): v for k, v in message.application_properties.items()}
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id or str(uuid.uuid4()),
        session_id=message.session_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        subject=message.subject,
        application_properties=properties or None,
        time_to_live=_ttl_for_sdk(message.time_to_live),
    )


def _property_value(value: object) -> PropertyValue | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str | bool | int | float):
        return value
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # uuid.UUID and other AMQP scalars


def _decode_properties(raw: Mapping[Any, Any] | None) -> dict[str, PropertyValue]:
    """Received application properties have ``bytes`` keys and string values; decode both to ``str``."""
    decoded: dict[str, PropertyValue] = {}
    for key, value in (raw or {}).items():
        name = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key)
        if name in _DEAD_LETTER_PROPERTY_KEYS:
            continue
        converted = _property_value(value)
        if converted is not None:
            decoded[name] = converted
    return decoded


def _body_bytes(sdk_message: ServiceBusReceivedMessage) -> bytes:
    """Join the AMQP data sections into one ``bytes``; accept a str/bytes AMQP value body too."""
    body = sdk_message.body
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if sdk_message.body_type == AmqpMessageBodyType.DATA:
        sections: list[bytes] = []
        for section in body:
            if not isinstance(section, bytes | bytearray | memoryview):
                raise UnsupportedMessageBody(
                    f"data section is not binary (sequence_number={sdk_message.sequence_number})"
                )
            sections.append(bytes(section))
        return b"".join(sections)
    raise UnsupportedMessageBody(
        f"AMQP body type {sdk_message.body_type.value} is not supported "
        f"(sequence_number={sdk_message.sequence_number})"
    )


def _to_received(
    sdk_message: ServiceBusReceivedMessage,
    *,
    topic: str,
    subscription: str,
    locked: bool,
    session_locked_until: datetime | None = None,
) -> ReceivedMessage:
    raw_count = sdk_message.delivery_count or 0
    lock_token = sdk_message.lock_token if locked else None
    locked_until = sdk_message.locked_until_utc if locked else None
    if locked and locked_until is None:
        locked_until = session_locked_until
    return ReceivedMessage(
        topic=topic,
        subscription=subscription,
        body=_body_bytes(sdk_message),
        message_id=sdk_message.message_id or "",
        sequence_number=sdk_message.sequence_number or 0,
        delivery_count=raw_count + 1 if locked else raw_count,
        enqueued_time=sdk_message.enqueued_time_utc or datetime.fromtimestamp(0, UTC),
        session_id=sdk_message.session_id,
        correlation_id=sdk_message.correlation_id,
        content_type=sdk_message.content_type,
        subject=sdk_message.subject,
        application_properties=_decode_properties(sdk_message.application_properties),
        lock_token=str(lock_token) if lock_token is not None else None,
        locked_until=locked_until,
        expires_at=sdk_message.expires_at_utc,
        dead_letter_reason=sdk_message.dead_letter_reason,
        dead_letter_description=sdk_message.dead_letter_error_description,
        dead_lettered_at=None,
    )


def _replay_message_id(original: str | None, count: int) -> str:
    base = original or str(uuid.uuid4())
    candidate = f"{base}:replay:{count}"
    if len(candidate) <= _MAX_MESSAGE_ID_LENGTH:
        return candidate
    digest = hashlib.sha256(base.encode("utf-8")).hexdigest()
    return f"{digest}:replay:{count}"


def _replay_copy(sdk_message: ServiceBusReceivedMessage, subscription: str) -> ServiceBusMessage:
    """A new message for the topic carrying the dead-lettered message's body and properties."""
    decoded = _decode_properties(sdk_message.application_properties)
    properties: dict[str | bytes, Any] = {str(k): v for k, v in decoded.items()}
    count = replay_count(decoded) + 1
    properties[REPLAY_COUNT_PROPERTY] = count
    properties[REPLAY_SUBSCRIPTION_PROPERTY] = subscription
    return ServiceBusMessage(
        _body_bytes(sdk_message),
        message_id=_replay_message_id(sdk_message.message_id, count),
        session_id=sdk_message.session_id,
        correlation_id=sdk_message.correlation_id,
        content_type=sdk_message.content_type,
        subject=sdk_message.subject,
        application_properties=properties,
        time_to_live=sdk_message.time_to_live,
    )


def _render_rule_filter(rule_filter: object) -> str | None:
    if isinstance(rule_filter, TrueRuleFilter):
        return None
    if isinstance(rule_filter, FalseRuleFilter):
        return "1=0"
    if isinstance(rule_filter, SqlRuleFilter):
        return rule_filter.sql_expression or None
    if isinstance(rule_filter, CorrelationRuleFilter):
        clauses: list[str] = []
        system = (
            ("sys.CorrelationId", rule_filter.correlation_id),
            ("sys.MessageId", rule_filter.message_id),
            ("sys.To", rule_filter.to),
            ("sys.ReplyTo", rule_filter.reply_to),
            ("sys.Label", rule_filter.label),
            ("sys.SessionId", rule_filter.session_id),
            ("sys.ReplyToSessionId", rule_filter.reply_to_session_id),
            ("sys.ContentType", rule_filter.content_type),
        )
        for name, value in system:
            if value is not None:
                clauses.append(f"{name} = '{value.replace(chr(39), chr(39) * 2)}'")
        for key, prop in (rule_filter.properties or {}).items():
            if isinstance(prop, str):
                clauses.append(f"{key} = '{prop.replace(chr(39), chr(39) * 2)}'")
            elif isinstance(prop, bool):
                clauses.append(f"{key} = {'TRUE' if prop else 'FALSE'}")
            else:
                clauses.append(f"{key} = {prop}")
        return " AND ".join(clauses) if clauses else None
    return None


def _combine_rules(rules: Iterable[RuleProperties]) -> str | None:
    """Service Bus delivers a message if *any* rule matches: OR the rules' filters together."""
    expressions: list[str] = []
    for rule in rules:
        rendered = _render_rule_filter(rule.filter)
        if rendered is None:
            return None  # a match-all rule makes the whole subscription match-all
        expressions.append(rendered)
    if not expressions:
        return "1=0"  # no rules: the subscription receives nothing
    if len(expressions) == 1:
        return expressions[0]
    return " OR ".join(f"({expression})" for expression in expressions)


def _as_timedelta(value: timedelta | str | None, default: timedelta) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value:
        parsed = isodate.parse_duration(value)
        if isinstance(parsed, timedelta):
            return parsed
    return default
