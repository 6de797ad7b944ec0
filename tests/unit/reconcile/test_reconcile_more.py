"""More of what a run makes of the journal (inbound outcomes, FHIR write-back failures, the FHIR API), a
MESH send left in doubt, a failed scheduled run releasing its day, the recorder as a repository, and the
terminal report's ages and cut-off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.errors import TransientError
from shared.journal import Journal
from shared.reconcile.fhir import SentRecorder
from shared.reconcile.model import Action, Category, Interface, Item
from shared.reconcile.report import as_text
from shared.reconcile.service import ReconcileOptions, Reconciler
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_MESH_OUTBOX
from tests.unit.backbone import support as s

T0 = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
WIDE = {"since": datetime(2000, 1, 1, tzinfo=UTC), "until": datetime(2100, 1, 1, tzinfo=UTC)}
FHIR = "writeback-fhir"


class NoMetrics:
    def gauge(self, name: str, value: float, *, unit: str = "", attributes: Any = None) -> None:
        return None


@pytest.fixture
def env(tmp_path: Path) -> Iterator[s.Env]:
    with s.embedded(tmp_path) as e:
        yield e


def reconciler(env: s.Env, clock: Any, **options: Any) -> Reconciler:
    return Reconciler(
        env.records, env.bus, options=ReconcileOptions(**options), metrics=NoMetrics(), clock=clock
    )


INBOUND: list[tuple[str, list[tuple[str, dict[str, Any]]], dict[str, int]]] = [
    (
        "rejected at the edge",
        [("rejected", {"error_code": "207"}), ("acknowledged", {"code": "AR"})],
        {"received": 1, "accepted": 0, "delivered": 0, "failed": 1, "inflight": 0},
    ),
    (
        "the edge could not store it",
        [("failed", {"error_code": "bus"}), ("acknowledged", {"code": "AR"})],
        {"received": 1, "accepted": 0, "delivered": 0, "failed": 1, "inflight": 0},
    ),
    (
        "processor dead-lettered it",
        [
            ("published", {"topic": "tie-ingest"}),
            ("acknowledged", {"code": "AA"}),
            ("dead-lettered", {"subscriber": "ingest-processor"}),
        ],
        {"received": 1, "accepted": 1, "delivered": 0, "failed": 1, "inflight": 0},
    ),
    (
        "a retransmission answered from the stored outcome",
        [("duplicate", {"control_id": "X"}), ("acknowledged", {"code": "AA"})],
        {"received": 1, "accepted": 1, "delivered": 1, "failed": 0, "inflight": 0},
    ),
]


@pytest.mark.parametrize(("stages", "counts"), [c[1:] for c in INBOUND], ids=[c[0] for c in INBOUND])
def test_what_an_inbound_journal_amounts_to(
    env: s.Env, stages: list[tuple[str, dict[str, Any]]], counts: dict[str, int]
) -> None:
    journal = Journal(env.records, clock=lambda: T0)
    journal.record("m", "received", channel="hl7v2", source="http", size=1)
    for stage, attributes in stages:
        journal.record("m", stage, **attributes)
    report = reconciler(env, lambda: T0, stuck_after=timedelta(days=1)).run(**WIDE)
    [inbound] = report.interfaces
    assert inbound.interface == Interface("in", "hl7v2", "http", "hl7v2")
    assert inbound.counts.as_dict() == counts
    assert report.clean  # the sender got its AR: not a variance of ours


def test_a_fhir_write_back_that_failed_for_good_is_missing_with_its_event_key(env: s.Env) -> None:
    journal = Journal(env.records, clock=lambda: T0)
    journal.record("m", "published", topic="clinical-events", event_kind="result")  # the FHIR API
    journal.record("m", "delivered", subscriber=FHIR, event_key="k1")
    journal.record("m", "failed", subscriber=FHIR, error_code="fhir-invalid", final=True, event_key="k1")
    journal.record("m", "skipped", subscriber="writeback-hl7v2", reason="not-configured")
    report = reconciler(env, lambda: T0 + timedelta(minutes=5), stuck_after=timedelta(days=1)).run(**WIDE)
    [item] = report.items()
    assert (item.category, item.action, item.correlation_id) == (Category.MISSING, Action.REPLAY, "m")
    assert item.identifiers == {"subscriber": FHIR, "eventKey": "k1"} and "fhir-invalid" in item.detail
    assert item.interface == Interface("out", FHIR, "fhir", "result")
    names = {r.interface.name: r.counts.as_dict() for r in report.interfaces}
    assert names["in:fhir-api:http:result"]["delivered"] == 1
    assert names["out:writeback-hl7v2:mllp:result"]["delivered"] == 1


def test_a_mesh_send_left_in_doubt_is_for_a_person(env: s.Env) -> None:
    env.records.insert(
        TABLE_MESH_OUTBOX,
        safe_key("X26OT001"),
        safe_key("k9"),
        {"state": "sending", "recipient": "X26OT002", "workflow_id": "WF", "claimed_at": T0.isoformat()},
    )
    report = reconciler(env, lambda: T0 + timedelta(days=1)).run(**WIDE)
    [item] = report.items()
    assert (item.category, item.action, item.identifiers["localId"]) == (
        Category.UNACKNOWLEDGED,
        Action.INVESTIGATE,
        "k9",
    )
    assert report.interfaces[0].counts.inflight == 1


class Broken(Exception):
    pass


def test_a_scheduled_run_that_fails_releases_its_day_and_the_next_firing_runs_it(
    env: s.Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = {"at": datetime(2026, 1, 10, 2, 0, tzinfo=UTC)}
    rec = reconciler(env, lambda: now["at"])
    calls = {"n": 0}
    original = rec.run

    def flaky(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("storage is down")
        return original(**kwargs)

    monkeypatch.setattr(rec, "run", flaky)
    with pytest.raises(TransientError):
        rec.run_if_due()
    assert rec.history.runs() == []
    now["at"] += timedelta(hours=1)
    report = rec.run_if_due()
    assert report is not None and report.run_id == "scheduled-2026-01-10"
    assert rec.run_if_due() is None  # once


def test_the_recorder_is_the_repository_it_wraps(env: s.Env) -> None:
    recorder = SentRecorder(env.fhir, env.records, downstream=FHIR)
    created = recorder.create({"resourceType": "Organization", "name": "A"})
    recorder.update(
        "Organization", created.id, {"resourceType": "Organization", "id": created.id, "name": "B"}
    )
    assert recorder.read("Organization", created.id).resource["name"] == "B"
    assert recorder.vread("Organization", created.id, "1").resource["name"] == "A"
    assert [v.version_id for v in recorder.history("Organization", created.id)] == ["2", "1"]
    assert recorder.search("Organization", [("name", "B")]).resources[0]["id"] == created.id
    recorder.conditional_update("Organization", "name=B", {"resourceType": "Organization", "name": "C"})
    assert recorder.read("Organization", created.id).resource["name"] == "C"
    batch = recorder.batch({"resourceType": "Bundle", "type": "batch", "entry": []})
    assert batch["type"] == "batch-response"
    assert recorder.capabilities() == env.fhir.capabilities()
    recorder.delete("Organization", created.id)
    assert recorder.search("Organization", [("name", "C")]).resources == []


def test_the_terminal_report_shows_ages_and_cuts_long_lists() -> None:
    from shared.reconcile.model import Report
    from shared.reconcile.service import rank

    iface = Interface("in", "PAS|RGT01", "mllp", "ADT^A01")
    items = [
        Item(
            iface,
            Category.STUCK,
            f"rc-{n}",
            f"c{n}",
            {"subscriber": "ingest-processor"},
            age,
            Action.INVESTIGATE,
        )
        for n, age in enumerate((90_061, 3_725, 59))
    ]
    report = Report("r1", T0, T0 - timedelta(days=1), T0, rank(items, {}))
    text = as_text(report, limit=2)
    assert "1d1h" in text and "1h02m" in text and "0m59s" not in text
    assert text.splitlines()[-1] == "... 1 more (--json / --csv for all)"
