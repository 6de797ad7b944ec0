"""Certificate expiry: days remaining per certificate (the metric the Bicep alerts query) and exactly one
platform event per threshold band and certificate version - with an injected clock, never the wall clock."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.backbone import contracts
from shared.backbone.platform import BusPlatformEvents
from shared.credentials import expiry
from shared.credentials.expiry import DAYS_REMAINING_METRIC, CertificateExpiryMonitor
from shared.messaging.errors import BusUnavailable
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SUB_PLATFORM_AUDIT, TOPIC_PLATFORM
from shared.storage.names import TABLE_CERT_ALERTS, TABLES
from tests.unit.credentials.conftest import Clock, Store

REPO = Path(__file__).resolve().parents[3]


class Gauges:
    def __init__(self) -> None:
        self.points: dict[str, float] = {}
        self.units: set[str] = set()

    def gauge(
        self, name: str, value: float, *, unit: str = "", attributes: Mapping[str, str] | None = None
    ) -> None:
        assert name == DAYS_REMAINING_METRIC
        self.points[(attributes or {})["certificate"]] = value
        self.units.add(unit)


class Rig:
    def __init__(self, root: Path, store: Store, clock: Clock) -> None:
        self.bus = SqliteBus(root / "bus.sqlite3")
        self.records = SqliteRecordStore(root / "records.sqlite3")
        self.store = store
        self.clock = clock
        self.gauges = Gauges()

    def monitor(self, bus: Any = None, referenced: tuple[str, ...] = ()) -> CertificateExpiryMonitor:
        return CertificateExpiryMonitor(
            self.store.provider,
            self.records,
            BusPlatformEvents(bus or self.bus),
            referenced=referenced,
            metrics=self.gauges,
            clock=self.clock,
        )

    def notices(self) -> list[dict[str, Any]]:
        return [
            contracts.decode(TOPIC_PLATFORM, m.body)
            for m in self.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT, max_messages=100)
        ]

    def close(self) -> None:
        self.bus.close()
        self.records.close()


@pytest.fixture
def rig(tmp_path: Path, store: Store, clock: Clock) -> Iterator[Rig]:
    r = Rig(tmp_path, store, clock)
    yield r
    r.close()


# (days until expiry when issued, band expected, severity expected)
CASES = [
    ("cert-95", 95, None, None),
    ("cert-45", 45, "90d", "warning"),
    ("cert-10", 10, "30d", "error"),
    ("cert-5", 5, "7d", "critical"),
    ("cert-gone", -1, "expired", "critical"),
]


def test_thresholds_produce_exactly_the_expected_events_and_a_second_run_none(rig: Rig) -> None:
    for name, days, _, _ in CASES:
        rig.store.issue(name, days=days)
    report = rig.monitor().scan()
    expected = {(name, band) for name, _, band, _ in CASES if band}
    assert {(n, b) for n, _, b in report.announced} == expected
    notices = rig.notices()
    assert len(notices) == len(expected)
    by_cert = {n["data"]["certificate"]: n for n in notices}
    for name, days, band, severity in CASES:
        if band is None:
            assert name not in by_cert
            continue
        notice = by_cert[name]
        assert notice["type"] == (
            "uk.nhs.tie.platform.certificate.expired"
            if band == "expired"
            else "uk.nhs.tie.platform.certificate.expiring"
        )
        assert notice["data"]["band"] == band and notice["data"]["severity"] == severity
        assert notice["data"]["days_remaining"] == days
    # the gauge: whole days per certificate (the CA too), unit "d"
    assert {k: v for k, v in rig.gauges.points.items() if k != "test-ca"} == {n: d for n, d, _, _ in CASES}
    assert rig.gauges.units == {"d"}

    again = rig.monitor().scan()
    assert again.announced == [] and again.failed == 0
    assert len(rig.notices()) == len(expected)


def test_moving_into_the_next_band_announces_that_band_once(rig: Rig) -> None:
    rig.store.issue("svc", days=31)
    monitor = rig.monitor()
    assert [b for _, _, b in monitor.scan().announced] == ["90d"]
    rig.clock.advance(timedelta(days=1))  # 30 days left
    assert [b for _, _, b in monitor.scan().announced] == ["30d"]
    assert monitor.scan().announced == []
    rig.clock.advance(timedelta(days=23))  # 7 days left
    assert [b for _, _, b in monitor.scan().announced] == ["7d"]
    rig.clock.advance(timedelta(days=7))  # expiry instant
    assert [b for _, _, b in monitor.scan().announced] == ["expired"]
    assert monitor.scan().announced == []
    assert [n["data"]["band"] for n in rig.notices()] == ["90d", "30d", "7d", "expired"]


def test_a_rotated_certificate_is_a_new_version_and_starts_afresh(rig: Rig) -> None:
    rig.store.issue("svc", days=20)
    monitor = rig.monitor()
    [(_, first_version, _)] = monitor.scan().announced
    rig.store.issue("svc", days=25)  # rotated, but still inside 30 days
    [(_, second_version, band)] = monitor.scan().announced
    assert second_version != first_version and band == "30d"
    rig.store.issue("svc", days=400)  # rotated properly
    assert monitor.scan().announced == []
    assert rig.gauges.points["svc"] == 400


class FailingBus:
    def publish(self, topic: str, messages: list[OutboundMessage]) -> None:
        raise BusUnavailable("down")


def test_an_unpublished_alert_is_retried_on_the_next_run(rig: Rig) -> None:
    rig.store.issue("svc", days=3)
    report = rig.monitor(bus=FailingBus()).scan()
    assert report.announced == [] and report.failed == 1
    assert list(rig.records.query(TABLE_CERT_ALERTS)) == []  # the claim was released
    assert [b for _, _, b in rig.monitor().scan().announced] == ["7d"]


def test_a_referenced_certificate_that_is_missing_is_reported_not_measured(rig: Rig) -> None:
    rig.store.issue("present", days=200)
    statuses = {s.name: s for s in rig.monitor(referenced=("present", "absent")).scan().statuses}
    assert statuses["absent"].error == "credential-not-found" and statuses["absent"].info is None
    assert "absent" not in rig.gauges.points and rig.gauges.points["present"] == 200


def test_inventory_is_sorted_by_days_left_and_rows_hold_no_key_material(rig: Rig) -> None:
    rig.store.issue("late", days=300)
    rig.store.issue("soon", days=12)
    rows = [s.row() for s in rig.monitor().inventory()]
    assert [r["certificate"] for r in rows][:2] == ["soon", "late"]
    text = json.dumps(rows)
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text


def test_the_metric_and_thresholds_match_what_the_bicep_alerts_query() -> None:
    custom = json.loads((REPO / "infra/bicep/config/custom-metrics.json").read_text())
    declared = custom["certificateDaysRemaining"]
    assert declared["name"] == expiry.DAYS_REMAINING_METRIC
    assert declared["unit"] == expiry.DAYS_REMAINING_UNIT
    assert declared["dimensions"] == [expiry.DAYS_REMAINING_DIMENSION]
    alerts = (REPO / "infra/bicep/modules/alerts.bicep").read_text()
    default = alerts.split("param certificateExpiryDays array = [", 1)[1].split("]", 1)[0]
    assert tuple(int(x) for x in default.split()) == expiry.THRESHOLDS
    assert TABLE_CERT_ALERTS in TABLES
    # the metric-missing alert watches the same metric over a day (the timer runs every 6 hours)
    missing = alerts.split("name: 'cert-metric-missing'", 1)[1].split("\n  }", 1)[0]
    assert "name == \\'${customMetrics.certificateDaysRemaining.name}\\'" in missing
    assert "points == 0" in missing
    assert "window: 'P1D'" in missing
