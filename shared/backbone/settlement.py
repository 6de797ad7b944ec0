"""How a host settles a delivery whose handler raised: dead-letter a permanent failure at once, with its
reason, instead of abandoning it until the bus's max delivery count (docs/hl7-writeback.md)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.backbone.errors import ContractViolation, DownstreamError, is_final_failure
from shared.idempotency.exceptions import IdempotencyPayloadConflict, IdempotencyStoredFailure
from shared.messaging.ports import MessageBus, ReceivedMessage

#: Settlement outcomes.
DEAD_LETTERED = "dead-lettered"
ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class DeadLetterOrder:
    """The dead-letter reason (an error code) and description (codes and field paths, no patient data)."""

    reason: str
    description: str


def dead_letter_order(exc: BaseException) -> DeadLetterOrder | None:
    """The dead-letter order for a failure no redelivery can change - a rejected or unmappable write-back,
    an event conflict, a stored final failure, a payload conflict, an invalid envelope - else ``None``
    (abandon: transient failures, and configuration errors, which a fix of the deployment cures)."""
    if isinstance(exc, IdempotencyStoredFailure):
        return DeadLetterOrder(exc.error_code or exc.code, f"stored final failure ({exc.error_type})")
    if isinstance(exc, IdempotencyPayloadConflict):
        return DeadLetterOrder(exc.code, f"{exc.dead_letter_reason} ({exc.classification})")
    if isinstance(exc, ContractViolation):
        return DeadLetterOrder(exc.code, f"{exc.path}: {exc.keyword}")
    if not is_final_failure(exc):
        return None
    code = str(getattr(exc, "code", type(exc).__name__))
    detail = exc.detail if isinstance(exc, DownstreamError) else None
    return DeadLetterOrder(code, detail or code)


def settle_failure(bus: MessageBus, message: ReceivedMessage, exc: BaseException) -> str:
    """Settle ``message`` after its handler raised ``exc``: dead-lettered with the order's reason and
    description when the failure is permanent (:func:`dead_letter_order`), else abandoned (redelivered).
    Returns :data:`DEAD_LETTERED` or :data:`ABANDONED`. Lock loss propagates (the bus redelivers)."""
    order = dead_letter_order(exc)
    if order is None:
        bus.abandon(message)
        return ABANDONED
    bus.dead_letter(message, reason=order.reason, description=order.description)
    return DEAD_LETTERED
