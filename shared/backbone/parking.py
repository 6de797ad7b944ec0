"""Parking: write-back work held while a downstream is down, without using up delivery attempts.

Why not just fail the delivery? Service Bus counts every failed delivery; after ``max_delivery_count``
the message is dead-lettered. A downstream that is down for an hour would turn every message into a dead
letter. So while a downstream's circuit is open (:mod:`shared.backbone.breaker`), the subscriber *parks*
the delivery: it stores the message in the record store (table ``writebackparked``) and completes it on
the bus. Nothing is lost (the park write is durable before the bus message is completed; a crash in
between redelivers the message, which is then found already parked) and no attempt is used.

Release: a timer (``writeback_release`` in ``functions/events.py``) calls :meth:`ParkingLot.release`.
When the circuit is closed it re-publishes every parked item to the topic, addressed to its own
subscription only (``tie_replay_subscription``, the same routing the dead-letter replay uses) and tagged
``tie_parked_row``; when the circuit is open but due for a probe it releases one item, whose delivery
becomes the half-open probe. A released copy keeps its original properties (a replay stays a replay)
and its clinical-event key, so the idempotency guard still makes its effect happen once. Its message id
is ``parked-<hash of the row>-<release number>``: a release repeated after a crash is dropped by
duplicate detection, a deliberate re-release of a stale item is not.

Per-patient order: parking must not let a later event of the same patient overtake an earlier one. The
row key starts with a hash of the session id (the patient key), so one prefix query finds a session's
parked work, and the rules are:

* a fresh delivery whose session has parked (or released, still in flight) work parks *behind* it;
* a released copy proceeds only if it is the oldest item of its session, else it parks again;
* the record is deleted only when the released copy has been processed (applied, answered from the
  idempotency store, or failed for good), so a fresh delivery cannot slip in while a release is in
  flight;
* a released copy not processed within ``stale_after`` (e.g. dead-lettered and not yet cleaned up) is
  released again.

Bodies: a parked item holds the message body (the canonical event: patient data) like the bus does; the
record store is encrypted at rest in Azure. Values are capped at 256 KiB (the bus's own message limit).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.backbone.delivery import PARKED_ROW_PROPERTY, Delivery
from shared.messaging.ports import REPLAY_SUBSCRIPTION_PROPERTY, MessageBus, OutboundMessage, PropertyValue
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.names import TABLE_PARKED
from shared.storage.ports import Record, RecordStore

_log = logging.getLogger("tie.backbone.parking")

PARKED = "parked"
RELEASED = "released"
_SESSION_HASH = 24
_NO_SESSION = "-"


def session_prefix(session_id: str | None) -> str:
    """The row-key prefix of a session's parked items (fixed length: no prefix collisions)."""
    digest = hashlib.sha256((session_id or _NO_SESSION).encode("utf-8")).hexdigest()[:_SESSION_HASH]
    return digest + "-"


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@dataclass(frozen=True, slots=True)
class ParkedItem:
    downstream: str
    row_key: str
    state: str
    topic: str
    subscription: str
    message_id: str
    session_id: str | None
    correlation_id: str | None
    content_type: str | None
    subject: str | None
    properties: Mapping[str, PropertyValue]
    body: bytes
    parked_at: datetime
    reason: str
    releases: int = 0
    released_at: datetime | None = None
    etag: str = ""

    def to_value(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "topic": self.topic,
            "subscription": self.subscription,
            "message_id": self.message_id,
            "session_id": self.session_id,
            "correlation_id": self.correlation_id,
            "content_type": self.content_type,
            "subject": self.subject,
            "properties": dict(self.properties),
            "body": base64.b64encode(self.body).decode("ascii"),
            "parked_at": self.parked_at.isoformat(),
            "reason": self.reason,
            "releases": self.releases,
            "released_at": None if self.released_at is None else self.released_at.isoformat(),
        }

    @classmethod
    def from_record(cls, downstream: str, record: Record) -> ParkedItem:
        v = record.value
        released = v.get("released_at")
        return cls(
            downstream=downstream,
            row_key=record.row_key,
            state=str(v["state"]),
            topic=str(v["topic"]),
            subscription=str(v["subscription"]),
            message_id=str(v["message_id"]),
            session_id=v.get("session_id"),
            correlation_id=v.get("correlation_id"),
            content_type=v.get("content_type"),
            subject=v.get("subject"),
            properties=dict(v.get("properties") or {}),
            body=base64.b64decode(v["body"]),
            parked_at=datetime.fromisoformat(str(v["parked_at"])),
            reason=str(v.get("reason", "")),
            releases=int(v.get("releases", 0)),
            released_at=datetime.fromisoformat(released) if released else None,
            etag=record.etag,
        )

    def release_message_id(self) -> str:
        tag = hashlib.sha256(f"{self.downstream}\x1f{self.row_key}".encode()).hexdigest()[:32]
        return f"parked-{tag}-{self.releases}"

    def to_outbound(self) -> OutboundMessage:
        properties: dict[str, PropertyValue] = dict(self.properties)
        properties[REPLAY_SUBSCRIPTION_PROPERTY] = self.subscription
        properties[PARKED_ROW_PROPERTY] = self.row_key
        return OutboundMessage(
            body=self.body,
            message_id=self.release_message_id(),
            session_id=self.session_id,
            correlation_id=self.correlation_id,
            content_type=self.content_type,
            subject=self.subject,
            application_properties=properties,
        )


