"""A writer killed with SIGKILL in the middle of appending leaves an audit chain that still verifies, and
the next writer continues it: each append (records, index terms and the signed head) is one SQLite
transaction. Three rounds, each killed while it is appending as fast as it can."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.chain import verify_chain
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.timeout(120)

KEY_HEX = "ab" * 32
WRITER = f"""
import sys
from datetime import UTC, datetime
from shared.audit.model import ACCESS, SUCCESS, Agent, AuditRecord, Entity
from shared.adapters.embedded.sqlite_audit import SqliteAuditLog

log = SqliteAuditLog(sys.argv[1], key=bytes.fromhex("{KEY_HEX}"), checkpoint_every=7)
n = 0
while True:
    batch = []
    for _ in range(3):
        n += 1
        batch.append(AuditRecord(category=ACCESS, action="R", interaction="read", outcome=SUCCESS,
            agent=Agent("client", "killer"), source="test", recorded=datetime.now(UTC),
            entities=(Entity("Patient", f"p{{n}}"),), patients=(f"Patient/p{{n}}",)))
    entries = log.append(batch)
    print(entries[-1].seq, flush=True)
"""


def test_sigkill_mid_append_leaves_a_verifiable_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    last_acknowledged = 0
    for _round in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        assert proc.stdout is not None
        target = last_acknowledged + 150
        while True:
            line = proc.stdout.readline()
            assert line, "the writer died on its own"
            seq = int(line)
            if seq >= target:
                break
        proc.send_signal(signal.SIGKILL)  # while it is appending the next batches
        proc.wait(timeout=30)
        proc.stdout.close()
        log = SqliteAuditLog(path, key=bytes.fromhex(KEY_HEX))
        try:
            result = verify_chain(log.entries(), log.checkpoints(), key=bytes.fromhex(KEY_HEX))
            assert result.ok, result.describe()
            # Nothing acknowledged is lost; whole batches only.
            assert result.last_seq >= seq and result.last_seq % 3 == 0
            assert log.checkpoints()[-1].seq == result.last_seq
        finally:
            log.close()
        last_acknowledged = result.last_seq


def test_sigkill_of_the_host_under_load_keeps_the_chain_and_every_acknowledged_write(tmp_path: Path) -> None:
    """``tie run`` killed with SIGKILL while clients create and read patients: the chain verifies, and
    every create the host acknowledged (201) has its audit record - writes are audited before they are
    answered (reads go through the background writer and may lose their last milliseconds)."""
    import json
    import threading
    import urllib.error

    from shared.audit.keyfile import local_key
    from tests.helpers import host_process, http
    from tests.unit.fhirapi.fhirapi_helpers import NHS, patient

    local = tmp_path / "local"
    acknowledged: list[str] = []
    enough = threading.Event()
    lock = threading.Lock()

    def client(index: int, base: str) -> None:
        for n in range(10_000):
            corr = f"kill-{index}-{n}"
            headers = {"Content-Type": "application/fhir+json", "X-Correlation-ID": corr}
            try:
                created = http(
                    "POST",
                    f"{base}/fhir/Patient",
                    json.dumps(patient(NHS[index % len(NHS)])).encode(),
                    headers,
                )
                if created.status == 201:
                    pid = created.json()["id"]
                    with lock:
                        acknowledged.append(corr)
                        if len(acknowledged) >= 40:
                            enough.set()
                    http("GET", f"{base}/fhir/Patient/{pid}", None, {"X-Correlation-ID": f"{corr}-read"})
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return  # the host is gone

    with host_process(local) as (proc, base):
        threads = [threading.Thread(target=client, args=(i, base), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        assert enough.wait(60), "the host did not acknowledge enough creates"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        for t in threads:
            t.join(30)
    key = local_key(local / "audit.key")
    log = SqliteAuditLog(local / "audit.sqlite3", key=key)
    try:
        result = verify_chain(log.entries(), log.checkpoints(), key=key)
        assert result.ok, result.describe()
        with lock:
            done = list(acknowledged)
        missing = [
            c
            for c in done
            if not any(json.loads(e.body)["interaction"] == "create" for e in log.search(correlation_id=c))
        ]
        assert missing == [], f"{len(missing)} acknowledged creates without their audit record"
    finally:
        log.close()
