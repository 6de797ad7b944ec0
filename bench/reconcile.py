"""Benchmark: one reconciliation run over a 100,000-message window on the embedded stores.

Fills an embedded record store (SQLite) with what the journal and in-flight index hold after N HL7 v2
messages went through ingest and both write-backs (9 journal rows per message: received, published,
acknowledged with sender / type / MSH-13, mapped, consumed, delivered and written-back per write-back),
with a little drift injected (0.1% left in flight, a skipped sequence number every 10,000, 0.1% MLLP
write-backs ending in AR), plus what the FHIR write-back recorded for them and an embedded FHIR store
holding the newest ``--reads`` of those resources. Then times one :meth:`Reconciler.run` (destination
reads bounded by ``--reads``) and prints the phases and the totals. Asserts nothing (issue 16 target: a
100,000-message window in under a minute on 2 cores).

The fill writes rows in bulk through the SQLite store's connection (it is not what is measured).

    .venv/bin/python bench/reconcile.py [--n 100000] [--reads 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore, encode_value
from shared.messaging.topology import SUB_INGEST_PROCESSOR, SUB_WRITEBACK_FHIR, SUB_WRITEBACK_HL7V2, TOPOLOGY
from shared.reconcile.fhir import element_digests, sent_partition
from shared.reconcile.service import ReconcileOptions, Reconciler
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_INFLIGHT, TABLE_JOURNAL, TABLE_RECONCILE

START = datetime(2026, 3, 15, 0, 0, tzinfo=UTC)


class NoMetrics:
    def gauge(self, name: str, value: float, *, unit: str = "", attributes: Any = None) -> None:
        return None


def bulk(store: SqliteRecordStore, table: str, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    sql = store._table(table)
    now = datetime.now(UTC).isoformat()
    with store._db.write() as conn:
        conn.executemany(
            f"INSERT OR REPLACE INTO {sql} (pk, rk, value, etag, updated_at) VALUES (?, ?, ?, ?, ?)",
            [(pk, rk, encode_value(v), "e", now) for pk, rk, v in rows],
        )


def encounter(i: int) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": f"e{i}", "status": "in-progress", "class": {"code": "IMP"}}


def fill(store: SqliteRecordStore, fhir: SqliteFhirRepository, n: int, reads: int, span: timedelta) -> None:
    step = span / n
    journal: list[tuple[str, str, dict[str, Any]]] = []
    inflight: list[tuple[str, str, dict[str, Any]]] = []
    sent: list[tuple[str, str, dict[str, Any]]] = []
    sequence = 0
    for i in range(n):
        corr, at = f"corr-{i:07d}", START + step * i
        sequence += 2 if i % 10_000 == 9_999 else 1
        stuck, rejected = i % 1000 == 7, i % 1000 == 11
        stages: list[tuple[str, dict[str, Any]]] = [
            ("received", {"channel": "hl7v2", "source": "mllp:c1", "size": 900}),
            ("published", {"topic": "tie-ingest", "message_id": f"m{i}"}),
            (
                "acknowledged",
                {
                    "code": "AA",
                    "control_id": f"C{i}",
                    "sender": "PAS|RGT01",
                    "message_type": "ADT^A01",
                    "sequence": str(sequence),
                },
            ),
        ]
        if not stuck:
            stages += [
                ("consumed", {"message_id": f"m{i}", "delivery_count": 1}),
                ("mapped", {"event_kind": "admission", "event_key": f"k{i}"}),
                ("delivered", {"subscriber": SUB_WRITEBACK_FHIR, "event_key": f"k{i}"}),
                ("written-back", {"subscriber": SUB_WRITEBACK_FHIR, "status": "201", "event_key": f"k{i}"}),
                ("delivered", {"subscriber": SUB_WRITEBACK_HL7V2, "event_key": f"k{i}"}),
                (
                    ("failed", {"subscriber": SUB_WRITEBACK_HL7V2, "response": "AR", "final": True})
                    if rejected
                    else ("written-back", {"subscriber": SUB_WRITEBACK_HL7V2, "status": "AA"})
                ),
            ]
        for seq, (stage, attributes) in enumerate(stages):
            t = at + timedelta(microseconds=seq)
            journal.append(
                (
                    safe_key(corr),
                    f"{t:%Y%m%dT%H%M%S%f}-{seq:08d}-{safe_key(stage)}",
                    {"stage": stage, "at": t.isoformat(), "attributes": attributes},
                )
            )
        for subscriber in (SUB_INGEST_PROCESSOR, SUB_WRITEBACK_FHIR, SUB_WRITEBACK_HL7V2):
            inflight.append(
                (
                    safe_key(corr),
                    safe_key(subscriber),
                    {
                        "correlation_id": corr,
                        "open": stuck and subscriber == SUB_INGEST_PROCESSOR,
                        "at": at.isoformat(),
                    },
                )
            )
        if not stuck:
            sent.append(
                (
                    sent_partition(SUB_WRITEBACK_FHIR),
                    safe_key(f"Encounter/e{i}"),
                    {
                        "ref": f"Encounter/e{i}",
                        "version": "1",
                        "elements": element_digests(encounter(i)),
                        "correlation_id": corr,
                        "at": (at + timedelta(seconds=1)).isoformat(),
                    },
                )
            )
        if len(journal) > 50_000:
            bulk(store, TABLE_JOURNAL, journal)
            journal.clear()
    bulk(store, TABLE_JOURNAL, journal)
    bulk(store, TABLE_INFLIGHT, inflight)
    bulk(store, TABLE_RECONCILE, sent)
    for _, _, value in sent[-reads:]:  # the destination holds the newest ones (those read back)
        i = int(str(value["ref"]).removeprefix("Encounter/e"))
        fhir.update("Encounter", f"e{i}", encounter(i))
    for _, _, value in sent[-reads:][:: max(1, reads // 5)]:  # and a little drift there: 5 deleted
        fhir.delete(*str(value["ref"]).split("/"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    span = timedelta(hours=24)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = SqliteRecordStore(root / "records.sqlite3")
        fhir = SqliteFhirRepository(root / "fhir.sqlite3")
        bus = SqliteBus(root / "bus.sqlite3", TOPOLOGY)
        t0 = time.perf_counter()
        fill(store, fhir, args.n, args.reads, span)
        filled = time.perf_counter() - t0
        reconciler = Reconciler(
            store,
            bus,
            destinations={SUB_WRITEBACK_FHIR: fhir},
            options=ReconcileOptions(stuck_after=timedelta(minutes=15), max_reads=args.reads),
            metrics=NoMetrics(),
            clock=lambda: START + span + timedelta(hours=1),
        )
        t0 = time.perf_counter()
        report = reconciler.run(since=START, until=START + span)
        elapsed = time.perf_counter() - t0
        print(f"fill: {args.n} messages in {filled:.1f} s (not measured)")
        print(
            f"reconcile: {report.messages} messages, {report.reads} destination reads, "
            f"{len(report.interfaces)} interfaces, variance {report.variance} {report.totals()}"
        )
        print(f"run: {elapsed:.1f} s ({report.messages / elapsed:,.0f} messages/s)")
        for closable in (bus, fhir, store):
            closable.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
