"""``tie reconcile``: sent versus received per interface, ranked by variance (docs/reconciliation.md).

tie reconcile [--interface NAME] [--since 24h|ISO] [--until ISO] [--json FILE] [--csv FILE]
                                  run now: a table on the terminal (exit 1 when there is variance),
                                  optionally the JSON and CSV files (``-`` = stdout); the run is stored,
                                  journaled and alerted like the timer's
tie reconcile history [--limit N] [--json]   stored runs, newest first
tie reconcile show RUN_ID [--json]           the items of a stored run
tie reconcile replay ITEM... [--json]        dead-lettered write-backs back to their subscription (tagged
                                             as a replay), lost FHIR resources restored to the version
                                             written; exit 1 unless every item was replayed or restored
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def _when(text: str) -> datetime | timedelta:
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if match:
        n, unit = int(match.group(1)), match.group(2)
        return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use a duration (90m, 24h, 7d) or an ISO date/time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_reconcile_parser(sub: Any) -> None:
    rec = sub.add_parser("reconcile", help="sent versus received per interface, ranked by variance")
    rec.add_argument("--interface", help="only this interface (full name, sender/downstream, or prefix)")
    rec.add_argument("--since", type=_when, help="window start: a duration back from --until, or ISO")
    rec.add_argument("--until", type=_when, help="window end: a duration back from now, or ISO (default now)")
    rec.add_argument("--json", dest="json_out", metavar="FILE", help="write the report as JSON (- = stdout)")
    rec.add_argument("--csv", dest="csv_out", metavar="FILE", help="write the items as CSV (- = stdout)")
    rec.add_argument("--limit", type=int, default=50, help="items shown in the table")
    rec_sub = rec.add_subparsers(dest="reconcile_cmd")
    history = rec_sub.add_parser("history", help="stored runs, newest first")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true", help="machine-readable output")
    show = rec_sub.add_parser("show", help="the items of a stored run")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    replay = rec_sub.add_parser("replay", help="repair items of a stored run (dead letters, lost resources)")
    replay.add_argument("items", nargs="+", metavar="ITEM", help="item ids (rc-...) from a report")
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    rec.set_defaults(func=cmd_reconcile)


def _write(target: str, text: str) -> None:
    if target == "-":
        print(text)
    else:
        Path(target).write_text(text, encoding="utf-8")


def cmd_reconcile(args: argparse.Namespace) -> int:
    from shared.reconcile.report import as_csv, as_json, as_text
    from shared.wiring import build_reconciler, get_container

    reconciler = build_reconciler(get_container())
    if args.reconcile_cmd == "history":
        runs = reconciler.history.runs(limit=args.limit)
        if args.json:
            print(json.dumps(runs, indent=2))
            return 0
        if not runs:
            print("(no runs)")
        for run in runs:
            print(
                f"{run['run_id']}  {run['trigger']:<9}  {run['since']} .. {run['until']}  "
                f"messages {run['messages']}  variance {run['variance']}"
                + (f"  alerts not sent {run['alerts_failed']}" if run.get("alerts_failed") else "")
            )
        return 0
    if args.reconcile_cmd == "show":
        items = reconciler.history.items(args.run_id)
        if args.json:
            print(json.dumps(items, indent=2))
        for item in [] if args.json else items:
            print(
                f"{item['item']}  {item['interface']}  {item['category']}  "
                f"{item['correlationId'] or '-'}  {item['action']}  {item['detail']}"
            )
        return 0 if items else 1
    if args.reconcile_cmd == "replay":
        return _replay(args)
    now = datetime.now(UTC)
    until = now - args.until if isinstance(args.until, timedelta) else args.until
    since = args.since
    if isinstance(since, timedelta):
        since = (until or now) - since
    report = reconciler.run(since=since, until=until, interface=args.interface)
    if args.json_out:
        _write(args.json_out, json.dumps(as_json(report), indent=2))
    if args.csv_out:
        _write(args.csv_out, as_csv(report))
    if "-" not in (args.json_out, args.csv_out):
        print(as_text(report, limit=args.limit))
    return 0 if report.clean else 1


def _replay(args: argparse.Namespace) -> int:
    from shared.wiring import build_reconcile_replayer, get_container
    from tie.audit_cmd import audit_operator

    audit_operator("reconcile-replay", "E", detail={"items": len(args.items)})  # before it acts
    outcomes = build_reconcile_replayer(get_container()).replay(args.items)
    done = sum(o.status in ("replayed", "restored") for o in outcomes)
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            print(f"{o.item}  {o.status}  {o.detail}")
    return 0 if done == len(outcomes) else 1
