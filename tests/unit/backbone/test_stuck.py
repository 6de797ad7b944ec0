"""Stuck messages: in flight past the deadline -> announced once (platform event, journal note), measured
(gauge), forgotten when finished; wired into the backbone and a timer."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.backbone import contracts
from shared.backbone.stuck import STUCK, STUCK_METRIC, StuckMonitor
from shared.journal import Journal
from shared.messaging.errors import BusUnavailable
from shared.messaging.ports import MessageBus, OutboundMessage
from shared.messaging.topology import (
    SUB_INGEST_PROCESSOR,
    SUB_PLATFORM_AUDIT,
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_PLATFORM,
)
from shared.storage.names import TABLE_STUCK
from tests.unit.backbone import support as s

DEADLINE = timedelta(minutes=15)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Gauges:
    """A :class:`~shared.observability.metrics.Metrics` that keeps the last value per (name, subscriber)."""

    points: dict[tuple[str, str], float] = field(default_factory=dict)
    units: set[str] = field(default_factory=set)

    def gauge(
        self, name: str, value: float, *, unit: str = "", attributes: Mapping[str, str] | None = None
    ) -> None:
        self.points[(name, (attributes or {})["subscriber"])] = value
        self.units.add(unit)

    def stuck(self, subscriber: str) -> float:
        return self.points[(STUCK_METRIC, subscriber)]


@dataclass
class Rig:
    env: s.Env
    clock: Clock
    journal: Journal
    gauges: Gauges

    def monitor(self, bus: MessageBus | None = None) -> StuckMonitor:
        return StuckMonitor(
            bus or self.env.bus,
            self.env.records,
            self.journal,
            stuck_after=DEADLINE,
            metrics=self.gauges,
            clock=self.clock,
        )

    def notices(self) -> list[dict[str, Any]]:
        return [
            contracts.decode(TOPIC_PLATFORM, m.body)
            for m in self.env.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT, max_messages=100)
        ]

    def notes(self, corr: str) -> list[dict[str, Any]]:
        return [dict(e.attributes) for e in self.journal.trace(corr) if e.stage == STUCK]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = Clock()
    with s.embedded(tmp_path) as env:
        yield Rig(env, clock, Journal(env.records, clock=clock), Gauges())


def test_a_message_is_stuck_only_once_the_deadline_has_passed(rig: Rig) -> None:
    rig.journal.record("c1", "received", channel="hl7v2")
    monitor = rig.monitor()
    rig.clock.advance(DEADLINE - timedelta(seconds=1))
    report = monitor.scan()
    assert (report.stuck, report.announced) == (0, 0)
    assert rig.notices() == [] and rig.notes("c1") == []
    assert rig.gauges.stuck(SUB_INGEST_PROCESSOR) == 0

    rig.clock.advance(timedelta(seconds=1))
    report = monitor.scan()
    assert (report.stuck, report.announced) == (1, 1)
    assert report.by_subscriber[SUB_INGEST_PROCESSOR] == 1
    assert rig.gauges.stuck(SUB_INGEST_PROCESSOR) == 1
    assert rig.gauges.stuck(SUB_WRITEBACK_FHIR) == 0  # every known subscriber is reported, 0 included
    assert rig.gauges.units == {"{message}"}


def test_a_stuck_pair_is_announced_once_with_identifiers_and_ages_only(rig: Rig) -> None:
    rig.journal.record("c1", "received", channel="hl7v2")
    rig.clock.advance(DEADLINE + timedelta(minutes=1))
    assert rig.monitor().scan().announced == 1

    [notice] = rig.notices()
    assert notice["type"] == "uk.nhs.tie.platform.message.stuck"
    assert notice["tiecorrelationid"] == "c1" and notice["subject"] == f"inflight/{SUB_INGEST_PROCESSOR}"
    assert notice["data"] == {
        "severity": "warning",
        "subscriber": SUB_INGEST_PROCESSOR,
        "since": T0.isoformat(),
        "age_seconds": 960,
        "stuck_after_seconds": 900,
    }
    assert rig.notes("c1") == [
        {"subscriber": SUB_INGEST_PROCESSOR, "age_seconds": 960, "stuck_after_seconds": 900}
    ]
    # The note is not a final stage: the subscriber is still awaited.
    assert set(rig.journal.waiting("c1")) == {SUB_INGEST_PROCESSOR}

    # Later scans - by this instance or another one - see it still stuck but announce nothing new.
    rig.clock.advance(timedelta(minutes=5))
    again = rig.monitor().scan()
    assert (again.stuck, again.announced) == (1, 0)
    assert rig.monitor().scan().announced == 0
    assert len(rig.notices()) == 1 and len(rig.notes("c1")) == 1
    assert rig.gauges.stuck(SUB_INGEST_PROCESSOR) == 1


def test_a_finished_message_is_not_stuck(rig: Rig) -> None:
    rig.journal.record("done", "received")
    rig.journal.record("done", "consumed", delivery_count=1)
    rig.clock.advance(DEADLINE * 2)
    report = rig.monitor().scan()
    assert (report.stuck, report.announced) == (0, 0)
    assert rig.notices() == [] and rig.gauges.stuck(SUB_INGEST_PROCESSOR) == 0


def test_only_the_subscriber_that_has_not_acted_is_stuck(rig: Rig) -> None:
    rig.journal.record("c2", "received")
    rig.journal.record("c2", "mapped", event_kind="admission")
    rig.journal.record("c2", "consumed", delivery_count=1)
    rig.journal.record("c2", "written-back", subscriber=SUB_WRITEBACK_FHIR, status="201")
    rig.clock.advance(DEADLINE)
    report = rig.monitor().scan()
    assert (report.stuck, report.announced) == (1, 1)
    assert [n["data"]["subscriber"] for n in rig.notices()] == [SUB_WRITEBACK_HL7V2]
    assert rig.gauges.stuck(SUB_WRITEBACK_HL7V2) == 1 and rig.gauges.stuck(SUB_WRITEBACK_FHIR) == 0


def test_when_a_stuck_message_finishes_its_record_is_forgotten_and_the_gauge_drops(rig: Rig) -> None:
    rig.journal.record("c3", "received")
    rig.clock.advance(DEADLINE)
    monitor = rig.monitor()
    assert monitor.scan().announced == 1
    assert len(rig.env.records.query(TABLE_STUCK)) == 1
    rig.journal.record("c3", "consumed", delivery_count=3)
    report = monitor.scan()
    assert (report.stuck, report.resolved) == (0, 1)
    assert rig.env.records.query(TABLE_STUCK) == []
    assert rig.gauges.stuck(SUB_INGEST_PROCESSOR) == 0


def test_a_replayed_subscriber_that_sticks_again_is_a_new_episode(rig: Rig) -> None:
    rig.journal.record("c4", "mapped", event_kind="admission")
    rig.journal.record("c4", "written-back", subscriber=SUB_WRITEBACK_HL7V2, status="AA")
    rig.clock.advance(DEADLINE)
    monitor = rig.monitor()
    assert monitor.scan().announced == 1
    rig.journal.record("c4", "dead-lettered", subscription=SUB_WRITEBACK_FHIR, delivery_count=10)
    rig.clock.advance(timedelta(hours=1))
    rig.journal.record("c4", "replayed", subscription=SUB_WRITEBACK_FHIR, replay_count=1)
    report = monitor.scan()  # re-opened just now: not stuck, the old episode is forgotten
    assert (report.stuck, report.announced, report.resolved) == (0, 0, 1)
    rig.clock.advance(DEADLINE)
    assert monitor.scan().announced == 1
    first, second = rig.notices()
    assert first["id"] != second["id"]
    assert [n["data"]["since"] for n in (first, second)] == [
        T0.isoformat(),
        (T0 + DEADLINE + timedelta(hours=1)).isoformat(),
    ]
    assert len(rig.notes("c4")) == 2


def test_a_replay_that_sticks_again_between_two_scans_is_announced_again(rig: Rig) -> None:
    rig.journal.record("c8", "received")
    rig.clock.advance(DEADLINE)
    monitor = rig.monitor()
    assert monitor.scan().announced == 1
    rig.journal.record("c8", "dead-lettered", subscription=SUB_INGEST_PROCESSOR, delivery_count=10)
    rig.journal.record("c8", "replayed", subscription=SUB_INGEST_PROCESSOR, replay_count=1)
    rig.clock.advance(DEADLINE)  # no scan ran while it was re-opened and not yet stuck
    assert monitor.scan().announced == 1
    assert len(rig.notices()) == 2 and len(rig.notes("c8")) == 2
    [record] = rig.env.records.query(TABLE_STUCK)
    assert record.value["since"] == (T0 + DEADLINE).isoformat()


class DownBus:
    """The embedded bus, with publishing failing until ``up`` is set."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.up = False

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> None:
        if not self.up:
            raise BusUnavailable("bus down")
        self._bus.publish(topic, messages)


