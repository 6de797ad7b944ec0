from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tie import cli
from tie.localsettings import load_local_settings


def out(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_topics_lists_topology_with_counts(container: Any, capsys: pytest.CaptureFixture[str]) -> None:
    container.bus.publish(TOPIC_INGEST, [OutboundMessage(body=b"x", message_id="1")])
    assert cli.main(["bus", "topics", "--json"]) == 0
    topics = {t["topic"]: t for t in out(capsys)}
    assert set(topics) == {"tie-ingest", "clinical-events", "operational-events", "platform-events"}
    assert topics[TOPIC_INGEST]["subscriptions"][0]["active"] == 1


def test_topics_is_an_aligned_table_with_a_header(container: Any, capsys: pytest.CaptureFixture[str]) -> None:
    container.bus.publish(TOPIC_INGEST, [OutboundMessage(body=b"x", message_id="1")])
    container.bus.publish(TOPIC_INGEST, [OutboundMessage(body=b"y", message_id="2")])
    [m] = container.bus.receive(TOPIC_INGEST, SUB_INGEST_PROCESSOR)
    container.bus.dead_letter(m, reason="test-reason")
    assert cli.main(["bus", "topics"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "TOPIC               SUBSCRIPTION       ACTIVE  DEAD-LETTER  MAX-DELIVERIES  SESSIONS  FILTER",
        "tie-ingest          ingest-processor        1            1               5  no        -",
        "clinical-events     clinical-audit          0            0               5  no        -",
        "clinical-events     writeback-fhir          0            0              10  yes       -",
        "clinical-events     writeback-hl7v2         0            0              10  yes       -",
        "operational-events  operational-audit       0            0               5  no        -",
        "platform-events     platform-audit          0            0               5  no        -",
    ]


def test_send_and_peek_hide_bodies_unless_asked(
    container: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "m.txt"
    f.write_text("PID|1||9434765919")
    assert (
        cli.main(["bus", "send", TOPIC_INGEST, str(f), "--prop", "tie_channel=raw", "--message-id", "s1"])
        == 0
    )
    capsys.readouterr()
    assert cli.main(["bus", "peek", TOPIC_INGEST, SUB_INGEST_PROCESSOR]) == 0
    [row] = out(capsys)
    assert row["messageId"] == "s1" and row["size"] == 17 and "body" not in row
    assert row["properties"] == {"tie_channel": "raw"}
    assert cli.main(["bus", "peek", TOPIC_INGEST, SUB_INGEST_PROCESSOR, "--body"]) == 0
    assert out(capsys)[0]["body"] == "PID|1||9434765919"


def test_dlq_replay_selected_and_purge(container: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bus = container.bus
    bus.publish(
        TOPIC_INGEST, [OutboundMessage(body=b"a", message_id="a"), OutboundMessage(body=b"b", message_id="b")]
    )
    for m in bus.receive(TOPIC_INGEST, SUB_INGEST_PROCESSOR, max_messages=2):
        bus.dead_letter(m, reason="test-reason", description="for the test")
    assert cli.main(["dlq", "list", TOPIC_INGEST, SUB_INGEST_PROCESSOR]) == 0
    rows = out(capsys)
    assert [(r["messageId"], r["reason"], r["description"]) for r in rows] == [
        ("a", "test-reason", "for the test"),
        ("b", "test-reason", "for the test"),
    ]
    seq_a = rows[0]["sequence"]
    assert cli.main(["dlq", "replay", TOPIC_INGEST, SUB_INGEST_PROCESSOR, "--seq", str(seq_a)]) == 0
    assert "replayed 1" in capsys.readouterr().out
    assert [m.message_id for m in bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)] == ["a"]
    assert cli.main(["dlq", "purge", TOPIC_INGEST, SUB_INGEST_PROCESSOR, "--older-than", "1d"]) == 0
    assert "purged 0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["dlq", "purge", TOPIC_INGEST, SUB_INGEST_PROCESSOR, "--older-than", "soon"])


@pytest.mark.parametrize(
    "argv",
    [
        ["list", TOPIC_INGEST, SUB_INGEST_PROCESSOR],
        ["list"],
        ["show", TOPIC_INGEST, SUB_INGEST_PROCESSOR, "{seq}"],
        ["purge", "--older-than", "1d"],
    ],
)
def test_bus_dlq_is_a_deprecated_alias_with_the_same_output(
    container: Any, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    bus = container.bus
    bus.publish(TOPIC_INGEST, [OutboundMessage(body=b"a", message_id="a", correlation_id="c-a")])
    [m] = bus.receive(TOPIC_INGEST, SUB_INGEST_PROCESSOR)
    bus.dead_letter(m, reason="test-reason", description="for the test")
    seq = str(bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, dead_letter=True)[0].sequence_number)
    args = [a.replace("{seq}", seq) for a in argv]
    assert cli.main(["dlq", *args]) == 0
    family = capsys.readouterr()
    assert family.err == ""
    assert cli.main(["bus", "dlq", *args]) == 0
    alias = capsys.readouterr()
    assert alias.out == family.out
    assert alias.err == f"tie bus dlq is deprecated: use tie dlq {argv[0]} (same arguments)\n"


def test_bus_dlq_replay_alias_replays_like_dlq_replay(
    container: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bus = container.bus
    bus.publish(TOPIC_INGEST, [OutboundMessage(body=b"a", message_id="a", correlation_id="c-a")])
    [m] = bus.receive(TOPIC_INGEST, SUB_INGEST_PROCESSOR)
    bus.dead_letter(m, reason="test-reason", description="for the test")
    assert cli.main(["bus", "dlq", "replay", TOPIC_INGEST, SUB_INGEST_PROCESSOR]) == 0
    captured = capsys.readouterr()
    assert captured.out == "replayed 1\n"
    assert captured.err.startswith("tie bus dlq is deprecated: use tie dlq replay")
    [back] = bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)
    assert back.application_properties["tie_replay_count"] == 1
    assert cli.main(["trace", "c-a", "--json"]) == 0  # journalled as a replay, as tie dlq replay does
    assert [s["stage"] for s in json.loads(capsys.readouterr().out)["stages"]] == ["replayed"]


def test_trace_prints_the_journal(container: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.journal import Journal

    Journal(container.records).record("corr-9", "received", source="test")
    assert cli.main(["trace", "corr-9"]) == 0
    assert "received" in capsys.readouterr().out
    assert cli.main(["trace", "unknown"]) == 1


def test_local_settings_load_without_overriding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "local.settings.json"
    f.write_text(json.dumps({"Values": {"TIE_LOG_LEVEL": "DEBUG", "TIE_ENVIRONMENT": "dev"}}))
    monkeypatch.setenv("TIE_ENVIRONMENT", "test")
    monkeypatch.delenv("TIE_LOG_LEVEL", raising=False)
    assert load_local_settings(f) == ["TIE_LOG_LEVEL"]
    import os

    assert os.environ["TIE_ENVIRONMENT"] == "test" and os.environ["TIE_LOG_LEVEL"] == "DEBUG"
    assert load_local_settings(tmp_path / "absent.json") == []


def test_inflight_stuck_lists_only_messages_past_the_deadline(
    container: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from shared.config.settings import get_settings, reset_settings
    from shared.journal import Journal
    from shared.wiring import build_container, set_container

    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    then, now = Journal(container.records, clock=lambda: an_hour_ago), Journal(container.records)
    then.record("old-ingest", "received")
    then.record("old-wb", "mapped", event_kind="admission")
    now.record("old-wb", "written-back", subscriber="writeback-fhir", status="201")
    then.record("old-done", "received")
    now.record("old-done", "consumed", delivery_count=1)
    now.record("fresh", "received")

    assert cli.main(["inflight", "--stuck"]) == 0  # default deadline: 900 s
    rows = {r["correlationId"]: r for r in out(capsys)}
    assert set(rows) == {"old-ingest", "old-wb"}
    assert rows["old-wb"]["waitingFor"] == ["writeback-hl7v2"]
    assert rows["old-wb"]["since"] == an_hour_ago.isoformat()
    assert 3600 <= rows["old-wb"]["ageSeconds"] < 3600 + 300
    assert list(rows["old-wb"]["waiting"]) == ["writeback-hl7v2"]
    assert rows["old-ingest"]["waiting"][SUB_INGEST_PROCESSOR]["ageSeconds"] >= 3600

    # Without --stuck: everything in flight, output as before.
    assert cli.main(["inflight"]) == 0
    plain = out(capsys)
    assert {r["correlationId"] for r in plain} == {"old-ingest", "old-wb", "fresh"}
    assert all(set(r) == {"correlationId", "since", "ageSeconds", "waitingFor"} for r in plain)
    with pytest.raises(SystemExit):
        cli.main(["inflight", "--stuck", "--older-than", "5m"])
    capsys.readouterr()

    # The deadline is TIE_STUCK_AFTER_SECONDS: two hours -> nothing is stuck yet.
    monkeypatch.setenv("TIE_STUCK_AFTER_SECONDS", "7200")
    reset_settings()
    set_container(build_container(get_settings()))
    assert cli.main(["inflight", "--stuck"]) == 0
    assert out(capsys) == []
    container.close()
