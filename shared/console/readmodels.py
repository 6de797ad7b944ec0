"""Read models shared by ``tie`` and the console: a message's journey, finding messages, the estate.

Identifiers, stages, codes, counts and ages only - never a message body or a patient identifier. The
query code is the journal's, the control-id index's, the dead-letter module's and the breaker's own; this
module only shapes their answers for a reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from shared.backbone import deadletter
from shared.backbone.breaker import PARTITION as BREAKER_PARTITION
from shared.backbone.breaker import BreakerSnapshot
from shared.backbone.stuck import stuck_messages
from shared.errors import TieError
from shared.ingest.control_ids import ControlIdMatch, find_by_control_id
from shared.journal import (
    ACKNOWLEDGED,
    CONFLICT,
    DUPLICATE,
    INVALID,
    JOURNAL_TABLE,
    RECEIVED,
    REJECTED,
    SUPERSEDED,
    WRITTEN_BACK,
    InflightEntry,
    Journal,
)
from shared.messaging.ports import MessageBus
from shared.storage.keys import restore_key
from shared.storage.names import TABLE_CIRCUITS, TABLE_PARKED
from shared.storage.ports import Record, RecordStore

#: Journal stages that carry a ledger verdict (the same clinical event again, older, or contradictory).
LEDGER_STAGES: Final = frozenset({DUPLICATE, SUPERSEDED, CONFLICT})
#: Stuck messages listed on the dashboard (oldest first; the count covers all of them).
STUCK_SHOWN: Final = 20


# -- a message's journey ---------------------------------------------------------------------------------


def journey_json(journal: Journal, correlation_id: str) -> dict[str, Any] | None:
    """``tie trace --json``: every journal stage and who is still to act (``None``: unknown id)."""
    entries, waiting = journal.journey(correlation_id)
    if not entries:
        return None
    return {
        "correlationId": correlation_id,
        "stages": [{"stage": e.stage, "at": e.at.isoformat(), **dict(e.attributes)} for e in entries],
        "inflight": {name: at.isoformat() for name, at in sorted(waiting.items())},
    }


@dataclass(frozen=True, slots=True)
class Stage:
    stage: str
    at: datetime
    offset_ms: float
    who: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Journey:
    """What happened to one message: stages with offsets, the ACK, each downstream's outcome, ledger
    verdicts, and the subscribers still awaited."""

    correlation_id: str
    stages: Sequence[Stage]
    waiting: Mapping[str, datetime]
    ack: str | None
    #: subscriber -> its last final stage (written-back, duplicate, dead-lettered ...) and response code.
    outcomes: Mapping[str, Mapping[str, Any]]
    ledger: Sequence[Stage]

    @property
    def finished(self) -> bool:
        return not self.waiting

    def to_json(self) -> dict[str, Any]:
        return {
            "correlationId": self.correlation_id,
            "ack": self.ack,
            "finished": self.finished,
            "stages": [
                {
                    "stage": s.stage,
                    "at": s.at.isoformat(),
                    "offsetMs": s.offset_ms,
                    "who": s.who,
                    "attributes": dict(s.attributes),
                }
                for s in self.stages
            ],
            "waitingFor": {name: at.isoformat() for name, at in sorted(self.waiting.items())},
            "outcomes": {name: dict(v) for name, v in sorted(self.outcomes.items())},
            "ledger": [{"stage": s.stage, "who": s.who, "at": s.at.isoformat()} for s in self.ledger],
        }


_FINAL: Final = frozenset(
    {WRITTEN_BACK, DUPLICATE, SUPERSEDED, CONFLICT, "skipped", "dead-lettered", "parked"}
)


def journey(journal: Journal, correlation_id: str) -> Journey | None:
    entries, waiting = journal.journey(correlation_id)
    if not entries:
        return None
    start = entries[0].at
    stages: list[Stage] = []
    ack: str | None = None
    outcomes: dict[str, dict[str, Any]] = {}
    for e in entries:
        who = str(e.attributes.get("subscriber") or e.attributes.get("subscription") or "")
        stage = Stage(e.stage, e.at, round((e.at - start).total_seconds() * 1000, 1), who, e.attributes)
        stages.append(stage)
        if e.stage in (ACKNOWLEDGED, REJECTED) and ack is None:
            code = e.attributes.get("code") or e.attributes.get("ack_code") or e.attributes.get("status")
            ack = str(code) if code else e.stage
        if who and e.stage in _FINAL:
            outcome: dict[str, Any] = {"stage": e.stage, "at": e.at.isoformat()}
            for key in ("status", "response_code", "error_code", "downstream"):
                if e.attributes.get(key) is not None:
                    outcome[key] = e.attributes[key]
            outcomes[who] = outcome
    return Journey(
        correlation_id=correlation_id,
        stages=stages,
        waiting=waiting,
        ack=ack,
        outcomes=outcomes,
        ledger=[s for s in stages if s.stage in LEDGER_STAGES],
    )


# -- finding a message -----------------------------------------------------------------------------------


class InvalidQuery(ValueError):
    """The search terms cannot be used (the message names the field, never its value)."""


def parse_control_id(text: str) -> tuple[str, str | None, str]:
    """``SENDER:ID`` with SENDER = MSH-3 or ``MSH-3/MSH-4`` (``|`` also separates) -> (app, facility, id)."""
    sender, sep, control_id = text.strip().partition(":")
    application, _, facility = sender.replace("|", "/").partition("/")
    if not sep or not application.strip() or not control_id.strip():
        raise InvalidQuery("use SENDER:CONTROL_ID, e.g. PAS:SAMPLE0001 or PAS/RGT01:SAMPLE0001")
    return application.strip(), facility.strip() or None, control_id.strip()


@dataclass(frozen=True, slots=True)
class Found:
    correlation_id: str
    sender: str = ""
    control_id: str = ""
    ack: str = ""
    outcome: str = ""
    at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "correlationId": self.correlation_id,
            "sender": self.sender,
            "controlId": self.control_id,
            "ack": self.ack,
            "outcome": self.outcome,
            "at": self.at,
        }


def _found(m: ControlIdMatch) -> Found:
    sender = m.sending_application + (f"/{m.sending_facility}" if m.sending_facility else "")
    return Found(m.correlation_id, sender, m.control_id, m.code, m.outcome, m.at)


def find_messages(
    journal: Journal, records: RecordStore, *, correlation_id: str = "", control_id: str = ""
) -> list[Found]:
    """Messages by correlation id (exact) or by ``SENDER:CONTROL_ID`` (exactly one of them)."""
    correlation_id, control_id = correlation_id.strip(), control_id.strip()
    if bool(correlation_id) == bool(control_id):
        raise InvalidQuery("give a correlation id or a control id (one of them)")
    if correlation_id:
        return [Found(correlation_id)] if journal.trace(correlation_id) else []
    application, facility, cid = parse_control_id(control_id)
    return [_found(m) for m in find_by_control_id(records, application, cid, facility=facility)]


# -- the estate ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionCounts:
    topic: str
    subscription: str
    active: int
    dead_letter: int


@dataclass(frozen=True, slots=True)
class Downstream:
    name: str
    state: str
    failures: int
    trips: int
    open_until: datetime | None
    last_error: str | None
    parked: int


@dataclass(frozen=True, slots=True)
class Certificate:
    name: str
    days_left: int | None
    band: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Variance:
    """One reconciliation variance (``shared/reconcile``, when it reports): what and how many."""

    check: str
    count: int
    detail: str = ""


class ReconciliationSource(Protocol):
    """Extension point: the last reconciliation run's variances (``None``: never run)."""

    def last_run(self) -> tuple[datetime, Sequence[Variance]] | None: ...


