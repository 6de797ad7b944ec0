"""``tie review`` (identity review queue) and ``tie mesh`` (MESH mailboxes), and the mesh-sandbox that
``tie run`` starts when ``TIE_MESH_BACKEND=sandbox``.

    tie review list                      write-backs held because PDS could not verify the identity
    tie review resolve ID --nhs-number N re-publish the held event with the confirmed number (PDS checks it)
    tie mesh status [MAILBOX]            inbound messages not yet acknowledged, sends not yet acknowledged
    tie mesh poll                        one poll of every TIE_MESH_MAILBOXES mailbox (what the timer does)
    tie mesh put FILE --to MAILBOX --workflow ID [--from MAILBOX]
                                         send a file (development: e.g. an HL7 file into a sandbox inbox)

No output here carries patient data: ids, states, reasons and counts only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any


def add_national_parsers(sub: Any) -> None:
    review = sub.add_parser("review", help="identity review queue (PDS trace did not resolve)")
    review_sub = review.add_subparsers(dest="review_cmd", required=True)
    r_list = review_sub.add_parser("list", help="open items: reason, steps tried, subscription")
    r_list.add_argument("--resolved", action="store_true", help="list resolved items instead")
    r_resolve = review_sub.add_parser("resolve", help="re-publish a held event with a confirmed NHS number")
    r_resolve.add_argument("item")
    r_resolve.add_argument("--nhs-number", required=True)
    review.set_defaults(func=cmd_review)

    mesh = sub.add_parser("mesh", help="MESH mailboxes (status, poll, put)")
    mesh_sub = mesh.add_subparsers(dest="mesh_cmd", required=True)
    m_status = mesh_sub.add_parser("status", help="unacknowledged inbound and outbound messages")
    m_status.add_argument("mailbox", nargs="?")
    m_status.add_argument("--json", action="store_true")
    mesh_sub.add_parser("poll", help="poll every configured mailbox once")
    m_put = mesh_sub.add_parser("put", help="send a file to a mailbox (development)")
    m_put.add_argument("file")
    m_put.add_argument("--to", required=True)
    m_put.add_argument("--workflow", required=True)
    m_put.add_argument("--from", dest="sender", default=None, help="default: TIE_MESH_OUTBOUND_MAILBOX")
    mesh.set_defaults(func=cmd_mesh)


def cmd_review(args: argparse.Namespace) -> int:
    from shared.identifiers.nhs_number import is_valid_nhs_number
    from shared.pds.review import RESOLVED, ReviewItemNotFound, ReviewQueue
    from shared.wiring import get_container

    container = get_container()
    queue = ReviewQueue(container.records, container.blobs)
    if args.review_cmd == "list":
        items = queue.list(RESOLVED if args.resolved else "open")
        for item in items:
            print(
                f"{item.id}  {item.created_at}  {item.subscription}  reason={item.reason}  "
                f"tried={','.join(item.tried) or '-'}  correlation={item.correlation_id or '-'}"
            )
        print(f"{len(items)} item(s)")
        return 0
    if not is_valid_nhs_number(args.nhs_number):
        print("tie review resolve: not a valid NHS number", file=sys.stderr)
        return 2
    try:
        queue.resolve(args.item, args.nhs_number, container.bus)
    except ReviewItemNotFound as exc:
        print(f"tie review resolve: {exc}", file=sys.stderr)
        return 1
    print(f"{args.item}: re-published; the write-back retrieves the number from PDS before writing")
    return 0


def _mailboxes(settings: Any, wanted: str | None) -> list[str]:
    names = list(settings.mesh_mailbox_list)
    if settings.mesh_outbound_mailbox and settings.mesh_outbound_mailbox not in names:
        names.append(settings.mesh_outbound_mailbox)
    return [wanted] if wanted else names


def cmd_mesh(args: argparse.Namespace) -> int:
    from shared.mesh.inbound import ACKNOWLEDGED, MeshInbound
    from shared.mesh.outbound import MeshOutbound
    from shared.mesh.pipeline import PipelineIngestor
    from shared.wiring import build_mesh_mailbox, get_container, poll_mesh

    container = get_container()
    settings = container.settings
    if args.mesh_cmd == "poll":
        reports = poll_mesh(container)
        for r in reports:
            print(
                f"{r.mailbox}: listed={r.listed} ingested={r.ingested} quarantined={r.quarantined} "
                f"acknowledged={r.acknowledged} retried={r.retried} failed={r.failed}"
                + (f" errors={','.join(r.errors)}" if r.errors else "")
            )
        return 1 if any(r.failed for r in reports) else 0
    if args.mesh_cmd == "put":
        sender = args.sender or settings.mesh_outbound_mailbox
        if not sender:
            print("tie mesh put: --from or TIE_MESH_OUTBOUND_MAILBOX", file=sys.stderr)
            return 2
        mailbox = build_mesh_mailbox(settings, sender)
        try:
            message_id = mailbox.send(args.to, Path(args.file).read_bytes(), workflow_id=args.workflow)
        finally:
            mailbox.close()
        print(f"sent {message_id} from {sender} to {args.to} ({args.workflow})")
        return 0
    inbound = MeshInbound(
        container.records, container.blobs, PipelineIngestor(container.bus, container.records)
    )
    outbound = MeshOutbound(container.records)
    rows: dict[str, Any] = {}
    names = _mailboxes(settings, args.mailbox)
    if not names:
        print("no MESH mailbox configured: name one, or set TIE_MESH_MAILBOXES", file=sys.stderr)
        return 2
    for name in names:
        rows[name] = {
            "inbound_unacknowledged": [
                {k: e.get(k) for k in ("message_id", "state", "workflow_id", "reason", "received_at")}
                for e in inbound.entries(name)
                if e.get("state") != ACKNOWLEDGED
            ],
            "outbound_unacknowledged": [
                {k: o.get(k) for k in ("local_id", "message_id", "state", "tracking", "recipient", "sent_at")}
                for o in outbound.outstanding(name)
            ],
        }
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for name, row in rows.items():
        print(
            f"{name}: {len(row['inbound_unacknowledged'])} inbound not acknowledged, "
            f"{len(row['outbound_unacknowledged'])} sent not acknowledged"
        )
        for e in row["inbound_unacknowledged"]:
            print(f"  in  {e['message_id']}  {e['state']}  {e['workflow_id']}  {e.get('reason') or ''}")
        for o in row["outbound_unacknowledged"]:
            print(
                f"  out {o['message_id'] or '(in doubt)'}  {o['state']}  "
                f"{o.get('tracking') or ''}  to {o['recipient']}"
            )
    return 0


async def start_mesh_sandbox(container: Any, extras: Any) -> None:
    """``tie run`` with ``TIE_MESH_BACKEND=sandbox``: NHS mesh-sandbox on loopback, stopped with the host."""
    settings = container.settings
    if settings.mesh_backend != "sandbox" or settings.mesh_url:
        return
    from tie.localhost import mesh_sandbox

    port = settings.mesh_sandbox_port
    proc = mesh_sandbox.start(port)
    try:
        await asyncio.to_thread(mesh_sandbox.wait_ready, proc, port)
    except mesh_sandbox.SandboxUnavailable:
        mesh_sandbox.stop(proc)
        raise

    async def stop() -> None:
        await asyncio.to_thread(mesh_sandbox.stop, proc)

    extras.stoppers.append(stop)
    extras.lines.append(f"MESH sandbox: http://127.0.0.1:{port} (mailboxes X26ABC1/2/3, in memory)")
