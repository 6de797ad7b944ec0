"""Stuck messages: still in flight after ``TIE_STUCK_AFTER_SECONDS`` - announced, journaled, measured.

The journal's in-flight index (:meth:`shared.journal.Journal.inflight`) holds one row per (correlation ID,
subscriber still expected to act) with the time the row was opened. :class:`StuckMonitor` (timer
``stuck_monitor`` in ``functions/events.py``, every minute) lists the rows older than the deadline and,
for each **newly** stuck pair:

* records it in table ``stuck`` (partition = correlation ID, row = subscriber; value: when the row was
  opened) with an insert-if-absent, so each pair is announced once however often the timer runs and
  however many instances run it;
* publishes a ``message.stuck`` platform event (severity ``warning``; data: subscriber, age and deadline
  in seconds - identifiers and numbers only);
* journals a ``stuck`` note for the correlation ID (``tie trace`` shows it; it does not change the
  in-flight index).

A pair is identified with the time its row was opened: a dead letter replayed later re-opens the row with
a new time and, if it gets stuck again, is announced again. Records of pairs that have finished (or were
re-opened) are cleared by the next scan. If the platform event cannot be published, the record is
dropped again so the next scan retries (nothing journaled twice, nothing silently lost).

Every scan sets the gauge ``tie.messages.stuck`` (dimension ``subscriber``: the number of messages that
subscriber has held past the deadline, 0 included so an alert can see recovery); the alert rule
``messages-stuck`` in ``infra/bicep/modules/alerts.bicep`` queries it. ``tie inflight --stuck`` lists the
same messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from shared.backbone import contracts
from shared.errors import TieError
from shared.journal import InflightEntry, Journal
from shared.messaging.ports import MessageBus
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_PLATFORM, WRITEBACK_SUBSCRIPTIONS
from shared.observability.correlation import correlation_scope
from shared.observability.metrics import Metrics, OpenTelemetryMetrics
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_STUCK
from shared.storage.ports import RecordStore

_log = logging.getLogger("tie.backbone.stuck")

#: Journal stage noted when a subscriber is announced stuck on a message.
STUCK: Final = "stuck"
#: Gauge: messages in flight past the deadline, per subscriber (``infra/bicep/config/custom-metrics.json``).
STUCK_METRIC: Final = "tie.messages.stuck"
STUCK_METRIC_UNIT: Final = "{message}"
DEFAULT_STUCK_AFTER: Final = timedelta(seconds=900)
DEFAULT_SCAN_LIMIT: Final = 1000
#: Subscribers the gauge always reports (0 when none is stuck), so alerts and charts see recovery.
KNOWN_SUBSCRIBERS: Final = (SUB_INGEST_PROCESSOR, *WRITEBACK_SUBSCRIPTIONS)


@dataclass(slots=True)
class StuckReport:
    #: (correlation ID, subscriber) pairs past the deadline.
    stuck: int = 0
    #: Pairs newly announced by this scan.
    announced: int = 0
    #: Announced pairs found finished (or re-opened) and forgotten.
    resolved: int = 0
    #: Announcements whose platform event could not be published (retried on the next scan).
    failed: int = 0
    by_subscriber: dict[str, int] = field(default_factory=dict)


def stuck_messages(
    journal: Journal, stuck_after: timedelta, *, limit: int = DEFAULT_SCAN_LIMIT
) -> list[InflightEntry]:
    """Messages with at least one subscriber waiting longer than ``stuck_after``, oldest first; each
    entry's ``waiting`` holds only those subscribers."""
    return journal.inflight(limit=limit, older_than=stuck_after)


def event_id(correlation_id: str, subscriber: str, since: datetime) -> str:
    digest = hashlib.sha256(f"{correlation_id}\x1f{subscriber}\x1f{since.isoformat()}".encode())
    return "stuck-" + digest.hexdigest()[:32]


