"""The report as a terminal table, JSON and CSV (identifiers, counts and ages only)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from shared.reconcile.model import Report
from shared.reconcile.store import summary

CSV_COLUMNS = (
    "rank",
    "interface",
    "category",
    "item",
    "correlationId",
    "identifiers",
    "ageSeconds",
    "action",
    "detail",
)


def as_json(report: Report) -> dict[str, Any]:
    out = summary(report)
    out["items"] = [item.as_dict() for item in report.items()]
    return out


def as_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, item in enumerate(report.items(), start=1):
        row = item.as_dict()
        ids = ";".join(f"{k}={v}" for k, v in sorted(row["identifiers"].items()))
        writer.writerow([rank, *(row[c] if c != "identifiers" else ids for c in CSV_COLUMNS[1:])])
    return buffer.getvalue()


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _age(seconds: int) -> str:
    if seconds >= 86_400:
        return f"{seconds // 86_400}d{seconds % 86_400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def as_text(report: Report, *, limit: int = 50) -> str:
    head = (
        f"reconciliation {report.run_id}: {report.since.isoformat()} .. {report.until.isoformat()}, "
        f"{report.messages} messages, {report.reads} destination reads"
    )
    lines = [head]
    if report.clean:
        lines.append("clean: no variance")
    else:
        totals = ", ".join(f"{k} {v}" for k, v in report.totals().items() if v)
        lines.append(f"variance {report.variance}: {totals}")
    rows = [["rank", "interface", "received", "accepted", "delivered", "failed", "inflight", "variance"]]
    for n, r in enumerate(report.interfaces, start=1):
        c = r.counts
        rows.append(
            [
                str(n),
                r.interface.name,
                *(str(v) for v in (c.received, c.accepted, c.delivered, c.failed, c.inflight)),
                str(r.variance),
            ]
        )
    lines += ["", *(_table(rows) if len(rows) > 1 else ["(no traffic in the window)"])]
    items = report.items()
    if items:
        rows = [["item", "category", "correlation id", "identifiers", "age", "action"]]
        for item in items[:limit]:
            ids = " ".join(f"{k}={v}" for k, v in sorted(item.identifiers.items()))
            rows.append(
                [
                    item.item_id,
                    item.category.value,
                    item.correlation_id or "-",
                    ids,
                    _age(item.age_seconds),
                    item.action.value,
                ]
            )
        lines += ["", *_table(rows)]
        if len(items) > limit:
            lines.append(f"... {len(items) - limit} more (--json / --csv for all)")
    return "\n".join(lines)
