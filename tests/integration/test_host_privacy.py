"""No patient data in what ``tie run`` logs or leaves on disk outside the clinical stores, and owner-only
modes on everything it creates.

The host runs as ``make run`` starts it (a subprocess, HTTP and MLLP on 127.0.0.1). Requests carry
patient identifiers in query strings, headers and bodies - including the ones the HTTP server itself
rejects (URL over 8 KB, header over 8 KB, an unparseable request line) - then the host's whole output and
every file under its data directory that is not a clinical store are searched for those identifiers.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import urllib.parse
from collections import deque
from pathlib import Path

import pytest

from shared.mllp.client import read_msa, send_message
from tests.helpers import free_port, host_process, http, wait_for

pytestmark = pytest.mark.timeout(180)

FAMILY, GIVEN, NHS_NUMBER, MRN = "Zebedeeqx", "Quillonia", "9876543210", "MRNQX77123"
IDENTIFIERS = (FAMILY, GIVEN, NHS_NUMBER, MRN, "Quixote Lane")
#: The clinical stores: they hold patient data by design (and are 0600 in a 0700 directory).
STORES = ("bus.sqlite3", "records.sqlite3", "blobs.sqlite3", "fhir.sqlite3")
#: The audit log and its checkpoint key (docs/audit.md): expected, and held to the side files' rule -
#: no identifier in them.
AUDIT = ("audit.sqlite3", "audit.key")
#: The audit payload store (docs/audit.md): the bodies behind the audit digests - patient data by design,
#: held to the stores' rule (0600 files in 0700 directories).
PAYLOADS = "payloads"


def _hl7(control_id: str) -> bytes:
    segments = [
        f"MSH|^~\\&|PAS|RGT01|TIE|RGT01|20260315103000||ADT^A01^ADT_A01|{control_id}|P|2.5.1",
        "EVN|A01|20260315102900",
        f"PID|1||{NHS_NUMBER}^^^NHS^NH~{MRN}^^^RGT01^MR||{FAMILY.upper()}^{GIVEN.upper()}^^^MX||19800101|F"
        "|||1 Quixote Lane^^LEEDS^^LS1 4AP^GBR||01130000000",
        "PV1|1|I|WARD1^BED2^^RGT01||||C1234567^CONSULTANT^ANNA|||MED||||1|||C1234567^CONSULTANT^ANNA|IP"
        "|V000123|||||||||||||||||||||||||20260315102900",
    ]
    return ("\r".join(segments) + "\r").encode()


def _raw(port: int, request: bytes) -> bytes:
    """Send bytes as they are (no client-side URL checks) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _assert_clean(text: str, where: str) -> None:
    lowered = text.lower()
    for value in IDENTIFIERS:
        assert value.lower() not in lowered, f"{value!r} found in {where}"


