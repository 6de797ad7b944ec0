"""Run a reconciliation: scan, check the destination, rank, persist, journal, measure, alert.

See ``docs/reconciliation.md``. Nothing silent: every run is stored (``tie reconcile history``), every
item with a correlation id is noted in that message's journal (stage ``reconciled``, up to
``journal_limit`` per run), every (interface, category) count is a gauge point, and a count above the
threshold is a ``reconcile.variance`` platform event; a ``reconcile.completed`` event carries the totals.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from shared.backbone import contracts
from shared.errors import TieError
from shared.fhirstore.ports import FhirRepository
from shared.journal import Journal
from shared.messaging.ports import MessageBus
from shared.messaging.topology import SUB_WRITEBACK_FHIR, TOPIC_PLATFORM
from shared.observability.metrics import Metrics, OpenTelemetryMetrics
from shared.reconcile.checks import VolumeRule, sequence_items, volume_items
from shared.reconcile.fhir import check_destination, check_unexpected
from shared.reconcile.mesh import check_mesh
from shared.reconcile.model import (
    CATEGORY_ORDER,
    Category,
    Counts,
    Interface,
    InterfaceReport,
    Item,
    Report,
)
from shared.reconcile.scan import read_trails, scan
from shared.reconcile.store import SCHEDULE, RunHistory
from shared.storage.errors import RecordNotFound
from shared.storage.names import TABLE_RECONCILE
from shared.storage.ports import RecordStore

_log = logging.getLogger("tie.reconcile")

#: Journal stage noted on a message a run found a variance on (not a final stage: changes nothing).
RECONCILED: Final = "reconciled"
#: Gauge: variance items per interface and category in the latest run.
VARIANCE_METRIC: Final = "tie.reconciliation.variance"
VARIANCE_METRIC_UNIT: Final = "{item}"


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    window: timedelta = timedelta(hours=24)
    stuck_after: timedelta = timedelta(seconds=900)
    #: A (interface, category) count above this raises a ``reconcile.variance`` event.
    threshold: int = 0
    #: Share of written resources read back from the FHIR destination, and the most per run.
    sample_percent: float = 100.0
    max_reads: int = 10_000
    volume: VolumeRule = field(default_factory=VolumeRule)
    journal_limit: int = 1000
    #: MESH sends not acknowledged by the recipient this long after sending are variance.
    mesh_ack_after: timedelta = timedelta(hours=24)
    #: Scheduled runs: the local hour (and zone) they run at.
    hour: int = 2
    timezone: str = "Europe/London"


def rank(items: Iterable[Item], counts: Mapping[Interface, Counts]) -> list[InterfaceReport]:
    """Interfaces by variance (most items first, then the oldest item, then name); items by category
    order, then oldest first."""
    reports: dict[Interface, InterfaceReport] = {}
    for iface, c in counts.items():
        reports[iface] = InterfaceReport(iface, c)
    for item in items:
        reports.setdefault(item.interface, InterfaceReport(item.interface)).items.append(item)
    for report in reports.values():
        report.items.sort(key=lambda i: (CATEGORY_ORDER[i.category], -i.age_seconds, i.item_id))
    return sorted(
        reports.values(),
        key=lambda r: (-r.variance, -max((i.age_seconds for i in r.items), default=0), r.interface.name),
    )


class Reconciler:
    def __init__(
        self,
        records: RecordStore,
        bus: MessageBus,
        *,
        destinations: Mapping[str, FhirRepository] | None = None,
        exclusive: Iterable[str] = (),
        options: ReconcileOptions | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._records = records
        self._bus = bus
        self._destinations = dict(destinations or {})
        #: Destinations only the engine writes: resources there it never wrote are ``unexpected``.
        self._exclusive = frozenset(exclusive)
        self.options = options or ReconcileOptions()
        self._metrics: Metrics = metrics if metrics is not None else OpenTelemetryMetrics()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._journal = Journal(records, clock=self._clock, track_inflight=False)
        self.history = RunHistory(records)

    # -- running ---------------------------------------------------------------------------------------

    def run(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        interface: str | None = None,
        trigger: str = "on-demand",
        run_id: str | None = None,
    ) -> Report:
        now = self._clock()
        until = until or now
        since = since or until - self.options.window
        run_id = run_id or f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
        trails = read_trails(self._records)
        found = scan(
            self._records,
            since=since,
            until=until,
            now=now,
            stuck_after=self.options.stuck_after,
            trails=trails,
        )
        items = list(found.items)
        items += sequence_items(trails.values(), since=since, until=until, now=now)
        items += volume_items(
            found.hourly, found.hourly_last_week, since=since, until=until, now=now, rule=self.options.volume
        )
        mesh = check_mesh(
            self._records, since=since, until=until, now=now, ack_after=self.options.mesh_ack_after
        )
        items += mesh.items
        reads = 0
        for downstream, repository in sorted(self._destinations.items()):
            checked = check_destination(
                self._records,
                repository,
                downstream=downstream,
                since=since,
                until=until,
                now=now,
                sample_percent=self.options.sample_percent,
                max_reads=self.options.max_reads,
                salt=run_id,
            )
            for item in checked.items:
                trail = trails.get(item.correlation_id or "")
                # File it under the interface the message went out on (the journal's), when known.
                items.append(replace(item, interface=trail.outbound(downstream)) if trail else item)
            reads += checked.checked
            if downstream in self._exclusive:
                items += check_unexpected(
                    self._records,
                    repository,
                    downstream=downstream,
                    since=since,
                    until=until,
                    now=now,
                    max_reads=self.options.max_reads,
                )
        counts = {**found.counts, **mesh.counts}
        if interface:
            items = [i for i in items if i.interface.matches(interface)]
            counts = {k: v for k, v in counts.items() if k.matches(interface)}
        report = Report(
            run_id=run_id,
            started=now,
            since=since,
            until=until,
            interfaces=rank(items, counts),
            messages=found.messages,
            reads=reads,
            trigger=trigger,
        )
        failed = self._alert(report, now)
        self.history.save(report, alerts_failed=failed)
        self._note(report)
        _log.info(
            "reconciliation run",
            extra={"count": report.variance, "status": f"run={run_id} alerts_failed={failed}"},
        )
        return report

    def run_if_due(self) -> Report | None:
        """The timer (hourly): once per local day, at or after the configured local hour (a firing missed
        while the host was down is caught up by the next one), over the window that ends at that local
        time - so consecutive days' windows meet exactly, across clock changes too."""
        now = self._clock()
        local_day = due(now, hour=self.options.hour, zone=self.options.timezone)
        if local_day is None:
            return None
        run_id = f"scheduled-{local_day.isoformat()}"
        if not self.history.claim(local_day.isoformat(), run_id):
            return None
        since, until = scheduled_window(
            local_day, hour=self.options.hour, zone=self.options.timezone, window=self.options.window
        )
        try:
            return self.run(since=since, until=until, trigger="timer", run_id=run_id)
        except BaseException:
            with contextlib.suppress(RecordNotFound, TieError):
                self._records.delete(TABLE_RECONCILE, SCHEDULE, local_day.isoformat())
            raise

    # -- nothing silent --------------------------------------------------------------------------------

    def _note(self, report: Report) -> None:
        noted = 0
        for item in report.items():
            if item.correlation_id is None or noted >= self.options.journal_limit:
                continue
            self._journal.record(
                item.correlation_id,
                RECONCILED,
                run_id=report.run_id,
                category=item.category.value,
                item=item.item_id,
                interface=item.interface.name,
            )
            noted += 1

    def _alert(self, report: Report, now: datetime) -> int:
        """Gauge per (interface, category), 0 included; events above the threshold. Returns how many
        events could not be published (stored in the run; the CLI exits non-zero)."""
        failed = 0
        for r in report.interfaces:
            by_category = r.by_category()
            for category in Category:
                count = by_category.get(category.value, 0)
                self._metrics.gauge(
                    VARIANCE_METRIC,
                    count,
                    unit=VARIANCE_METRIC_UNIT,
                    attributes={"reconciliation": r.interface.name[:120], "category": category.value},
                )
                if count > self.options.threshold:
                    failed += self._publish(
                        contracts.platform_event(
                            "reconcile.variance",
                            event_id=_event_id(report.run_id, r.interface.name, category.value),
                            subject=f"reconcile/{r.interface.name}"[:200],
                            severity="warning",
                            details={
                                "run_id": report.run_id,
                                "interface": r.interface.name[:200],
                                "category": category.value,
                                "count": count,
                                "threshold": self.options.threshold,
                            },
                            time=now,
                        )
                    )
        totals = report.totals()
        failed += self._publish(
            contracts.platform_event(
                "reconcile.completed",
                event_id=_event_id(report.run_id, "", "completed"),
                subject="reconcile",
                severity="info" if report.clean else "warning",
                details={
                    "run_id": report.run_id,
                    "trigger": report.trigger,
                    "messages": report.messages,
                    "variance": report.variance,
                    **{k.replace("-", "_"): v for k, v in totals.items()},
                },
                time=now,
            )
        )
        return failed

    def _publish(self, event: dict[str, object]) -> int:
        try:
            self._bus.publish(TOPIC_PLATFORM, [contracts.to_outbound(TOPIC_PLATFORM, event)])
        except TieError as exc:
            _log.warning("reconcile event not published", extra={"error_code": exc.code})
            return 1
        return 0


