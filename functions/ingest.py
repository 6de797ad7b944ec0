"""Generic ingest round trip: HTTP -> ingest topic -> Service Bus trigger -> journal.

``POST /api/messages?channel=raw`` accepts a body, publishes it to ``tie-ingest`` and answers 202 only
after the bus has it. ``GET /api/messages/{correlationId}`` answers "what happened to this message?" from
the journal. The ``ingest_processor`` trigger consumes the topic. Later channels (HL7 v2, FHIR) register
processors in :mod:`shared.ingest.ingest`; their edges reuse :func:`shared.ingest.ingest.accept`.
"""

from __future__ import annotations

import logging

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

from functions._http import error_response, http_endpoint, json_response, read_body
from functions._servicebus import body_of, properties_of, settle
from shared.ingest import ingest
from shared.ingest.channels import GENERIC_HTTP_CHANNELS, PROCESSORS
from shared.journal import Journal
from shared.messaging.topology import SERVICE_BUS_CONNECTION, SUB_INGEST_PROCESSOR, TOPIC_INGEST
from shared.observability.correlation import correlation_scope, is_valid_correlation_id
from shared.wiring import get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]
_log = logging.getLogger("tie.ingest")


@bp.function_name("ingest_http")
@bp.route(route="messages", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def ingest_http(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
    container = get_container()
    channel = req.params.get("channel", "raw")
    if channel not in GENERIC_HTTP_CHANNELS:
        return error_response(
            400,
            "unsupported_channel",
            "Unknown channel for this endpoint.",
            correlation_id,
            supported=sorted(GENERIC_HTTP_CHANNELS),
        )
    body = read_body(req, container.settings.http_max_body_bytes)
    if body is None:
        return error_response(413, "payload_too_large", "The request body is too large.", correlation_id)
    if not body:
        return error_response(400, "empty_body", "The request body is empty.", correlation_id)
    accepted = ingest.accept(
        container.bus,
        Journal(container.records),
        body=body,
        channel=channel,
        correlation_id=correlation_id,
        content_type=req.headers.get("Content-Type"),
        source="http",
    )
    return json_response(
        {
            "status": "accepted",
            "correlationId": accepted.correlation_id,
            "messageId": accepted.message_id,
            "channel": accepted.channel,
        },
        202,
        correlation_id=correlation_id,
        headers={"Location": f"/api/messages/{accepted.correlation_id}"},
    )


@bp.function_name("message_trace")
@bp.route(route="messages/{correlationId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def message_trace(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
    wanted = req.route_params.get("correlationId", "")
    if not is_valid_correlation_id(wanted):
        return error_response(400, "invalid_correlation_id", "Invalid correlation ID.", correlation_id)
    journal = Journal(get_container().records)
    entries, waiting = journal.journey(wanted)
    if not entries:
        return error_response(404, "not_found", "No message with that correlation ID.", correlation_id)
    return json_response(
        {
            "correlationId": wanted,
            "stages": [{"stage": e.stage, "at": e.at.isoformat(), **dict(e.attributes)} for e in entries],
            # Subscribers still expected to act ("accepted but not finished"); empty when finished.
            "inflight": [
                {"subscriber": name, "since": at.isoformat()} for name, at in sorted(waiting.items())
            ],
        },
        correlation_id=correlation_id,
    )


@bp.function_name("ingest_processor")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    topic_name=TOPIC_INGEST,
    subscription_name=SUB_INGEST_PROCESSOR,
    connection=SERVICE_BUS_CONNECTION,
    auto_complete_messages=False,
)
def ingest_processor(
    msg: servicebus.ServiceBusReceivedMessage, message_actions: servicebus.ServiceBusMessageActions
) -> None:
    settle(msg, message_actions, lambda: _process(msg), function="ingest_processor")


def _process(msg: servicebus.ServiceBusReceivedMessage) -> None:
    container = get_container()
    inbound = ingest.inbound_from_properties(
        body=body_of(msg),
        message_id=msg.message_id or "",
        correlation_id=msg.correlation_id,
        content_type=msg.content_type,
        delivery_count=msg.delivery_count or 1,
        properties=properties_of(msg),
    )
    with correlation_scope(inbound.correlation_id):
        context = ingest.ProcessorContext(
            bus=container.bus, journal=Journal(container.records), audit=container.audit
        )
        outcome = ingest.process(inbound, context, PROCESSORS)
        _log.info(
            "ingest processed",
            extra={
                "message_id": inbound.message_id,
                "status": outcome,
                "delivery_count": inbound.delivery_count,
            },
        )
