"""Root of the project's exception hierarchy.

Every package defines narrow exception types that derive from exactly one of :class:`PermanentError`
(retrying cannot help: bad input, unknown topic, conflict that needs a human) or :class:`TransientError`
(retrying later may succeed: lock lost, storage busy, downstream timeout). Callers branch on that split,
never on message text.

Exception text must never contain patient data or message bodies: pass identifiers such as a message
id, a table name or a field path, not values.
"""

from __future__ import annotations


class TieError(Exception):
    """Base class for every error raised by Serverless TIE code."""

    #: Short machine-readable code, stable across releases (used in ACK ERR / OperationOutcome / logs).
    code: str = "tie-error"


class PermanentError(TieError):
    """Retrying the same input will fail the same way."""

    code = "permanent"


class TransientError(TieError):
    """The operation may succeed if retried later."""

    code = "transient"


class ConfigurationError(PermanentError):
    """A setting is missing or invalid."""

    code = "configuration"


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is known to be worth retrying."""
    return isinstance(exc, TransientError)
