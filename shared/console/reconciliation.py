"""The dashboard's reconciliation section, read from the run history of :mod:`shared.reconcile`.

:class:`RunHistorySource` implements :class:`shared.console.readmodels.ReconciliationSource`: the newest
stored run, one variance per interface that has any (its categories and counts as the detail).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.console.readmodels import Variance
from shared.reconcile.store import RunHistory
from shared.storage.ports import RecordStore


class RunHistorySource:
    def __init__(self, records: RecordStore) -> None:
        self._history = RunHistory(records)

    def last_run(self) -> tuple[datetime, Sequence[Variance]] | None:
        runs = self._history.runs(limit=1)
        if not runs:
            return None
        run = runs[0]
        variances = [
            Variance(
                check=str(i.get("interface", "")),
                count=int(i.get("variance", 0)),
                detail=" ".join(f"{k}={v}" for k, v in sorted((i.get("byCategory") or {}).items()) if v),
            )
            for i in run.get("interfaces") or ()
            if int(i.get("variance", 0))
        ]
        return datetime.fromisoformat(str(run["started"])), variances