def _event_id(run_id: str, interface: str, category: str) -> str:
    return "rec-" + hashlib.sha256(f"{run_id}\x1f{interface}\x1f{category}".encode()).hexdigest()[:32]


def due(now: datetime, *, hour: int, zone: str) -> date | None:
    """The local date when ``now`` is at or after the local hour ``hour`` of ``zone``, else None (the
    caller claims the date, so it runs once). Hours are compared in the zone, so 02:00 UK time is 02:00
    UTC in winter and 01:00 UTC in summer."""
    local = now.astimezone(ZoneInfo(zone))
    return local.date() if local.hour >= hour else None


def scheduled_window(day: date, *, hour: int, zone: str, window: timedelta) -> tuple[datetime, datetime]:
    """``[since, until)`` in UTC: until = ``hour``:00 local on ``day``, since = ``window`` earlier in local
    wall-clock time (aware arithmetic in the zone), so a day with a clock change is 23 or 25 hours long
    and no hour is missed or counted twice between consecutive days."""
    tz = ZoneInfo(zone)
    local_until = datetime.combine(day, time(hour), tzinfo=tz)
    local_since = local_until - window
    return local_since.astimezone(UTC), local_until.astimezone(UTC)


def destinations_for(fhir: FhirRepository | None) -> dict[str, FhirRepository]:
    return {SUB_WRITEBACK_FHIR: fhir} if fhir is not None else {}
