"""Run history (table ``reconcile``): one summary row per run, newest first, and its items.

Partitions: ``runs`` (row = inverted start time + run id, so a plain query lists newest first),
``items-<run id>`` (row = rank), ``schedule`` (row = the local date a scheduled run claimed).
Identifiers, codes and counts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from shared.reconcile.model import Report
from shared.storage.errors import RecordExists
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_RECONCILE
from shared.storage.ports import RecordStore

RUNS: Final = "runs"
SCHEDULE: Final = "schedule"
#: Items stored per run (the report files carry all of them; the summary says when it was cut).
MAX_STORED_ITEMS: Final = 5000
_EPOCH_MAX_US: Final = 10**17 - 1


def _row(started: datetime, run_id: str) -> str:
    micros = int(started.timestamp()) * 1_000_000 + started.microsecond
    return f"{_EPOCH_MAX_US - micros:017d}-{safe_key(run_id)}"


def summary(report: Report) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "trigger": report.trigger,
        "started": report.started.isoformat(),
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "messages": report.messages,
        "reads": report.reads,
        "variance": report.variance,
        "totals": report.totals(),
        "interfaces": [
            {
                "interface": r.interface.name,
                "counts": r.counts.as_dict(),
                "variance": r.variance,
                "byCategory": r.by_category(),
            }
            for r in report.interfaces[:200]
        ],
    }


@dataclass(frozen=True, slots=True)
class RunRecord:
    summary: dict[str, Any]
    items_stored: int


class RunHistory:
    def __init__(self, records: RecordStore) -> None:
        self._records = records

    def save(self, report: Report, *, alerts_failed: int = 0) -> RunRecord:
        items = report.items()
        stored = items[:MAX_STORED_ITEMS]
        partition = safe_key(f"items-{report.run_id}")
        for rank, item in enumerate(stored):
            self._records.upsert(TABLE_RECONCILE, partition, f"{rank:06d}", item.as_dict())
        value = summary(report)
        value.update(items_stored=len(stored), items_total=len(items), alerts_failed=alerts_failed)
        self._records.upsert(TABLE_RECONCILE, RUNS, _row(report.started, report.run_id), value)
        return RunRecord(value, len(stored))

    def runs(self, *, limit: int = 20) -> list[dict[str, Any]]:
        return [dict(r.value) for r in self._records.query(TABLE_RECONCILE, RUNS, limit=limit)]

    def items(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(r.value) for r in self._records.query(TABLE_RECONCILE, safe_key(f"items-{run_id}"))]

    def claim(self, local_date: str, run_id: str) -> bool:
        """Claim the scheduled run of ``local_date`` (insert-if-absent: one run per day however many
        instances fire)."""
        try:
            self._records.insert(TABLE_RECONCILE, SCHEDULE, local_date, {"run_id": run_id})
        except RecordExists:
            return False
        return True
