"""``tie dlq list|show|replay|purge``, ``tie trace`` and ``tie inflight`` over the embedded defaults."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.backbone.errors import DownstreamRejected
from shared.backbone.runtime import WriteBackOptions, build_backbone
from shared.messaging.topology import SUB_WRITEBACK_FHIR, TOPIC_CLINICAL
from tests.unit.backbone import support as s
from tie import cli

NHS = s.nhs_numbers(1)[0]


def out(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_dlq_commands_trace_and_inflight(container: Any, capsys: pytest.CaptureFixture[str]) -> None:
    broken = True
    fake = s.FakeDownstream(
        script=lambda _k, _n: DownstreamRejected("fake", "AR", response="AR") if broken else None
    )
    bb = build_backbone(
        bus=container.bus,
        records=container.records,
        downstreams={SUB_WRITEBACK_FHIR: fake},
        options=WriteBackOptions(backoff_base_seconds=0.0),
    )
    e = s.event("CLI1", nhs=NHS, visit="V1", correlation_id="cli-1")
    bb.journal.record("cli-1", "received", channel="hl7v2")
    bb.journal.record("cli-1", "mapped", event_kind="admission")
    bb.journal.record("cli-1", "consumed", delivery_count=1)
    s.publish(container.bus, e)
    s.pump(container.bus, SUB_WRITEBACK_FHIR, bb.subscriber(SUB_WRITEBACK_FHIR).handle)
    bb.scan_dead_letters()

    assert cli.main(["dlq", "list"]) == 0
    [row] = out(capsys)
    assert row["subscription"] == SUB_WRITEBACK_FHIR and row["reason"] == "downstream-rejected"
    assert row["deliveryCount"] == 1 and row["correlationId"] == "cli-1"  # dead-lettered at the first
    assert row["lastErrorCode"] == "downstream-rejected" and "body" not in row
    assert cli.main(["dlq", "list", "platform-events"]) == 0 and out(capsys) == []

    assert cli.main(["dlq", "show", TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, str(row["sequence"])]) == 0
    shown = out(capsys)
    assert "body" not in shown and "dead-lettered" in [j["stage"] for j in shown["journal"]]
    assert cli.main(["dlq", "show", TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, str(row["sequence"]), "--body"]) == 0
    assert NHS in out(capsys)["body"]  # only when asked for
    assert cli.main(["dlq", "show", TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, "99999"]) == 1
    capsys.readouterr()

    assert cli.main(["inflight"]) == 0
    [waiting] = out(capsys)  # dead-lettered for writeback-fhir: only the HL7 v2 subscriber is awaited
    assert waiting["correlationId"] == "cli-1" and waiting["waitingFor"] == ["writeback-hl7v2"]

    broken = False
    assert cli.main(["dlq", "replay", TOPIC_CLINICAL, SUB_WRITEBACK_FHIR]) == 0
    assert "replayed 1" in capsys.readouterr().out
    assert cli.main(["inflight"]) == 0
    [waiting] = [r for r in out(capsys) if r["correlationId"] == "cli-1"]
    assert waiting["waitingFor"] == ["writeback-fhir", "writeback-hl7v2"]
    s.pump(container.bus, SUB_WRITEBACK_FHIR, bb.subscriber(SUB_WRITEBACK_FHIR).handle)
    assert fake.effects[e.key.value] == 1

    assert cli.main(["trace", "cli-1"]) == 0
    text = capsys.readouterr().out
    for stage in ("received", "delivered", "failed", "dead-lettered", "replayed", "written-back"):
        assert stage in text
    assert "in flight: waiting for writeback-hl7v2" in text
    assert cli.main(["trace", "cli-1", "--json"]) == 0
    traced = out(capsys)
    assert list(traced["inflight"]) == ["writeback-hl7v2"]
    assert [x["stage"] for x in traced["stages"]][-1] == "written-back"
    assert cli.main(["trace", "nobody"]) == 1

    assert cli.main(["dlq", "purge", "--older-than", "1d"]) == 0
    assert "purged 0" in capsys.readouterr().out
