"""Exceptions for the idempotency utility.

Each derives from exactly one of :class:`~shared.errors.PermanentError` /
:class:`~shared.errors.TransientError`, so a message handler can settle the bus message without
inspecting text:

* :class:`IdempotencyAlreadyInProgress` (transient): abandon; the redelivery finds the stored result.
* :class:`IdempotencyLeaseLost` (transient): abandon; the effect ran, but its lease was taken over.
* :class:`IdempotencyPayloadConflict` (permanent): route to the correction workflow, or dead-letter with
  ``dead_letter_reason`` (``classification == "correction"``).
* :class:`IdempotencyStoredFailure` (permanent): dead-letter; an earlier run failed for good.
* :class:`IdempotencyResultNotStorable` (permanent): a programming error; the result cannot be stored.
* :class:`IdempotencyKeyError` (permanent): the key or payload cannot be hashed.
* :class:`IdempotencyConfigError` (permanent): invalid :class:`~shared.idempotency.config.IdempotencyConfig`.

Messages carry the *hash* of the key and payload hashes, never the key, payload or result themselves
(keys may be any string, including ones built from patient identifiers).
"""

from __future__ import annotations

from shared.errors import ConfigurationError, PermanentError, TransientError


class IdempotencyError(Exception):
    """Marker mixin for every idempotency error."""

    #: Storage key hash of the idempotency key concerned (``""`` when not known).
    key_hash: str = ""


class IdempotencyConfigError(IdempotencyError, ConfigurationError):
    code = "idempotency-config"


class IdempotencyKeyError(IdempotencyError, PermanentError):
    """The idempotency key is empty / not a string, or the payload cannot be rendered as canonical JSON."""

    code = "idempotency-key"


class IdempotencyAlreadyInProgress(IdempotencyError, TransientError):
    """Another worker holds a live ``IN_PROGRESS`` lease on the key (or won the race to take it over)."""

    code = "idempotency-in-progress"

    def __init__(self, key_hash: str, *, retry_after: float) -> None:
        super().__init__(
            f"idempotency key {key_hash[:16]} is in progress elsewhere; retry after {retry_after:.1f} s"
        )
        self.key_hash = key_hash
        #: Seconds until the holder's lease runs out (0 when the key was lost to a concurrent taker).
        self.retry_after = retry_after


class IdempotencyLeaseLost(IdempotencyError, TransientError):
    """The effect ran, but by the time it finished its ``IN_PROGRESS`` record had been taken over or removed.

    The effect may therefore have run twice (this run and the taker's); downstream conditional writes are
    the second line of defence. Raised, never swallowed, so the journal can record it.
    """

    code = "idempotency-lease-lost"

    def __init__(self, key_hash: str) -> None:
        super().__init__(
            f"idempotency key {key_hash[:16]}: the in-progress lease was lost before the result was stored"
        )
        self.key_hash = key_hash


class IdempotencyPayloadConflict(IdempotencyError, PermanentError):
    """Same key, different payload: a correction or a conflicting duplicate, never applied silently.

    Carries both payload hashes (not the payloads). ``classification`` is ``"correction"`` so callers
    route it to the correction workflow, or dead-letter it with :attr:`dead_letter_reason`.
    """

    code = "idempotency-payload-conflict"
    classification = "correction"
    dead_letter_reason = "IdempotencyPayloadConflict"

    def __init__(
        self, key_hash: str, *, stored_payload_hash: str, received_payload_hash: str, status: str
    ) -> None:
        super().__init__(
            f"idempotency key {key_hash[:16]} ({status}) was first seen with payload "
            f"{stored_payload_hash[:16]}, now with {received_payload_hash[:16]}"
        )
        self.key_hash = key_hash
        self.stored_payload_hash = stored_payload_hash
        self.received_payload_hash = received_payload_hash
        #: Status of the stored record when the conflict was detected (``IN_PROGRESS`` / ``COMPLETED``).
        self.status = status


class IdempotencyStoredFailure(IdempotencyError, PermanentError):
    """An earlier run of this key failed with an error the config marks as final; it is not re-run.

    Only raised for deliveries that are not replays: a replay (operator's decision, after a fix) runs the
    effect again. ``error_code`` / ``error_type`` describe the stored failure (no message text is stored).
    """

    code = "idempotency-stored-failure"

    def __init__(self, key_hash: str, *, error_code: str, error_type: str) -> None:
        super().__init__(
            f"idempotency key {key_hash[:16]} failed permanently before ({error_type}, code {error_code})"
        )
        self.key_hash = key_hash
        self.error_code = error_code
        self.error_type = error_type


class IdempotencyResultNotStorable(IdempotencyError, PermanentError):
    """The effect's result could not be serialised or is too large to store.

    The ``IN_PROGRESS`` record is released, so a retry re-runs the effect (and fails the same way):
    fix the serializer.
    """

    code = "idempotency-result-not-storable"
