"""Idempotency utility: at-least-once delivery + this guard = exactly-once *effects*.

Layout follows Powertools for AWS Lambda: :mod:`~shared.idempotency.base` (guard and decorator),
:mod:`~shared.idempotency.persistence` (record model, hashing, store base with the state machine),
:mod:`~shared.idempotency.config`, :mod:`~shared.idempotency.exceptions`,
:mod:`~shared.idempotency.serialization`, and one store, :mod:`~shared.idempotency.record_store`, on the
:class:`~shared.storage.ports.RecordStore` port (SQLite and Azure Table Storage alike).

Usage::

    guard = IdempotencyGuard(RecordStorePersistence(records), IdempotencyConfig(namespace="writeback-fhir"))
    outcome = guard.run(event_key.value, event_payload, lambda: write_back(event), is_replay=replayed)
    outcome.result, outcome.replayed_from_store

Semantics
---------
**Key.** The clinical-event identity (:attr:`shared.canonical.model.EventKey.value`, see
:mod:`shared.canonical.identity`) — or any non-empty string — *not* the HTTP request or the HL7 control
ID, so the HL7 v2 and FHIR versions of one admission deduplicate against each other. Stored as
``sha256(namespace \\x1f key)``; the namespace scopes the key to one effect. The key itself is never
stored or logged.

**Payload hash.** SHA-256 of the canonical JSON (sorted keys, no whitespace) of
``config.payload_validation(payload)`` (the whole payload by default; raw ``bytes`` are hashed as they
are), stored with the record and compared on every repeat.

**States.** ``IN_PROGRESS`` (a run holds the key under a lease) -> ``COMPLETED`` (result stored) ->
``EXPIRED`` (``expires_after``, default 30 days, passed: treated as absent and replaced by the next run;
never stored, derived from the expiry time). Transitions, each one conditional write:

* absent / expired -> ``IN_PROGRESS``: conditional insert (or ETag replace of the expired record);
* ``IN_PROGRESS`` -> ``COMPLETED``: ETag replace by the holder; if the record changed meanwhile the
  holder gets :class:`IdempotencyLeaseLost` (its effect ran, but a taker's run owns the key);
* ``IN_PROGRESS`` -> absent: the effect raised (not a final failure), the holder deletes its record so
  the retry runs the effect again (Powertools' behaviour);
* ``IN_PROGRESS`` (lease expired: holder presumed crashed) -> ``IN_PROGRESS`` (new holder): ETag
  compare-and-swap, exactly one taker; the others get :class:`IdempotencyAlreadyInProgress`. The lease
  must be shorter than the message lock (validated by :class:`IdempotencyConfig`), so the redelivery after
  a crash finds it expired.

**Repeats.** ``COMPLETED`` -> the stored result is returned (``Outcome.replayed_from_store``) without
running the effect. ``IN_PROGRESS`` with a live lease -> :class:`IdempotencyAlreadyInProgress`, a
:class:`~shared.errors.TransientError`: the message is abandoned and retried, by which time the result is
stored. Two workers racing on a new key: the conditional insert lets exactly one run the effect.

**Same key, different payload** (both hashes known and unequal, record not expired):
:class:`IdempotencyPayloadConflict`, a :class:`~shared.errors.PermanentError` carrying both hashes (not
the payloads), ``classification = "correction"`` and a ``dead_letter_reason``, so the caller routes it to
the correction workflow / dead-letter. Never swallowed, never applied a second time. Checked before
anything else, including for an ``IN_PROGRESS`` record.

**Failures of the effect.** By default nothing is stored: the ``IN_PROGRESS`` record is deleted and the
exception propagates, so the retry — or the dead-letter replay after a fix — runs the effect again. This
is deliberate: the fault scenario "poison message dead-lettered, replayed after the fix, applied once"
needs the replay to run. Optionally ``config.is_final_failure(exc)`` marks failures to *store* (e.g. an
HL7 ``AR`` rejection): the key becomes ``COMPLETED`` with the error's code and type (no message text);
later ordinary deliveries raise :class:`IdempotencyStoredFailure` (permanent -> dead-letter) instead of
hammering the downstream again, while a *replay* takes the stored failure over and runs the effect again.

**Replay tagging.** ``run(..., is_replay=True)`` for deliveries from a dead-letter replay. The record
stores whether the run that applied the effect was a replay (``Outcome.applied_by_replay``) and counts
the replays and duplicates answered from the store (``replays_observed`` / ``duplicates_observed``), so
"replaying twice, or replaying something already applied, changes nothing" is observable.

**Results** are stored as JSON through ``config.serializer``. The first call gets the effect's own
return value; repeats get ``serializer.load`` of the stored data.

**Outbox.** :meth:`IdempotencyGuard.run_and_publish` commits the effect's outgoing bus messages in the
same conditional write as ``COMPLETED`` and then publishes them (see :mod:`shared.outbox`).

**Limits.** An effect that outlives its lease can be taken over and run twice (detected and raised as
:class:`IdempotencyLeaseLost`, never silent): keep downstream timeouts well inside the lease, and keep
downstream writes conditional (``If-None-Exist`` / ``If-Match``) as the second line of defence — a
crash after the effect but before ``COMPLETED`` re-runs the effect after the lease, by design.
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
