"""Embedded SQLite implementation of the :class:`~shared.messaging.ports.MessageBus` port.

A development stand-in for Azure Service Bus: the local host, the ``tie bus`` CLI and the tests run the
whole pipeline from one file with no broker. What it reproduces (topics, filters, duplicate detection,
peek-lock, TTL, sessions), its deliberate simplifications and its concurrency: ``docs/embedded-bus.md``;
decision: ``docs/adr/0008-embedded-bus-stands-in-for-service-bus.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from shared.adapters.embedded._sqlite_bus_receive import _SqliteBusReceiving
from shared.adapters.embedded._sqlite_bus_schema import (
    _ACTIVE,
    _COLUMNS,
    _DEAD,
    REASON_MAX_DELIVERY,
    REASON_SESSION_ID_MISSING,
    REASON_TTL_EXPIRED,
    _decode_properties,
    _encode_properties,
    _us,
)
from shared.messaging.errors import MessageTooLarge
from shared.messaging.filters import SystemProps
from shared.messaging.ports import (
    REPLAY_COUNT_PROPERTY,
    REPLAY_SUBSCRIPTION_PROPERTY,
    OutboundMessage,
    ReceivedMessage,
    SubscriptionInfo,
    TopicInfo,
    replay_count,
)
from shared.messaging.topology import TOPOLOGY, TopicSpec

__all__ = [
    "REASON_MAX_DELIVERY",
    "REASON_SESSION_ID_MISSING",
    "REASON_TTL_EXPIRED",
    "REPLAY_COUNT_PROPERTY",
    "REPLAY_SUBSCRIPTION_PROPERTY",
    "SqliteBus",
]

_log = logging.getLogger(__name__)


class SqliteBus(_SqliteBusReceiving):
    """SQLite-backed :class:`~shared.messaging.ports.MessageBus` (see the module docstring).

    Connection and transactions: ``_sqlite_bus_core``; receiving and settlement: ``_sqlite_bus_receive``;
    schema and SQL: ``_sqlite_bus_schema``.
    """

    # Lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> SqliteBus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