def test_an_announcement_the_bus_refused_is_retried_on_the_next_scan(rig: Rig) -> None:
    rig.journal.record("c5", "received")
    rig.clock.advance(DEADLINE)
    down = DownBus(rig.env.bus)
    monitor = rig.monitor(bus=down)  # type: ignore[arg-type]
    report = monitor.scan()
    assert (report.stuck, report.announced, report.failed) == (1, 0, 1)
    assert rig.env.records.query(TABLE_STUCK) == [] and rig.notes("c5") == []
    down.up = True
    assert monitor.scan().announced == 1
    assert len(rig.notices()) == 1 and len(rig.notes("c5")) == 1


def test_the_backbone_scans_with_its_deadline_and_clock(rig: Rig) -> None:
    bb = s.backbone(rig.env, {})
    assert bb.stuck.stuck_after == timedelta(seconds=900)  # the default deadline
    from shared.backbone.runtime import build_backbone

    bb = build_backbone(
        bus=rig.env.bus,
        records=rig.env.records,
        downstreams={},
        topology=rig.env.topology,
        clock=rig.clock,
        stuck_after=timedelta(minutes=2),
        metrics=rig.gauges,
    )
    bb.journal.record("c6", "received")
    rig.clock.advance(timedelta(minutes=2))
    report = bb.scan_stuck()
    assert (report.stuck, report.announced) == (1, 1)
    assert rig.gauges.stuck(SUB_INGEST_PROCESSOR) == 1


