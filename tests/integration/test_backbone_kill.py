"""Fault scenario (b): the host process is killed (SIGKILL, no shutdown) at random points of a
1,000-message run and restarted -> zero lost, zero duplicated effects.

The real ``tie run`` host in a subprocess, with the real HL7 v2 edge, ingest processor and write-back
subscribers (``tests/fixtures/backbone_app.py``: short 4 s locks so work held by a dead host comes back
quickly). Four senders post ADT^A01s over HTTP and, like any HL7 sender, resend until they get an ACK.
Effects are counted in the downstream itself: the embedded FHIR store the write-back writes to.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from shared.fhirstore.sqlite_store import SqliteFhirRepository
from shared.messaging.sqlite_bus import SqliteBus
from shared.messaging.topology import SUB_INGEST_PROCESSOR, SUB_WRITEBACK_FHIR, TOPIC_CLINICAL, TOPIC_INGEST
from shared.storage.names import TABLE_PARKED
from shared.storage.sqlite_records import SqliteRecordStore
from tests.fixtures.backbone_app import SHORT_LOCKS
from tests.helpers import free_port, host_process, http
from tests.unit.backbone import support as s

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

MESSAGES = 1000
PATIENTS = 100
KILLS = 5
APP = "tests/fixtures/backbone_app.py"
ENV = {
    # Everything a delivery may spend on the downstream must fit 75 % of the 4 s lock.
    "TIE_WRITEBACK_TIMEOUT_SECONDS": "0.5",
    "TIE_WRITEBACK_MAX_ATTEMPTS": "2",
    "TIE_WRITEBACK_BACKOFF_BASE_SECONDS": "0.05",
    "TIE_LOG_LEVEL": "WARNING",
}


def test_b_host_killed_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    local = tmp_path / "local"
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    seed = int(os.environ.get("BACKBONE_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    nhs = s.nhs_numbers(PATIENTS)
    work: queue.Queue[tuple[str, bytes]] = queue.Queue()
    for i in range(MESSAGES):
        control = f"B{i:05d}"
        work.put((control, s.adt(control, nhs=nhs[i % PATIENTS], visit=f"BV{i:05d}")))
    acked: set[str] = set()
    resends = 0
    lock = threading.Lock()
    stop = threading.Event()

    def sender() -> None:
        nonlocal resends
        while not stop.is_set():
            try:
                control, raw = work.get_nowait()
            except queue.Empty:
                return
            while not stop.is_set():
                try:
                    res = http(
                        "POST", f"{base}/hl7v2", raw, {"Content-Type": "x-application/hl7-v2+er7"}, timeout=10
                    )
                except OSError:
                    res = None
                if res is not None and res.status == 200 and res.headers.get("X-HL7-Ack-Code") == "AA":
                    with lock:
                        acked.add(control)
                    break
                with lock:
                    resends += 1
                time.sleep(0.2)  # host down or restarting: resend, as an HL7 sender does

    tail: deque[str] = deque(maxlen=50)
    senders = [threading.Thread(target=sender, daemon=True) for _ in range(4)]
    started = time.monotonic()
    kills_at: list[float] = []
    try:
        for round_ in range(KILLS + 1):
            with host_process(local, app=APP, port=port, env=ENV, output=tail) as (proc, _base):
                if round_ == 0:
                    for t in senders:
                        t.start()
                if round_ < KILLS:
                    time.sleep(rng.uniform(0.5, 2.5))
                    kills_at.append(round(time.monotonic() - started, 1))
                    os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no settlement, nothing flushed
                    proc.wait(10)
                    continue
                for t in senders:
                    t.join(120)
                repo = SqliteFhirRepository(local / "fhir.sqlite3")
                deadline = time.monotonic() + 120
                while len(s.encounter_versions(repo)) < MESSAGES and time.monotonic() < deadline:
                    time.sleep(0.5)
                bus = SqliteBus(local / "bus.sqlite3", SHORT_LOCKS)
                records = SqliteRecordStore(local / "records.sqlite3")
                try:
                    while time.monotonic() < deadline and (
                        bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, max_messages=1)
                        or records.query(TABLE_PARKED, limit=1)
                    ):
                        time.sleep(0.5)
                    time.sleep(1.0)  # let in-flight deliveries settle before counting
                    versions = s.encounter_versions(repo)
                    patients = repo.history("Patient")
                    dead = sum(
                        len(bus.peek(t.name, sub.name, dead_letter=True))
                        for t in SHORT_LOCKS
                        for sub in t.subscriptions
                    )
                    pending = len(bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, max_messages=10))
                finally:
                    bus.close()
                    records.close()
                    repo.close()
    finally:
        stop.set()
    effects = len(versions)
    duplicates = sum(v - 1 for v in versions.values())
    s.counts_line(
        "b/fhir",
        sent=MESSAGES,
        effects=effects,
        duplicates=duplicates,
        lost=MESSAGES - effects,
        dead_lettered=dead,
    )
    print(
        f"[fault b] seed={seed} (BACKBONE_FAULT_SEED) kills at {kills_at} s, resends={resends}, "
        f"seconds={time.monotonic() - started:.1f}"
    )
    assert len(acked) == MESSAGES, "\n".join(tail)
    assert (effects, duplicates, dead, pending) == (MESSAGES, 0, 0, 0), "\n".join(tail)
    assert len({p.id for p in patients}) == PATIENTS and len(patients) == PATIENTS  # created once each
