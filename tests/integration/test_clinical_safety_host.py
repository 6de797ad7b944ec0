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
from tests.integration.test_clinical_safety import GP, NHS_A, NHS_B, RETIRED_MRN, a01, oru
from tests.unit.mapping.hl7v2_in import hl7in_samples as v2

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


def test_updates_and_a_merge_through_tie_run(tmp_path: Path) -> None:
    """Cases 4 and 5 through ``tie run``: an A08 without PD1 over HTTP keeps the practice the A01 set over
    MLLP; an A40 over MLLP retires a record known only by its local number, and the NHS number's Patient
    reaches that record's encounter and result through the FHIR API."""
    mllp_port = free_port()
    old = {3: f"{RETIRED_MRN}^^^RRV^MR"}
    over_http = {
        "hu-a08": v2.adt("A08", pv1={3: "WARD2^B^1^RRV"}, control_id="HU2", when="20260702120000"),
        "hu-old-a01": v2.adt("A01", pid=old, pv1={19: "V0000999^^^RRV^VN"}, control_id="HU3"),
        "hu-old-oru": v2.oru(pid=old, control_id="HU4"),
    }
    merge = v2.message(
        v2.msh("ADT^A40^ADT_A39", control_id="HU5", when="20260703120000"),
        v2.seg("EVN", {1: "A40", 2: "20260703120000"}),
        v2.seg("PID", {**v2.PID}),
        v2.seg("MRG", {1: f"{RETIRED_MRN}^^^RRV^MR"}),
    )
    with host_process(tmp_path / "local", extra_args=["--mllp-port", str(mllp_port)]) as (_proc, base):

        def written_back(corr: str) -> None:
            assert wait_for(lambda: _terminal(base, corr), timeout=90)["writeback-fhir"] == "written-back"

        def over_mllp(raw: bytes, control: str) -> None:
            assert _ack_code(send_message("127.0.0.1", mllp_port, raw, timeout=30)) == "AA"
            records = SqliteRecordStore(tmp_path / "local" / "records.sqlite3")
            try:
                [found] = find_by_control_id(records, "PAS", control, facility="RRV")
            finally:
                records.close()
            written_back(found.correlation_id)

        over_mllp(v2.adt("A01", before_pv1=(GP,), control_id="HU1"), "HU1")
        for corr, raw in over_http.items():  # one at a time: each after the previous is written back
            res = http("POST", f"{base}/hl7v2", raw, {**HL7, "X-Correlation-ID": corr})
            assert res.status == 200 and res.headers.get("X-HL7-Ack-Code") == "AA", res.body
            written_back(corr)
        over_mllp(merge, "HU5")

        def one(query: str) -> dict[str, Any]:
            [entry] = http("GET", f"{base}/fhir/{query}").json()["entry"]
            return dict(entry["resource"])

        survivor = one(f"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{v2.NHS}")
        retired = one(f"Patient?identifier=urn:tie:authority:RRV|{RETIRED_MRN}")
        [gp] = survivor["generalPractitioner"]  # the A08 without PD1 did not remove it
        assert http("GET", f"{base}/fhir/{gp['reference']}").json()["identifier"][0]["value"] == "Y01234"
        assert retired["active"] is False
        assert [(x["type"], x["other"]["reference"]) for x in retired["link"]] == [
            ("replaced-by", f"Patient/{survivor['id']}")
        ]
        assert [(x["type"], x["other"]["reference"]) for x in survivor["link"]] == [
            ("replaces", f"Patient/{retired['id']}")
        ]
        mine = f"patient={survivor['id']}"
        encounters = http("GET", f"{base}/fhir/Encounter?{mine}").json().get("entry", [])
        assert {e["resource"]["identifier"][0]["value"] for e in encounters} == {"V0000123", "V0000999"}
        results = http("GET", f"{base}/fhir/Observation?{mine}").json().get("entry", [])
        assert {
            (r["resource"]["code"]["coding"][0]["code"], str(r["resource"]["valueQuantity"]["value"]))
            for r in results
        } == {("NA", "140")}
