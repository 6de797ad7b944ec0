"""Service Bus trigger settlement: every Service Bus trigger settles its own message (docs/hl7-writeback.md).

The triggers bind ``ServiceBusReceivedMessage`` and ``ServiceBusMessageActions`` (the SDK-type bindings of
``azurefunctions-extensions-bindings-servicebus``) with ``auto_complete_messages=False``, and hand their
work to :func:`settle`: success completes, a permanent failure dead-letters at the first delivery with the
reason and description of :func:`shared.backbone.settlement.dead_letter_order`, anything else abandons and
re-raises (the invocation shows as failed; the bus redelivers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from shared.backbone.settlement import ABANDONED, DEAD_LETTERED, dead_letter_order

#: Settlement outcome of a handler that returned.
COMPLETED = "completed"
#: The parameter name under which a trigger takes its message actions (the local host supplies one).
ACTIONS_ARG = "message_actions"

_log = logging.getLogger("tie.servicebus")


class MessageActions(Protocol):
    """What a trigger needs of ``ServiceBusMessageActions``."""

    def complete(self, message: Any) -> None: ...

    def abandon(self, message: Any) -> None: ...

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None: ...


def body_of(msg: Any) -> bytes:
    """The message body as bytes: ``get_body()`` (``func.ServiceBusMessage``) or the SDK's ``body``."""
    get_body = getattr(msg, "get_body", None)
    if callable(get_body):
        return bytes(get_body())
    body = msg.body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return b"".join(bytes(part) for part in body)


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def properties_of(msg: Any) -> dict[str, Any]:
    """Application properties with text keys and values (the SDK returns received ones as bytes)."""
    return {str(_text(k)): _text(v) for k, v in (msg.application_properties or {}).items()}


def settle(msg: Any, actions: MessageActions, handler: Callable[[], object], *, function: str) -> str:
    """Run ``handler`` and settle ``msg``: :data:`COMPLETED`, or :data:`DEAD_LETTERED` for a permanent
    failure (returned: nothing to retry); a transient failure is abandoned and re-raised."""
    try:
        handler()
    except Exception as exc:
        order = dead_letter_order(exc)
        extra = {
            "function": function,
            "message_id": msg.message_id,
            "delivery_count": msg.delivery_count,
            "error_code": getattr(exc, "code", type(exc).__name__),
        }
        if order is None:
            actions.abandon(msg)
            _log.warning("function failed; message %s", ABANDONED, extra=extra)
            raise
        actions.deadletter(
            msg, deadletter_reason=order.reason, deadletter_error_description=order.description
        )
        _log.warning("function failed; message %s", DEAD_LETTERED, extra=extra)
        return DEAD_LETTERED
    actions.complete(msg)
    return COMPLETED
