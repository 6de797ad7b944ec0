"""Idempotency utility: at-least-once delivery + this guard = exactly-once *effects*.

:class:`IdempotencyGuard` keys an effect on the clinical-event identity (not the transport id), so a
redelivery, a replay or the other source's copy of the same event is answered from the store; a same-key,
different-payload repeat is a permanent conflict. Layout follows Powertools for AWS Lambda. Semantics
(states, repeats, failures, replays, outbox, limits): ``docs/idempotency.md``;
decision: ``docs/adr/0006-idempotency-and-outbox.md``.
"""

from __future__ import annotations

from shared.idempotency.base import IdempotencyGuard, Outcome, WithMessages, idempotent
from shared.idempotency.config import IdempotencyConfig
from shared.idempotency.exceptions import (
    IdempotencyAlreadyInProgress,
    IdempotencyConfigError,
    IdempotencyError,
    IdempotencyKeyError,
    IdempotencyLeaseLost,
    IdempotencyPayloadConflict,
    IdempotencyResultNotStorable,
    IdempotencyStoredFailure,
)
from shared.idempotency.persistence import (
    IdempotencyRecord,
    IdempotencyStatus,
    PersistenceStore,
    canonical_json,
    hash_key,
    hash_payload,
)
from shared.idempotency.record_store import RecordStorePersistence
from shared.idempotency.serialization import JsonSerializer, PydanticSerializer, ResultSerializer

__all__ = [
    "IdempotencyAlreadyInProgress",
    "IdempotencyConfig",
    "IdempotencyConfigError",
    "IdempotencyError",
    "IdempotencyGuard",
    "IdempotencyKeyError",
    "IdempotencyLeaseLost",
    "IdempotencyPayloadConflict",
    "IdempotencyRecord",
    "IdempotencyResultNotStorable",
    "IdempotencyStatus",
    "IdempotencyStoredFailure",
    "JsonSerializer",
    "Outcome",
    "PersistenceStore",
    "PydanticSerializer",
    "RecordStorePersistence",
    "ResultSerializer",
    "WithMessages",
    "canonical_json",
    "hash_key",
    "hash_payload",
    "idempotent",
]
