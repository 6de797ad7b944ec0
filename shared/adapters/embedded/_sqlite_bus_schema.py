"""Schema, SQL and value encodings of the embedded bus (:mod:`shared.adapters.embedded.sqlite_bus`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.messaging.filters import CompiledFilter
from shared.messaging.ports import PropertyValue
from shared.messaging.topology import SubscriptionSpec, TopicSpec

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
