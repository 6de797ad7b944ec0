"""Reconciliation state on both record stores (embedded SQLite; Azure Table Storage against Azurite):
what the FHIR write-back recorded, the run history (newest first, items by rank), the once-a-day claim,
and a whole run over a journal - the same answers on both."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.journal import Journal
from shared.messaging.topology import SUB_WRITEBACK_FHIR, TOPOLOGY
from shared.reconcile.fhir import SentRecorder, sent_records
from shared.reconcile.model import Category
from shared.reconcile.service import ReconcileOptions, Reconciler
from shared.storage.ports import RecordStore

T0 = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)


class NoMetrics:
    def gauge(self, name: str, value: float, *, unit: str = "", attributes: Any = None) -> None:
        return None


def test_a_run_over_the_journal_and_the_destination_is_stored_and_read_back(
    records: RecordStore, tmp_path: Path
) -> None:
    # Azurite is shared by the session: keep this test's correlation ids and resources apart.
    tag = uuid.uuid4().hex[:8]
    now = {"at": T0}
    fhir = SqliteFhirRepository(tmp_path / "fhir.sqlite3")
    bus = SqliteBus(tmp_path / "bus.sqlite3", TOPOLOGY)
    try:
        recorder = SentRecorder(fhir, records, downstream=SUB_WRITEBACK_FHIR, clock=lambda: now["at"])
        entries = [
            {
                "resource": {"resourceType": "Organization", "id": f"o-{tag}-{n}", "name": f"Org {n}"},
                "request": {"method": "PUT", "url": f"Organization/o-{tag}-{n}"},
            }
            for n in range(3)
        ]
        recorder.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        sent = {
            s.ref: s for s in sent_records(records, SUB_WRITEBACK_FHIR, since=T0, until=T0 + timedelta(1))
        }
        assert {f"Organization/o-{tag}-{n}" for n in range(3)} <= set(sent)
        assert sent[f"Organization/o-{tag}-1"].elements.keys() == {"name"}
        fhir.delete("Organization", f"o-{tag}-1")
        journal = Journal(records, clock=lambda: now["at"])
        journal.record(f"left-{tag}", "received", channel="hl7v2", source="mllp:c", size=1)
        journal.record(f"left-{tag}", "acknowledged", code="AA", sender=f"S{tag}|F", message_type="ADT^A01")

        now["at"] = T0 + timedelta(hours=1)
        reconciler = Reconciler(
            records,
            bus,
            destinations={SUB_WRITEBACK_FHIR: fhir},
            options=ReconcileOptions(stuck_after=timedelta(minutes=15)),
            metrics=NoMetrics(),
            clock=lambda: now["at"],
        )
        first = reconciler.run(since=T0, until=T0 + timedelta(minutes=30), interface=f"in:S{tag}")
        assert [(i.category, i.correlation_id) for i in first.items()] == [(Category.STUCK, f"left-{tag}")]
        now["at"] += timedelta(seconds=1)
        second = reconciler.run(since=T0, until=T0 + timedelta(minutes=30), interface="out:writeback-fhir")
        mine = [
            i for i in second.items() if i.identifiers.get("resource", "").startswith(f"Organization/o-{tag}")
        ]
        assert [(i.category, i.identifiers["resource"]) for i in mine] == [
            (Category.MISSING, f"Organization/o-{tag}-1")
        ]
        runs = reconciler.history.runs(limit=50)
        ids = [r["run_id"] for r in runs]
        assert ids.index(second.run_id) < ids.index(first.run_id)  # newest first
        stored = reconciler.history.items(first.run_id)
        assert stored == [i.as_dict() for i in first.items()]
        day = f"2026-03-{tag}"
        assert reconciler.history.claim(day, "a") and not reconciler.history.claim(day, "b")
    finally:
        fhir.close()
        bus.close()