@dataclass(frozen=True, slots=True)
class Estate:
    at: datetime
    subscriptions: Sequence[SubscriptionCounts]
    inflight: int
    stuck: int
    stuck_after: timedelta
    stuck_by_subscriber: Mapping[str, int]
    downstreams: Sequence[Downstream]
    certificates: Sequence[Certificate] | None
    reconciliation: tuple[datetime, Sequence[Variance]] | None
    #: Sections that could not be read (name -> error code), shown instead of silently omitted.
    unavailable: Mapping[str, str] = field(default_factory=dict)
    #: The oldest stuck messages (at most :data:`STUCK_SHOWN`): correlation id -> subscriber -> since.
    oldest_stuck: Sequence[InflightEntry] = ()
    traffic: Traffic | None = None

    @property
    def dead_letters(self) -> int:
        return sum(s.dead_letter for s in self.subscriptions)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "subscriptions": [
                {
                    "topic": s.topic,
                    "subscription": s.subscription,
                    "active": s.active,
                    "deadLetter": s.dead_letter,
                }
                for s in self.subscriptions
            ],
            "deadLetters": self.dead_letters,
            "inflight": self.inflight,
            "stuck": self.stuck,
            "stuckAfterSeconds": int(self.stuck_after.total_seconds()),
            "stuckBySubscriber": dict(sorted(self.stuck_by_subscriber.items())),
            "downstreams": [
                {
                    "name": d.name,
                    "breaker": d.state,
                    "failures": d.failures,
                    "trips": d.trips,
                    "openUntil": d.open_until.isoformat() if d.open_until else None,
                    "lastError": d.last_error,
                    "parked": d.parked,
                }
                for d in self.downstreams
            ],
            "certificates": None
            if self.certificates is None
            else [
                {"name": c.name, "daysLeft": c.days_left, "band": c.band, "error": c.error}
                for c in self.certificates
            ],
            "reconciliation": None
            if self.reconciliation is None
            else {
                "at": self.reconciliation[0].isoformat(),
                "variances": [
                    {"check": v.check, "count": v.count, "detail": v.detail} for v in self.reconciliation[1]
                ],
            },
            "unavailable": dict(self.unavailable),
            "traffic": None if self.traffic is None else self.traffic.to_json(),
            "oldestStuck": [
                {
                    "correlationId": e.correlation_id,
                    "since": e.since.isoformat(),
                    "waitingFor": {n: at.isoformat() for n, at in sorted(e.waiting.items())},
                }
                for e in self.oldest_stuck
            ],
        }


