"""Exceptions for the inbound pipeline."""

from __future__ import annotations

from shared.errors import PermanentError


class PipelineError(Exception):
    """Marker mixin for pipeline errors."""


class UnsupportedChannel(PipelineError, PermanentError):
    """No processor is registered for the message's channel."""

    code = "unsupported-channel"


class MissingProperty(PipelineError, PermanentError):
    """A required application property is absent from a bus message."""

    code = "missing-property"
