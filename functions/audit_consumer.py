"""Consumers of the audit subscriptions (``clinical-audit``, ``operational-audit``, ``platform-audit``):
each event is appended to the audit chain (:mod:`shared.audit.bus_events`). Each trigger settles its
message (:mod:`functions._servicebus`): success completes it, a permanent failure dead-letters it at once
with its reason, an audit log that cannot be written abandons it, so it is retried, not lost. See
docs/audit.md.
"""

from __future__ import annotations

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

from functions._servicebus import body_of, settle
from shared.audit.bus_events import audit_bus_event
from shared.messaging.topology import (
    SERVICE_BUS_CONNECTION,
    SUB_CLINICAL_AUDIT,
    SUB_OPERATIONAL_AUDIT,
    SUB_PLATFORM_AUDIT,
    TOPIC_CLINICAL,
    TOPIC_OPERATIONAL,
    TOPIC_PLATFORM,
)
from shared.wiring import get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]


def _consume(msg: servicebus.ServiceBusReceivedMessage, subscription: str) -> None:
    audit_bus_event(
        get_container().audit,
        subscription=subscription,
        body=body_of(msg),
        message_id=msg.message_id or "",
        correlation_id=msg.correlation_id,
        delivery_count=msg.delivery_count or 1,
    )


@bp.function_name("audit_clinical")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_CLINICAL,
    subscription_name=SUB_CLINICAL_AUDIT,
    connection=SERVICE_BUS_CONNECTION,
    auto_complete_messages=False,
)
def audit_clinical(
    msg: servicebus.ServiceBusReceivedMessage, message_actions: servicebus.ServiceBusMessageActions
) -> None:
    settle(msg, message_actions, lambda: _consume(msg, SUB_CLINICAL_AUDIT), function="audit_clinical")


@bp.function_name("audit_operational")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_OPERATIONAL,
    subscription_name=SUB_OPERATIONAL_AUDIT,
    connection=SERVICE_BUS_CONNECTION,
    auto_complete_messages=False,
)
def audit_operational(
    msg: servicebus.ServiceBusReceivedMessage, message_actions: servicebus.ServiceBusMessageActions
) -> None:
    settle(msg, message_actions, lambda: _consume(msg, SUB_OPERATIONAL_AUDIT), function="audit_operational")


@bp.function_name("audit_platform")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_PLATFORM,
    subscription_name=SUB_PLATFORM_AUDIT,
    connection=SERVICE_BUS_CONNECTION,
    auto_complete_messages=False,
)
def audit_platform(
    msg: servicebus.ServiceBusReceivedMessage, message_actions: servicebus.ServiceBusMessageActions
) -> None:
    settle(msg, message_actions, lambda: _consume(msg, SUB_PLATFORM_AUDIT), function="audit_platform")
