"""Exceptions for the outbox package."""

from __future__ import annotations

from shared.errors import PermanentError


class OutboxError(Exception):
    """Marker mixin for every outbox error."""


class OutboxMessageInvalid(OutboxError, PermanentError):
    """An outbox message lacks a topic or a deterministic ``message_id``."""

    code = "outbox-message-invalid"