def test_the_process_backbone_reads_the_deadline_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config.settings import get_settings, reset_settings
    from shared.wiring import build_container, get_container, set_container

    monkeypatch.setenv("TIE_STUCK_AFTER_SECONDS", "120")
    reset_settings()
    set_container(build_container(get_settings()))  # closed by the autouse settings fixture
    assert get_container().backbone.stuck.stuck_after == timedelta(seconds=120)


def test_the_stuck_monitor_timer_runs_every_minute_and_announces(container: Any) -> None:
    from azure.functions.timer import TimerRequest

    from functions.events import stuck_monitor
    from tie.localhost.discovery import describe, load_app

    [spec] = [f for f in describe(load_app("function_app")) if f.name == "stuck_monitor"]
    assert (spec.kind, spec.schedule, spec.use_monitor) == ("timer", "0 * * * * *", False)

    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    Journal(container.records, clock=lambda: an_hour_ago).record("c7", "received")
    stuck_monitor(TimerRequest(past_due=False))
    [message] = container.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT)
    assert json.loads(message.body)["type"] == "uk.nhs.tie.platform.message.stuck"
    assert [e.stage for e in Journal(container.records).trace("c7")] == ["received", STUCK]


def test_opentelemetry_metrics_record_the_gauge_per_subscriber() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from shared.observability.metrics import OpenTelemetryMetrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = OpenTelemetryMetrics(provider=provider)
    metrics.gauge(STUCK_METRIC, 3, unit="{message}", attributes={"subscriber": SUB_WRITEBACK_FHIR})
    metrics.gauge(STUCK_METRIC, 0, unit="{message}", attributes={"subscriber": SUB_WRITEBACK_HL7V2})
    metrics.gauge(STUCK_METRIC, 2, unit="{message}", attributes={"subscriber": SUB_WRITEBACK_FHIR})
    data = reader.get_metrics_data()
    assert data is not None
    [metric] = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    assert (metric.name, metric.unit) == (STUCK_METRIC, "{message}")
    points = {dict(p.attributes or {})["subscriber"]: p.value for p in metric.data.data_points}
    assert points == {SUB_WRITEBACK_FHIR: 2, SUB_WRITEBACK_HL7V2: 0}
    provider.shutdown()
