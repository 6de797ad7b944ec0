"""Idempotency records, key and payload hashing, and the persistence-store base with the state machine.

The base class :class:`PersistenceStore` implements every state transition on top of four primitives a
concrete store provides (read; conditional insert; replace if the version — ETag — is unchanged; delete if
the version is unchanged). Exactly-one-winner guarantees come from those primitives alone, so one
implementation over the :class:`~shared.storage.ports.RecordStore` port
(:class:`~shared.idempotency.record_store.RecordStorePersistence`) serves SQLite and Azure Table Storage.

Stored record value (JSON; times are integer milliseconds since the Unix epoch, UTC)::

    {"v": 1, "status": "IN_PROGRESS" | "COMPLETED", "ns": namespace, "payload_hash": hex | null,
     "holder": run token, "attempt": n, "by_replay": bool, "created_ms": .., "lease_until_ms": ..,
     "expires_ms": .., "completed_ms": .. | null, "result": <serializer output>,
     "error": {"code": .., "type": ..} | null, "replays_observed": n, "duplicates_observed": n,
     "last_observed_ms": .. | null, "outbox": {batch id: ..}}

Neither the key nor the payload is stored: only their SHA-256 hashes. ``EXPIRED`` is never stored; it is
what a record whose ``expires_ms`` has passed *is* (:meth:`IdempotencyRecord.status_at`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

from shared.idempotency.exceptions import (
    IdempotencyAlreadyInProgress,
    IdempotencyKeyError,
    IdempotencyPayloadConflict,
)
from shared.outbox.model import OUTBOX_FIELD, OwnerRef
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.ports import JsonDict

RECORD_FORMAT = 1
#: How many read/compare-and-swap rounds :meth:`PersistenceStore.acquire` tries before giving up.
MAX_ACQUIRE_ROUNDS = 8


class IdempotencyStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"


# -- hashing ----------------------------------------------------------------------------------------------


def hash_key(namespace: str, key: str) -> str:
    """Storage key for ``key`` in ``namespace``: SHA-256 hex of ``namespace \\x1f key``."""
    if not isinstance(key, str) or not key:
        raise IdempotencyKeyError("idempotency key must be a non-empty string")
    text = f"{namespace}\x1f{key}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _json_default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(canonical_json(item).decode("utf-8", "surrogatepass") for item in value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$sha256": hashlib.sha256(bytes(value)).hexdigest()}
    raise TypeError(type(value).__name__)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8. Dataclasses, pydantic models, datetimes,
    decimals, UUIDs, enums and sets are rendered canonically; nested bytes by their SHA-256."""
    try:
        text = json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        )
    except (TypeError, ValueError) as exc:
        raise IdempotencyKeyError(f"payload cannot be rendered as canonical JSON ({exc})") from None
    return text.encode("utf-8", "surrogatepass")


def hash_payload(payload: Any) -> str:
    """SHA-256 hex of the payload: raw bytes as they are, anything else as :func:`canonical_json`."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return hashlib.sha256(bytes(payload)).hexdigest()
    return hashlib.sha256(canonical_json(payload)).hexdigest()


# -- records ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key_hash: str
    status: IdempotencyStatus
    namespace: str
    payload_hash: str | None
    #: Random token of the run that holds (IN_PROGRESS) or completed the key.
    holder: str
    #: 1 for the first run; +1 every time an abandoned lease, expired record or stored failure is replaced.
    attempt: int
    #: Whether the run that holds / completed the key was a replay (first applied by a replay).
    by_replay: bool
    created_ms: int
    lease_until_ms: int
    expires_ms: int
    completed_ms: int | None = None
    result: Any = None
    #: ``{"code": .., "type": ..}`` for a stored final failure, else ``None``.
    error: dict[str, str] | None = None
    replays_observed: int = 0
    duplicates_observed: int = 0
    last_observed_ms: int | None = None
    #: Pending outbox batches committed with this record (see :mod:`shared.outbox`); opaque here.
    outbox: dict[str, Any] = field(default_factory=dict)

    def status_at(self, now_ms: int) -> IdempotencyStatus:
        return IdempotencyStatus.EXPIRED if now_ms >= self.expires_ms else self.status

    def lease_live(self, now_ms: int) -> bool:
        return self.status is IdempotencyStatus.IN_PROGRESS and now_ms < self.lease_until_ms

    @property
    def failed(self) -> bool:
        return self.status is IdempotencyStatus.COMPLETED and self.error is not None

    def to_value(self) -> JsonDict:
        return {
            "v": RECORD_FORMAT,
            "status": self.status.value,
            "ns": self.namespace,
            "payload_hash": self.payload_hash,
            "holder": self.holder,
            "attempt": self.attempt,
            "by_replay": self.by_replay,
            "created_ms": self.created_ms,
            "lease_until_ms": self.lease_until_ms,
            "expires_ms": self.expires_ms,
            "completed_ms": self.completed_ms,
            "result": self.result,
            "error": self.error,
            "replays_observed": self.replays_observed,
            "duplicates_observed": self.duplicates_observed,
            "last_observed_ms": self.last_observed_ms,
            OUTBOX_FIELD: self.outbox,
        }

    @classmethod
    def from_value(cls, key_hash: str, value: JsonDict) -> IdempotencyRecord:
        status = IdempotencyStatus(value["status"])
        if status is IdempotencyStatus.EXPIRED:
            raise ValueError("EXPIRED is never stored")
        return cls(
            key_hash=key_hash,
            status=status,
            namespace=str(value["ns"]),
            payload_hash=value.get("payload_hash"),
            holder=str(value["holder"]),
            attempt=int(value["attempt"]),
            by_replay=bool(value.get("by_replay", False)),
            created_ms=int(value["created_ms"]),
            lease_until_ms=int(value["lease_until_ms"]),
            expires_ms=int(value["expires_ms"]),
            completed_ms=value.get("completed_ms"),
            result=value.get("result"),
            error=value.get("error"),
            replays_observed=int(value.get("replays_observed", 0)),
            duplicates_observed=int(value.get("duplicates_observed", 0)),
            last_observed_ms=value.get("last_observed_ms"),
            outbox=dict(value.get(OUTBOX_FIELD) or {}),
        )


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record and the version (ETag) it was read or written with."""

    record: IdempotencyRecord
    version: str


