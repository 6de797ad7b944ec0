"""The idempotency guard (:class:`IdempotencyGuard`) and decorator (:func:`idempotent`).

See :mod:`shared.idempotency` for the semantics.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from shared.errors import TieError
from shared.idempotency.config import IdempotencyConfig
from shared.idempotency.exceptions import (
    IdempotencyConfigError,
    IdempotencyKeyError,
    IdempotencyLeaseLost,
    IdempotencyResultNotStorable,
    IdempotencyStoredFailure,
)
from shared.idempotency.persistence import (
    IdempotencyRecord,
    PersistenceStore,
    StoredRecord,
    hash_key,
    hash_payload,
)
from shared.messaging.ports import MessageBus
from shared.outbox.model import OutboxMessage
from shared.outbox.outbox import Outbox, PreparedBatch
from shared.storage.errors import ConcurrencyConflict, RecordNotFound
from shared.storage.keys import InvalidValue, ValueTooLarge

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

_log = logging.getLogger("tie.idempotency")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What a guarded call returns."""

    result: T
    #: ``True``: the effect was not run by this call; ``result`` is the stored outcome of an earlier run.
    replayed_from_store: bool
    key_hash: str
    #: This call was a replay (e.g. from a dead-letter sub-queue).
    is_replay: bool
    #: The run that produced the stored outcome was itself a replay (first applied by a replay).
    applied_by_replay: bool
    #: This call took over an abandoned lease, an expired record or (a replay) a stored failure.
    took_over: bool
    #: 1 for the first run of the key, +1 per takeover.
    attempt: int
    #: With messages: whether they are all published now (``False``: committed, the relay publishes them).
    published: bool | None = None


@dataclass(frozen=True, slots=True)
class WithMessages(Generic[T]):
    """Returned by the effect passed to :meth:`IdempotencyGuard.run_and_publish`: its result and the bus
    messages that must be published if (and only if) the result is stored."""

    result: T
    messages: Sequence[OutboxMessage] = field(default_factory=tuple)


