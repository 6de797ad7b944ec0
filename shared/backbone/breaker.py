"""A per-downstream circuit breaker whose state is shared through the record store.

Why shared: the Functions host scales out, and every instance hammering a dead downstream until its own
counter trips would still burn delivery attempts. The state lives in one record (table ``circuits``,
partition ``writeback``, row = downstream name) updated with ETag compare-and-swap; each process caches
it for ``cache_ttl`` so the hot path (circuit closed) costs no storage read per message.

States and transitions::

    CLOSED --(failure_threshold consecutive "downstream unavailable" failures)--> OPEN
    OPEN   --(open_until passed; the first caller wins the probe by CAS)-------> HALF_OPEN
    HALF_OPEN --(the probe succeeds)--> CLOSED          (cooldown reset)
    HALF_OPEN --(the probe fails)-----> OPEN            (cooldown doubled, up to max_cooldown)
    HALF_OPEN --(probe_lease passes without an answer: the prober died)--> another caller may probe

:meth:`CircuitBreaker.permit` answers PROCEED (closed), PROBE (this caller is the half-open probe) or
PARK (open, or someone else is probing): a parked delivery is stored by
:mod:`shared.backbone.parking` and completed on the bus, so no delivery attempt is used while the
downstream is down. ``open_until`` gets up to 20 % random jitter so instances do not probe in step.

Only :class:`~shared.backbone.errors.DownstreamUnavailable` counts as a failure (see
:mod:`shared.backbone.errors`); any answer from the downstream - even a rejection - is a success for the
breaker. "Consecutive" is approximate across processes: a success seen through a stale cache does not
reset another process's count (the cost is at most an earlier or later trip).
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.names import TABLE_CIRCUITS
from shared.storage.ports import RecordStore

_log = logging.getLogger("tie.backbone.breaker")

PARTITION = "writeback"
_CAS_ROUNDS = 8


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Permit(enum.Enum):
    PROCEED = "proceed"
    PROBE = "probe"
    PARK = "park"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    max_cooldown: timedelta = timedelta(minutes=10)
    #: How long a half-open probe may take before another caller may probe instead.
    probe_lease: timedelta = timedelta(seconds=60)
    cache_ttl: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.cooldown <= timedelta(0) or self.max_cooldown < self.cooldown:
            raise ValueError("cooldown must be positive and at most max_cooldown")


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    downstream: str
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: datetime | None = None
    open_until: datetime | None = None
    probe_until: datetime | None = None
    cooldown_s: float = 0.0
    last_error: str | None = None
    trips: int = 0

    def to_value(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "failures": self.failures,
            "opened_at": _iso(self.opened_at),
            "open_until": _iso(self.open_until),
            "probe_until": _iso(self.probe_until),
            "cooldown_s": self.cooldown_s,
            "last_error": self.last_error,
            "trips": self.trips,
        }

    @classmethod
    def from_value(cls, downstream: str, value: dict[str, Any]) -> BreakerSnapshot:
        return cls(
            downstream=downstream,
            state=BreakerState(value.get("state", "closed")),
            failures=int(value.get("failures", 0)),
            opened_at=_parse(value.get("opened_at")),
            open_until=_parse(value.get("open_until")),
            probe_until=_parse(value.get("probe_until")),
            cooldown_s=float(value.get("cooldown_s", 0.0)),
            last_error=value.get("last_error"),
            trips=int(value.get("trips", 0)),
        )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change caused by a call (for platform events and the journal)."""

    old: BreakerState
    new: BreakerState
    snapshot: BreakerSnapshot