def downstreams(records: RecordStore, names: Sequence[str]) -> list[Downstream]:
    """Breaker state and parked work per downstream (``names`` plus any with a breaker record)."""
    snapshots = {
        restore_key(r.row_key): BreakerSnapshot.from_value(restore_key(r.row_key), dict(r.value))
        for r in records.query(TABLE_CIRCUITS, BREAKER_PARTITION)
    }
    out = []
    for name in sorted(set(names) | snapshots.keys()):
        snap = snapshots.get(name) or BreakerSnapshot(name)
        parked = len(records.query(TABLE_PARKED, name))
        out.append(
            Downstream(
                name, snap.state.value, snap.failures, snap.trips, snap.open_until, snap.last_error, parked
            )
        )
    return out


def estate(
    bus: MessageBus,
    records: RecordStore,
    journal: Journal,
    *,
    now: datetime,
    stuck_after: timedelta,
    downstream_names: Sequence[str],
    certificates: Callable[[], Sequence[Certificate]] | None = None,
    reconciliation: ReconciliationSource | None = None,
) -> Estate:
    subscriptions = [
        SubscriptionCounts(t.name, s.name, s.active_count, s.dead_letter_count)
        for t in bus.topology()
        for s in t.subscriptions
    ]
    inflight = journal.inflight(limit=100_000)
    stuck = stuck_messages(journal, stuck_after, limit=100_000)
    by_subscriber: dict[str, int] = {}
    for entry in stuck:
        for name in entry.waiting:
            by_subscriber[name] = by_subscriber.get(name, 0) + 1
    unavailable: dict[str, str] = {}
    certs: list[Certificate] | None = None
    if certificates is not None:
        try:
            certs = list(certificates())
        except TieError as exc:  # shown as unavailable; the rest of the estate still answers
            unavailable["certificates"] = exc.code
    return Estate(
        at=now,
        subscriptions=subscriptions,
        inflight=len(inflight),
        stuck=len(stuck),
        stuck_after=stuck_after,
        stuck_by_subscriber=by_subscriber,
        downstreams=downstreams(records, downstream_names),
        certificates=certs,
        reconciliation=reconciliation.last_run() if reconciliation is not None else None,
        unavailable=unavailable,
        oldest_stuck=stuck[:STUCK_SHOWN],
        traffic=traffic(records, now=now),
    )


