"""Connection, schema set-up and transactions of the embedded bus: the base of
:class:`~shared.adapters.embedded.sqlite_bus.SqliteBus` (receiving, settlement and the public operations
build on it)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.adapters.embedded._sqlite_bus_schema import (
    _ACTIVE,
    _DEAD,
    _SCHEMA,
    _SCHEMA_VERSION,
    _decode_properties,
    _from_us,
    _Sub,
    _to_us,
    _Topic,
    _us,
    _utc_now,
)
from shared.adapters.embedded._writelock import ProcessWriteLock
from shared.messaging.errors import BusUnavailable, SubscriptionNotFound, TopicNotFound
from shared.messaging.filters import compile_filter
from shared.messaging.ports import ReceivedMessage
from shared.messaging.topology import TOPOLOGY, TopicSpec
from shared.storage.private_files import private_file


class _SqliteBusCore:
    """State, connection and transactions shared by every part of the bus."""

    def __init__(
        self,
        path: Path | str,
        topology: Sequence[TopicSpec] = TOPOLOGY,
        *,
        clock: Callable[[], datetime] | None = None,
        busy_timeout: float = 15.0,
        poll_interval: float = 0.025,
    ) -> None:
        """Open (creating on demand) the bus file at ``path`` and apply ``topology`` to it.

        ``busy_timeout`` bounds how long one operation waits for another process's write transaction
        before raising :class:`~shared.messaging.errors.BusUnavailable`; ``poll_interval`` is the sleep
        between attempts while ``receive`` waits for a message.
        """
        self._path = Path(path)
        self._clock = clock or _utc_now
        self._poll_interval = poll_interval
        self._owner = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._writer = threading.RLock()
        self._busy_timeout = busy_timeout
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        # Per subscription: a condition receivers wait on between polls, and a count of wake-ups.
        self._wake: dict[tuple[str, str], threading.Condition] = {}
        self._generation: dict[tuple[str, str], int] = {}
        # Per subscription: when a has-work read last found nothing, and the wake-up count then.
        self._empty_at: dict[tuple[str, str], tuple[float, int]] = {}
        self._topics: dict[str, _Topic] = {}
        for spec in topology:
            if spec.name in self._topics:
                raise ValueError(f"topic {spec.name!r} is declared twice")
            subs: dict[str, _Sub] = {}
            for sub in spec.subscriptions:
                if sub.name in subs:
                    raise ValueError(f"subscription {spec.name}/{sub.name} is declared twice")
                if sub.max_delivery_count < 1:
                    raise ValueError(f"subscription {spec.name}/{sub.name}: max_delivery_count must be >= 1")
                subs[sub.name] = _Sub(spec.name, sub, compile_filter(sub.filter))
            self._topics[spec.name] = _Topic(spec, subs)
            for sub_name in subs:
                self._wake[(spec.name, sub_name)] = threading.Condition(threading.Lock())
                self._generation[(spec.name, sub_name)] = 0

        private_file(self._path)  # 0600 in a 0700 directory: messages hold patient data
        self._process_lock = ProcessWriteLock(self._path)  # writers of other processes queue on it
        try:
            conn = sqlite3.connect(
                str(self._path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            self._process_lock.close()
            raise BusUnavailable(f"cannot open bus database {self._path.name}") from exc
        self._conn: sqlite3.Connection | None = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            with self._transaction() as tx:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                self._apply_topology(tx)
        except sqlite3.OperationalError as exc:
            self.close()
            raise BusUnavailable(f"cannot initialise bus database {self._path.name}") from exc
        except BaseException:
            self.close()
            raise

    # Lifecycle -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. Idempotent; session locks held by this instance simply expire."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._process_lock.close()

    @property
    def path(self) -> Path:
        return self._path

    def _notify_published(self, topic: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Wake receivers for the active rows just inserted (subscription, state: columns 1 and 3)."""
        for subscription, ready in Counter(row[1] for row in rows if row[3] == _ACTIVE).items():
            self._notify(topic, subscription, ready)

    def _notify(self, topic: str, subscription: str, ready: int = 1) -> None:
        """Wake up to ``ready`` receivers waiting on the subscription (one per message made claimable)."""
        key = (topic, subscription)
        wake = self._wake[key]
        with wake:
            self._generation[key] += 1
            wake.notify(ready)

    # Internals -------------------------------------------------------------------------------------------

    def _topic(self, topic: str) -> _Topic:
        entry = self._topics.get(topic)
        if entry is None:
            raise TopicNotFound(f"unknown topic {topic!r}")
        return entry

    def _subscription(self, topic: str, subscription: str) -> _Sub:
        sub = self._topic(topic).subscriptions.get(subscription)
        if sub is None:
            raise SubscriptionNotFound(f"unknown subscription {topic}/{subscription}")
        return sub

    def _now_us(self) -> int:
        return _to_us(self._clock())

    @staticmethod
    def _effective_ttl_us(sub: _Sub, ttl_us: int | None) -> int:
        default = _us(sub.spec.default_ttl)
        return default if ttl_us is None else min(ttl_us, default)

    def _apply_topology(self, tx: sqlite3.Connection) -> None:
        for name, entry in self._topics.items():
            tx.execute("INSERT OR IGNORE INTO topics (name) VALUES (?)", (name,))
            for sub in entry.subscriptions.values():
                spec = sub.spec
                tx.execute(
                    "INSERT INTO subscriptions (topic, name, filter, max_delivery_count, lock_duration_us, "
                    "requires_session, default_ttl_us, dead_letter_on_expiry) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (topic, name) DO UPDATE SET filter = excluded.filter, "
                    "max_delivery_count = excluded.max_delivery_count, "
                    "lock_duration_us = excluded.lock_duration_us, "
                    "requires_session = excluded.requires_session, default_ttl_us = excluded.default_ttl_us, "
                    "dead_letter_on_expiry = excluded.dead_letter_on_expiry",
                    (
                        name,
                        spec.name,
                        spec.filter,
                        spec.max_delivery_count,
                        _us(spec.lock_duration),
                        int(spec.requires_session),
                        _us(spec.default_ttl),
                        int(spec.dead_letter_on_expiry),
                    ),
                )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BusUnavailable("the bus has been closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (takes the write lock up front, so no upgrade deadlocks)."""
        with self._writer:
            self._connection()  # closed: BusUnavailable before any lock
            if not self._process_lock.acquire(self._busy_timeout):
                raise BusUnavailable(f"bus database {self._path.name} is busy")
            try:
                with self._transaction_locked() as conn:
                    yield conn
            finally:
                self._process_lock.release()

    @contextmanager
    def _transaction_locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            conn.row_factory = sqlite3.Row
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise BusUnavailable(f"bus database {self._path.name} is busy") from exc
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                conn.rollback()
                raise BusUnavailable(
                    f"bus database {self._path.name} failed: {exc.__class__.__name__}"
                ) from exc
            except BaseException:
                conn.rollback()
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    conn.rollback()
                    raise BusUnavailable(f"bus database {self._path.name} is busy") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A pooled read connection (autocommit): reads never queue behind this instance's writer."""
        with self._readers_lock:
            if self._conn is None:
                raise BusUnavailable("the bus has been closed")
            conn = self._readers.pop() if self._readers else None
        try:
            if conn is None:
                conn = sqlite3.connect(
                    str(self._path), timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
                )
                conn.row_factory = sqlite3.Row
            yield conn
        except sqlite3.OperationalError as exc:
            raise BusUnavailable(f"bus database {self._path.name} is busy") from exc
        finally:
            if conn is not None:
                with self._readers_lock:
                    if self._conn is None:
                        conn.close()
                    else:
                        self._readers.append(conn)

    def _to_message(
        self, row: sqlite3.Row, *, lock_token: str | None, locked_until: int | None, delivery_count: int
    ) -> ReceivedMessage:
        dead = row["state"] == _DEAD
        enqueued = _from_us(row["enqueued_at"])
        assert enqueued is not None
        return ReceivedMessage(
            topic=row["topic"],
            subscription=row["subscription"],
            body=bytes(row["body"]),
            message_id=row["message_id"],
            sequence_number=row["sequence_number"],
            delivery_count=delivery_count,
            enqueued_time=enqueued,
            session_id=row["session_id"],
            correlation_id=row["correlation_id"],
            content_type=row["content_type"],
            subject=row["subject"],
            application_properties=_decode_properties(row["properties"]),
            lock_token=lock_token,
            locked_until=_from_us(locked_until),
            expires_at=None if dead else _from_us(row["expires_at"]),
            dead_letter_reason=row["dl_reason"],
            dead_letter_description=row["dl_description"],
            dead_lettered_at=_from_us(row["dl_at"]),
        )
