"""Reconciliation against real drift: the FHIR write-back and the MLLP write-back run for real (embedded
store, scripted MLLP receiver), then the destination is changed behind the engine's back; the report must
name exactly those messages, in the right category, by identity and element - and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.backbone import contracts
from shared.backbone.fhir_writeback import FhirDownstream
from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.canonical.model import ClinicalEvent
from shared.journal import Journal
from shared.messaging.topology import (
    SUB_PLATFORM_AUDIT,
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_PLATFORM,
)
from shared.observability.correlation import correlation_scope
from shared.reconcile.fhir import SentRecorder, sent_records
from shared.reconcile.model import Category, Report
from shared.reconcile.replay import Replayer
from shared.reconcile.service import RECONCILED, ReconcileOptions, Reconciler
from tests.unit.backbone import support as s

T0 = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
SINCE, UNTIL = T0 - timedelta(hours=1), T0 + timedelta(hours=1)


@dataclass
class Gauges:
    points: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def gauge(self, name: str, value: float, *, unit: str = "", attributes: Any = None) -> None:
        attrs = attributes or {}
        self.points[(name, attrs["reconciliation"], attrs["category"])] = value


@dataclass
class Rig:
    env: s.Env
    clock: s.ManualClock
    journal: Journal
    fhir: SentRecorder
    gauges: Gauges

    def ingest(self, event: ClinicalEvent) -> None:
        """What the HL7 v2 edge and the ingest processor journal for a message that became ``event``."""
        corr = event.provenance.correlation_id or ""
        self.journal.record(corr, "received", channel="hl7v2", source="mllp:c1", size=100)
        self.journal.record(corr, "published", topic="tie-ingest", message_id=f"m-{corr}")
        self.journal.record(
            corr, "acknowledged", code="AA", control_id=corr, sender="PAS|RGT01", message_type="ADT^A01"
        )
        self.journal.record(corr, "mapped", event_kind=event.kind.value, event_key=event.key.value)
        self.journal.record(corr, "consumed", message_id=f"m-{corr}", delivery_count=1)
        s.publish(self.env.bus, event)

    def reconciler(self, **options: Any) -> Reconciler:
        return Reconciler(
            self.env.records,
            self.env.bus,
            destinations={SUB_WRITEBACK_FHIR: self.env.fhir},
            options=ReconcileOptions(**options),
            metrics=self.gauges,
            clock=self.clock,
        )

    def run(self, **options: Any) -> Report:
        return self.reconciler(**options).run(since=SINCE, until=UNTIL)

    def replayer(self) -> Replayer:
        return Replayer(
            self.env.records,
            self.env.bus,
            destinations={SUB_WRITEBACK_FHIR: self.env.fhir},
            journal=self.journal,
            topology=self.env.topology,
        )

    def platform_events(self) -> list[dict[str, Any]]:
        return [
            contracts.decode(TOPIC_PLATFORM, m.body)
            for m in self.env.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT, max_messages=100)
        ]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with s.embedded(tmp_path) as env:
        clock = s.ManualClock(T0)
        yield Rig(
            env,
            clock,
            Journal(env.records, clock=clock),
            SentRecorder(env.fhir, env.records, downstream=SUB_WRITEBACK_FHIR, clock=clock),
            Gauges(),
        )


def write_back(rig: Rig, downstreams: dict[str, Any]) -> s.PumpStats:
    backbone = s.backbone(rig.env, downstreams, clock=rig.clock)
    stats = s.PumpStats()
    try:
        for subscription in downstreams:
            subscriber = backbone.subscriber(subscription)

            def handle(delivery: Any, subscriber: Any = subscriber) -> Any:
                with correlation_scope(delivery.correlation):
                    return subscriber.handle(delivery)

            s.pump(rig.env.bus, subscription, handle, stats=stats)
    finally:
        backbone.close()
    return stats


NHS = s.nhs_numbers(3)


def admissions() -> list[ClinicalEvent]:
    return [s.event(f"C{i}", nhs=NHS[i], visit=f"V{i}", correlation_id=f"corr-{i}") for i in range(3)]


def test_a_clean_write_back_reconciles_clean_and_records_what_was_sent(rig: Rig) -> None:
    for e in admissions():
        rig.ingest(e)
    write_back(rig, {SUB_WRITEBACK_FHIR: FhirDownstream(rig.fhir, origin_store=False)})
    sent = list(sent_records(rig.env.records, SUB_WRITEBACK_FHIR, since=SINCE, until=UNTIL))
    # Every Encounter and Patient written is recorded under the message that wrote it.
    encounters = {r.ref: r.correlation_id for r in sent if r.ref.startswith("Encounter/")}
    assert sorted(encounters.values()) == ["corr-0", "corr-1", "corr-2"]
    assert {r.ref.split("/")[0] for r in sent} >= {"Patient", "Encounter"}
    report = rig.run()
    assert report.clean, [i.as_dict() for i in report.items()]
    assert report.reads == len(sent)
    inbound = next(r for r in report.interfaces if r.interface.direction == "in")
    assert inbound.interface.name == "in:PAS|RGT01:mllp:ADT^A01"
    assert inbound.counts.as_dict() == {
        "received": 3,
        "accepted": 3,
        "delivered": 3,
        "failed": 0,
        "inflight": 0,
    }
    outbound = next(
        r for r in report.interfaces if r.interface.party == SUB_WRITEBACK_FHIR and r.counts.received
    )
    assert (outbound.counts.received, outbound.counts.delivered, outbound.counts.failed) == (3, 3, 0)
    # Stored, with the totals; the gauge says 0 for every category of every interface.
    [stored] = rig.reconciler().history.runs()
    assert stored["run_id"] == report.run_id and stored["variance"] == 0
    assert {v for (name, _, _), v in rig.gauges.points.items()} == {0}


def test_a_deleted_and_a_changed_resource_are_found_by_identity_and_element(rig: Rig) -> None:
    for e in admissions():
        rig.ingest(e)
    write_back(rig, {SUB_WRITEBACK_FHIR: FhirDownstream(rig.fhir, origin_store=False)})
    sent = {
        r.correlation_id: r
        for r in sent_records(rig.env.records, SUB_WRITEBACK_FHIR, since=SINCE, until=UNTIL)
        if r.ref.startswith("Encounter/")
    }
    deleted, changed = sent["corr-0"].ref, sent["corr-1"].ref
    # Drift at the destination, behind the engine's back.
    rig.env.fhir.delete(*deleted.split("/"))
    stored = rig.env.fhir.read(*changed.split("/"))
    body = dict(stored.resource, status="cancelled")
    rig.env.fhir.update(*changed.split("/"), body)

    report = rig.run()
    found = {(i.category, i.correlation_id, i.identifiers["resource"]) for i in report.items()}
    assert found == {
        (Category.MISSING, "corr-0", deleted),
        (Category.MISMATCH, "corr-1", changed),
    }
    mismatch = next(i for i in report.items() if i.category is Category.MISMATCH)
    assert mismatch.detail.endswith(": status")  # the element that differs, not its value
    assert "cancelled" not in str(mismatch.as_dict())
    # Ranked first: the FHIR destination interfaces with variance; the journal of each message says so.
    top = report.interfaces[0]
    assert top.interface.name == "out:writeback-fhir:fhir:admission" and top.variance == 2
    assert [r.variance for r in report.interfaces[1:]] == [0] * (len(report.interfaces) - 1)
    assert [e.stage for e in rig.journal.trace("corr-0")].count(RECONCILED) == 1
    # Alerts: one reconcile.variance per (interface, category) above the threshold (0), and the totals.
    platform = "uk.nhs.tie.platform."
    events = {
        (e["type"].removeprefix(platform), e["data"].get("category")): e["data"]
        for e in rig.platform_events()
    }
    assert set(events) == {
        ("reconcile.variance", "missing-at-destination"),
        ("reconcile.variance", "content-mismatch"),
        ("reconcile.completed", None),
    }
    assert events[("reconcile.completed", None)]["variance"] == 2
    assert rig.gauges.points[("tie.reconciliation.variance", top.interface.name, "content-mismatch")] == 1

    # Replay: the deleted resource is restored to the version written; the changed one is for a human.
    missing = next(i for i in report.items() if i.category is Category.MISSING)
    outcomes = rig.replayer().replay([missing.item_id, mismatch.item_id, "rc-unknown"])
    assert [(o.item, o.status) for o in outcomes] == [
        (missing.item_id, "restored"),
        (mismatch.item_id, "skipped"),
        ("rc-unknown", "not-found"),
    ]
    again = rig.run()
    assert [(i.category, i.correlation_id) for i in again.items()] == [(Category.MISMATCH, "corr-1")]
    assert "reconcile-replayed" in [e.stage for e in rig.journal.trace("corr-0")]
    assert RECONCILED not in [e.stage for e in rig.journal.trace("corr-2")]


def mllp(port: int) -> Hl7MllpDownstream:
    return Hl7MllpDownstream(MllpSender("127.0.0.1", port, connect_timeout=5.0), ack_timeout=5.0)


def test_a_rejected_ack_is_unacknowledged_and_replay_repairs_it(rig: Rig) -> None:
    for e in admissions():
        rig.ingest(e)
    with s.FakeHl7Receiver() as receiver:
        first: dict[str, str] = {}

        def decide(control_id: str, _n: int) -> str:
            first.setdefault("id", control_id)
            return "AR" if control_id == first["id"] else "AA"

        receiver.script = s.ReceiverScript(decide)
        ds = mllp(receiver.port)
        write_back(rig, {SUB_WRITEBACK_HL7V2: ds})
        ds.close()
        report = rig.run()
        [item] = report.items()
        assert item.category is Category.UNACKNOWLEDGED
        assert item.interface.party == SUB_WRITEBACK_HL7V2 and item.interface.transport == "mllp"
        assert item.correlation_id in {"corr-0", "corr-1", "corr-2"}
        assert "AR" in item.detail and item.action.value == "chase downstream"
        counts = report.interfaces[0].counts
        assert (counts.received, counts.delivered, counts.failed) == (3, 2, 1)

        # The downstream is fixed; the item is replayed from the dead letters through the write-back.
        receiver.script = s.ReceiverScript(lambda _cid, _n: "AA")
        [outcome] = rig.replayer().replay([item.item_id])
        assert (outcome.item, outcome.status) == (item.item_id, "replayed")
        ds = mllp(receiver.port)
        stats = write_back(rig, {SUB_WRITEBACK_HL7V2: ds})
        ds.close()
        assert stats.statuses == {"applied": 1}
        assert receiver.applied[first["id"]] == 1
    stages = [e.stage for e in rig.journal.trace(item.correlation_id or "")]
    assert stages.count("reconcile-replayed") == 1 and stages.count("replayed") == 1
    assert rig.run().clean  # a second run is clean


def test_a_resource_with_our_identifiers_that_we_never_wrote_is_unexpected(rig: Rig, tmp_path: Path) -> None:
    # A remote destination only the engine writes to (its own clock: versions are stamped in the window).
    remote = SqliteFhirRepository(tmp_path / "remote.sqlite3", clock=rig.clock)
    recorder = SentRecorder(remote, rig.env.records, downstream=SUB_WRITEBACK_FHIR, clock=rig.clock)
    try:
        for e in admissions():
            rig.ingest(e)
        write_back(rig, {SUB_WRITEBACK_FHIR: FhirDownstream(recorder, origin_store=False)})
        ours = next(
            s for s in sent_records(rig.env.records, SUB_WRITEBACK_FHIR) if s.ref.startswith("Encounter/")
        )
        assert ours.systems  # the visit number's system is recorded (the system, not the value)
        template = remote.read(*ours.ref.split("/")).resource
        stranger = {k: v for k, v in template.items() if k not in ("id", "meta")}
        stranger["identifier"] = [dict(template["identifier"][0], value="SOMEONE-ELSES-VISIT")]
        created = remote.create(stranger)
        unrelated = {k: v for k, v in template.items() if k not in ("id", "meta", "identifier")}
        remote.create(unrelated)  # no identifier of ours: not this engine's business

        def reconcile(exclusive: list[str]) -> Report:
            return Reconciler(
                rig.env.records,
                rig.env.bus,
                destinations={SUB_WRITEBACK_FHIR: remote},
                exclusive=exclusive,
                metrics=rig.gauges,
                clock=rig.clock,
            ).run(since=SINCE, until=UNTIL)

        assert reconcile([]).clean  # a destination shared with other writers (the embedded store)
        [item] = reconcile([SUB_WRITEBACK_FHIR]).items()
        assert (item.category, item.identifiers["resource"]) == (
            Category.UNEXPECTED,
            f"Encounter/{created.id}",
        )
        assert "SOMEONE-ELSES-VISIT" not in str(item.as_dict())
    finally:
        remote.close()


def test_a_sampled_write_back_names_the_source_field_of_a_mismatch(rig: Rig) -> None:
    from shared.reconcile.lineage import SOURCES, LineageSampler

    for e in admissions():
        rig.ingest(e)
    sampler = LineageSampler(FhirDownstream(rig.fhir, origin_store=False), percent=100)
    write_back(rig, {SUB_WRITEBACK_FHIR: sampler})
    assert SOURCES.get() is None  # handed over for the call only
    sent = {
        r.correlation_id: r
        for r in sent_records(rig.env.records, SUB_WRITEBACK_FHIR)
        if r.ref.startswith("Encounter/")
    }
    assert sent["corr-1"].sources is not None and sent["corr-1"].sources["status"] == ["encounter.status"]
    changed = sent["corr-1"].ref
    stored = rig.env.fhir.read(*changed.split("/")).resource
    rig.env.fhir.update(*changed.split("/"), dict(stored, status="cancelled"))
    [item] = rig.run().items()
    assert item.category is Category.MISMATCH
    assert item.detail == "elements differ from what was sent: status (from encounter.status)"
