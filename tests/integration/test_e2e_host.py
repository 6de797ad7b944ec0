"""End to end through ``tie run`` in a subprocess, exactly as ``make run`` starts it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tests.helpers import REPO_ROOT, host_process, http, tie_cli, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_http_to_bus_to_trigger_round_trip_and_dead_letter_replay(tmp_path: Path) -> None:
    local = tmp_path / "local"
    with host_process(local) as (_proc, base):
        health = http("GET", f"{base}/health")
        assert health.status == 200, health.body
        checks = health.json()["checks"]
        assert {checks[k]["status"] for k in ("messageBus", "recordStore", "blobStore")} == {"healthy"}

        # HTTP -> ingest topic -> Service Bus trigger -> journal
        res = http(
            "POST",
            f"{base}/messages?channel=raw",
            body=b"MSH|^~\\&|A|B|C|D|202601011200||ADT^A01|1|P|2.5\r",
            headers={"Content-Type": "x-application/hl7-v2+er7", "X-Correlation-ID": "e2e-1"},
        )
        assert res.status == 202, res.body
        assert res.headers["X-Correlation-ID"] == "e2e-1"
        assert res.headers["Location"] == "/api/messages/e2e-1"

        def consumed() -> list[str] | None:
            trace = http("GET", f"{base}/messages/e2e-1")
            stages = [s["stage"] for s in trace.json()["stages"]] if trace.status == 200 else []
            return stages if "consumed" in stages else None

        assert wait_for(consumed, timeout=120) == ["received", "published", "consumed"]

        # Bad input at the edge
        assert http("POST", f"{base}/messages?channel=nope", body=b"x").status == 400
        assert http("POST", f"{base}/messages", body=b"").status == 400
        assert http("DELETE", f"{base}/health").status == 405
        assert http("GET", f"{base}/no/such/route").status == 404

        # A message nobody can process: abandoned until max delivery count, then dead-lettered.
        bus = SqliteBus(local / "bus.sqlite3")
        try:
            bus.publish(
                TOPIC_INGEST,
                [
                    OutboundMessage(
                        body=b"{}",
                        message_id="poison-1",
                        correlation_id="e2e-poison",
                        application_properties={"tie_channel": "unknown-channel"},
                    )
                ],
            )
            dead = wait_for(
                lambda: bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, dead_letter=True), timeout=60
            )
        finally:
            bus.close()
        assert dead[0].message_id == "poison-1"
        assert dead[0].dead_letter_reason == "MaxDeliveryCountExceeded"
        assert dead[0].delivery_count >= 5

        trace = http("GET", f"{base}/messages/e2e-poison").json()
        assert [s["stage"] for s in trace["stages"]].count("failed") == dead[0].delivery_count

        listed = tie_cli(local, "dlq", "list", TOPIC_INGEST, SUB_INGEST_PROCESSOR)
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert rows[0]["messageId"] == "poison-1" and rows[0]["reason"] == "MaxDeliveryCountExceeded"

        replay = tie_cli(local, "dlq", "replay", TOPIC_INGEST, SUB_INGEST_PROCESSOR)
        assert replay.returncode == 0 and "replayed 1" in replay.stdout

        def replayed_and_dead_again() -> bool:
            rows = json.loads(tie_cli(local, "dlq", "list", TOPIC_INGEST, SUB_INGEST_PROCESSOR).stdout)
            return bool(rows) and rows[0]["replayCount"] == 1

        wait_for(replayed_and_dead_again, timeout=60, interval=0.5)

        topics = json.loads(tie_cli(local, "bus", "topics", "--json").stdout)
        ingest = next(t for t in topics if t["topic"] == TOPIC_INGEST)
        assert ingest["subscriptions"][0]["deadLetter"] == 1


def test_killing_the_host_mid_delivery_loses_no_message(tmp_path: Path) -> None:
    local = tmp_path / "local"
    env = {"TIE_SAMPLE_APP_INSTALL_CONTAINER": "1", "TIE_SAMPLE_SLOW_SECONDS": "60"}
    app = "tests/fixtures/sample_app.py"
    # Start once so the test topology (2 s lock) is in place, then publish a slow message.
    with host_process(local, app=app, env=env) as (proc, _base):
        bus = SqliteBus(local / "bus.sqlite3", _sample_topology())
        bus.publish(TOPIC_INGEST, [OutboundMessage(body=b"slow message", message_id="slow-1")])
        records = SqliteRecordStore(local / "records.sqlite3")
        wait_for(lambda: records.get("started", "test", "slow-1"), timeout=120)
        os.kill(proc.pid, signal.SIGKILL)  # no graceful shutdown, no settlement
        proc.wait(10)
    assert records.get("consumed", "test", "slow-1") is None
    assert [m.message_id for m in bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)] == ["slow-1"]

    env["TIE_SAMPLE_SLOW_SECONDS"] = "0"
    with host_process(local, app=app, env=env):
        done = wait_for(lambda: records.get("consumed", "test", "slow-1"), timeout=120)
    assert done.value["effects"] == 1
    assert done.value["delivery"] == 2  # redelivered after the lock expired
    assert bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR) == []
    bus.close()
    records.close()


def _sample_topology() -> tuple[object, ...]:
    from tests.fixtures.sample_app import TEST_TOPOLOGY

    return TEST_TOPOLOGY


def test_adt_over_http_and_mllp_through_tie_run(tmp_path: Path) -> None:
    from shared.mllp.client import read_msa, send_message
    from tests.fixtures.hl7_messages import adt_a01
    from tests.helpers import free_port

    local = tmp_path / "local"
    mllp_port = free_port()
    with host_process(local, extra_args=["--mllp-port", str(mllp_port)]) as (_proc, base):
        res = http(
            "POST",
            f"{base}/hl7v2",
            adt_a01("E2E-HTTP"),
            {"Content-Type": "x-application/hl7-v2+er7", "X-Correlation-ID": "adt-http"},
        )
        assert res.status == 200 and res.headers["X-HL7-Ack-Code"] == "AA"
        # The same admission again over MLLP under a new control id: one clinical event, so exactly one of
        # the two is written back and the other is a proven duplicate (which one depends on which ingest
        # finishes first: the ingest processor is not ordered across messages).
        ack = send_message("127.0.0.1", mllp_port, adt_a01("E2E-MLLP"), timeout=60)
        assert read_msa(ack).code == "AA" and read_msa(ack).control_id == "E2E-MLLP"
        mllp_corr = ack.decode().split("\r")[0].split("|")[9]  # the ACK's MSH-10 is the correlation id
        # The README's sample file (LF line endings) through `tie mllp send`.
        sent = tie_cli(
            local, "mllp", "send", str(REPO_ROOT / "samples" / "adt-a01.hl7"), "--port", str(mllp_port)
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "MSA|AA|SAMPLE0001" in sent.stdout

        def processed(corr: str) -> list[dict[str, object]] | None:
            trace = http("GET", f"{base}/messages/{corr}")
            stages = trace.json()["stages"] if trace.status == 200 else []
            terminal = ("written-back", "duplicate", "skipped")
            finished = {s.get("subscriber") for s in stages if s["stage"] in terminal}
            done = any(s["stage"] == "consumed" for s in stages) and len(finished) == 2
            return stages if done else None

        stages = wait_for(lambda: processed("adt-http"), timeout=120)
        mllp_stages = wait_for(lambda: processed(mllp_corr), timeout=120)
        # The ingest journey, then each write-back subscriber's (interleaved in time).
        ingest = [s for s in stages if "subscriber" not in s]
        expected = ["received", "published", "acknowledged", "mapped", "consumed"]
        assert [s["stage"] for s in ingest] == expected
        assert ingest[-2]["event_kind"] == "admission"
        assert ingest[-1]["outcome"] == "published admission"
        outcomes = {}
        for corr, journey in (("adt-http", stages), (mllp_corr, mllp_stages)):
            fhir = [s for s in journey if s.get("subscriber") == "writeback-fhir"]
            assert [s["stage"] for s in fhir][:1] == ["delivered"] and len(fhir) == 2
            outcomes[corr] = fhir[-1]
        by_stage = {o["stage"]: (corr, o) for corr, o in outcomes.items()}
        assert set(by_stage) == {"written-back", "duplicate"}
        written_corr, written = by_stage["written-back"]
        assert written["status"] == "201"
        assert by_stage["duplicate"][1]["original_correlation_id"] == written_corr
        hl7 = [s["stage"] for s in stages if s.get("subscriber") == "writeback-hl7v2"]
        assert hl7 == ["delivered", "skipped"]  # no MLLP downstream configured
        records = SqliteRecordStore(local / "records.sqlite3")
        try:
            # All three messages (HTTP, MLLP, tie mllp send) are consumed by the trigger.
            wait_for(lambda: sum(r.value["stage"] == "consumed" for r in records.query("journal")) == 3)
        finally:
            records.close()
