"""Exponential backoff with jitter, and the in-delivery retry policy of write-back subscribers.

"Full jitter" (AWS Architecture Blog, *Exponential Backoff And Jitter*): the n-th wait is drawn uniformly
from ``[0, min(cap, base * factor ** (n - 1))]``. Many workers retrying against one recovering
downstream then spread out instead of arriving in lock-step waves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(n)`` for the n-th retry (n >= 1): uniform in ``[0, min(cap, base * factor**(n-1))]``."""

    base: float = 0.2
    cap: float = 5.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.factor < 1:
            raise ValueError("backoff needs base >= 0, cap >= 0 and factor >= 1")

    def ceiling(self, attempt: int) -> float:
        """The largest wait before retry number ``attempt`` (1 = the first retry)."""
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        # Cap the exponent so huge attempt numbers cannot overflow the float.
        return min(self.cap, self.base * self.factor ** min(attempt - 1, 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or _RNG).uniform(0.0, self.ceiling(attempt))


_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a write-back subscriber retries a transient failure *within one delivery*.

    ``max_attempts`` calls of the downstream at most (1 = no in-delivery retry), with ``backoff`` between
    them. After that the delivery fails and the bus redelivers it (one delivery attempt used) - unless the
    downstream's circuit opened meanwhile, in which case the work is parked instead. Keep
    ``max_attempts * (downstream timeout) + backoff.cap * (max_attempts - 1)`` well inside the message
    lock and the idempotency lease.
    """

    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
