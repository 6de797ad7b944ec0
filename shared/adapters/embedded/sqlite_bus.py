"""Embedded SQLite implementation of the :class:`~shared.messaging.ports.MessageBus` port.

A development stand-in for Azure Service Bus: the local host, the ``tie bus`` CLI and the tests run the
whole pipeline from one file with no broker. What it reproduces (topics, filters, duplicate detection,
peek-lock, TTL, sessions), its deliberate simplifications and its concurrency: ``docs/embedded-bus.md``;
decision: ``docs/adr/0008-embedded-bus-stands-in-for-service-bus.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from shared.messaging.errors import (
    BusUnavailable,
    MessageLockLost,
    MessageTooLarge,
    SessionLockLost,
    SubscriptionNotFound,
    TopicNotFound,
)
from shared.messaging.filters import CompiledFilter, SystemProps, compile_filter
from shared.messaging.ports import (
    NEXT_AVAILABLE_SESSION,
    REPLAY_COUNT_PROPERTY,
    REPLAY_SUBSCRIPTION_PROPERTY,
    OutboundMessage,
    PropertyValue,
    ReceivedMessage,
    SubscriptionInfo,
    TopicInfo,
    replay_count,
)
from shared.messaging.topology import TOPOLOGY, SubscriptionSpec, TopicSpec
from shared.storage.private_files import private_file

__all__ = [
    "REASON_MAX_DELIVERY",
    "REASON_SESSION_ID_MISSING",
    "REASON_TTL_EXPIRED",
    "REPLAY_COUNT_PROPERTY",
    "REPLAY_SUBSCRIPTION_PROPERTY",
    "SqliteBus",
]

_log = logging.getLogger(__name__)

#: Dead-letter reasons, spelled as Service Bus spells them.
REASON_MAX_DELIVERY: Final = "MaxDeliveryCountExceeded"
REASON_TTL_EXPIRED: Final = "TTLExpiredException"
REASON_SESSION_ID_MISSING: Final = "SessionIdIsMissing"

_ACTIVE: Final = 0
_DEAD: Final = 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    next_sequence INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS subscriptions (
    topic TEXT NOT NULL,
    name TEXT NOT NULL,
    filter TEXT,
    max_delivery_count INTEGER NOT NULL,
    lock_duration_us INTEGER NOT NULL,
    requires_session INTEGER NOT NULL,
    default_ttl_us INTEGER NOT NULL,
    dead_letter_on_expiry INTEGER NOT NULL,
    PRIMARY KEY (topic, name)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    subscription TEXT NOT NULL,
    sequence_number INTEGER NOT NULL,
    state INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    session_id TEXT,
    correlation_id TEXT,
    content_type TEXT,
    subject TEXT,
    properties TEXT NOT NULL,
    body BLOB NOT NULL,
    enqueued_at INTEGER NOT NULL,
    ttl_us INTEGER,
    expires_at INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lock_token TEXT,
    locked_until INTEGER,
    dl_reason TEXT,
    dl_description TEXT,
    dl_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_messages_sequence ON messages (topic, subscription, sequence_number);
CREATE INDEX IF NOT EXISTS ix_messages_ready ON messages (topic, subscription, state, sequence_number);
CREATE INDEX IF NOT EXISTS ix_messages_session
    ON messages (topic, subscription, state, session_id, sequence_number);
CREATE INDEX IF NOT EXISTS ix_messages_expiry ON messages (topic, subscription, state, expires_at);
CREATE INDEX IF NOT EXISTS ix_messages_delivery ON messages (topic, subscription, state, delivery_count);
CREATE INDEX IF NOT EXISTS ix_messages_lock ON messages (lock_token) WHERE lock_token IS NOT NULL;
CREATE TABLE IF NOT EXISTS duplicate_ids (
    topic TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (topic, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_duplicate_ids_expiry ON duplicate_ids (topic, expires_at);
CREATE TABLE IF NOT EXISTS session_locks (
    topic TEXT NOT NULL,
    subscription TEXT NOT NULL,
    session_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    locked_until INTEGER NOT NULL,
    PRIMARY KEY (topic, subscription, session_id)
) WITHOUT ROWID;
"""

