"""``tie audit verify | show | search`` over the embedded container of the test's data directory."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from shared.audit.model import ACCESS, SUCCESS, Agent, Entity
from shared.config.settings import get_settings
from shared.journal import Journal
from shared.wiring import get_container
from tie.cli import main


def _seed() -> None:
    container = get_container()
    trail = container.audit
    for i, corr in enumerate(("c-1", "c-2", "c-3")):
        trail.record(
            category=ACCESS,
            action="R",
            interaction="read",
            outcome=SUCCESS,
            status="200",
            source="fhir-api",
            agent=Agent("client", "ward-app"),
            correlation_id=corr,
            entities=[Entity("Patient", f"p{i}", "1")],
            patients=[f"Patient/p{i}"],
        )
    trail.transformed(
        correlation_id="m-1",
        channel="hl7v2",
        message_id="msg-1",
        received=b"raw",
        produced=b"event",
        patient="patient-abc",
        event_key="admission-1",
    )
    trail.written_back(
        correlation_id="m-1",
        subscription="writeback-hl7v2",
        downstream="hl7v2",
        event_key="admission-1",
        patient="patient-abc",
        event_digest="e" * 64,
        payload_digest="f" * 64,
        status="AA",
        attempts=1,
    )
    journal = Journal(container.records)
    journal.record("m-1", "received", channel="hl7v2", source="mllp", size=3)
    journal.record("m-1", "mapped", event_kind="admission", event_key="admission-1")


def test_verify_passes_then_names_the_edited_record(capsys: pytest.CaptureFixture[str]) -> None:
    _seed()
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("audit chain intact: 5 records")
    get_container().close()
    conn = sqlite3.connect(Path(get_settings().local_dir) / "audit.sqlite3", isolation_level=None)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET body = replace(body, 'ward-app', 'other-app') WHERE seq = 2")
    conn.close()
    from shared.wiring import set_container

    set_container(None)
    assert main(["audit", "verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "ok": False,
        "checked": 1,
        "lastSeq": 1,
        "firstBad": 2,
        "reason": "its content does not match its hash (edited)",
    }


def test_show_answers_received_transformed_sent_in_flight_and_is_itself_audited(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed()
    assert main(["audit", "show", "m-1", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["received"]["channel"] == "hl7v2" and answer["received"]["size"] == 3
    assert [(t["outcome"], t["input"], t["output"], t["event"]) for t in answer["transformed"]] == [
        ("ok", hashlib.sha256(b"raw").hexdigest(), hashlib.sha256(b"event").hexdigest(), "admission-1")
    ]
    assert [(s["downstream"], s["outcome"], s["reply"], s["payload"]) for s in answer["sent"]] == [
        ("hl7v2", "ok", "AA", "f" * 64)
    ]
    # Received and mapped, nothing consumed or written back yet: all three still to act.
    assert set(answer["inflight"]) == {"ingest-processor", "writeback-fhir", "writeback-hl7v2"}
    (last,) = [json.loads(e.body) for e in get_container().audit.log.entries(after=5)]
    assert (last["interaction"], last["correlation_id"], last["patients"]) == (
        "audit-show",
        "m-1",
        ["patient-abc"],
    )
    assert last["agent"]["id"].startswith("os:") and last["agent"]["verified"] is True
    assert main(["audit", "show", "nothing-here"]) == 1


def test_search_by_patient_prints_the_matching_records_and_audits_the_search(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed()
    assert main(["audit", "search", "--patient", "Patient/p1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["seq"], r["correlation_id"], r["patients"]) for r in lines] == [(2, "c-2", ["Patient/p1"])]
    (last,) = [json.loads(e.body) for e in get_container().audit.log.entries(after=5)]
    assert (last["interaction"], last["parameters"], last["detail"]) == (
        "audit-search",
        ["patient"],
        {"returned": 1},
    )
