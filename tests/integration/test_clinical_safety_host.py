"""Clinical safety through the real edges of ``tie run`` (as ``make run`` starts it): a lab's results over
MLLP and a PAS's admissions over HTTP, read back through the FHIR API and the message journal. The
in-process scenarios (``test_clinical_safety.py``) cover each case with its guards broken on purpose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.ingest.control_ids import find_by_control_id
from shared.mllp.client import send_message
from tests.helpers import free_port, host_process, http, wait_for
from tests.integration.test_clinical_safety import NHS_A, NHS_B, a01, oru

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

HL7 = {"Content-Type": "x-application/hl7-v2+er7"}


def _ack_code(ack: bytes) -> str:
    msa = next(seg for seg in ack.decode().split("\r") if seg.startswith("MSA|"))
    return msa.split("|")[1]


def _terminal(base: str, corr: str) -> dict[str, str] | None:
    """Each write-back subscriber's last stage, once nothing is awaited any more."""
    res = http("GET", f"{base}/messages/{corr}")
    if res.status != 200:
        return None
    body: dict[str, Any] = res.json()
    if body.get("inflight"):
        return None
    last: dict[str, str] = {}
    for stage in body["stages"]:
        sub = stage.get("subscriber")
        if sub and stage["stage"] not in ("delivered", "retried", "failed"):
            last[sub] = stage["stage"]
    return last or None


def test_results_over_mllp_and_admissions_over_http_by_identity_and_content(tmp_path: Path) -> None:
    mllp_port = free_port()
    with host_process(tmp_path / "local", extra_args=["--mllp-port", str(mllp_port)]) as (_proc, base):
        results = [
            ("h-prelim", oru("H1", value="9", flag="N", status="P", reported="20260701103000")),
            ("h-final", oru("H2", value="52", flag="H", status="F", reported="20260701113000")),
            ("h-late", oru("H3", value="9", flag="N", status="P", reported="20260701103000")),
        ]
        for _corr, raw in results:
            assert _ack_code(send_message("127.0.0.1", mllp_port, raw, timeout=30)) == "AA"
        # The MLLP listener names each message's correlation id; the lab's control id finds it.
        records = SqliteRecordStore(tmp_path / "local" / "records.sqlite3")
        try:
            by_control = {
                control: find_by_control_id(records, "WINPATH", control, facility="RX1")
                for control in ("H1", "H2", "H3")
            }
        finally:
            records.close()
        assert all(len(found) == 1 for found in by_control.values()), by_control
        fhir_stage = {}
        for control, found in by_control.items():
            stages = wait_for(lambda c=found[0].correlation_id: _terminal(base, c), timeout=90)
            assert stages["writeback-hl7v2"] == "skipped"
            fhir_stage[control] = stages["writeback-fhir"]
        # The ingest processor runs messages in parallel, so the write-back may see them in any order: the
        # final is always applied; the preliminary (sent twice) at most once, else it is a duplicate of
        # itself or superseded by the final - never left in flight, never applied over the final.
        assert fhir_stage["H2"] == "written-back", fhir_stage
        assert {fhir_stage["H1"], fhir_stage["H3"]} <= {"written-back", "duplicate", "superseded"}, fhir_stage
        assert [fhir_stage["H1"], fhir_stage["H3"]].count("written-back") <= 1, fhir_stage
        admissions = [
            ("h-adm-a", a01("HA1", nhs=NHS_A)),
            ("h-adm-b", a01("HA2", nhs=NHS_B)),  # the same issuer's visit number for another patient
            ("h-adm-a-again", a01("HA3", nhs=NHS_A)),  # resent under a new control id
        ]
        expected = {
            "h-adm-a": "written-back",
            "h-adm-b": "conflict",
            "h-adm-a-again": "duplicate",
        }
        # One at a time, as a PAS sends: which of two patients claims a visit number first decides who
        # is in conflict, and the two patients' events run on different sessions, in parallel.
        for corr, raw in admissions:
            res = http("POST", f"{base}/hl7v2", raw, {**HL7, "X-Correlation-ID": corr})
            assert res.status == 200 and res.headers.get("X-HL7-Ack-Code") == "AA", res.body
            assert wait_for(lambda c=corr: _terminal(base, c), timeout=90) == {
                "writeback-fhir": expected[corr],
                "writeback-hl7v2": "skipped",  # no MLLP downstream configured, as under make run
            }

        def observations() -> set[tuple[str, str, str]] | None:
            res = http("GET", f"{base}/fhir/Observation?code=TROP")
            entries = [e["resource"] for e in res.json().get("entry", [])] if res.status == 200 else []
            found = {
                (r["status"], str(r["valueQuantity"]["value"]), r["subject"]["reference"]) for r in entries
            }
            return found if any(status == "final" for status, _v, _s in found) else None

        stored = wait_for(observations, timeout=90)
        assert {(status, value) for status, value, _subject in stored} == {("final", "52")}
        encounters = http("GET", f"{base}/fhir/Encounter?identifier=urn:tie:authority:RX1|V100").json()
        [encounter] = [e["resource"] for e in encounters["entry"]]
        patient = http("GET", f"{base}/fhir/{encounter['subject']['reference']}").json()
        assert {i["value"] for i in patient["identifier"]} >= {NHS_A}