_COLUMNS: Final = (
    "id, topic, subscription, sequence_number, state, message_id, session_id, correlation_id, "
    "content_type, subject, properties, body, enqueued_at, expires_at, delivery_count, lock_token, "
    "locked_until, dl_reason, dl_description, dl_at"
)

# Head message of every session that has active messages, where neither the head message nor the
# session is locked by someone else: the candidates for NEXT_AVAILABLE_SESSION, oldest first.
_NEXT_SESSION_SQL: Final = f"""
SELECT h.session_id FROM (
    SELECT session_id, MIN(sequence_number) AS head FROM messages
    WHERE topic = :topic AND subscription = :sub AND state = {_ACTIVE} AND session_id IS NOT NULL
    GROUP BY session_id
) AS h
JOIN messages AS m ON m.topic = :topic AND m.subscription = :sub AND m.sequence_number = h.head
LEFT JOIN session_locks AS l ON l.topic = :topic AND l.subscription = :sub AND l.session_id = h.session_id
WHERE (m.lock_token IS NULL OR m.locked_until <= :now)
  AND (l.owner IS NULL OR l.owner = :me OR l.locked_until <= :now)
ORDER BY h.head
LIMIT 1
"""

# Any active message not locked by a live lock: something to claim or to sweep (non-session receive).
_CLAIMABLE_SQL: Final = f"""
SELECT 1 FROM messages
WHERE topic = :topic AND subscription = :sub AND state = {_ACTIVE}
  AND (lock_token IS NULL OR locked_until <= :now)
LIMIT 1
"""

# An unlocked active message that the sweep would dead-letter or drop (max deliveries reached, expired).
_SWEEPABLE_SQL: Final = f"""
SELECT 1 FROM messages
WHERE topic = :topic AND subscription = :sub AND state = {_ACTIVE}
  AND (delivery_count >= :max OR expires_at <= :now)
  AND (lock_token IS NULL OR locked_until <= :now)
LIMIT 1
"""


