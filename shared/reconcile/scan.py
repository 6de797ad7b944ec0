"""The engine's side: per message, what the journal and the in-flight index say happened, per interface.

One pass over table ``journal`` (grouped by correlation id) and one over ``inflight``. A message belongs
to the window when its first journal entry falls in it; stuck work is reported whatever its age. Counts
and items are derived from stages only (identifiers and codes; the journal holds nothing else).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from shared import journal as j
from shared.messaging.topology import (
    SUB_INGEST_PROCESSOR,
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_CLINICAL,
    TOPIC_INGEST,
    WRITEBACK_SUBSCRIPTIONS,
)
from shared.reconcile.model import DEFAULT_ACTION, Action, Category, Counts, Interface, Item
from shared.storage.errors import InvalidKey
from shared.storage.keys import restore_key
from shared.storage.names import TABLE_INFLIGHT, TABLE_JOURNAL
from shared.storage.ports import RecordStore

#: Transport of each write-back subscription (the downstream's side).
OUTBOUND_TRANSPORT: Final[Mapping[str, str]] = {SUB_WRITEBACK_FHIR: "fhir", SUB_WRITEBACK_HL7V2: "mllp"}
#: Final acknowledgements of an MLLP downstream that close a message.
FINAL_ACKS: Final = frozenset({"AA", "CA"})
#: Recorded as written back but not accepted (a downstream that reports rather than raises). Any other
#: status is not an ACK: the HL7 v2 write-back over MESH records "sent" (its acknowledgement is the
#: recipient's, checked from the MESH outbox).
NEGATIVE_ACKS: Final = frozenset({"AE", "AR", "CE", "CR"})
_OK: Final = frozenset({j.WRITTEN_BACK, j.DUPLICATE, j.SUPERSEDED, j.SKIPPED})
_REPLAY_RESPONSES: Final = frozenset({"", "AE", "CE", "None"})


def item_id(category: Category, interface: Interface, key: str) -> str:
    text = f"{category.value}\x1f{interface.name}\x1f{key}"
    return "rc-" + hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(slots=True)
class Trail:
    """One message's journal, time ordered: (at, stage, attributes)."""

    correlation_id: str
    stages: list[tuple[datetime, str, Mapping[str, Any]]] = field(default_factory=list)

    @property
    def first(self) -> datetime:
        return self.stages[0][0]

    def find(self, stage: str) -> Mapping[str, Any] | None:
        for _, name, attrs in self.stages:
            if name == stage:
                return attrs
        return None

    def inbound(self) -> Interface:
        received = self.find(j.RECEIVED)
        ack = self.find(j.ACKNOWLEDGED) or {}
        if received is None:
            # Published straight to clinical-events (the FHIR API): no edge receipt.
            return Interface("in", "fhir-api", "http", str(self._event_kind()))
        source = str(received.get("source") or "unknown")
        transport = source.split(":", 1)[0] or "unknown"
        party = str(ack.get("sender") or received.get("channel") or "unknown")
        kind = ack.get("message_type") or received.get("channel") or "*"
        return Interface("in", party, transport, str(kind))

    def _event_kind(self) -> str:
        mapped = self.find(j.MAPPED)
        if mapped is not None and mapped.get("event_kind"):
            return str(mapped["event_kind"])
        for _, _, attrs in self.stages:
            if attrs.get("event_kind"):
                return str(attrs["event_kind"])
        return "*"

    def outbound(self, subscriber: str) -> Interface:
        return Interface("out", subscriber, OUTBOUND_TRANSPORT.get(subscriber, "bus"), self._event_kind())

    def subscribers(self) -> set[str]:
        """Write-back subscribers this message was due at (mapped / published to clinical-events) or
        seen at."""
        due: set[str] = set()
        for _, stage, attrs in self.stages:
            if stage == j.MAPPED or (
                stage in (j.PUBLISHED, "publish-deferred") and attrs.get("topic") == TOPIC_CLINICAL
            ):
                due.update(WRITEBACK_SUBSCRIPTIONS)
            sub = attrs.get("subscriber") or attrs.get("subscription")
            if isinstance(sub, str) and sub in WRITEBACK_SUBSCRIPTIONS:
                due.add(sub)
        return due