class StuckMonitor:
    """Announces messages in flight past the deadline (see the module docstring). Safe to run
    concurrently: claiming a pair is an insert-if-absent (or an ETag-checked update)."""

    def __init__(
        self,
        bus: MessageBus,
        records: RecordStore,
        journal: Journal,
        *,
        stuck_after: timedelta = DEFAULT_STUCK_AFTER,
        metrics: Metrics | None = None,
        limit: int = DEFAULT_SCAN_LIMIT,
        subscribers: Iterable[str] = KNOWN_SUBSCRIBERS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if stuck_after <= timedelta(0):
            raise ValueError("stuck_after must be positive")
        self._bus = bus
        self._records = records
        self._journal = journal
        self.stuck_after = stuck_after
        self._metrics: Metrics = metrics if metrics is not None else OpenTelemetryMetrics()
        self._limit = limit
        self._subscribers = tuple(subscribers)
        self._clock = clock or (lambda: datetime.now(UTC))

    def scan(self) -> StuckReport:
        report = StuckReport(by_subscriber=dict.fromkeys(self._subscribers, 0))
        now = self._clock()
        current: set[tuple[str, str]] = set()
        for entry in stuck_messages(self._journal, self.stuck_after, limit=self._limit):
            for subscriber, since in sorted(entry.waiting.items()):
                current.add((entry.correlation_id, subscriber))
                report.stuck += 1
                report.by_subscriber[subscriber] = report.by_subscriber.get(subscriber, 0) + 1
                outcome = self._announce(entry.correlation_id, subscriber, since, now)
                if outcome is True:
                    report.announced += 1
                elif outcome is False:
                    report.failed += 1
        report.resolved = self._forget_finished(current)
        for subscriber, count in report.by_subscriber.items():
            self._metrics.gauge(
                STUCK_METRIC, count, unit=STUCK_METRIC_UNIT, attributes={"subscriber": subscriber}
            )
        if report.announced or report.failed:
            _log.warning(
                "messages stuck",
                extra={"count": report.stuck, "status": f"new={report.announced} failed={report.failed}"},
            )
        return report

    def _announce(self, correlation_id: str, subscriber: str, since: datetime, now: datetime) -> bool | None:
        """True: announced now; None: announced before (or by another instance); False: not published."""
        partition, row = safe_key(correlation_id), safe_key(subscriber)
        value: dict[str, Any] = {
            "correlation_id": correlation_id,
            "subscriber": subscriber,
            "since": since.isoformat(),
            "announced_at": now.isoformat(),
        }
        existing = self._records.get(TABLE_STUCK, partition, row)
        try:
            if existing is None:
                claimed = self._records.insert(TABLE_STUCK, partition, row, value)
            elif existing.value.get("since") == value["since"]:
                return None  # this stuck episode was announced before
            else:  # re-opened (replayed) since the last announcement: a new episode
                claimed = self._records.update(TABLE_STUCK, partition, row, value, etag=existing.etag)
        except (RecordExists, ConcurrencyConflict, RecordNotFound):
            return None  # another instance claimed it (or it changed under us): the next scan looks again
        age_seconds = int((now - since).total_seconds())
        notice = contracts.platform_event(
            "message.stuck",
            event_id=event_id(correlation_id, subscriber, since),
            subject=f"inflight/{subscriber}",
            severity="warning",
            correlation_id=correlation_id,
            details={
                "subscriber": subscriber,
                "since": since.isoformat(),
                "age_seconds": age_seconds,
                "stuck_after_seconds": int(self.stuck_after.total_seconds()),
            },
            time=now,
        )
        try:
            self._bus.publish(TOPIC_PLATFORM, [contracts.to_outbound(TOPIC_PLATFORM, notice)])
        except TieError as exc:
            with contextlib.suppress(ConcurrencyConflict, RecordNotFound):
                self._records.delete(TABLE_STUCK, partition, row, etag=claimed.etag)
            _log.warning("stuck message not announced", extra={"error_code": exc.code})
            return False
        self._journal.record(
            correlation_id,
            STUCK,
            subscriber=subscriber,
            age_seconds=age_seconds,
            stuck_after_seconds=int(self.stuck_after.total_seconds()),
        )
        with correlation_scope(correlation_id):
            _log.warning("message stuck", extra={"subscription": subscriber, "reason": "stuck"})
        return True

    def _forget_finished(self, current: set[tuple[str, str]]) -> int:
        """Drop records of announced pairs that are no longer stuck; returns how many."""
        forgotten = 0
        for rec in self._records.query(TABLE_STUCK):
            corr, subscriber = str(rec.value["correlation_id"]), str(rec.value["subscriber"])
            if (corr, subscriber) in current:
                continue
            opened = self._journal.waiting(corr).get(subscriber)
            if opened is not None and opened.isoformat() == rec.value.get("since"):
                continue  # still waiting, only beyond this scan's listing limit
            with contextlib.suppress(ConcurrencyConflict, RecordNotFound):
                if self._records.delete(TABLE_STUCK, rec.partition_key, rec.row_key, etag=rec.etag):
                    forgotten += 1
        return forgotten


def describe(entry: InflightEntry, now: datetime) -> dict[str, Any]:
    """One stuck message as ``tie inflight --stuck`` prints it (identifiers and ages only)."""
    return {
        "correlationId": entry.correlation_id,
        "since": entry.since.isoformat(),
        "ageSeconds": round((now - entry.since).total_seconds(), 1),
        "waitingFor": sorted(entry.waiting),
        "waiting": {
            name: {"since": at.isoformat(), "ageSeconds": round((now - at).total_seconds(), 1)}
            for name, at in sorted(entry.waiting.items())
        },
    }