# -- traffic ---------------------------------------------------------------------------------------------

#: Journal rows read at most for the traffic section (the section says when it was cut).
TRAFFIC_ROW_LIMIT: Final = 20_000
_E2E_DONE: Final = frozenset({WRITTEN_BACK, DUPLICATE, "skipped"})


@dataclass(frozen=True, slots=True)
class Traffic:
    """The last hour from the journal: messages received per minute, ACK codes, end-to-end latency."""

    since: datetime
    until: datetime
    #: Messages received per minute, oldest minute first (60 buckets for an hour).
    per_minute: Sequence[int]
    acks: Mapping[str, int]
    #: Received -> last write-back, milliseconds, for messages received and finished in the window.
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    finished: int
    truncated: bool

    @property
    def received(self) -> int:
        return sum(self.per_minute)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "received": self.received,
            "perMinute": list(self.per_minute),
            "acks": dict(sorted(self.acks.items())),
            "latencyMs": {"p50": self.latency_p50_ms, "p95": self.latency_p95_ms, "finished": self.finished},
            "truncated": self.truncated,
        }


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return round(ordered[int(rank) - 1], 1)


def traffic(records: RecordStore, *, now: datetime, window: timedelta = timedelta(hours=1)) -> Traffic:
    """Read the journal rows of the window (row keys start with the UTC time: one prefix per hour)."""
    since = now - window
    minutes = max(1, int(window.total_seconds() // 60))
    hours: list[str] = []
    cursor = since.replace(minute=0, second=0, microsecond=0)
    while cursor <= now:
        hours.append(cursor.strftime("%Y%m%dT%H"))
        cursor += timedelta(hours=1)
    rows: list[Record] = []
    truncated = False
    for prefix in hours:
        found = records.query(JOURNAL_TABLE, row_key_prefix=prefix, limit=TRAFFIC_ROW_LIMIT + 1 - len(rows))
        rows.extend(found)
        if len(rows) > TRAFFIC_ROW_LIMIT:
            truncated = True
            rows = rows[:TRAFFIC_ROW_LIMIT]
            break
    per_minute = [0] * minutes
    acks: dict[str, int] = {}
    received_at: dict[str, datetime] = {}
    done_at: dict[str, datetime] = {}
    for rec in rows:
        at = datetime.fromisoformat(str(rec.value["at"]))
        if not since <= at <= now:
            continue
        stage = str(rec.value["stage"])
        attributes = rec.value.get("attributes") or {}
        if stage == RECEIVED:
            per_minute[min(minutes - 1, int((at - since).total_seconds() // 60))] += 1
            received_at[rec.partition_key] = min(at, received_at.get(rec.partition_key, at))
        elif stage == ACKNOWLEDGED:
            code = str(attributes.get("code") or "?")
            acks[code] = acks.get(code, 0) + 1
        elif stage in (REJECTED, INVALID):
            acks[stage] = acks.get(stage, 0) + 1
        elif stage in _E2E_DONE:
            done_at[rec.partition_key] = max(at, done_at.get(rec.partition_key, at))
    latencies = [
        (done_at[k] - start).total_seconds() * 1000 for k, start in received_at.items() if k in done_at
    ]
    return Traffic(
        since=since,
        until=now,
        per_minute=per_minute,
        acks=acks,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        finished=len(latencies),
        truncated=truncated,
    )


# -- dead letters ----------------------------------------------------------------------------------------


def dead_letters(
    bus: MessageBus, records: RecordStore, *, limit: int = deadletter.DEFAULT_PEEK_LIMIT
) -> list[dict[str, Any]]:
    """Every subscription's dead letters (metadata, no body), oldest first per subscription."""
    return [letter.to_json() for letter in deadletter.list_dead_letters(bus, records, limit=limit)]
