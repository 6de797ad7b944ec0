"""``tie audit``: verify the audit chain, answer "what happened to this message", search the audit.

    tie audit verify              re-compute the hash chain and the signed checkpoints; exit 1 at a break
    tie audit show CORRELATION_ID received -> transformed -> sent per downstream -> replies -> in flight
    tie audit show CORRELATION_ID --body   ... and the bodies behind the digests (payload store)
    tie audit search [--patient REF] [--agent ID] [--entity TYPE/ID] [--since T] [--until T]
    tie audit expire              delete stored bodies past their class's retention

``show`` and ``search`` reveal who accessed which patient's data, so each is itself audited (agent: the
operating-system user). No message bodies are printed unless ``--body``, which is audited before anything
is printed (``audit-show-body``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.audit.model import OPERATOR, SUCCESS, Action, Agent, AuditRecord


def add_audit_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="verify the audit chain, show a message's audit, search the audit")
    audit_sub = audit.add_subparsers(dest="audit_cmd", required=True)
    verify = audit_sub.add_parser(
        "verify", help="re-compute the hash chain; exit 1 naming the first bad record"
    )
    verify.add_argument("--json", action="store_true")
    show = audit_sub.add_parser(
        "show", help="received, transformed, sent, replies and in flight for one message"
    )
    show.add_argument("correlation_id")
    show.add_argument("--json", action="store_true")
    show.add_argument(
        "--body", action="store_true", help="also print what was received, transformed, sent and replied"
    )
    expire = audit_sub.add_parser("expire", help="delete stored bodies past their class's retention")
    expire.add_argument("--json", action="store_true")
    search = audit_sub.add_parser("search", help="audit records by patient, agent, entity and time")
    search.add_argument("--patient", help="Patient/<id> or a patient-<token>")
    search.add_argument("--agent", help="client id, user or system component")
    search.add_argument("--entity", help="TYPE/ID, e.g. Observation/123")
    search.add_argument("--since", type=_instant, help="ISO 8601 instant (UTC if no offset)")
    search.add_argument("--until", type=_instant)
    search.add_argument("-n", type=int, default=100)
    audit.set_defaults(func=cmd_audit)


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use an ISO 8601 instant, e.g. 2026-12-07T09:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _operator() -> Agent:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Agent("user", f"os:{user}", verified=True)


def _key(container: Any) -> bytes | None:
    from shared.config.settings import Backend

    settings = container.settings
    if settings.storage_backend is Backend.AZURE:
        return None  # the WORM policy protects the tail; no checkpoints (docs/audit.md)
    from shared.audit.keyfile import local_key

    return local_key(settings.local_dir / "audit.key")


def cmd_audit(args: argparse.Namespace) -> int:
    from shared.wiring import get_container

    container = get_container()
    trail = container.audit
    if args.audit_cmd == "verify":
        from shared.audit.chain import verify_chain

        log = trail.log
        result = verify_chain(log.entries(), log.checkpoints(), key=_key(container))
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": result.ok,
                        "checked": result.checked,
                        "lastSeq": result.last_seq,
                        "firstBad": result.first_bad,
                        "reason": result.reason,
                    }
                )
            )
        else:
            print(result.describe(), file=sys.stdout if result.ok else sys.stderr)
        return 0 if result.ok else 1
    if args.audit_cmd == "show":
        return _show(container, args.correlation_id, as_json=args.json, body=args.body)
    if args.audit_cmd == "expire":
        return _expire(trail, as_json=args.json)
    entries = trail.log.search(
        patient=args.patient,
        agent=args.agent,
        entity=args.entity,
        since=args.since,
        until=args.until,
        limit=args.n,
    )
    trail.record(
        category=OPERATOR,
        action="E",
        interaction="audit-search",
        outcome=SUCCESS,
        source="tie-cli",
        agent=_operator(),
        patients=[args.patient] if args.patient else [],
        parameters=[k for k in ("patient", "agent", "entity", "since", "until") if getattr(args, k)],
        detail={"returned": len(entries)},
    )
    for entry in entries:
        print(json.dumps({"seq": entry.seq, **json.loads(entry.body)}, sort_keys=True))
    return 0


def _expire(trail: Any, *, as_json: bool) -> int:
    if trail.payloads is None:
        print("no payload store configured", file=sys.stderr)
        return 1
    removed = trail.payloads.expire()
    trail.record(
        category=OPERATOR,
        action="D",
        interaction="payload-expire",
        outcome=SUCCESS,
        source="tie-cli",
        agent=_operator(),
        detail={k: int(v) for k, v in removed.items()},
    )
    if as_json:
        print(json.dumps(removed, sort_keys=True))
    else:
        print("expired " + ", ".join(f"{k}={v}" for k, v in removed.items()))
    return 0


def _bodies(trail: Any, records: Sequence[AuditRecord]) -> list[dict[str, Any]]:
    """The stored body behind each digest of the transform and write-back records (``None``: not kept,
    or expired - the digest stays in the record)."""
    from shared.audit.payloads import DIGEST_CLASSES

    out: list[dict[str, Any]] = []
    for r in records:
        for name, record_class in DIGEST_CLASSES.get(r.interaction, {}).items():
            digest = r.digests.get(name)
            if not digest:
                continue
            data = trail.payloads.get(record_class, digest) if trail.payloads is not None else None
            out.append(
                {
                    "class": record_class,
                    "digest": digest,
                    "downstream": str(r.detail.get("downstream", ""))
                    if r.interaction == "write-back"
                    else "",
                    "body": data.decode("utf-8", errors="replace") if data is not None else None,
                }
            )
    return out


def _show(container: Any, correlation_id: str, *, as_json: bool, body: bool = False) -> int:
    from shared.journal import Journal

    trail = container.audit
    journal = Journal(container.records)
    records = [
        AuditRecord.from_json(json.loads(e.body))
        for e in trail.log.search(correlation_id=correlation_id, limit=1000)
    ]
    stages = journal.trace(correlation_id)
    if not records and not stages:
        print("no such correlation id", file=sys.stderr)
        return 1
    waiting = journal.waiting(correlation_id)
    patients = sorted({p for r in records for p in r.patients})
    trail.record(  # before anything is printed: fails closed
        category=OPERATOR,
        action="R",
        interaction="audit-show-body" if body else "audit-show",
        outcome=SUCCESS,
        source="tie-cli",
        agent=_operator(),
        correlation_id=correlation_id,
        patients=patients,
    )
    answer = _answer(records, stages, waiting)
    bodies = _bodies(trail, records) if body else []
    if as_json:
        extra = {"bodies": bodies} if body else {}
        print(json.dumps({"correlationId": correlation_id, **answer, **extra}, indent=2, default=str))
        return 0
    received = answer["received"]
    print(f"correlation id {correlation_id}")
    print(
        f"received     {received.get('at', '-')}  {received.get('channel', '')}"
        f" size={received.get('size', '-')}"
    )
    for t in answer["transformed"]:
        print(
            f"transformed  {t['at']}  {t['outcome']:<7} input={t['input'][:16]}"
            f" output={t['output'][:16]}  {t['event']}"
        )
    for s in answer["sent"]:
        print(
            f"sent         {s['at']}  {s['downstream']:<8} {s['outcome']:<7} reply={s['reply'] or '-':<4}"
            f" payload={s['payload'][:16] or '-'}  attempts={s['attempts']}"
        )
    for a in answer["accesses"]:
        print(f"accessed     {a['at']}  {a['agent']:<20} {a['interaction']:<12} status={a['status']}")
    print("in flight    " + (", ".join(f"{k} since {v}" for k, v in answer["inflight"].items()) or "nothing"))
    for b in bodies:
        where = f" to {b['downstream']}" if b["downstream"] else ""
        print(f"--- {b['class']}{where} sha256={b['digest'][:16]}")
        text = b["body"]
        print(
            "(not kept: expired or never stored)" if text is None else text.replace("\r", "\n").rstrip("\n")
        )
    return 0


def _answer(
    records: Sequence[AuditRecord], stages: Sequence[Any], waiting: dict[str, datetime]
) -> dict[str, Any]:
    received: dict[str, Any] = {}
    for stage in stages:
        if stage.stage == "received":
            received = {
                "at": stage.at.isoformat(),
                **{k: v for k, v in stage.attributes.items() if k in ("channel", "size", "source")},
            }
            break

    def outcome(r: AuditRecord) -> str:
        return "ok" if r.outcome == SUCCESS else "failed"

    transformed = [
        {
            "at": r.recorded.isoformat(),
            "outcome": outcome(r),
            "input": r.digests.get("input", ""),
            "output": r.digests.get("output", ""),
            "event": next((e.id for e in r.entities if e.type == "ClinicalEvent"), ""),
        }
        for r in records
        if r.interaction == "transform"
    ]
    sent = [
        {
            "at": r.recorded.isoformat(),
            "downstream": str(r.detail.get("downstream", r.source)),
            "outcome": outcome(r),
            "reply": r.status,
            "payload": r.digests.get("output", ""),
            "attempts": r.detail.get("attempts", ""),
        }
        for r in records
        if r.interaction == "write-back"
    ]
    accesses = [
        {"at": r.recorded.isoformat(), "agent": r.agent.id, "interaction": r.interaction, "status": r.status}
        for r in records
        if r.category == "access"
    ]
    return {
        "received": received,
        "transformed": transformed,
        "sent": sent,
        "accesses": accesses,
        "inflight": {name: at.isoformat() for name, at in sorted(waiting.items())},
    }


def audit_operator(
    interaction: str,
    action: Action,
    *,
    correlation_id: str = "",
    messages: Sequence[tuple[str, str | None]] = (),
    detail: dict[str, str | int | bool] | None = None,
) -> None:
    """Audit an operator command that reveals or changes message bodies (``--body``, replay, purge)
    before it does so: ``messages`` are (message id, correlation id) pairs. Fails closed (raises)."""
    from shared.audit.model import Entity
    from shared.wiring import get_container

    correlations = {c for _, c in messages if c}
    get_container().audit.record(
        category=OPERATOR,
        action=action,
        interaction=interaction,
        outcome=SUCCESS,
        source="tie-cli",
        agent=_operator(),
        correlation_id=correlation_id or (next(iter(correlations)) if len(correlations) == 1 else ""),
        entities=[Entity("Message", m) for m, _ in messages if m],
        detail=detail,
    )
