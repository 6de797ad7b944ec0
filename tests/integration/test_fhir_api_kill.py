"""The FHIR API crash window: the host is killed (SIGKILL) right after the FHIR store commits a write and
before its clinical event is published; after a restart the event is published exactly once and reaches
the write-back.

The real ``tie run`` host in a subprocess (``tests/fixtures/fhir_crash_app.py``: the FHIR API, the
write-back subscribers and the outbox relay timer). The crash point is deterministic: the store's
``after_commit`` hook kills the process after its first committed write transaction. The event survives
because it was committed in the store's outbox table in the same transaction as the resource; the
``outbox_relay`` timer of the restarted host publishes it (docs/adr/0001-fhir-api-transactional-events.md).
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.backbone import clinical
from shared.canonical.model import ClinicalEvent
from shared.journal import WRITTEN_BACK, Journal
from shared.mapping.fhir_in import event_from_fhir
from shared.messaging.topology import SUB_CLINICAL_AUDIT, SUB_WRITEBACK_FHIR, TOPIC_CLINICAL
from tests.fixtures.fhir_crash_app import CRASH_SETTING
from tests.helpers import free_port, host_process, http
from tests.unit.fhirapi.fhirapi_helpers import NHS, patient

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

APP = "tests/fixtures/fhir_crash_app.py"
ENV = {"TIE_LOG_LEVEL": "WARNING"}
CORRELATION = "fhir-kill-1"
#: Bound for the restarted host to relay and write back (its relay timer fires every 15 s).
DEADLINE_SECONDS = 60.0


def _published(bus: SqliteBus) -> list[ClinicalEvent]:
    """Every event on clinical-events (the audit subscription has no consumer in this app: peek)."""
    return [
        clinical.from_message(m.body) for m in bus.peek(TOPIC_CLINICAL, SUB_CLINICAL_AUDIT, max_messages=50)
    ]


def _written_back(records: SqliteRecordStore) -> list[dict[str, Any]]:
    return [
        dict(e.attributes)
        for e in Journal(records).trace(CORRELATION)
        if e.stage == WRITTEN_BACK and e.attributes.get("subscriber") == SUB_WRITEBACK_FHIR
    ]


def test_killed_between_fhir_commit_and_publish_the_event_is_published_once_after_restart(
    tmp_path: Path,
) -> None:
    local = tmp_path / "local"
    port = free_port()
    tail: deque[str] = deque(maxlen=200)
    body = json.dumps(patient(NHS[3])).encode()
    headers = {"Content-Type": "application/fhir+json", "X-Correlation-ID": CORRELATION}

    # 1. The write; the host dies right after the FHIR commit (the client gets no answer).
    with host_process(local, app=APP, port=port, env={**ENV, CRASH_SETTING: "1"}, output=tail) as (
        proc,
        base,
    ):
        with pytest.raises(OSError):
            http("POST", f"{base}/fhir/Patient", body, headers, timeout=30)
        assert proc.wait(30) == -9, "\n".join(tail)

    repo = SqliteFhirRepository(local / "fhir.sqlite3")
    bus = SqliteBus(local / "bus.sqlite3")
    records = SqliteRecordStore(local / "records.sqlite3")
    try:
        # The crash point: the resource is committed (its event in the store's outbox), nothing published.
        (stored,) = repo.search(
            "Patient", [("identifier", f"https://fhir.nhs.uk/Id/nhs-number|{NHS[3]}")]
        ).resources
        assert stored["meta"]["versionId"] == "1"
        assert _published(bus) == []
        assert len(repo.pending_batches()) == 1
        expected = event_from_fhir(stored, interaction="create", patient=None).value

        # 2. Restart, no fault: the relay publishes the committed event; the write-back consumes it.
        with host_process(local, app=APP, port=port, env=ENV, output=tail):
            deadline = time.monotonic() + DEADLINE_SECONDS
            while time.monotonic() < deadline and not _written_back(records):
                time.sleep(0.2)
            written = _written_back(records)
            published = _published(bus)
        assert written, "the event never reached the write-back:\n" + "\n".join(tail)
    finally:
        repo_batches = repo.pending_batches()
        repo.close()
        bus.close()
        records.close()

    # Exactly once, and it is this write's event: identity and content as the stored version maps to.
    assert [(e.key, e.kind, e.patient, e.provenance.correlation_id) for e in published] == [
        (expected.key, expected.kind, expected.patient, CORRELATION)
    ]
    assert [w["event_key"] for w in written] == [expected.key.value]
    assert repo_batches == [], "the relayed batch is settled"
