"""Exceptions for the messaging package (bus port and its adapters)."""

from __future__ import annotations

from shared.errors import PermanentError, TransientError


class BusError(Exception):
    """Marker mixin for every messaging error."""


class TopicNotFound(BusError, PermanentError):
    code = "topic-not-found"


class SubscriptionNotFound(BusError, PermanentError):
    code = "subscription-not-found"


class MessageTooLarge(BusError, PermanentError):
    code = "message-too-large"


class InvalidFilter(BusError, PermanentError):
    """A subscription filter expression cannot be parsed."""

    code = "invalid-filter"


class MessageLockLost(BusError, TransientError):
    """The peek-lock expired (or the message was settled elsewhere) before settlement."""

    code = "lock-lost"


class SessionLockLost(BusError, TransientError):
    code = "session-lock-lost"


class BusUnavailable(BusError, TransientError):
    code = "bus-unavailable"
