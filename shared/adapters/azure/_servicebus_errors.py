"""Service Bus SDK errors mapped to the port's errors (:mod:`shared.adapters.azure.servicebus`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusServerBusyError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from shared.errors import PermanentError
from shared.messaging.errors import (
    BusError,
    BusUnavailable,
    MessageLockLost,
    MessageTooLarge,
    SessionLockLost,
    SubscriptionNotFound,
    TopicNotFound,
)


class UnsupportedMessageBody(BusError, PermanentError):
    """A received message's AMQP body is neither data sections nor a string/bytes value."""

    code = "unsupported-message-body"


#: What the SDK raises: every Service Bus / azure-core error, plus the client-side "already settled".
_SDK_ERRORS: tuple[type[Exception], ...] = (AzureError, MessageAlreadySettled)


def _where(topic: str, subscription: str | None = None, sequence_number: int | None = None) -> str:
    parts = [f"topic={topic}"]
    if subscription is not None:
        parts.append(f"subscription={subscription}")
    if sequence_number is not None:
        parts.append(f"sequence_number={sequence_number}")
    return ", ".join(parts)


def _translate(
    exc: BaseException,
    *,
    topic: str,
    subscription: str | None = None,
    sequence_number: int | None = None,
) -> BaseException:
    """Map an SDK exception to ours; exceptions that are not Azure/SDK errors are returned unchanged."""
    where = _where(topic, subscription, sequence_number)
    if isinstance(exc, BusError):
        return exc
    if isinstance(exc, MessageLockLostError | MessageAlreadySettled):
        return MessageLockLost(f"message lock lost or message already settled ({where})")
    if isinstance(exc, SessionLockLostError | SessionCannotBeLockedError):
        return SessionLockLost(f"session lock lost or session held elsewhere ({where})")
    if isinstance(exc, MessageSizeExceededError):
        return MessageTooLarge(f"message exceeds the Service Bus size limit ({where})")
    if isinstance(exc, MessagingEntityNotFoundError | ResourceNotFoundError):
        if subscription is None:
            return TopicNotFound(f"Service Bus entity not found ({where})")
        return SubscriptionNotFound(f"Service Bus entity not found ({where})")
    if isinstance(
        exc,
        ServiceBusConnectionError
        | OperationTimeoutError
        | ServiceBusCommunicationError
        | ServiceBusServerBusyError,
    ):
        return BusUnavailable(f"Service Bus unavailable: {type(exc).__name__} ({where})")
    if isinstance(exc, AzureError):
        # Authentication/authorisation, quota, disabled entity, HTTP errors from the management API:
        # the SDK has already retried; callers treat it as the bus being unavailable.
        return BusUnavailable(f"Service Bus error: {type(exc).__name__} ({where})")
    return exc


def _raise_translated(
    exc: BaseException,
    *,
    topic: str,
    subscription: str | None = None,
    sequence_number: int | None = None,
) -> NoReturn:
    mapped = _translate(exc, topic=topic, subscription=subscription, sequence_number=sequence_number)
    if mapped is exc:
        raise exc
    raise mapped from exc


@contextmanager
def _mapped(
    topic: str, subscription: str | None = None, sequence_number: int | None = None
) -> Iterator[None]:
    try:
        yield
    except _SDK_ERRORS as exc:
        _raise_translated(exc, topic=topic, subscription=subscription, sequence_number=sequence_number)