class IdempotencyGuard:
    """Runs an effect at most once per key (see :mod:`shared.idempotency`). Thread-safe.

    ``outbox`` and ``bus`` are needed only by :meth:`run_and_publish`; the outbox must use the same
    record store as ``store`` (the idempotency record is the outbox owner).
    """

    def __init__(
        self,
        store: PersistenceStore,
        config: IdempotencyConfig | None = None,
        *,
        outbox: Outbox | None = None,
        bus: MessageBus | None = None,
    ) -> None:
        self._store = store
        self._config = config or IdempotencyConfig()
        self._outbox = outbox
        self._bus = bus
        cfg = self._config
        self._lease_ms = int(cfg.in_progress_lease.total_seconds() * 1000)
        self._expires_ms = int(cfg.expires_after.total_seconds() * 1000)
        if outbox is not None:
            probe = store.owner_ref("0" * 64)
            if probe is None or getattr(store, "records", None) is not outbox.records:
                raise IdempotencyConfigError("the outbox must share the idempotency store's record store")

    @property
    def config(self) -> IdempotencyConfig:
        return self._config

    @property
    def store(self) -> PersistenceStore:
        return self._store

    def key_hash(self, key: str) -> str:
        return hash_key(self._config.namespace, key)

    def payload_hash(self, payload: Any) -> str | None:
        """Hash of the validated part of ``payload`` (``None``: no payload, nothing to compare)."""
        if payload is None:
            return None
        selector = self._config.payload_validation
        if selector is None:
            return hash_payload(payload)
        try:
            selected = selector(payload)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise IdempotencyKeyError(f"payload_validation failed ({type(exc).__name__})") from None
        return hash_payload(selected)

    def inspect(self, key: str) -> IdempotencyRecord | None:
        """The stored record for ``key`` (status: use ``record.status_at(now_ms)``)."""
        found = self._store.get(self.key_hash(key))
        return None if found is None else found.record

    def run(self, key: str, payload: Any, fn: Callable[[], T], *, is_replay: bool = False) -> Outcome[T]:
        """Run ``fn`` once for ``key``; later calls get the stored result (``replayed_from_store``).

        ``payload`` (``None`` to skip the check) is hashed (after ``payload_validation``) and compared
        with the stored hash on every repeat. Raises what :mod:`shared.idempotency.exceptions` lists, or
        whatever ``fn`` raised (after releasing the key, or storing the failure when final).
        """
        return self._execute(key, payload, fn, is_replay=is_replay, with_messages=False)

    def run_and_publish(
        self, key: str, payload: Any, fn: Callable[[], WithMessages[T]], *, is_replay: bool = False
    ) -> Outcome[T]:
        """Like :meth:`run`, and publish ``fn``'s messages through the transactional outbox.

        The messages are committed in the same conditional write that marks the key ``COMPLETED``, then
        published; a crash or bus outage in between leaves them to the relay (see :mod:`shared.outbox`).
        A repeat that finds the key completed with messages still unpublished publishes them.
        """
        if self._outbox is None or self._bus is None:
            raise IdempotencyConfigError("run_and_publish needs the guard's outbox and bus")
        return self._execute(key, payload, fn, is_replay=is_replay, with_messages=True)

    # -- internals -----------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._config.clock().timestamp() * 1000)

    def _execute(
        self, key: str, payload: Any, fn: Callable[[], Any], *, is_replay: bool, with_messages: bool
    ) -> Outcome[Any]:
        cfg = self._config
        key_hash = self.key_hash(key)
        acquisition = self._store.acquire(
            key_hash=key_hash,
            namespace=cfg.namespace,
            payload_hash=self.payload_hash(payload),
            is_replay=is_replay,
            now_ms=self._now_ms(),
            lease_ms=self._lease_ms,
            expires_after_ms=self._expires_ms,
        )
        if acquisition.existing is not None:
            return self._answer_from_store(
                acquisition.existing, is_replay=is_replay, with_messages=with_messages
            )
        held = acquisition.held
        assert held is not None

        try:
            produced = fn()
        except BaseException as exc:
            self._after_failure(held, exc)
            raise

        result: Any
        messages: Sequence[OutboxMessage] = ()
        if with_messages:
            if not isinstance(produced, WithMessages):
                self._release(held)
                raise TypeError("run_and_publish: the effect must return WithMessages(result, messages)")
            result, messages = produced.result, produced.messages
        else:
            result = produced
        try:
            data = cfg.serializer.dump(result)
        except Exception as exc:
            self._release(held)
            raise IdempotencyResultNotStorable(f"result of {type(result).__name__} not serialisable") from exc

        batch: PreparedBatch | None = None
        if messages:
            assert self._outbox is not None
            owner = self._store.owner_ref(key_hash)
            assert owner is not None
            try:
                batch = self._outbox.prepare(owner, held.version, messages)
            except BaseException:
                self._release(held)
                raise
        try:
            self._store.complete(
                held,
                result=data,
                now_ms=self._now_ms(),
                expires_after_ms=self._expires_ms,
                outbox=batch.embedded() if batch is not None else None,
            )
        except (ConcurrencyConflict, RecordNotFound):
            raise IdempotencyLeaseLost(key_hash) from None
        except (InvalidValue, ValueTooLarge) as exc:
            self._release(held)
            raise IdempotencyResultNotStorable(f"result not storable ({exc.code})") from None

        published: bool | None = None
        if batch is not None:
            assert self._bus is not None and self._outbox is not None
            published = self._outbox.publish(self._bus, batch)
        elif with_messages:
            published = True
        return Outcome(
            result=result,
            replayed_from_store=False,
            key_hash=key_hash,
            is_replay=is_replay,
            applied_by_replay=held.record.by_replay,
            took_over=acquisition.took_over,
            attempt=held.record.attempt,
            published=published,
        )

    def _answer_from_store(
        self, existing: StoredRecord, *, is_replay: bool, with_messages: bool
    ) -> Outcome[Any]:
        record = existing.record
        if self._config.record_observations:
            self._store.observe(existing, is_replay=is_replay, now_ms=self._now_ms())
        if record.failed:
            error = record.error or {}
            raise IdempotencyStoredFailure(
                record.key_hash, error_code=error.get("code", ""), error_type=error.get("type", "")
            )
        published: bool | None = None
        if with_messages:
            published = True
            if record.outbox:
                assert self._outbox is not None and self._bus is not None
                owner = self._store.owner_ref(record.key_hash)
                assert owner is not None
                published = self._outbox.flush_owner(self._bus, owner)
        return Outcome(
            result=self._config.serializer.load(record.result),
            replayed_from_store=True,
            key_hash=record.key_hash,
            is_replay=is_replay,
            applied_by_replay=record.by_replay,
            took_over=False,
            attempt=record.attempt,
            published=published,
        )

    def _after_failure(self, held: StoredRecord, exc: BaseException) -> None:
        final = self._config.is_final_failure
        if isinstance(exc, Exception) and final is not None and final(exc):
            code = getattr(exc, "code", None)
            try:
                self._store.fail(
                    held,
                    error_code=code if isinstance(code, str) else "error",
                    error_type=type(exc).__name__,
                    now_ms=self._now_ms(),
                    expires_after_ms=self._expires_ms,
                )
            except (ConcurrencyConflict, RecordNotFound):
                pass  # lease lost meanwhile: the taker's run decides the outcome
            except TieError as store_exc:  # never mask the effect's own exception
                _log.warning(
                    "idempotency %s: failure not stored (%s)", held.record.key_hash[:16], store_exc.code
                )
            return
        self._release(held)

    def _release(self, held: StoredRecord) -> None:
        try:
            self._store.release(held)
        except TieError as exc:  # the lease expiry releases it eventually
            _log.warning("idempotency %s: release failed (%s)", held.record.key_hash[:16], exc.code)


def idempotent(
    guard: IdempotencyGuard | Callable[[], IdempotencyGuard],
    *,
    key: Callable[..., str],
    payload: Callable[..., Any] | None = None,
    is_replay: Callable[..., bool] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function so it runs at most once per ``key(*args, **kwargs)``.

    ``guard`` may be a factory (resolved on each call: stores are usually built after import time).
    ``payload`` and ``is_replay`` are computed from the same arguments. The decorated function returns
    the result (the stored one on repeats); use :meth:`IdempotencyGuard.run` to get the :class:`Outcome`.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            resolved = guard if isinstance(guard, IdempotencyGuard) else guard()
            outcome = resolved.run(
                key(*args, **kwargs),
                payload(*args, **kwargs) if payload is not None else None,
                lambda: func(*args, **kwargs),
                is_replay=is_replay(*args, **kwargs) if is_replay is not None else False,
            )
            return outcome.result

        return wrapper

    return decorate
