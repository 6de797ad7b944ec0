"""The reconciliation timer (registered hourly, runs at 02:00 UK time only) and ``tie reconcile`` (table,
JSON, CSV, exit code, history) over the embedded container."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.journal import Journal


class NoMetrics:
    def gauge(self, name: str, value: float, *, unit: str = "", attributes: Any = None) -> None:
        return None


def test_the_timer_is_registered_hourly_and_runs_only_at_two_uk_time(
    container: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.functions.timer import TimerRequest

    import functions.reconcile as timer
    from shared.reconcile.service import Reconciler
    from tie.localhost.discovery import describe, load_app

    [spec] = [f for f in describe(load_app("function_app")) if f.name == "reconcile"]
    assert (spec.kind, spec.schedule, spec.use_monitor) == ("timer", "0 0 * * * *", True)

    now = {"at": datetime(2026, 7, 1, 0, 30, tzinfo=UTC)}  # 01:30 BST: not due yet
    monkeypatch.setattr(
        timer,
        "build_reconciler",
        lambda c: Reconciler(c.records, c.bus, metrics=NoMetrics(), clock=lambda: now["at"]),
    )
    timer.reconcile(TimerRequest(past_due=False))
    history = Reconciler(container.records, container.bus, metrics=NoMetrics()).history
    assert history.runs() == []
    now["at"] = datetime(2026, 7, 1, 1, 0, 3, tzinfo=UTC)  # 02:00 BST
    timer.reconcile(TimerRequest(past_due=False))
    [run] = history.runs()
    assert (run["run_id"], run["trigger"]) == ("scheduled-2026-07-01", "timer")
    assert (run["since"], run["until"]) == ("2026-06-30T01:00:00+00:00", "2026-07-01T01:00:00+00:00")


def test_tie_reconcile_writes_json_and_csv_exits_1_on_variance_and_keeps_history(
    container: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tie.cli import main

    assert main(["reconcile"]) == 0
    assert "clean: no variance" in capsys.readouterr().out
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    journal = Journal(container.records, clock=lambda: an_hour_ago)
    journal.record("late-1", "received", channel="hl7v2", source="mllp:c", size=1)
    journal.record("late-1", "acknowledged", code="AA", sender="PAS|RGT01", message_type="ADT^A01")
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["reconcile", "--since", "2h", "--json", str(out_json), "--csv", str(out_csv)]) == 1
    table = capsys.readouterr().out
    assert "in:PAS|RGT01:mllp:ADT^A01" in table and "stuck" in table
    report = json.loads(out_json.read_text())
    assert [(i["category"], i["correlationId"]) for i in report["items"]] == [("stuck", "late-1")]
    assert report["totals"]["stuck"] == 1 and report["variance"] == 1
    rows = list(csv.DictReader(out_csv.open()))
    assert [(r["rank"], r["category"], r["correlationId"], r["identifiers"]) for r in rows] == [
        ("1", "stuck", "late-1", "subscriber=ingest-processor")
    ]
    assert main(["reconcile", "--interface", "LAB|RGT01"]) == 0  # another interface: nothing
    capsys.readouterr()
    # A window that ends before it arrived: not counted, but still stuck (stuck is reported whatever its age).
    assert main(["reconcile", "--since", "3h", "--until", "2h", "--json", "-"]) == 1
    earlier = json.loads(capsys.readouterr().out)
    assert earlier["messages"] == 0 and [i["category"] for i in earlier["items"]] == ["stuck"]
    capsys.readouterr()
    assert main(["reconcile", "history", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["variance"] for r in runs] == [1, 0, 1, 0]
    assert main(["reconcile", "show", report["run_id"], "--json"]) == 0
    assert [i["item"] for i in json.loads(capsys.readouterr().out)] == [report["items"][0]["item"]]


def test_the_alert_rule_queries_the_gauge_the_reconciler_emits() -> None:
    from shared.reconcile.service import VARIANCE_METRIC, VARIANCE_METRIC_UNIT

    root = Path(__file__).resolve().parents[3]
    declared = json.loads((root / "infra/bicep/config/custom-metrics.json").read_text())[
        "reconciliationVariance"
    ]
    assert (declared["name"], declared["unit"]) == (VARIANCE_METRIC, VARIANCE_METRIC_UNIT)
    assert declared["dimensions"] == ["reconciliation", "category"]
    alerts = (root / "infra/bicep/modules/alerts.bicep").read_text()
    rule = alerts[alerts.index("name: 'reconciliation-variance'") :][:900]
    assert "by reconciliation, category" in rule and "customDimensions[\\'category\\']" in rule


def test_tie_reconcile_replay_restores_a_lost_resource_and_says_what_it_skipped(
    container: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.messaging.topology import SUB_WRITEBACK_FHIR
    from shared.reconcile.fhir import SentRecorder
    from tie.cli import main

    fhir = container.fhir
    recorder = SentRecorder(fhir, container.records, downstream=SUB_WRITEBACK_FHIR)
    entry = {
        "resource": {"resourceType": "Organization", "id": "org-1", "name": "Test Trust"},
        "request": {"method": "PUT", "url": "Organization/org-1"},
    }
    recorder.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    fhir.delete("Organization", "org-1")
    assert main(["reconcile", "--json", "-"]) == 1
    [item] = json.loads(capsys.readouterr().out)["items"]
    assert (item["category"], item["identifiers"]["resource"]) == (
        "missing-at-destination",
        "Organization/org-1",
    )
    assert main(["reconcile", "replay", item["item"], "rc-nothing", "--json"]) == 1  # one was not found
    outcomes = json.loads(capsys.readouterr().out)
    assert [(o["item"], o["status"]) for o in outcomes] == [
        (item["item"], "restored"),
        ("rc-nothing", "not-found"),
    ]
    assert fhir.read("Organization", "org-1").resource["name"] == "Test Trust"
    assert main(["reconcile"]) == 0