class ParkingLot:
    """Parked work of one downstream (partition = the downstream name). Thread-safe (the store is)."""

    def __init__(
        self,
        records: RecordStore,
        downstream: str,
        *,
        clock: Callable[[], datetime] | None = None,
        stale_after: timedelta = timedelta(minutes=15),
        table: str = TABLE_PARKED,
    ) -> None:
        self._records = records
        self.downstream = downstream
        self._clock = clock or (lambda: datetime.now(UTC))
        self._stale_after = stale_after
        self._table = table

    # -- queries ---------------------------------------------------------------------------------------

    def session_items(self, session_id: str | None) -> list[ParkedItem]:
        """A session's parked and released items, oldest first."""
        records = self._records.query(self._table, self.downstream, row_key_prefix=session_prefix(session_id))
        return [ParkedItem.from_record(self.downstream, r) for r in records]

    def items(self, limit: int | None = None) -> list[ParkedItem]:
        """Every item of this downstream, grouped by session, oldest first within a session."""
        return [
            ParkedItem.from_record(self.downstream, r)
            for r in self._records.query(self._table, self.downstream, limit=limit)
        ]

    def blocker(self, delivery: Delivery) -> ParkedItem | None:
        """The parked item that ``delivery`` must wait behind (per-patient order), or ``None``.

        For a fresh delivery: the oldest item of its session. For a released copy: an item of its
        session older than itself.
        """
        items = self.session_items(delivery.session_id)
        if not items:
            return None
        own = delivery.parked_row
        if own is None:
            return items[0]
        return items[0] if items[0].row_key < own else None

    # -- parking ---------------------------------------------------------------------------------------

    def park(self, delivery: Delivery, *, reason: str) -> ParkedItem:
        """Store ``delivery`` (durable when this returns). A released copy goes back to its own row (it
        keeps its place in line); a redelivery of a message parked before is not stored twice."""
        now = self._clock()
        own = delivery.parked_row
        if own is not None:
            record = self._records.get(self._table, self.downstream, own)
            if record is not None:
                item = ParkedItem.from_record(self.downstream, record)
                if item.state == PARKED:
                    return item
                reparked = replace(item, state=PARKED, reason=reason)
                try:
                    stored = self._records.update(
                        self._table, self.downstream, own, reparked.to_value(), etag=record.etag
                    )
                except (ConcurrencyConflict, RecordNotFound):
                    pass  # released again or forgotten meanwhile: fall through and store it anew
                else:
                    return replace(reparked, etag=stored.etag)
        else:
            for item in self.session_items(delivery.session_id):
                if item.message_id == delivery.message_id and item.subscription == delivery.subscription:
                    return item
        row_key = own or f"{session_prefix(delivery.session_id)}{_us(now):017d}-{uuid.uuid4().hex[:8]}"
        properties = {k: v for k, v in delivery.properties.items() if k != PARKED_ROW_PROPERTY}
        item = ParkedItem(
            downstream=self.downstream,
            row_key=row_key,
            state=PARKED,
            topic=delivery.topic,
            subscription=delivery.subscription,
            message_id=delivery.message_id,
            session_id=delivery.session_id,
            correlation_id=delivery.correlation_id,
            content_type=delivery.content_type,
            subject=delivery.subject,
            properties=properties,
            body=delivery.body,
            parked_at=now,
            reason=reason,
        )
        try:
            stored = self._records.insert(self._table, self.downstream, row_key, item.to_value())
        except RecordExists:
            existing = self._records.get(self._table, self.downstream, row_key)
            assert existing is not None
            return ParkedItem.from_record(self.downstream, existing)
        return replace(item, etag=stored.etag)

    def forget(self, row_key: str) -> bool:
        """Delete a parked record (its released copy was processed). Idempotent."""
        return self._records.delete(self._table, self.downstream, row_key)

    # -- releasing -------------------------------------------------------------------------------------

    def release(self, bus: MessageBus, *, limit: int = 100, probe: bool = False) -> list[ParkedItem]:
        """Re-publish parked items (and stale released ones) addressed to their subscriptions.

        ``probe``: release a single item (the circuit is due for a half-open probe). Returns the items
        released. Each item is first marked released (compare-and-swap, release number + 1: the new
        message id), then the marked items are published in session order, one batch per topic (all or
        nothing). If publishing fails the marks are undone; a crash in between leaves items marked but
        unpublished, which are released again once stale.
        """
        now = self._clock()
        marked: list[ParkedItem] = []
        for item in self.items():
            if len(marked) >= (1 if probe else limit):
                break
            stale = item.released_at is None or now - item.released_at >= self._stale_after
            if item.state != PARKED and not stale:
                continue
            updated = replace(item, state=RELEASED, releases=item.releases + 1, released_at=now)
            try:
                stored = self._records.update(
                    self._table, self.downstream, item.row_key, updated.to_value(), etag=item.etag
                )
            except (ConcurrencyConflict, RecordNotFound):
                continue  # processed, re-parked or released by someone else meanwhile
            marked.append(replace(updated, etag=stored.etag))
        if not marked:
            return []
        by_topic: dict[str, list[OutboundMessage]] = {}
        for item in marked:
            by_topic.setdefault(item.topic, []).append(item.to_outbound())
        try:
            for topic, messages in by_topic.items():
                bus.publish(topic, messages)
        except BaseException:
            for item in marked:
                back = replace(item, state=PARKED)
                try:
                    self._records.update(
                        self._table, self.downstream, item.row_key, back.to_value(), etag=item.etag
                    )
                except Exception:  # noqa: BLE001 - best effort: stale items are released again anyway
                    _log.warning("parked item not reset after a failed release")
            raise
        _log.info(
            "released %d parked item(s) of downstream %s",
            len(marked),
            self.downstream,
            extra={"count": len(marked)},
        )
        return marked

    def count(self) -> int:
        return len(self._records.query(self._table, self.downstream))


def parked_sessions(items: Sequence[ParkedItem]) -> int:
    return len({item.row_key[:_SESSION_HASH] for item in items})
