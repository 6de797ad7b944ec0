"""Configuration of an :class:`~shared.idempotency.base.IdempotencyGuard`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.idempotency.exceptions import IdempotencyConfigError
from shared.idempotency.serialization import JsonSerializer, ResultSerializer


def utc_now() -> datetime:
    return datetime.now(UTC)


#: Service Bus's (and :class:`~shared.messaging.topology.SubscriptionSpec`'s) default peek-lock duration.
DEFAULT_LOCK_DURATION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class IdempotencyConfig:
    """Settings for one guarded effect.

    namespace
        Scopes keys to one effect: the same clinical event may drive several effects (write-back to the
        FHIR store, to the PAS...), each with its own namespace. The HL7 and FHIR paths of the *same*
        effect must use the same namespace so they deduplicate against each other.
    expires_after
        How long a record (in progress or completed) is kept; once expired it counts as absent and the
        next delivery runs the effect again. Longer than any redelivery can arrive: Service Bus message TTL
        (14 days by default) plus dead-letter replay practice. Default 30 days.
    in_progress_lease
        How long an ``IN_PROGRESS`` record protects a running effect. After that the holder is presumed
        crashed and another delivery may take the key over (ETag compare-and-swap: exactly one taker).
        Must be shorter than ``message_lock_duration``: the redelivery that follows a crashed holder's
        lock expiry must find the lease already expired, instead of burning a delivery attempt on
        :class:`~shared.idempotency.exceptions.IdempotencyAlreadyInProgress`. The effect itself must finish
        well within the lease (bound downstream timeouts accordingly): an effect outliving its lease can
        be taken over and run twice (detected: :class:`~shared.idempotency.exceptions.IdempotencyLeaseLost`).
    message_lock_duration
        The peek-lock duration of the subscription the guarded handler consumes (validation only).
    payload_validation
        Selects the part of the payload that must match on a repeat (like Powertools'
        ``payload_validation_jmespath``), e.g. ``lambda event: event["resource"]``; ``None`` = all of it.
        Leave out volatile parts (receive timestamps, delivery counts) so a genuine redelivery matches.
    serializer
        Converts the effect's result to/from stored JSON (:mod:`shared.idempotency.serialization`).
    is_final_failure
        Decides which exceptions from the effect are *stored* as a permanent outcome (see the package
        docs). ``None`` (default): nothing is stored, the ``IN_PROGRESS`` record is deleted and a retry
        runs the effect again (Powertools' behaviour).
    record_observations
        Count duplicate / replay deliveries that were answered from the store (one extra conditional
        write per such delivery; losing that race is ignored).
    clock
        Timezone-aware "now"; injectable for tests.
    """

    namespace: str = "default"
    expires_after: timedelta = timedelta(days=30)
    in_progress_lease: timedelta = timedelta(seconds=45)
    message_lock_duration: timedelta = DEFAULT_LOCK_DURATION
    payload_validation: Callable[[Any], Any] | None = None
    serializer: ResultSerializer = field(default_factory=JsonSerializer)
    is_final_failure: Callable[[BaseException], bool] | None = None
    record_observations: bool = True
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not self.namespace or "\x1f" in self.namespace:
            raise IdempotencyConfigError("idempotency namespace must be a non-empty string without U+001F")
        if self.in_progress_lease <= timedelta(0):
            raise IdempotencyConfigError("in_progress_lease must be positive")
        if self.in_progress_lease >= self.message_lock_duration:
            raise IdempotencyConfigError(
                f"in_progress_lease ({self.in_progress_lease.total_seconds():g} s) must be shorter than "
                f"the message lock duration ({self.message_lock_duration.total_seconds():g} s)"
            )
        if self.expires_after <= self.in_progress_lease:
            raise IdempotencyConfigError("expires_after must be longer than in_progress_lease")
        if not isinstance(self.serializer, ResultSerializer):
            raise IdempotencyConfigError("serializer must have dump() and load()")

    @classmethod
    def for_lock_duration(cls, lock_duration: timedelta, **settings: Any) -> IdempotencyConfig:
        """A config whose lease is 75% of ``lock_duration`` (e.g. a subscription's ``lock_duration``)."""
        return cls(message_lock_duration=lock_duration, in_progress_lease=lock_duration * 0.75, **settings)
