"""``tie export``: a Bulk Data client for the running app (``tie run`` / ``make run``, or any base URL).

    tie export --type Patient,Observation          kick off, poll with a progress bar, download
    tie export --since 2026-03-01T00:00:00Z        only what changed (and was deleted) since then
    tie export --pseudonymise --client lakehouse   the pseudonymised variant for that recipient
    tie export --patient                           patient-level ($export on Patient)

Files and ``manifest.json`` are written to ``--out/<job id>/`` (default ``./export``). Ctrl-C cancels the
export on the server (``DELETE`` on the status URL). Exported files are patient data (unless
pseudonymised): keep them where patient data may be kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

BAR_WIDTH = 30


def add_export_parser(sub: Any) -> None:
    export = sub.add_parser("export", help="FHIR Bulk Data export: kick off, show progress, download")
    export.add_argument("--type", help="comma-separated resource types (default: every type)")
    export.add_argument("--since", help="only resources changed after this FHIR instant")
    export.add_argument("--type-filter", action="append", default=[], help="<Type>?<search> (repeatable)")
    export.add_argument("--pseudonymise", action="store_true", help="pseudonymised export (_pseudonymise)")
    export.add_argument("--patient", action="store_true", help="patient-level export (Patient/$export)")
    export.add_argument("--client", default="tie-cli", help="client id sent as X-TIE-Client-Id")
    export.add_argument("--base", help="FHIR base URL (default: http://127.0.0.1:$TIE_HTTP_PORT/api/fhir)")
    export.add_argument("--out", default="export", help="directory for the files (default ./export)")
    export.set_defaults(func=cmd_export)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _call(method: str, url: str, headers: dict[str, str]) -> Reply:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SystemExit("tie export: only http(s) URLs")
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - scheme checked
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers.items()), exc.read())


def _diagnostics(reply: Reply) -> str:
    try:
        issues = reply.json().get("issue", [])
    except (ValueError, AttributeError):
        return f"HTTP {reply.status}"
    return "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues) or f"HTTP {reply.status}"


def progress_bar(progress: str) -> str:
    """``"1/2 types, 5000 resources"`` -> ``"[###############...............] 1/2 types, 5000 resources"``."""
    try:
        done, total = (int(x) for x in progress.split(" ", 1)[0].split("/"))
    except ValueError:
        done, total = 0, 1
    filled = BAR_WIDTH * done // max(total, 1)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {progress}"


def run_export(
    base: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    out: Path,
    *,
    patient: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    stream: TextIO = sys.stdout,
) -> int:
    """Kick off, poll (a progress line per poll), download into ``out/<job>/``; 0 when complete."""
    path = "Patient/$export" if patient else "$export"
    url = f"{base.rstrip('/')}/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query, safe=",/:+")
    kicked = _call("GET", url, {**headers, "Prefer": "respond-async"})
    if kicked.status != 202:
        print(f"tie export: refused: {_diagnostics(kicked)}", file=sys.stderr)
        return 1
    status_url = kicked.headers["Content-Location"]
    job = status_url.rstrip("/").rsplit("/", 1)[1]
    print(f"export {job} accepted; polling {status_url}", file=stream)
    try:
        while True:
            reply = _call("GET", status_url, headers)
            if reply.status == 202:
                print(
                    f"\r{progress_bar(reply.headers.get('X-Progress', ''))}", end="", file=stream, flush=True
                )
                sleep(float(reply.headers.get("Retry-After") or 5))
                continue
            break
    except KeyboardInterrupt:
        _call("DELETE", status_url, headers)
        print("\ntie export: cancelled", file=sys.stderr)
        return 130
    print(file=stream)
    if reply.status != 200:
        print(f"tie export: failed: {_diagnostics(reply)}", file=sys.stderr)
        return 1
    manifest = reply.json()
    target = out / job
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    total = 0
    for section in ("output", "deleted", "error"):
        for entry in manifest.get(section, []):
            file = _call("GET", entry["url"], headers)
            if file.status != 200:
                print(f"tie export: download failed: {_diagnostics(file)}", file=sys.stderr)
                return 1
            name = entry["url"].rstrip("/").rsplit("/", 1)[1]
            (target / name).write_bytes(file.body)
            total += int(entry.get("count", 0))
            print(
                f"  {section:<7} {entry['type']:<20} {entry.get('count', 0):>8}  {target / name}", file=stream
            )
    print(f"{total} entries, manifest {target / 'manifest.json'}", file=stream)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    base = args.base or f"http://127.0.0.1:{os.environ.get('TIE_HTTP_PORT') or '7071'}/api/fhir"
    query: list[tuple[str, str]] = []
    if args.type:
        query.append(("_type", args.type))
    if args.since:
        query.append(("_since", args.since))
    query.extend(("_typeFilter", f) for f in args.type_filter)
    if args.pseudonymise:
        query.append(("_pseudonymise", "true"))
    headers = {"Accept": "application/fhir+json", "X-TIE-Client-Id": args.client}
    from shared.config.settings import get_settings
    from shared.gateway import gateway_policy

    policy = gateway_policy(get_settings())
    if policy is not None and policy.secret:
        headers[policy.header] = policy.secret  # the local app checks the gateway header too
    return run_export(base, query, headers, Path(args.out), patient=args.patient)