def _us(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("the bus clock must return timezone-aware datetimes")
    return _us(moment - _EPOCH)


def _from_us(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Sub:
    topic: str
    spec: SubscriptionSpec
    matches: CompiledFilter

    @property
    def lock_us(self) -> int:
        return _us(self.spec.lock_duration)


@dataclass(frozen=True, slots=True)
class _Topic:
    spec: TopicSpec
    subscriptions: Mapping[str, _Sub]


def _encode_properties(properties: Mapping[str, PropertyValue]) -> str:
    for key, value in properties.items():
        if not isinstance(key, str):
            raise TypeError("application property names must be strings")
        if not isinstance(value, str | int | float | bool):
            raise TypeError(f"application property {key!r} must be str, int, float or bool")
    return json.dumps(dict(properties), separators=(",", ":"), sort_keys=True)


def _decode_properties(text: str) -> dict[str, PropertyValue]:
    decoded: dict[str, PropertyValue] = json.loads(text)
    return decoded


class SqliteBus:
    """SQLite-backed :class:`~shared.messaging.ports.MessageBus` (see the module docstring)."""

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
        # Per subscription: a condition receivers wait on between polls, and a count of wake-ups.
        self._wake: dict[tuple[str, str], threading.Condition] = {}
        self._generation: dict[tuple[str, str], int] = {}
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
        try:
            conn = sqlite3.connect(
                str(self._path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
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

    def __enter__(self) -> SqliteBus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    # Publishing ------------------------------------------------------------------------------------------

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> None:
        """Store ``messages`` on ``topic`` atomically (see the module docstring for routing rules)."""
        entry = self._topic(topic)
        spec = entry.spec
        prepared: list[tuple[OutboundMessage, str, str, int | None]] = []
        for message in messages:
            if len(message.body) > spec.max_message_bytes:
                raise MessageTooLarge(
                    f"message body of {len(message.body)} bytes exceeds the {spec.max_message_bytes}-byte "
                    f"limit of topic {topic}"
                )
            ttl_us: int | None = None
            if message.time_to_live is not None:
                ttl_us = _us(message.time_to_live)
                if ttl_us <= 0:
                    raise ValueError("time_to_live must be positive")
            message_id = message.message_id or uuid.uuid4().hex
            prepared.append((message, message_id, _encode_properties(message.application_properties), ttl_us))
        if not prepared:
            return
        window_us = _us(spec.duplicate_detection_window) if spec.duplicate_detection_window is not None else 0

        with self._transaction() as tx:
            now = self._now_us()
            if window_us > 0:
                tx.execute("DELETE FROM duplicate_ids WHERE topic = ? AND expires_at <= ?", (topic, now))
            row = tx.execute("SELECT next_sequence FROM topics WHERE name = ?", (topic,)).fetchone()
            sequence = int(row[0])
            rows: list[tuple[Any, ...]] = []
            dropped = 0
            for message, message_id, properties_json, ttl_us in prepared:
                if window_us > 0:
                    seen = tx.execute(
                        "SELECT 1 FROM duplicate_ids WHERE topic = ? AND message_id = ? AND expires_at > ?",
                        (topic, message_id, now),
                    ).fetchone()
                    if seen is not None:
                        dropped += 1
                        continue
                    tx.execute(
                        "INSERT OR REPLACE INTO duplicate_ids (topic, message_id, expires_at) "
                        "VALUES (?, ?, ?)",
                        (topic, message_id, now + window_us),
                    )
                system = SystemProps(
                    message_id=message_id,
                    correlation_id=message.correlation_id,
                    content_type=message.content_type,
                    subject=message.subject,
                    session_id=message.session_id,
                )
                target = message.application_properties.get(REPLAY_SUBSCRIPTION_PROPERTY)
                for sub in entry.subscriptions.values():
                    if isinstance(target, str) and target and target != sub.spec.name:
                        continue  # addressed to one subscription (replay_aware_filter on Service Bus)
                    if not sub.matches(message.application_properties, system):
                        continue
                    missing_session = sub.spec.requires_session and message.session_id is None
                    rows.append(
                        (
                            topic,
                            sub.spec.name,
                            sequence,
                            _DEAD if missing_session else _ACTIVE,
                            message_id,
                            message.session_id,
                            message.correlation_id,
                            message.content_type,
                            message.subject,
                            properties_json,
                            bytes(message.body),
                            now,
                            ttl_us,
                            now + self._effective_ttl_us(sub, ttl_us),
                            REASON_SESSION_ID_MISSING if missing_session else None,
                            "Message sent to a session-enabled subscription without a session id."
                            if missing_session
                            else None,
                            now if missing_session else None,
                        )
                    )
                    if missing_session:
                        _log.warning(
                            "dead-lettered message %s on %s/%s: %s",
                            message_id,
                            topic,
                            sub.spec.name,
                            REASON_SESSION_ID_MISSING,
                        )
                sequence += 1
            tx.executemany(
                "INSERT INTO messages (topic, subscription, sequence_number, state, message_id, session_id, "
                "correlation_id, content_type, subject, properties, body, enqueued_at, ttl_us, expires_at, "
                "dl_reason, dl_description, dl_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            tx.execute("UPDATE topics SET next_sequence = ? WHERE name = ?", (sequence, topic))
        self._notify_published(topic, rows)
        if dropped:
            _log.debug("dropped %d duplicate message(s) on topic %s", dropped, topic)

    # Receiving -------------------------------------------------------------------------------------------

    def receive(
        self,
        topic: str,
        subscription: str,
        *,
        max_messages: int = 1,
        max_wait: float = 0.0,
        session_id: str | None = None,
    ) -> list[ReceivedMessage]:
        """Lock and return up to ``max_messages`` messages, polling up to ``max_wait`` seconds for one.

        On a session subscription ``session_id`` is required (a session id or ``"*"`` for the next
        available session) and every returned message carries the session it came from; on other
        subscriptions it must be ``None``.
        """
        sub = self._subscription(topic, subscription)
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        if sub.spec.requires_session:
            if session_id is None:
                raise ValueError(
                    f"subscription {topic}/{subscription} requires sessions: pass session_id "
                    f"(a session id or {NEXT_AVAILABLE_SESSION!r})"
                )
        elif session_id is not None:
            raise ValueError(f"subscription {topic}/{subscription} does not use sessions")

        deadline = time.monotonic() + max_wait
        while True:
            key = (topic, sub.spec.name)
            generation = self._generation[key]
            # An idle poll is a read: the write transaction (sweep + claim) runs only when the read sees
            # something it could change. A request for a named session always writes (it renews the lock).
            if session_id not in (None, NEXT_AVAILABLE_SESSION) or self._has_work(sub, session_id):
                with self._transaction() as tx:
                    now = self._now_us()
                    self._sweep(tx, sub, now)
                    if session_id is None:
                        received = self._claim(tx, sub, now, max_messages)
                    else:
                        received = self._claim_session(tx, sub, now, max_messages, session_id)
                if received:
                    return received
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wake = self._wake[key]
            with wake:  # woken early by a publish or unlock on this subscription through this instance
                if self._generation[key] == generation:
                    wake.wait(min(self._poll_interval, remaining))

    def _has_work(self, sub: _Sub, session_id: str | None) -> bool:
        """Read only: is there a message to sweep (max deliveries, expired) or to claim?"""
        with self._read() as conn:
            now = self._now_us()
            params = {
                "topic": sub.topic,
                "sub": sub.spec.name,
                "now": now,
                "me": self._owner,
                "max": sub.spec.max_delivery_count,
            }
            if session_id is None:
                return conn.execute(_CLAIMABLE_SQL, params).fetchone() is not None
            if conn.execute(_SWEEPABLE_SQL, params).fetchone() is not None:
                return True
            return conn.execute(_NEXT_SESSION_SQL, params).fetchone() is not None

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

    def _claim(self, tx: sqlite3.Connection, sub: _Sub, now: int, limit: int) -> list[ReceivedMessage]:
        rows = tx.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE topic = ? AND subscription = ? AND state = {_ACTIVE} "
            "AND (lock_token IS NULL OR locked_until <= ?) ORDER BY sequence_number LIMIT ?",
            (sub.topic, sub.spec.name, now, limit),
        ).fetchall()
        return self._lock_rows(tx, sub, rows, now)

    def _claim_session(
        self, tx: sqlite3.Connection, sub: _Sub, now: int, limit: int, requested: str
    ) -> list[ReceivedMessage]:
        topic, name = sub.topic, sub.spec.name
        tx.execute(
            "DELETE FROM session_locks WHERE topic = ? AND subscription = ? AND locked_until <= ?",
            (topic, name, now),
        )
        if requested == NEXT_AVAILABLE_SESSION:
            row = tx.execute(
                _NEXT_SESSION_SQL, {"topic": topic, "sub": name, "now": now, "me": self._owner}
            ).fetchone()
            if row is None:
                return []
            session = str(row[0])
        else:
            session = requested
            held = tx.execute(
                "SELECT owner FROM session_locks WHERE topic = ? AND subscription = ? AND session_id = ?",
                (topic, name, session),
            ).fetchone()
            if held is not None and held[0] != self._owner:
                return []  # locked by another receiver (expired locks were deleted above)

        # FIFO within the session: take messages from the head while they are unlocked; stop at the first
        # one still locked, so nothing overtakes an unsettled earlier message.
        rows = tx.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE topic = ? AND subscription = ? AND state = {_ACTIVE} "
            "AND session_id = ? ORDER BY sequence_number LIMIT ?",
            (topic, name, session, limit),
        ).fetchall()
        available = []
        for row in rows:
            if row["lock_token"] is not None and row["locked_until"] > now:
                break
            available.append(row)
        if available:
            tx.execute(
                "INSERT INTO session_locks (topic, subscription, session_id, owner, locked_until) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic, subscription, session_id) "
                "DO UPDATE SET owner = excluded.owner, locked_until = excluded.locked_until",
                (topic, name, session, self._owner, now + sub.lock_us),
            )
        else:
            self._renew_session(tx, sub, session, now)
        return self._lock_rows(tx, sub, available, now)

    def _lock_rows(
        self, tx: sqlite3.Connection, sub: _Sub, rows: Sequence[sqlite3.Row], now: int
    ) -> list[ReceivedMessage]:
        locked_until = now + sub.lock_us
        updates = []
        result = []
        for row in rows:
            token = uuid.uuid4().hex
            updates.append((token, locked_until, row["id"]))
            result.append(
                self._to_message(
                    row, lock_token=token, locked_until=locked_until, delivery_count=row["delivery_count"] + 1
                )
            )
        tx.executemany(
            "UPDATE messages SET delivery_count = delivery_count + 1, lock_token = ?, locked_until = ? "
            "WHERE id = ?",
            updates,
        )
        return result

    def _sweep(self, tx: sqlite3.Connection, sub: _Sub, now: int) -> None:
        """Apply lazy state changes on one subscription: max-delivery and TTL dead-lettering."""
        topic, name = sub.topic, sub.spec.name
        moved = tx.execute(
            f"UPDATE messages SET state = {_DEAD}, dl_reason = ?, "
            "dl_description = 'Message could not be consumed after ' || delivery_count "
            "|| ' delivery attempts.', "
            f"dl_at = ?, lock_token = NULL, locked_until = NULL "
            f"WHERE topic = ? AND subscription = ? AND state = {_ACTIVE} AND delivery_count >= ? "
            "AND (lock_token IS NULL OR locked_until <= ?)",
            (REASON_MAX_DELIVERY, now, topic, name, sub.spec.max_delivery_count, now),
        ).rowcount
        if moved:
            _log.warning("dead-lettered %d message(s) on %s/%s: %s", moved, topic, name, REASON_MAX_DELIVERY)
        expired_where = (
            f"WHERE topic = ? AND subscription = ? AND state = {_ACTIVE} AND expires_at <= ? "
            "AND (lock_token IS NULL OR locked_until <= ?)"
        )
        if sub.spec.dead_letter_on_expiry:
            expired = tx.execute(
                f"UPDATE messages SET state = {_DEAD}, dl_reason = ?, "
                "dl_description = 'The message expired and was dead lettered.', dl_at = ?, "
                f"lock_token = NULL, locked_until = NULL {expired_where}",
                (REASON_TTL_EXPIRED, now, topic, name, now, now),
            ).rowcount
            if expired:
                _log.info(
                    "dead-lettered %d message(s) on %s/%s: %s", expired, topic, name, REASON_TTL_EXPIRED
                )
        else:
            expired = tx.execute(f"DELETE FROM messages {expired_where}", (topic, name, now, now)).rowcount
            if expired:
                _log.info("dropped %d expired message(s) on %s/%s", expired, topic, name)

    # Settlement ------------------------------------------------------------------------------------------

    def complete(self, message: ReceivedMessage) -> None:
        """Delete the message. :class:`MessageLockLost` if its lock expired or was superseded."""
        sub = self._subscription(message.topic, message.subscription)
        with self._transaction() as tx:
            now = self._now_us()
            row = self._locked_row(tx, message, now)
            tx.execute("DELETE FROM messages WHERE id = ?", (row["id"],))
            self._renew_session(tx, sub, row["session_id"], now)
        if row["session_id"] is not None:
            self._notify(message.topic, message.subscription)  # the session's next message is its head

    def abandon(self, message: ReceivedMessage) -> None:
        """Unlock now; dead-letter instead when the delivery count has reached the maximum."""
        sub = self._subscription(message.topic, message.subscription)
        with self._transaction() as tx:
            now = self._now_us()
            row = self._locked_row(tx, message, now)
            count = int(row["delivery_count"])
            if count >= sub.spec.max_delivery_count:
                self._move_to_dead_letter(
                    tx,
                    row["id"],
                    REASON_MAX_DELIVERY,
                    f"Message could not be consumed after {count} delivery attempts.",
                    now,
                )
                _log.warning(
                    "dead-lettered message %s on %s/%s: %s",
                    row["message_id"],
                    message.topic,
                    message.subscription,
                    REASON_MAX_DELIVERY,
                )
            else:
                tx.execute(
                    "UPDATE messages SET lock_token = NULL, locked_until = NULL WHERE id = ?", (row["id"],)
                )
            self._renew_session(tx, sub, row["session_id"], now)
        self._notify(message.topic, message.subscription)

    def dead_letter(self, message: ReceivedMessage, *, reason: str, description: str = "") -> None:
        """Move to the dead-letter sub-queue with ``reason`` / ``description`` (no patient data)."""
        sub = self._subscription(message.topic, message.subscription)
        with self._transaction() as tx:
            now = self._now_us()
            row = self._locked_row(tx, message, now)
            self._move_to_dead_letter(tx, row["id"], reason, description, now)
            self._renew_session(tx, sub, row["session_id"], now)
        _log.info(
            "dead-lettered message %s on %s/%s: %s",
            message.message_id,
            message.topic,
            message.subscription,
            reason,
        )

    def renew_lock(self, message: ReceivedMessage) -> datetime:
        """Extend the message lock (and its session's lock) by ``lock_duration`` from now."""
        sub = self._subscription(message.topic, message.subscription)
        with self._transaction() as tx:
            now = self._now_us()
            row = self._locked_row(tx, message, now)
            locked_until = now + sub.lock_us
            tx.execute("UPDATE messages SET locked_until = ? WHERE id = ?", (locked_until, row["id"]))
            self._renew_session(tx, sub, row["session_id"], now)
        result = _from_us(locked_until)
        assert result is not None
        return result

    def release_session(self, topic: str, subscription: str, session_id: str) -> None:
        """Drop this instance's lock on ``session_id`` (no-op if not held).

        Raises :class:`SessionLockLost` if another receiver holds the session. Messages of the session
        that this instance still has locked keep their message locks and may still be settled.
        """
        sub = self._subscription(topic, subscription)
        with self._transaction() as tx:
            now = self._now_us()
            row = tx.execute(
                "SELECT owner, locked_until FROM session_locks "
                "WHERE topic = ? AND subscription = ? AND session_id = ?",
                (topic, sub.spec.name, session_id),
            ).fetchone()
            if row is None:
                return
            if row["owner"] != self._owner:
                if row["locked_until"] > now:
                    raise SessionLockLost(f"session on {topic}/{subscription} is held by another receiver")
                return
            tx.execute(
                "DELETE FROM session_locks WHERE topic = ? AND subscription = ? AND session_id = ?",
                (topic, sub.spec.name, session_id),
            )
        self._notify(topic, sub.spec.name)

    def _locked_row(self, tx: sqlite3.Connection, message: ReceivedMessage, now: int) -> sqlite3.Row:
        if message.lock_token is None:
            raise ValueError("cannot settle a peeked message (it has no lock token)")
        # Look up by token alone so the planner uses the lock-token index; check the rest here.
        row: sqlite3.Row | None = tx.execute(
            "SELECT id, topic, subscription, state, message_id, session_id, delivery_count, locked_until "
            "FROM messages WHERE lock_token = ?",
            (message.lock_token,),
        ).fetchone()
        if (
            row is None
            or row["topic"] != message.topic
            or row["subscription"] != message.subscription
            or row["state"] != _ACTIVE
            or row["locked_until"] <= now
        ):
            raise MessageLockLost(
                f"lock lost for message {message.message_id} (sequence {message.sequence_number}) "
                f"on {message.topic}/{message.subscription}"
            )
        return row

    def _renew_session(self, tx: sqlite3.Connection, sub: _Sub, session_id: str | None, now: int) -> None:
        if session_id is None or not sub.spec.requires_session:
            return
        tx.execute(
            "UPDATE session_locks SET locked_until = ? "
            "WHERE topic = ? AND subscription = ? AND session_id = ? AND owner = ?",
            (now + sub.lock_us, sub.topic, sub.spec.name, session_id, self._owner),
        )

    @staticmethod
    def _move_to_dead_letter(
        tx: sqlite3.Connection, row_id: int, reason: str, description: str, now: int
    ) -> None:
        tx.execute(
            f"UPDATE messages SET state = {_DEAD}, dl_reason = ?, dl_description = ?, dl_at = ?, "
            "lock_token = NULL, locked_until = NULL WHERE id = ?",
            (reason, description, now, row_id),
        )

    # Operations ------------------------------------------------------------------------------------------

    def peek(
        self, topic: str, subscription: str, *, dead_letter: bool = False, max_messages: int = 50
    ) -> list[ReceivedMessage]:
        """Browse in sequence order without locking. ``lock_token`` is always ``None``; ``locked_until``
        is set when another receiver currently holds the message."""
        sub = self._subscription(topic, subscription)
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        state = _DEAD if dead_letter else _ACTIVE
        with self._read() as conn:
            now = self._now_us()
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE topic = ? AND subscription = ? AND state = ? "
                "ORDER BY sequence_number LIMIT ?",
                (topic, sub.spec.name, state, max_messages),
            ).fetchall()
        return [
            self._to_message(
                row,
                lock_token=None,
                locked_until=row["locked_until"]
                if row["locked_until"] is not None and row["locked_until"] > now
                else None,
                delivery_count=row["delivery_count"],
            )
            for row in rows
        ]

    def replay_dead_letters(
        self, topic: str, subscription: str, *, sequence_numbers: Sequence[int] | None = None
    ) -> int:
        """Return dead letters to the subscription as new messages; returns how many.

        Each replayed message gets a new sequence number at the tail, a fresh enqueue time and TTL,
        delivery count 0, application property ``tie_replay_count`` incremented and
        ``tie_replay_subscription`` set to ``subscription`` (as the Service Bus adapter does). Dead
        letters that cannot be delivered again - no session id on a session subscription - stay where
        they are and are not counted. Sequence numbers that are not dead letters of this subscription
        are ignored.
        """
        sub = self._subscription(topic, subscription)
        with self._transaction() as tx:
            now = self._now_us()
            query = (
                f"SELECT id, session_id, properties, ttl_us FROM messages "
                f"WHERE topic = ? AND subscription = ? AND state = {_DEAD}"
            )
            params: list[Any] = [topic, subscription]
            if sequence_numbers is not None:
                wanted = sorted({int(n) for n in sequence_numbers})
                if not wanted:
                    return 0
                query += f" AND sequence_number IN ({', '.join('?' * len(wanted))})"
                params.extend(wanted)
            rows = tx.execute(query + " ORDER BY sequence_number", params).fetchall()
            sequence = int(
                tx.execute("SELECT next_sequence FROM topics WHERE name = ?", (topic,)).fetchone()[0]
            )
            updates = []
            for row in rows:
                if sub.spec.requires_session and row["session_id"] is None:
                    continue
                properties = _decode_properties(row["properties"])
                properties[REPLAY_COUNT_PROPERTY] = replay_count(properties) + 1
                properties[REPLAY_SUBSCRIPTION_PROPERTY] = subscription
                updates.append(
                    (
                        sequence,
                        _encode_properties(properties),
                        now,
                        now + self._effective_ttl_us(sub, row["ttl_us"]),
                        row["id"],
                    )
                )
                sequence += 1
            tx.executemany(
                f"UPDATE messages SET state = {_ACTIVE}, sequence_number = ?, properties = ?, "
                "enqueued_at = ?, expires_at = ?, delivery_count = 0, lock_token = NULL, "
                "locked_until = NULL, "
                "dl_reason = NULL, dl_description = NULL, dl_at = NULL WHERE id = ?",
                updates,
            )
            tx.execute("UPDATE topics SET next_sequence = ? WHERE name = ?", (sequence, topic))
        if updates:
            self._notify(topic, subscription, len(updates))
            _log.info("replayed %d dead letter(s) on %s/%s", len(updates), topic, subscription)
        return len(updates)

    def purge_dead_letters(self, topic: str, subscription: str, *, older_than: timedelta) -> int:
        """Delete dead letters dead-lettered at least ``older_than`` ago; returns how many."""
        sub = self._subscription(topic, subscription)
        if older_than < timedelta(0):
            raise ValueError("older_than must not be negative")
        with self._transaction() as tx:
            cutoff = self._now_us() - _us(older_than)
            purged = tx.execute(
                f"DELETE FROM messages WHERE topic = ? AND subscription = ? AND state = {_DEAD} "
                "AND dl_at <= ?",
                (topic, sub.spec.name, cutoff),
            ).rowcount
        if purged:
            _log.info("purged %d dead letter(s) on %s/%s", purged, topic, subscription)
        return int(purged)

    def topology(self) -> list[TopicInfo]:
        """This instance's topics and subscriptions with stored active / dead-letter counts."""
        with self._read() as conn:
            counts: dict[tuple[str, str, int], int] = {
                (row[0], row[1], row[2]): row[3]
                for row in conn.execute(
                    "SELECT topic, subscription, state, COUNT(*) FROM messages "
                    "GROUP BY topic, subscription, state"
                )
            }
        return [
            TopicInfo(
                name=name,
                subscriptions=[
                    SubscriptionInfo(
                        topic=name,
                        name=sub.spec.name,
                        active_count=counts.get((name, sub.spec.name, _ACTIVE), 0),
                        dead_letter_count=counts.get((name, sub.spec.name, _DEAD), 0),
                        max_delivery_count=sub.spec.max_delivery_count,
                        lock_duration=sub.spec.lock_duration,
                        requires_session=sub.spec.requires_session,
                        filter=sub.spec.filter,
                    )
                    for sub in entry.subscriptions.values()
                ],
                duplicate_detection_window=entry.spec.duplicate_detection_window,
            )
            for name, entry in self._topics.items()
        ]

    def topic_specs(self) -> tuple[TopicSpec, ...]:
        """The declared topology with this instance's lock durations, delivery counts and sessions (a test
        app may open the bus with short locks); topics and subscriptions the declaration lacks are left
        out, and with none left, the declared topology."""
        declared = {t.name: t for t in TOPOLOGY}
        topics: list[TopicSpec] = []
        for name, entry in self._topics.items():
            base = declared.get(name)
            if base is None:
                continue
            wanted = {s.name: s for s in base.subscriptions}
            subs = tuple(
                dataclasses.replace(
                    wanted[sub.spec.name],
                    max_delivery_count=sub.spec.max_delivery_count,
                    lock_duration=sub.spec.lock_duration,
                    requires_session=sub.spec.requires_session,
                )
                for sub in entry.subscriptions.values()
                if sub.spec.name in wanted
            )
            topics.append(TopicSpec(name, subs, base.duplicate_detection_window, base.max_message_bytes))
        return tuple(topics) or TOPOLOGY

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
        with self._lock:
            conn = self._connection()
            conn.row_factory = sqlite3.Row
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                raise BusUnavailable(f"bus database {self._path.name} is busy") from exc

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
