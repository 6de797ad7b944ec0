"""The README's dead-letter walkthrough, step by step against ``tie run`` (a subprocess host), with the
commands as written there: send the sample poison event -> ``tie dlq list`` -> ``tie dlq show`` ->
``tie dlq replay`` (re-delivered, and dead-lettered again: the event itself is broken) -> ``tie trace`` ->
``tie dlq purge``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.messaging.topology import SUB_WRITEBACK_FHIR, SUB_WRITEBACK_HL7V2, TOPIC_CLINICAL
from tests.helpers import host_process, tie_cli, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

CORRELATION = "practice-poison"
SEND = [
    "bus", "send", "clinical-events", "samples/poison-event.json", "--session-id", CORRELATION,
    "--correlation-id", CORRELATION, "--content-type", "application/cloudevents+json",
]  # fmt: skip


def tie(local: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = tie_cli(local, *args)
    assert done.returncode == 0, f"tie {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done


def _dead(bus: SqliteBus, subscription: str) -> list[Any]:
    return bus.peek(TOPIC_CLINICAL, subscription, dead_letter=True)


def test_send_list_show_replay_a_poison_event(tmp_path: Path) -> None:
    local = tmp_path / "local"
    with host_process(local):
        assert tie(local, *SEND).stdout == "published\n"
        bus = SqliteBus(local / "bus.sqlite3")
        try:
            # Every write-back subscriber fails it (its contract is broken): dead-lettered at the first
            # delivery with that reason (a permanent failure), not after the max delivery count.
            wait_for(lambda: _dead(bus, SUB_WRITEBACK_FHIR) and _dead(bus, SUB_WRITEBACK_HL7V2), timeout=90)

            listed = json.loads(tie(local, "dlq", "list").stdout)
            assert sorted((r["topic"], r["subscription"]) for r in listed) == [
                (TOPIC_CLINICAL, SUB_WRITEBACK_FHIR),
                (TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2),
            ]
            for row in listed:
                assert row["reason"] == "contract-violation"
                assert (row["correlationId"], row["deliveryCount"], row["replayCount"]) == (
                    CORRELATION,
                    1,
                    0,
                )
                assert "body" not in row
            [fhir] = [r for r in listed if r["subscription"] == SUB_WRITEBACK_FHIR]

            shown = json.loads(
                tie(local, "dlq", "show", TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, str(fhir["sequence"])).stdout
            )
            assert shown["reason"] == "contract-violation" and "body" not in shown
            failures = [
                j
                for j in shown["journal"]
                if j["stage"] == "failed" and j.get("subscriber") == SUB_WRITEBACK_FHIR
            ]
            assert len(failures) == 1
            assert {j.get("error_code") for j in failures} == {"contract-violation"}

            assert tie(local, "dlq", "replay", TOPIC_CLINICAL, SUB_WRITEBACK_FHIR).stdout == "replayed 1\n"

            # Re-delivered: it fails again (the event is still broken) and is dead-lettered again, tagged.
            def again() -> list[Any]:
                return [
                    m
                    for m in _dead(bus, SUB_WRITEBACK_FHIR)
                    if m.application_properties.get("tie_replay_count") == 1
                ]

            [redead] = wait_for(again, timeout=90)
            assert redead.correlation_id == CORRELATION
            assert redead.dead_letter_reason == "contract-violation"
            assert [
                m.application_properties.get("tie_replay_count") for m in _dead(bus, SUB_WRITEBACK_HL7V2)
            ] == [None]  # the other subscription's dead letter is untouched
        finally:
            bus.close()

        trace = json.loads(tie(local, "trace", CORRELATION, "--json").stdout)
        fhir_stages = [s["stage"] for s in trace["stages"] if s.get("subscriber") == SUB_WRITEBACK_FHIR]
        replayed_at = [s["stage"] for s in trace["stages"]].index("replayed")
        after = [s for s in trace["stages"][replayed_at:] if s.get("subscriber") == SUB_WRITEBACK_FHIR]
        assert fhir_stages.count("failed") == 2  # 1 before the replay, 1 after (dead-lettered at once)
        assert [s["stage"] for s in after].count("failed") == 1
        text = tie(local, "trace", CORRELATION).stdout
        assert "replayed" in text and "failed" in text

        purged = tie(local, "dlq", "purge", "--older-than", "0s", "clinical-events").stdout.splitlines()
        assert purged[-1] == "purged 2"
        assert json.loads(tie(local, "dlq", "list").stdout) == []
