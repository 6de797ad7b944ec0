"""Reconciliation of the inbound side and the schedule: MSH-13 gaps and repeats through the real HL7 v2
edge, stuck messages, hourly volume against the same hour last week, alert threshold, ranking, the daily
run at 02:00 UK time either side of a clock change (injected clocks throughout)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.backbone import contracts
from shared.ingest.hl7v2 import Hl7Ingest
from shared.journal import Journal
from shared.messaging.topology import SUB_PLATFORM_AUDIT, TOPIC_PLATFORM
from shared.reconcile.checks import VolumeRule
from shared.reconcile.model import Category
from shared.reconcile.service import ReconcileOptions, Reconciler, due
from tests.unit.backbone import support as s

T0 = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
WIDE = {"since": datetime(2000, 1, 1, tzinfo=UTC), "until": datetime(2100, 1, 1, tzinfo=UTC)}
NHS = s.nhs_numbers(8)


class NoMetrics:
    def gauge(self, name: str, value: float, *, unit: str = "", attributes: Any = None) -> None:
        return None


@dataclass
class Rig:
    env: s.Env
    clock: s.ManualClock

    def journal(self) -> Journal:
        return Journal(self.env.records, clock=self.clock)

    def reconciler(self, **options: Any) -> Reconciler:
        return Reconciler(
            self.env.records,
            self.env.bus,
            options=ReconcileOptions(**options),
            metrics=NoMetrics(),
            clock=self.clock,
        )

    def events(self) -> list[dict[str, Any]]:
        return [
            contracts.decode(TOPIC_PLATFORM, m.body)
            for m in self.env.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT, max_messages=200)
        ]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with s.embedded(tmp_path) as env:
        yield Rig(env, s.ManualClock(T0))


def with_sequence(control_id: str, sequence: int, nhs: str) -> bytes:
    raw = s.adt(control_id, nhs=nhs, visit=f"V{control_id}")
    return raw.replace(b"|P|2.5.1\r", f"|P|2.5.1|{sequence}\r".encode(), 1)


def test_a_skipped_and_a_reused_sequence_number_are_found_and_a_retransmission_is_not(rig: Rig) -> None:
    ingest = Hl7Ingest(rig.env.bus, rig.env.records, strict_senders=frozenset())
    sent = [("S1", 1), ("S2", 2), ("S2", 2), ("S4", 4), ("S5", 5), ("S5B", 5), ("S6", 6)]
    results = {}
    for i, (control_id, number) in enumerate(sent):
        result = ingest.handle(
            with_sequence(control_id, number, NHS[int(control_id[1])]),
            source="mllp:c1",
            correlation_id=f"k{i}",
        )
        results[i] = result
    assert [r.code for r in results.values()] == ["AA"] * len(sent)
    assert results[2].duplicate  # the retransmission of S2: same control id, same content

    report = rig.reconciler(stuck_after=timedelta(days=365 * 200)).run(**WIDE)
    gaps = {
        (i.correlation_id, i.identifiers.get("missing"), i.identifiers.get("sequence"))
        for i in report.items()
    }
    assert gaps == {("k3", "3", None), ("k5", None, "5")}
    assert {i.category for i in report.items()} == {Category.SEQUENCE_GAP}
    [inbound] = [r for r in report.interfaces if r.interface.direction == "in"]
    assert inbound.interface.name == "in:PAS|RGT01:mllp:ADT^A01"
    # Received 7 (one of them a retransmission), accepted 7, none processed yet: all still in flight
    # except the retransmission (answered from the stored outcome).
    assert inbound.counts.as_dict() == {
        "received": 7,
        "accepted": 7,
        "delivered": 1,
        "failed": 0,
        "inflight": 6,
    }


def test_a_message_left_in_flight_is_stuck_once_past_the_deadline(rig: Rig) -> None:
    journal = rig.journal()
    journal.record("done", "received", channel="hl7v2", source="http", size=1)
    journal.record("done", "acknowledged", code="AA", sender="LAB|RGT01", message_type="ORU^R01")
    journal.record("done", "consumed", message_id="m1", delivery_count=1)
    journal.record("left", "received", channel="hl7v2", source="http", size=1)
    journal.record("left", "acknowledged", code="AA", sender="LAB|RGT01", message_type="ORU^R01")
    reconciler = rig.reconciler(stuck_after=timedelta(minutes=15))
    rig.clock.advance(timedelta(minutes=14))
    assert reconciler.run(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1)).clean
    rig.clock.advance(timedelta(minutes=2))
    report = reconciler.run(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1))
    [item] = report.items()
    assert (item.category, item.correlation_id, item.identifiers) == (
        Category.STUCK,
        "left",
        {"subscriber": "ingest-processor"},
    )
    assert item.interface.name == "in:LAB|RGT01:http:ORU^R01" and 16 * 60 <= item.age_seconds < 17 * 60
    assert report.interfaces[0].counts.as_dict() == {
        "received": 2,
        "accepted": 2,
        "delivered": 1,
        "failed": 0,
        "inflight": 1,
    }


def _traffic(rig: Rig, sender: str, at: datetime, count: int) -> None:
    rig.clock.now = at
    journal = rig.journal()
    for n in range(count):
        corr = f"{sender}-{at:%Y%m%d%H}-{n}"
        journal.record(corr, "received", channel="hl7v2", source="mllp:c", size=1)
        journal.record(corr, "acknowledged", code="AA", sender=sender, message_type="ADT^A01")
        journal.record(corr, "consumed", message_id=corr, delivery_count=1)


def test_volume_against_the_same_hour_last_week_ranks_the_quiet_interface_first(rig: Rig) -> None:
    hour = T0.replace(hour=9)
    _traffic(rig, "PAS|RGT01", hour - timedelta(days=7), 30)
    _traffic(rig, "PAS|RGT01", hour + timedelta(minutes=5), 5)  # went quiet
    _traffic(rig, "LAB|RGT01", hour - timedelta(days=7), 30)
    _traffic(rig, "LAB|RGT01", hour + timedelta(minutes=5), 28)  # normal
    rig.clock.now = T0
    report = rig.reconciler(volume=VolumeRule(min_messages=20)).run(since=hour, until=T0)
    [item] = report.items()
    assert item.category is Category.VOLUME and item.interface.party == "PAS|RGT01"
    assert item.identifiers == {"hour": hour.isoformat(), "count": "5", "sameHourLastWeek": "30"}
    assert [r.interface.party for r in report.interfaces] == ["PAS|RGT01", "LAB|RGT01"]
    # Last week's messages are not counted in this window.
    assert report.interfaces[1].counts.received == 28


def test_the_threshold_decides_which_counts_raise_an_event(rig: Rig) -> None:
    journal = rig.journal()
    for corr in ("a", "b"):
        journal.record(corr, "received", channel="hl7v2", source="http", size=1)
    rig.clock.advance(timedelta(hours=1))
    window = {"since": T0 - timedelta(hours=1), "until": T0 + timedelta(hours=1)}
    rig.reconciler(threshold=2).run(**window)  # 2 stuck: not above 2
    kinds = [e["type"].rsplit(".", 1)[-1] for e in rig.events()]
    assert kinds == ["completed"]
    rig.reconciler(threshold=1).run(**window)
    variance = [e["data"] for e in rig.events() if e["type"].endswith("reconcile.variance")]
    assert [(d["category"], d["count"]) for d in variance] == [("stuck", 2)]


@pytest.mark.parametrize(
    ("utc", "local_day"),
    [
        (datetime(2026, 1, 10, 1, 59, tzinfo=UTC), None),  # GMT: 01:59 local
        (datetime(2026, 1, 10, 2, 0, tzinfo=UTC), date(2026, 1, 10)),
        (datetime(2026, 1, 10, 5, 0, tzinfo=UTC), date(2026, 1, 10)),  # missed at 02:00: caught up
        (datetime(2026, 7, 1, 0, 59, tzinfo=UTC), None),  # BST: 01:59 local
        (datetime(2026, 7, 1, 1, 0, tzinfo=UTC), date(2026, 7, 1)),
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), None),  # clocks go forward at 01:00 UTC
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), date(2026, 3, 29)),  # = 02:00 BST
        (datetime(2026, 10, 25, 0, 0, tzinfo=UTC), None),  # 01:00 BST
        (datetime(2026, 10, 25, 1, 0, tzinfo=UTC), None),  # 01:00 GMT, the repeated hour
        (datetime(2026, 10, 25, 2, 0, tzinfo=UTC), date(2026, 10, 25)),
        (datetime(2026, 10, 25, 23, 30, tzinfo=UTC), date(2026, 10, 25)),
    ],
)
def test_the_schedule_is_two_in_the_morning_uk_time(utc: datetime, local_day: date | None) -> None:
    assert due(utc, hour=2, zone="Europe/London") == local_day


def test_each_day_around_both_clock_changes_runs_once_and_the_windows_meet(rig: Rig) -> None:
    for start, days in (
        (datetime(2026, 3, 27, 0, 0, tzinfo=UTC), (27, 28, 29, 30)),
        (datetime(2026, 10, 23, 0, 0, tzinfo=UTC), (23, 24, 25, 26)),
    ):
        fired = []
        rig.clock.now = start
        reconciler = rig.reconciler()
        for _ in range(24 * len(days)):  # the hourly timer, twice per hour (a second instance)
            for _instance in range(2):
                report = reconciler.run_if_due()
                if report is not None:
                    fired.append(report)
            rig.clock.now = rig.clock.now + timedelta(hours=1)
        month = f"{start:%Y-%m}"
        assert [r.run_id for r in fired] == [f"scheduled-{month}-{d}" for d in days]
        for before, after in itertools.pairwise(fired):
            assert after.since == before.until  # no hour missed, none counted twice
        lengths = [(r.until - r.since) // timedelta(hours=1) for r in fired]
        assert lengths == ([24, 24, 23, 24] if start.month == 3 else [24, 24, 25, 24])
        # 02:00 local: 02:00 UTC in winter, 01:00 UTC in summer.
        assert [r.until.hour for r in fired] == ([2, 2, 1, 1] if start.month == 3 else [1, 1, 2, 2])
    runs = reconciler.history.runs()
    assert [r["run_id"] for r in runs][:2] == ["scheduled-2026-10-26", "scheduled-2026-10-25"]


HL7 = "writeback-hl7v2"


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ([("written-back", {"status": "AA"})], (1, 0, None)),
        ([("written-back", {"status": "CA"})], (1, 0, None)),
        ([("written-back", {"status": "AE"})], (0, 1, Category.UNACKNOWLEDGED)),  # not a final ACK
        ([("written-back", {"status": "sent"})], (1, 0, None)),  # over MESH: acknowledged there
        ([("failed", {"response": "AR", "final": True})], (0, 1, Category.UNACKNOWLEDGED)),
        ([("failed", {"response": "AE", "final": False})], (0, 0, None)),  # will be retried: in flight
        ([("dead-lettered", {})], (0, 1, Category.UNACKNOWLEDGED)),
        ([("dead-lettered", {}), ("replayed", {}), ("written-back", {"status": "AA"})], (1, 0, None)),
        ([("dead-lettered", {}), ("replayed", {})], (0, 0, None)),
        ([("duplicate", {})], (1, 0, None)),
        ([("skipped", {"reason": "not-configured"})], (1, 0, None)),
    ],
)
def test_what_an_mllp_write_back_journal_amounts_to(
    rig: Rig, stages: list[tuple[str, dict[str, Any]]], expected: tuple[int, int, Category | None]
) -> None:
    journal = rig.journal()
    journal.record("m", "received", channel="hl7v2", source="mllp:c", size=1)
    journal.record("m", "acknowledged", code="AA", sender="PAS|RGT01", message_type="ADT^A01")
    journal.record("m", "mapped", event_kind="admission", event_key="k")
    journal.record("m", "consumed", message_id="m", delivery_count=1)
    for stage, attributes in stages:
        journal.record("m", stage, subscriber=HL7, **attributes)
    report = rig.reconciler(stuck_after=timedelta(days=1)).run(**WIDE)
    [out] = [r for r in report.interfaces if r.interface.party == HL7]
    assert (out.counts.delivered, out.counts.failed) == expected[:2]
    assert [i.category for i in out.items] == ([expected[2]] if expected[2] else [])
    assert all(i.correlation_id == "m" for i in out.items)


def test_a_new_interface_without_last_weeks_traffic_is_not_a_volume_anomaly(rig: Rig) -> None:
    hour = T0.replace(hour=9)
    _traffic(rig, "NEW|RGT01", hour + timedelta(minutes=5), 40)
    rig.clock.now = T0
    assert rig.reconciler(volume=VolumeRule(min_messages=20)).run(since=hour, until=T0).clean


def test_mesh_sends_not_acknowledged_by_the_recipient_a_day_later_are_unacknowledged(
    rig: Rig, tmp_path: Path
) -> None:
    from shared.adapters.embedded.local_mesh import LocalFilesMailbox
    from shared.mesh.outbound import MeshOutbound

    root = tmp_path / "mesh"
    sender, recipient = LocalFilesMailbox(root, "X26OT001"), LocalFilesMailbox(root, "X26OT002")
    outbound = MeshOutbound(rig.env.records, clock=rig.clock)
    sent = {
        key: outbound.send(
            sender, "X26OT002", b"{}", local_id=key, workflow_id="WF", correlation_id=f"c-{key}"
        )
        for key in ("k1", "k2")
    }
    recipient.acknowledge(sent["k1"].message_id)  # the recipient downloaded and acknowledged k1 only
    assert outbound.refresh(sender) == 2  # k1 acknowledged, k2 accepted (tracked)
    window = {"since": T0 - timedelta(hours=1), "until": T0 + timedelta(hours=1)}
    rig.clock.advance(timedelta(hours=23))
    assert rig.reconciler().run(**window).clean  # not yet a day
    rig.clock.advance(timedelta(hours=1))
    report = rig.reconciler().run(**window)
    [item] = report.items()
    assert (item.category, item.correlation_id, item.identifiers["localId"]) == (
        Category.UNACKNOWLEDGED,
        "c-k2",
        "k2",
    )
    assert item.interface.name == "out:mesh:X26OT001:mesh:WF" and item.identifiers["tracking"] == "accepted"
    assert report.interfaces[0].counts.as_dict() == {
        "received": 2,
        "accepted": 2,
        "delivered": 1,
        "failed": 0,
        "inflight": 1,
    }