@dataclass(slots=True)
class Scan:
    """What one pass found (the service adds destination and volume checks)."""

    counts: dict[Interface, Counts] = field(default_factory=lambda: defaultdict(Counts))
    items: list[Item] = field(default_factory=list)
    #: Inbound messages per (interface, hour start) in the window and the week before.
    hourly: dict[tuple[Interface, datetime], int] = field(default_factory=lambda: defaultdict(int))
    hourly_last_week: dict[tuple[Interface, datetime], int] = field(default_factory=lambda: defaultdict(int))
    messages: int = 0


def read_trails(records: RecordStore) -> dict[str, Trail]:
    trails: dict[str, Trail] = {}
    for rec in records.query(TABLE_JOURNAL):
        value = rec.value
        trail = trails.get(rec.partition_key)
        if trail is None:
            try:
                corr = restore_key(rec.partition_key)
            except InvalidKey:
                continue
            trail = trails[rec.partition_key] = Trail(corr)
        trail.stages.append(
            (datetime.fromisoformat(str(value["at"])), str(value["stage"]), value.get("attributes") or {})
        )
    for trail in trails.values():
        trail.stages.sort(key=lambda s: s[0])
    return {t.correlation_id: t for t in trails.values()}


def read_inflight(records: RecordStore) -> dict[str, dict[str, datetime]]:
    """Open in-flight rows: correlation id -> subscriber -> opened at."""
    out: dict[str, dict[str, datetime]] = defaultdict(dict)
    for rec in records.query(TABLE_INFLIGHT):
        if not rec.value.get("open"):
            continue
        try:
            subscriber = restore_key(rec.row_key)
            corr = str(rec.value.get("correlation_id") or restore_key(rec.partition_key))
        except InvalidKey:
            continue
        out[corr][subscriber] = datetime.fromisoformat(str(rec.value["at"]))
    return out


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _age(now: datetime, at: datetime) -> int:
    return max(0, int((now - at).total_seconds()))


def _inbound(trail: Trail, counts: Counts) -> None:
    stages = [s for _, s, _ in trail.stages]
    if j.RECEIVED not in stages:
        counts.received += 1
        counts.accepted += 1
        counts.delivered += 1  # the FHIR API stored it before publishing
        return
    counts.received += 1
    ack = trail.find(j.ACKNOWLEDGED)
    edge_failed = any(
        s in (j.REJECTED, j.INVALID)
        or (s == j.FAILED and "delivery_count" not in a and not a.get("subscriber"))
        for _, s, a in trail.stages
    )
    published = any(s == j.PUBLISHED and a.get("topic") == TOPIC_INGEST for _, s, a in trail.stages)
    repeat = any(s == j.DUPLICATE and not a.get("subscriber") for _, s, a in trail.stages)
    if edge_failed:
        counts.failed += 1
        return
    if published or repeat or (ack is not None and str(ack.get("code")) in FINAL_ACKS):
        counts.accepted += 1
    if repeat or j.CONSUMED in stages:
        counts.delivered += 1
    elif any(
        s == j.DEAD_LETTERED and a.get("subscriber") == SUB_INGEST_PROCESSOR for _, s, a in trail.stages
    ):
        counts.failed += 1


def _outbound_status(trail: Trail, subscriber: str) -> tuple[str, Mapping[str, Any], datetime | None]:
    """("ok" | "failed" | "pending", the deciding stage's attributes, when)."""
    status: str = "pending"
    last: Mapping[str, Any] = {}
    when: datetime | None = None
    for at, stage, attrs in trail.stages:
        if (attrs.get("subscriber") or attrs.get("subscription")) != subscriber:
            continue
        if stage in _OK:
            status, last, when = "ok", attrs, at
            mllp = OUTBOUND_TRANSPORT.get(subscriber) == "mllp"
            if stage == j.WRITTEN_BACK and mllp and str(attrs.get("status")) in NEGATIVE_ACKS:
                status = "failed"
        elif stage in (j.CONFLICT, j.DEAD_LETTERED) or (stage == j.FAILED and attrs.get("final")):
            status, last, when = "failed", attrs, at
        elif stage == j.REPLAYED:
            status, last, when = "pending", attrs, at
    return status, last, when