def test_identifiers_never_reach_logs_or_side_files_and_files_are_private(tmp_path: Path) -> None:
    local = tmp_path / "local"
    output: deque[str] = deque()
    mllp_port = free_port()
    with host_process(local, output=output, extra_args=["--mllp-port", str(mllp_port)]) as (proc, base):
        port = int(urllib.parse.urlsplit(base).port or 0)
        query = urllib.parse.urlencode(
            {
                "family": FAMILY,
                "given": GIVEN,
                "identifier": f"https://fhir.nhs.uk/Id/nhs-number|{NHS_NUMBER}",
                "address": "1 Quixote Lane",
            }
        )
        search = http("GET", f"{base}/fhir/Patient?{query}")
        assert search.status == 200
        bad_search = http("GET", f"{base}/fhir/Patient?birthdate={FAMILY}&_count={GIVEN}")
        assert bad_search.status == 400

        # Over-long URL: 414 JSON, the URL not echoed.
        long_url = f"{base}/fhir/Patient?{query}&_filter={'x' * 9000}"
        too_long = http("GET", long_url)
        assert too_long.status == 414 and too_long.json()["error"]["code"] == "uri_too_long"
        assert too_long.headers["X-Correlation-ID"]
        _assert_clean(too_long.body.decode(), "the 414 body")
        # Over-long header: 431; an unparseable request line: 400. Neither echoes anything.
        big_header = http("GET", f"{base}/health", headers={"X-Note": f"{FAMILY} {GIVEN} " + "y" * 9000})
        assert big_header.status == 431
        _assert_clean(big_header.body.decode(), "the 431 body")
        garbled = _raw(port, f"GET /api/fhir/Patient?family={FAMILY} HTTP/1.1 {NHS_NUMBER}\r\n\r\n".encode())
        assert _status(garbled) == 400
        _assert_clean(garbled.decode("latin-1"), "the 400 answer")
        assert b"application/json" in garbled

        # Bodies: HL7 v2 over HTTP and MLLP, a raw message, a FHIR resource.
        headers = {"Content-Type": "x-application/hl7-v2+er7", "X-Correlation-ID": "privacy-hl7"}
        hl7 = http("POST", f"{base}/hl7v2", _hl7("PRIV0001"), headers)
        assert hl7.status == 200 and b"MSA|AA" in hl7.body
        assert read_msa(send_message("127.0.0.1", mllp_port, _hl7("PRIV0002"), 10)).code == "AA"
        raw = http("POST", f"{base}/messages?channel=raw", f"{FAMILY} {NHS_NUMBER}".encode())
        assert raw.status == 202
        patient = {
            "resourceType": "Patient",
            "name": [{"family": FAMILY, "given": [GIVEN]}],
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS_NUMBER}],
        }
        created = http(
            "POST",
            f"{base}/fhir/Patient",
            json.dumps(patient).encode(),
            {"Content-Type": "application/fhir+json"},
        )
        assert created.status in (201, 422), created.body[:300]

        # Let the pipeline run the HL7 message to the end (ingest processor, mapping, FHIR store).
        def consumed() -> bool:
            trace = http("GET", f"{base}/messages/privacy-hl7")
            return trace.status == 200 and "consumed" in {s["stage"] for s in trace.json()["stages"]}

        wait_for(consumed, timeout=60)
        proc.terminate()
        assert proc.wait(30) == 0

    log = "\n".join(output)
    assert "Host started" in log and "http request rejected" in log
    _assert_clean(log, "the host's output")

    side_files = []
    for path in local.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path.relative_to(local)} is {oct(mode)}"
            continue
        assert mode == 0o600, f"{path.relative_to(local)} is {oct(mode)}"
        if not path.name.startswith(STORES) and path.relative_to(local).parts[0] != PAYLOADS:
            _assert_clean(path.read_bytes().decode("latin-1"), str(path.relative_to(local)))
            if not path.name.startswith(AUDIT):
                side_files.append(path)
    assert stat.S_IMODE(local.stat().st_mode) == 0o700
    stores = {p.name for p in local.rglob("*.sqlite3")}
    assert {"bus.sqlite3", "records.sqlite3", "fhir.sqlite3", "audit.sqlite3"} <= stores, stores
    assert side_files == [], f"unexpected files beside the stores: {side_files}"
    received = [p.read_bytes() for p in (local / PAYLOADS / "received").iterdir()]
    assert any(b"PRIV0001" in body for body in received), "the received message is kept for the audit"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_existing_store_files_are_tightened(tmp_path: Path) -> None:
    from shared.storage.private_files import private_file

    shared_parent = tmp_path / "shared"
    shared_parent.mkdir(mode=0o755)
    os.chmod(shared_parent, 0o755)
    db = shared_parent / "deep" / "er" / "records.sqlite3"
    private_file(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE((shared_parent / "deep").stat().st_mode) == 0o700
    assert stat.S_IMODE((shared_parent / "deep" / "er").stat().st_mode) == 0o700
    assert stat.S_IMODE(shared_parent.stat().st_mode) == 0o755  # not created here: left alone
    wal = db.with_name("records.sqlite3-wal")
    wal.write_bytes(b"")
    os.chmod(db, 0o644)
    os.chmod(wal, 0o644)
    private_file(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(wal.stat().st_mode) == 0o600