@dataclass(frozen=True, slots=True)
class Acquisition:
    """Outcome of :meth:`PersistenceStore.acquire`: exactly one of ``held`` / ``existing`` is set."""

    #: We now hold the key (``IN_PROGRESS`` with our token): run the effect.
    held: StoredRecord | None = None
    #: The key is ``COMPLETED`` (result or stored failure): answer from it, do not run the effect.
    existing: StoredRecord | None = None
    #: ``held`` replaced an abandoned lease, an expired record or (for a replay) a stored failure.
    took_over: bool = False


# -- store base -------------------------------------------------------------------------------------------


class PersistenceStore(ABC):
    """Idempotency record store: primitives by subclasses, transitions here.

    Primitive contract (what makes the transitions race-free): ``_insert`` raises
    :class:`~shared.storage.errors.RecordExists` when the key is taken; ``_replace`` and ``_delete``
    succeed only if the stored version equals the given one, else raise
    :class:`~shared.storage.errors.ConcurrencyConflict` (``_replace``: :class:`RecordNotFound` when gone;
    ``_delete``: return ``False`` when gone). Every successful write returns a new version.
    """

    # -- primitives ---------------------------------------------------------------------------------

    @abstractmethod
    def _get(self, key_hash: str) -> StoredRecord | None: ...

    @abstractmethod
    def _insert(self, record: IdempotencyRecord) -> str: ...

    @abstractmethod
    def _replace(self, record: IdempotencyRecord, version: str) -> str: ...

    @abstractmethod
    def _delete(self, key_hash: str, version: str) -> bool: ...

    @abstractmethod
    def _scan(self) -> Iterator[StoredRecord]:
        """Every record (maintenance only: used by :meth:`purge_expired`)."""

    def owner_ref(self, key_hash: str) -> OwnerRef | None:
        """Where the record lives in a :class:`~shared.storage.ports.RecordStore`, for the outbox."""
        return None

    # -- transitions --------------------------------------------------------------------------------

    def get(self, key_hash: str) -> StoredRecord | None:
        return self._get(key_hash)

    def acquire(
        self,
        *,
        key_hash: str,
        namespace: str,
        payload_hash: str | None,
        is_replay: bool,
        now_ms: int,
        lease_ms: int,
        expires_after_ms: int,
    ) -> Acquisition:
        """Take the key for a run, or report the completed record.

        Absent -> insert ``IN_PROGRESS``. Expired -> replaced (the old record counts as absent, its payload
        is not compared). Otherwise payload hashes are compared first (both known and different ->
        :class:`IdempotencyPayloadConflict`), then: ``COMPLETED`` -> returned; a stored failure ->
        returned, except that a replay takes it over; ``IN_PROGRESS`` with a live lease ->
        :class:`IdempotencyAlreadyInProgress`; with an expired lease -> taken over by compare-and-swap (one
        taker wins; the losers get :class:`IdempotencyAlreadyInProgress`).
        """
        fresh = IdempotencyRecord(
            key_hash=key_hash,
            status=IdempotencyStatus.IN_PROGRESS,
            namespace=namespace,
            payload_hash=payload_hash,
            holder=uuid.uuid4().hex,
            attempt=1,
            by_replay=is_replay,
            created_ms=now_ms,
            lease_until_ms=now_ms + lease_ms,
            expires_ms=now_ms + expires_after_ms,
        )
        for _ in range(MAX_ACQUIRE_ROUNDS):
            try:
                return Acquisition(held=StoredRecord(fresh, self._insert(fresh)))
            except RecordExists:
                pass
            current = self._get(key_hash)
            if current is None:
                continue  # deleted since the insert failed: try the insert again
            stored = current.record
            status = stored.status_at(now_ms)
            if status is not IdempotencyStatus.EXPIRED:
                if (
                    payload_hash is not None
                    and stored.payload_hash is not None
                    and payload_hash != stored.payload_hash
                ):
                    raise IdempotencyPayloadConflict(
                        key_hash,
                        stored_payload_hash=stored.payload_hash,
                        received_payload_hash=payload_hash,
                        status=status.value,
                    )
                if status is IdempotencyStatus.COMPLETED and not (stored.failed and is_replay):
                    return Acquisition(existing=current)
                if stored.lease_live(now_ms):
                    raise IdempotencyAlreadyInProgress(
                        key_hash, retry_after=(stored.lease_until_ms - now_ms) / 1000
                    )
            # Unpublished outbox batches always survive a replacement (they are committed messages).
            successor = replace(fresh, attempt=stored.attempt + 1, outbox=stored.outbox)
            if status is not IdempotencyStatus.EXPIRED:
                # keep the history of the key across a takeover
                successor = replace(
                    successor,
                    replays_observed=stored.replays_observed,
                    duplicates_observed=stored.duplicates_observed,
                    last_observed_ms=stored.last_observed_ms,
                )
            try:
                version = self._replace(successor, current.version)
            except (ConcurrencyConflict, RecordNotFound):
                # Changed since we read it: somebody else took it over (exactly one taker wins), completed
                # it, or merely counted an observation. Look again: a taker's lease is live by now.
                continue
            return Acquisition(held=StoredRecord(successor, version), took_over=True)
        raise IdempotencyAlreadyInProgress(key_hash, retry_after=0.0)

    def complete(
        self,
        held: StoredRecord,
        *,
        result: Any,
        now_ms: int,
        expires_after_ms: int,
        outbox: dict[str, Any] | None = None,
    ) -> StoredRecord:
        """``IN_PROGRESS`` -> ``COMPLETED`` with ``result`` (and outbox batches), if we still hold the key.

        Raises :class:`ConcurrencyConflict` / :class:`RecordNotFound` when the record changed since
        ``held`` (lease taken over, or fenced by the outbox relay).
        """
        merged = dict(held.record.outbox)
        if outbox:
            merged.update(outbox)
        done = replace(
            held.record,
            status=IdempotencyStatus.COMPLETED,
            completed_ms=now_ms,
            expires_ms=now_ms + expires_after_ms,
            result=result,
            error=None,
            outbox=merged,
        )
        return StoredRecord(done, self._replace(done, held.version))

    def fail(
        self, held: StoredRecord, *, error_code: str, error_type: str, now_ms: int, expires_after_ms: int
    ) -> StoredRecord:
        """``IN_PROGRESS`` -> ``COMPLETED`` with a stored final failure (no exception text is stored)."""
        done = replace(
            held.record,
            status=IdempotencyStatus.COMPLETED,
            completed_ms=now_ms,
            expires_ms=now_ms + expires_after_ms,
            result=None,
            error={"code": error_code, "type": error_type},
        )
        return StoredRecord(done, self._replace(done, held.version))

    def release(self, held: StoredRecord) -> bool:
        """Delete our ``IN_PROGRESS`` record so a retry runs the effect again.

        ``False`` when it was already taken over or removed (then it is not ours to delete). A record
        carrying unpublished outbox batches (inherited from an earlier run) is not deleted: its lease is
        ended instead, so the retry can take it over at once.
        """
        try:
            if held.record.outbox:
                self._replace(replace(held.record, lease_until_ms=0), held.version)
                return True
            return self._delete(held.record.key_hash, held.version)
        except (ConcurrencyConflict, RecordNotFound):
            return False

    def observe(self, stored: StoredRecord, *, is_replay: bool, now_ms: int) -> StoredRecord | None:
        """Count a duplicate or replay answered from ``stored``; best effort (``None`` if we lost a race)."""
        record = stored.record
        if is_replay:
            record = replace(record, replays_observed=record.replays_observed + 1, last_observed_ms=now_ms)
        else:
            record = replace(
                record, duplicates_observed=record.duplicates_observed + 1, last_observed_ms=now_ms
            )
        try:
            return StoredRecord(record, self._replace(record, stored.version))
        except (ConcurrencyConflict, RecordNotFound):
            return None

    def purge_expired(self, *, now_ms: int, limit: int | None = None) -> int:
        """Delete expired records (not those still holding unpublished outbox batches); returns how many."""
        purged = 0
        for current in self._scan():
            if limit is not None and purged >= limit:
                break
            record = current.record
            if record.status_at(now_ms) is IdempotencyStatus.EXPIRED and not record.outbox:
                try:
                    if self._delete(record.key_hash, current.version):
                        purged += 1
                except ConcurrencyConflict:
                    continue
        return purged