def _failure_item(
    trail: Trail, iface: Interface, attrs: Mapping[str, Any], at: datetime, now: datetime
) -> Item:
    response = str(attrs.get("response") or attrs.get("status") or "")
    code = str(attrs.get("cause") or attrs.get("error_code") or attrs.get("reason") or "")
    for _, stage, earlier in trail.stages:  # a redelivery answered from the stored failure: the first
        if earlier.get("subscriber") == iface.party and stage in (j.FAILED, j.RETRIED):
            response = response or str(earlier.get("response") or "")
            if response:
                code = str(earlier.get("error_code") or code)
                break
    if iface.transport == "mllp":
        category = Category.UNACKNOWLEDGED
        action = Action.REPLAY if response in _REPLAY_RESPONSES else Action.CHASE_DOWNSTREAM
        detail = f"no final ACK (response {response or 'none'}, {code or 'no code'})"
    else:
        category = Category.MISSING
        action = DEFAULT_ACTION[category]
        detail = f"write-back did not complete ({code or response or 'failed'})"
    identifiers = {"subscriber": iface.party}
    if attrs.get("event_key"):
        identifiers["eventKey"] = str(attrs["event_key"])
    return Item(
        iface,
        category,
        item_id(category, iface, trail.correlation_id),
        trail.correlation_id,
        identifiers,
        _age(now, at),
        action,
        detail,
    )


def scan(
    records: RecordStore,
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    stuck_after: timedelta,
    trails: Mapping[str, Trail] | None = None,
) -> Scan:
    """Counts and journal-derived items per interface for messages first seen in ``[since, until)``;
    stuck items for every in-flight row older than ``stuck_after`` (whenever the message arrived)."""
    trails = trails if trails is not None else read_trails(records)
    inflight = read_inflight(records)
    result = Scan()
    week = timedelta(days=7)
    for trail in trails.values():
        if not trail.stages:
            continue
        first = trail.first
        if since - week <= first < until - week:
            result.hourly_last_week[(trail.inbound(), _hour(first + week))] += 1
        if not since <= first < until:
            continue
        result.messages += 1
        inbound = trail.inbound()
        result.hourly[(inbound, _hour(first))] += 1
        _inbound(trail, result.counts[inbound])
        waiting = inflight.get(trail.correlation_id, {})
        if SUB_INGEST_PROCESSOR in waiting:
            result.counts[inbound].inflight += 1
        for subscriber in sorted(trail.subscribers()):
            iface = trail.outbound(subscriber)
            counts = result.counts[iface]
            counts.received += 1
            if any(s == j.DELIVERED and a.get("subscriber") == subscriber for _, s, a in trail.stages):
                counts.accepted += 1
            status, attrs, at = _outbound_status(trail, subscriber)
            if status == "ok":
                counts.delivered += 1
            elif status == "failed" and at is not None:
                counts.failed += 1
                result.items.append(_failure_item(trail, iface, attrs, at, now))
            if subscriber in waiting:
                counts.inflight += 1
    result.items.extend(_stuck(trails, inflight, now=now, stuck_after=stuck_after))
    return result


def _stuck(
    trails: Mapping[str, Trail],
    inflight: Mapping[str, Mapping[str, datetime]],
    *,
    now: datetime,
    stuck_after: timedelta,
) -> Iterable[Item]:
    for corr, waiting in inflight.items():
        trail = trails.get(corr) or Trail(corr)
        for subscriber, opened in sorted(waiting.items()):
            if now - opened < stuck_after:
                continue
            iface = (
                (trail.inbound() if trail.stages else Interface("in", "unknown", "unknown", "*"))
                if subscriber == SUB_INGEST_PROCESSOR
                else trail.outbound(subscriber)
            )
            yield Item(
                iface,
                Category.STUCK,
                item_id(Category.STUCK, iface, f"{corr}\x1f{subscriber}\x1f{opened.isoformat()}"),
                corr,
                {"subscriber": subscriber},
                _age(now, opened),
                Action.INVESTIGATE,
                f"waiting for {subscriber} since {opened.isoformat()}",
            )
