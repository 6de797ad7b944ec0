"""Receiving (claim, sessions, sweep) and settlement of the embedded bus
(:mod:`shared.adapters.embedded.sqlite_bus`)."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence
from datetime import datetime

from shared.adapters.embedded._sqlite_bus_core import _SqliteBusCore
from shared.adapters.embedded._sqlite_bus_schema import (
    _ACTIVE,
    _CLAIMABLE_SQL,
    _COLUMNS,
    _DEAD,
    _NEXT_SESSION_SQL,
    _SWEEPABLE_SQL,
    REASON_MAX_DELIVERY,
    REASON_TTL_EXPIRED,
    _from_us,
    _Sub,
)
from shared.messaging.errors import MessageLockLost, SessionLockLost
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, ReceivedMessage

# The public module's logger, as before the split.
_log = logging.getLogger("shared.adapters.embedded.sqlite_bus")


class _SqliteBusReceiving(_SqliteBusCore):
    """Receive with peek-lock (sessions included) and settle."""

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
        named = session_id not in (None, NEXT_AVAILABLE_SESSION)
        first = True
        while True:
            key = (topic, sub.spec.name)
            generation = self._generation[key]
            # An idle poll is a read: the write transaction (sweep + claim) runs only when the read sees
            # something it could change. A request for a named session always writes (it renews the lock).
            # Between the first and the last check of this call, the read is skipped when another receiver
            # of this instance found the subscription empty less than a poll interval ago and nothing woke
            # it since.
            last = time.monotonic() >= deadline
            if named or (
                (first or last or not self._seen_empty(key, generation)) and self._has_work(sub, session_id)
            ):
                with self._transaction() as tx:
                    now = self._now_us()
                    self._sweep(tx, sub, now)
                    if session_id is None:
                        received = self._claim(tx, sub, now, max_messages)
                    else:
                        received = self._claim_session(tx, sub, now, max_messages, session_id)
                if received:
                    return received
            first = False
            if last:
                return []
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                continue  # the deadline passed during this check: one last check, which reads
            wake = self._wake[key]
            with wake:  # woken early by a publish or unlock on this subscription through this instance
                if self._generation[key] == generation:
                    wake.wait(min(self._poll_interval, remaining))

    def _seen_empty(self, key: tuple[str, str], generation: int) -> bool:
        seen = self._empty_at.get(key)
        return seen is not None and seen[1] == generation and time.monotonic() - seen[0] < self._poll_interval

    def _has_work(self, sub: _Sub, session_id: str | None) -> bool:
        """Read only: is there a message to sweep (max deliveries, expired) or to claim? Remembers when a
        subscription was last found empty (for :meth:`_seen_empty`)."""
        key = (sub.topic, sub.spec.name)
        generation, started = self._generation[key], time.monotonic()
        found = self._work_found(sub, session_id)
        if found:
            self._empty_at.pop(key, None)
        else:
            self._empty_at[key] = (started, generation)  # as of the read's start: never later than it saw
        return found

    def _work_found(self, sub: _Sub, session_id: str | None) -> bool:
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

    def complete_and_release(self, message: ReceivedMessage) -> None:
        """:meth:`complete` and :meth:`release_session` of the message's session in one transaction
        (:class:`~shared.messaging.ports.CompleteAndRelease`); a session lock of another receiver is left
        alone, as :meth:`release_session` would leave it (after raising)."""
        self._subscription(message.topic, message.subscription)
        with self._transaction() as tx:
            now = self._now_us()
            row = self._locked_row(tx, message, now)
            tx.execute("DELETE FROM messages WHERE id = ?", (row["id"],))
            if row["session_id"] is not None:
                tx.execute(
                    "DELETE FROM session_locks WHERE topic = ? AND subscription = ? AND session_id = ? "
                    "AND owner = ?",
                    (message.topic, message.subscription, row["session_id"], self._owner),
                )
        if row["session_id"] is not None:
            self._notify(message.topic, message.subscription)

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
