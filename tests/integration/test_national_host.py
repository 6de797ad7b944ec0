"""Issue 17 on ``tie run`` (as ``make run`` starts it): an unverified ADT^A01 traced against the local PDS
stand-in and written back verified; a restricted patient's address in no downstream and no log line; an
HL7 file put into a MESH inbox ingested exactly once and acknowledged."""

from __future__ import annotations

import os
import socket
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.local_mesh import LocalFilesMailbox
from tests.helpers import host_process, http, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

#: The restricted patient's address as the source sends it: it must reach no downstream and no log.
SECRET_LINE = "9 HIDDEN MEWS"
SECRET_POSTCODE = "LS9 9HH"
HL7 = {"Content-Type": "x-application/hl7-v2+er7"}


def adt(control: str, name: str, dob: str, sex: str, address: str = "1 OPEN STREET^^LEEDS^^LS1 6AE") -> bytes:
    return (
        f"MSH|^~\\&|PAS|RGT01|TIE|RGT01|20260315103000||ADT^A01^ADT_A01|{control}|P|2.5.1\r"
        "EVN|A01|20260315102900\r"
        f"PID|1||H{control}^^^RGT01^MR||{name}||{dob}|{sex}|||{address}^GBR\r"
        "PV1|1|I|WARD1^BED2^^RGT01||||C1234567^CONSULTANT^ANNA|||MED||||1|||C1234567^CONSULTANT^ANNA|IP|"
        f"V{control}|||||||||||||||||||||||||20260315102900\r"
    ).encode()


def post(base: str, correlation_id: str, body: bytes) -> Any:
    return http("POST", f"{base}/hl7v2", body, {**HL7, "X-Correlation-ID": correlation_id})


def stages(base: str, correlation_id: str) -> dict[str, dict[str, Any]]:
    trace = http("GET", f"{base}/messages/{correlation_id}")
    if trace.status != 200:
        return {}
    return {s["stage"] + ":" + str(s.get("subscriber", "")): s for s in trace.json()["stages"]}


def written(base: str, correlation_id: str) -> dict[str, dict[str, Any]] | None:
    found = stages(base, correlation_id)
    return found if "written-back:writeback-fhir" in found else None


def test_pds_trace_and_mesh_on_the_local_host(tmp_path: Path, corpora: Path) -> None:
    local = tmp_path / "local"
    output: deque[str] = deque(maxlen=2000)
    env = {
        "TIE_PDS_VERIFY_DOWNSTREAMS": "fhir",
        "TIE_PDS_CORPUS_DIR": str(corpora / "nhs-pds-fhir-api"),
        "TIE_MESH_MAILBOXES": "X26ABC1",
        "TIE_LOG_LEVEL": "DEBUG",
    }
    with host_process(local, env=env, output=output) as (_proc, base):
        # 1. Unverified (no NHS number) -> traced -> written back with the PDS number, verified.
        res = post(base, "pds-1", adt("PDS1", "SMITH^JANE", "20101022", "F"))
        assert res.status == 200, res.body
        found = wait_for(lambda: written(base, "pds-1"), timeout=60)
        assert found["identity-verified:writeback-fhir"]["source"] == "pds"

        # 2. Restricted patient: written back verified, without the address.
        secret = f"{SECRET_LINE}^^LEEDS^^{SECRET_POSTCODE}"
        res = post(base, "pds-2", adt("PDS2", "SMYTHE^JANET", "20050616", "F", secret))
        assert res.status == 200, res.body
        found = wait_for(lambda: written(base, "pds-2"), timeout=60)
        assert found["identity-verified:writeback-fhir"]["restricted"] is True

        # 3. Ambiguous identity: held for review, nothing written.
        res = post(base, "pds-3", adt("PDS3", "MCMATCH-MULTIPLE^BOB", "19970820", "M"))
        assert res.status == 200, res.body
        held = wait_for(lambda: stages(base, "pds-3").get("identity-review:writeback-fhir"), timeout=60)
        assert held["reason"] == "multiple-matches"

        # 4. MESH: an HL7 file dropped into the X26ABC1 inbox; the timer (every minute) ingests it once.
        sender = LocalFilesMailbox(local / "mesh", "X26ABC2")
        message_id = sender.send(
            "X26ABC1", adt("MESH1", "SMITH^JANE", "20101022", "F"), workflow_id="TIE_HL7V2"
        )
        found = wait_for(lambda: stages(base, message_id).get("mesh-acknowledged:"), timeout=90)
        assert found is not None
        assert LocalFilesMailbox(local / "mesh", "X26ABC1").inbox() == []
        wait_for(lambda: written(base, message_id), timeout=60)

    fhir_bytes = b"".join(p.read_bytes() for p in local.glob("fhir.sqlite3*"))
    assert b"9000000009" in fhir_bytes and b"9000000025" in fhir_bytes
    assert SECRET_LINE.encode() not in fhir_bytes and SECRET_POSTCODE.encode() not in fhir_bytes
    logged = "\n".join(output)
    assert SECRET_LINE not in logged and SECRET_POSTCODE not in logged
    assert "9000000025" not in logged


def test_tie_run_starts_and_stops_mesh_sandbox(tmp_path: Path) -> None:
    from shared.mesh.client_adapter import MeshClientMailbox
    from tests.helpers import free_port
    from tests.unit.mesh.conftest import SandboxCredentials
    from tie.localhost.mesh_sandbox import sandbox_installed

    if not sandbox_installed():
        if os.environ.get("CI") == "true":
            pytest.fail("mesh-sandbox is not installed (CI=true: required)", pytrace=False)
        pytest.skip("mesh-sandbox is not installed")
    port = free_port()
    env = {"TIE_MESH_BACKEND": "sandbox", "TIE_MESH_SANDBOX_PORT": str(port), "TIE_MESH_MAILBOXES": "X26ABC1"}
    output: deque[str] = deque(maxlen=2000)
    url = f"http://127.0.0.1:{port}"
    with host_process(tmp_path / "local", env=env, output=output) as (_proc, base):
        assert any(line.startswith("MESH sandbox: ") for line in output)
        sender = MeshClientMailbox(url, "X26ABC2", SandboxCredentials())
        try:
            message_id = sender.send(
                "X26ABC1", adt("SBX1", "SMITH^JANE", "20101022", "F"), workflow_id="TIE_HL7V2"
            )
            assert wait_for(lambda: stages(base, message_id).get("mesh-acknowledged:"), timeout=90)
            assert wait_for(lambda: sender.track(message_id) == "acknowledged", timeout=120)
        finally:
            sender.close()
    with socket.socket() as probe:  # stopped with the host
        assert probe.connect_ex(("127.0.0.1", port)) != 0