class CircuitBreaker:
    """The breaker of one downstream. Thread-safe; processes share state through ``records``."""

    def __init__(
        self,
        records: RecordStore,
        downstream: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        table: str = TABLE_CIRCUITS,
    ) -> None:
        self._records = records
        self.downstream = downstream
        self.config = config or BreakerConfig()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rng = rng or random.Random()
        self._table = table
        self._lock = threading.Lock()
        # Writers in this process take turns, so the compare-and-swap below only ever races other
        # processes (a failure counted by a thread here is never lost to a sibling thread's write).
        self._write_lock = threading.Lock()
        self._cached: BreakerSnapshot | None = None
        self._cached_etag: str | None = None
        self._cached_at = -1e18

    # -- reading ---------------------------------------------------------------------------------------

    def _load(self) -> tuple[BreakerSnapshot, str | None]:
        record = self._records.get(self._table, PARTITION, self.downstream)
        snapshot = (
            BreakerSnapshot(self.downstream)
            if record is None
            else BreakerSnapshot.from_value(self.downstream, record.value)
        )
        etag = None if record is None else record.etag
        with self._lock:
            self._cached, self._cached_etag, self._cached_at = snapshot, etag, time.monotonic()
        return snapshot, etag

    def snapshot(self, *, fresh: bool = False) -> BreakerSnapshot:
        """The current state (from the cache unless ``fresh`` or the cache is older than ``cache_ttl``)."""
        with self._lock:
            cached, age = self._cached, time.monotonic() - self._cached_at
        if not fresh and cached is not None and age < self.config.cache_ttl.total_seconds():
            return cached
        return self._load()[0]

    # -- deciding --------------------------------------------------------------------------------------

    def permit(self) -> Permit:
        """May the caller call the downstream now? (See the module docstring.)"""
        snapshot = self.snapshot()
        if snapshot.state is BreakerState.CLOSED:
            return Permit.PROCEED
        now = self._clock()
        if snapshot.state is BreakerState.OPEN and snapshot.open_until and now < snapshot.open_until:
            return Permit.PARK
        if snapshot.state is BreakerState.HALF_OPEN and snapshot.probe_until and now < snapshot.probe_until:
            return Permit.PARK
        # Due for a probe: exactly one caller wins the compare-and-swap.
        current, etag = self._load()
        if current.state is BreakerState.CLOSED:
            return Permit.PROCEED
        if current != snapshot or etag is None:
            return Permit.PARK  # changed under us: let the next call look again
        probing = replace(current, state=BreakerState.HALF_OPEN, probe_until=now + self.config.probe_lease)
        try:
            record = self._records.update(
                self._table, PARTITION, self.downstream, probing.to_value(), etag=etag
            )
        except (ConcurrencyConflict, RecordNotFound):
            return Permit.PARK
        self._remember(probing, record.etag)
        _log.info("circuit of downstream %s half-open: probing", self.downstream, extra={"event": "circuit"})
        return Permit.PROBE

    def due_for_probe(self) -> bool:
        """Open (or half-open with an expired probe lease) and past its wait: a probe may go now."""
        snapshot = self.snapshot(fresh=True)
        now = self._clock()
        if snapshot.state is BreakerState.OPEN:
            return snapshot.open_until is None or now >= snapshot.open_until
        if snapshot.state is BreakerState.HALF_OPEN:
            return snapshot.probe_until is None or now >= snapshot.probe_until
        return False

    # -- recording -------------------------------------------------------------------------------------

    def record_success(self) -> Transition | None:
        """The downstream answered. Closes the circuit (returns the transition) when it was not closed."""
        cached = self.snapshot()
        if cached.state is BreakerState.CLOSED and cached.failures == 0:
            return None  # the hot path: nothing to write
        return self._mutate(self._succeeded)

    def record_failure(self, error_code: str) -> Transition | None:
        """The downstream is unavailable. Returns the transition when this failure opened the circuit."""
        return self._mutate(lambda s: self._failed(s, error_code))

    def reset(self) -> None:
        """Close the circuit (operator action, tests)."""
        self._mutate(self._succeeded)

    def _succeeded(self, current: BreakerSnapshot) -> BreakerSnapshot | None:
        if current.state is BreakerState.CLOSED and current.failures == 0:
            return None
        return BreakerSnapshot(self.downstream, trips=current.trips)

    def _failed(self, current: BreakerSnapshot, error_code: str) -> BreakerSnapshot:
        now = self._clock()
        failures = current.failures + 1
        if current.state is BreakerState.OPEN:
            return replace(current, failures=failures, last_error=error_code)
        base = self.config.cooldown.total_seconds()
        if current.state is BreakerState.HALF_OPEN:
            cooldown = min(self.config.max_cooldown.total_seconds(), max(base, current.cooldown_s * 2))
        elif failures >= self.config.failure_threshold:
            cooldown = base
        else:
            return replace(current, failures=failures, last_error=error_code)
        wait = cooldown * (1.0 + self._rng.uniform(0.0, 0.2))
        return BreakerSnapshot(
            self.downstream,
            state=BreakerState.OPEN,
            failures=failures,
            opened_at=now,
            open_until=now + timedelta(seconds=wait),
            probe_until=None,
            cooldown_s=cooldown,
            last_error=error_code,
            trips=current.trips + 1,
        )

    def _mutate(self, change: Callable[[BreakerSnapshot], BreakerSnapshot | None]) -> Transition | None:
        with self._write_lock:
            return self._mutate_locked(change)

    def _mutate_locked(
        self, change: Callable[[BreakerSnapshot], BreakerSnapshot | None]
    ) -> Transition | None:
        for _ in range(_CAS_ROUNDS):
            current, etag = self._load()
            updated = change(current)
            if updated is None:
                return None
            try:
                if etag is None:
                    record = self._records.insert(self._table, PARTITION, self.downstream, updated.to_value())
                else:
                    record = self._records.update(
                        self._table, PARTITION, self.downstream, updated.to_value(), etag=etag
                    )
            except (ConcurrencyConflict, RecordExists, RecordNotFound):
                continue
            self._remember(updated, record.etag)
            if updated.state is not current.state and updated.state is not BreakerState.HALF_OPEN:
                _log.warning(
                    "circuit of downstream %s %s",
                    self.downstream,
                    updated.state.value,
                    extra={
                        "event": "circuit",
                        "status": updated.state.value,
                        "error_code": updated.last_error,
                    },
                )
                return Transition(current.state, updated.state, updated)
            return None
        _log.warning("circuit of downstream %s: state not updated (contention)", self.downstream)
        return None

    def _remember(self, snapshot: BreakerSnapshot, etag: str) -> None:
        with self._lock:
            self._cached, self._cached_etag, self._cached_at = snapshot, etag, time.monotonic()
