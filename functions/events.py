"""Event backbone triggers: write-back, parked-work release, outbox relay, stuck-message monitor.

Thin adapters: build a :class:`~shared.backbone.delivery.Delivery` from the trigger's message and hand it
to the write-back core (:mod:`shared.backbone.writeback`). The write-back triggers settle their own
message (:mod:`functions._servicebus`): returning completes it, a permanent failure dead-letters it at the
first delivery with its error code as reason, a transient one abandons it (redelivered). A parked delivery
returns normally: it is stored and will be re-published by ``writeback_release``.

* ``writeback_fhir`` / ``writeback_hl7v2`` - one per downstream, sessions on (per-patient order).
* ``writeback_release`` - every 10 s: re-publishes parked work of downstreams whose circuit is closed
  (or one item as the half-open probe).
* ``outbox_relay`` - every 15 s: publishes outbox batches whose writer crashed or met a bus outage.
* ``stuck_monitor`` - every minute: announces messages still in flight after ``TIE_STUCK_AFTER_SECONDS``
  (``message.stuck`` platform event once per message and subscriber, gauge ``tie.messages.stuck``).
"""

from __future__ import annotations

import logging

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

from functions._servicebus import body_of, properties_of, settle
from shared.backbone.delivery import Delivery
from shared.messaging.topology import (
    SERVICE_BUS_CONNECTION,
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_CLINICAL,
)
from shared.observability.correlation import correlation_scope
from shared.wiring import build_fhir_event_relay, get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]
_log = logging.getLogger("tie.events")


def delivery_from(msg: servicebus.ServiceBusReceivedMessage, topic: str, subscription: str) -> Delivery:
    """The trigger's message as the core sees it."""
    return Delivery(
        topic=topic,
        subscription=subscription,
        body=body_of(msg),
        message_id=msg.message_id or "",
        delivery_count=msg.delivery_count or 1,
        correlation_id=msg.correlation_id,
        session_id=msg.session_id,
        content_type=msg.content_type,
        subject=msg.subject,
        properties=properties_of(msg),
    )


def _write_back(msg: servicebus.ServiceBusReceivedMessage, subscription: str) -> None:
    delivery = delivery_from(msg, TOPIC_CLINICAL, subscription)
    with correlation_scope(delivery.correlation):
        result = get_container().backbone.subscriber(subscription).handle(delivery)
        _log.info(
            "write-back",
            extra={
                "subscription": subscription,
                "message_id": delivery.message_id,
                "delivery_count": delivery.delivery_count,
                "status": result.status,
                "reason": result.reason,
            },
        )


@bp.function_name("writeback_fhir")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_CLINICAL,
    subscription_name=SUB_WRITEBACK_FHIR,
    connection=SERVICE_BUS_CONNECTION,
    is_sessions_enabled=True,
    auto_complete_messages=False,
)
def writeback_fhir(
    msg: servicebus.ServiceBusReceivedMessage, message_actions: servicebus.ServiceBusMessageActions
) -> None:
    settle(msg, message_actions, lambda: _write_back(msg, SUB_WRITEBACK_FHIR), function="writeback_fhir")


@bp.function_name("writeback_hl7v2")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_CLINICAL,
    subscription_name=SUB_WRITEBACK_HL7V2,
    connection=SERVICE_BUS_CONNECTION,
    is_sessions_enabled=True,
    auto_complete_messages=False,
)
def writeback_hl7v2(
    msg: servicebus.ServiceBusReceivedMessage, message_actions: servicebus.ServiceBusMessageActions
) -> None:
    settle(msg, message_actions, lambda: _write_back(msg, SUB_WRITEBACK_HL7V2), function="writeback_hl7v2")


@bp.function_name("writeback_release")
@bp.timer_trigger(schedule="*/10 * * * * *", arg_name="timer", use_monitor=False)
def writeback_release(timer: func.TimerRequest) -> None:
    released = get_container().backbone.release_parked()
    if released:
        _log.info("parked work released", extra={"count": sum(released.values())})


@bp.function_name("outbox_relay")
@bp.timer_trigger(schedule="*/15 * * * * *", arg_name="timer", use_monitor=False)
def outbox_relay(timer: func.TimerRequest) -> None:
    from shared.outbox import RelayReport

    # Clinical events the embedded FHIR store committed with a write but did not get to publish.
    fhir_events = build_fhir_event_relay(get_container())
    report = fhir_events.run_until_idle(max_seconds=5.0) if fhir_events is not None else RelayReport()
    report += get_container().backbone.relay_outbox(max_seconds=10.0)
    if report.published or report.parked or report.failed:
        _log.info(
            "outbox relayed",
            extra={"count": report.messages, "status": f"parked={report.parked} failed={report.failed}"},
        )


@bp.function_name("stuck_monitor")
@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", use_monitor=False)
def stuck_monitor(timer: func.TimerRequest) -> None:
    report = get_container().backbone.scan_stuck()
    if report.stuck or report.resolved:
        _log.info(
            "in flight past the deadline",
            extra={
                "count": report.stuck,
                "status": f"new={report.announced} resolved={report.resolved} failed={report.failed}",
            },
        )
