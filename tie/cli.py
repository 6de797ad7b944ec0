"""``tie``: run the platform locally and look inside it.

    tie run                       functions host on http://127.0.0.1:7071/api (+ MLLP listener; --workers N)
    tie bus topics                table: topic, subscription, active, dead-letter, max deliveries (--json)
    tie bus peek TOPIC SUB        browse active messages (metadata; --body to print bodies)
    tie bus send TOPIC FILE       publish a file (development only)
    tie dlq list [TOPIC [SUB]]    dead letters of every subscription: reason, deliveries, last error code
    tie dlq show TOPIC SUB SEQ    one dead letter and its journal (--body to print the body)
    tie dlq replay TOPIC SUB      back to the subscription as a replay (--seq N ...; idempotent effects)
    tie dlq purge --older-than 7d [TOPIC [SUB]]
                                  (tie bus dlq ...: deprecated alias of tie dlq ..., same output)
    tie trace CORRELATION_ID      the journal of one message, and what it is still waiting for
    tie trace --control-id PAS:ID the same, found by sender (MSH-3[/MSH-4]) and MSH-10 control id
    tie inflight                  accepted but not finished (--older-than 5m)
    tie inflight --stuck          only those in flight longer than TIE_STUCK_AFTER_SECONDS (age, subscribers)
    tie mllp send FILE            send an HL7 v2 file over MLLP and print the ACK
    tie audit verify              re-compute the audit hash chain (exit 1 naming the first bad record)
    tie audit show CORRELATION_ID received -> transformed -> sent -> replies -> in flight (audited)
    tie audit search --patient R  audit records by patient, agent, entity, time (audited)
    tie downstreams               the downstream registry: transport, auth, credential reference, endpoint
    tie certs                     certificates by days left (check: expiry scan + alerts; init-local)
    tie export --type Patient     FHIR Bulk Data export: kick off, progress bar, NDJSON + manifest

Bodies are patient data: they are printed only with ``--body``, to stdout, never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import re
import select
import shlex
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.messaging.ports import OutboundMessage, ReceivedMessage, TopicInfo

if TYPE_CHECKING:
    from shared.journal import Journal


def _duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not m:
        raise argparse.ArgumentTypeError("use e.g. 30m, 12h, 7d")
    n, unit = int(m.group(1)), m.group(2)
    return {
        "s": timedelta(seconds=n),
        "m": timedelta(minutes=n),
        "h": timedelta(hours=n),
        "d": timedelta(days=n),
    }[unit]


def _container() -> Any:
    from shared.wiring import get_container

    return get_container()


def _message_row(m: ReceivedMessage, show_body: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sequence": m.sequence_number,
        "messageId": m.message_id,
        "correlationId": m.correlation_id,
        "sessionId": m.session_id,
        "enqueued": m.enqueued_time.isoformat(),
        "deliveryCount": m.delivery_count,
        "size": len(m.body),
        "properties": dict(m.application_properties),
    }
    if m.dead_letter_reason:
        row["deadLetterReason"] = m.dead_letter_reason
        row["deadLetterDescription"] = m.dead_letter_description
        row["deadLetteredAt"] = m.dead_lettered_at.isoformat() if m.dead_lettered_at else None
    if show_body:
        row["body"] = m.body.decode("utf-8", errors="replace")
    return row


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ------------------------------------------------------------------------------------------------- bus
def cmd_bus(args: argparse.Namespace) -> int:
    if args.bus_cmd == "dlq":
        return cmd_bus_dlq(args)
    bus = _container().bus
    if args.bus_cmd == "topics":
        if not args.json:
            print(_topics_table(bus.topology()))
            return 0
        out = []
        for topic in bus.topology():
            out.append(
                {
                    "topic": topic.name,
                    "subscriptions": [
                        {
                            "name": s.name,
                            "active": s.active_count,
                            "deadLetter": s.dead_letter_count,
                            "maxDeliveryCount": s.max_delivery_count,
                            "requiresSession": s.requires_session,
                            "filter": s.filter,
                        }
                        for s in topic.subscriptions
                    ],
                }
            )
        _print(out)
        return 0
    if args.bus_cmd == "peek":
        msgs = bus.peek(args.topic, args.subscription, max_messages=args.n)
        if args.body:
            from tie.audit_cmd import audit_operator

            pairs = [(m.message_id, m.correlation_id) for m in msgs]
            audit_operator("bus-peek-body", "R", messages=pairs, detail={"topic": args.topic})
        _print([_message_row(m, args.body) for m in msgs])
        return 0
    if args.bus_cmd == "send":
        data = Path(args.file).read_bytes()
        props: dict[str, str | int | float | bool] = {}
        for item in args.prop or []:
            key, _, value = item.partition("=")
            props[key] = value
        bus.publish(
            args.topic,
            [
                OutboundMessage(
                    body=data,
                    message_id=args.message_id,
                    session_id=args.session_id,
                    correlation_id=args.correlation_id,
                    content_type=args.content_type,
                    application_properties=props,
                )
            ],
        )
        print("published")
        return 0
    return 2


_TOPIC_COLUMNS = ("TOPIC", "SUBSCRIPTION", "ACTIVE", "DEAD-LETTER", "MAX-DELIVERIES", "SESSIONS", "FILTER")
_NUMERIC = {"ACTIVE", "DEAD-LETTER", "MAX-DELIVERIES"}


def _topics_table(topology: Sequence[TopicInfo]) -> str:
    """Topics and subscriptions as an aligned table with a header (numbers right-aligned)."""
    rows = [
        (
            topic.name,
            s.name,
            str(s.active_count),
            str(s.dead_letter_count),
            str(s.max_delivery_count),
            "yes" if s.requires_session else "no",
            s.filter or "-",
        )
        for topic in topology
        for s in topic.subscriptions
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_TOPIC_COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if name in _NUMERIC else cell.ljust(w)
            for name, cell, w in zip(_TOPIC_COLUMNS, cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(_TOPIC_COLUMNS), *(line(r) for r in rows)])


def cmd_bus_dlq(args: argparse.Namespace) -> int:
    """``tie bus dlq ...``: deprecated alias of ``tie dlq ...`` (same code, same output)."""
    print(f"tie bus dlq is deprecated: use tie dlq {args.dlq_cmd} (same arguments)", file=sys.stderr)
    return cmd_dlq(args)


def _control_id_argument(text: str) -> tuple[str, str | None, str]:
    """``SENDER:ID`` with SENDER = MSH-3 or ``MSH-3/MSH-4`` (``|`` also separates) -> (app, facility, id)."""
    from shared.console.readmodels import InvalidQuery, parse_control_id  # shared with the console

    try:
        return parse_control_id(text)
    except InvalidQuery as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_trace(args: argparse.Namespace) -> int:
    from shared.journal import Journal

    records = _container().records
    if (args.correlation_id is None) == (args.control_id is None):
        print("tie trace: give a correlation id or --control-id SENDER:ID (one of them)", file=sys.stderr)
        return 2
    if args.control_id is None:
        return _trace(Journal(records), args.correlation_id, as_json=args.json)
    from shared.ingest.control_ids import find_by_control_id

    application, facility, control_id = args.control_id
    matches = find_by_control_id(records, application, control_id, facility=facility)
    if not matches:
        sender = application if facility is None else f"{application}/{facility}"
        print(f"no message from {sender} with control id {control_id}", file=sys.stderr)
        return 1
    if len(matches) == 1:
        return _trace(Journal(records), matches[0].correlation_id, as_json=args.json)
    if args.json:
        _print(
            [
                {
                    "sendingApplication": m.sending_application,
                    "sendingFacility": m.sending_facility,
                    "controlId": m.control_id,
                    "correlationId": m.correlation_id,
                    "ackCode": m.code,
                    "outcome": m.outcome,
                    "at": m.at,
                }
                for m in matches
            ]
        )
        return 0
    print(f"{len(matches)} messages have control id {control_id}; trace one:")
    for m in matches:
        sender = f"{m.sending_application}/{m.sending_facility}"
        print(f"  {sender:<24} {m.code:<3} {m.at or '':<32} tie trace {shlex.quote(m.correlation_id)}")
    return 0


def _trace(journal: Journal, correlation_id: str, *, as_json: bool) -> int:
    entries = journal.trace(correlation_id)
    if not entries:
        print("no such correlation id", file=sys.stderr)
        return 1
    if as_json:
        from shared.console.readmodels import journey_json  # the read model the console serves too

        _print(journey_json(journal, correlation_id))
        return 0
    waiting = journal.waiting(correlation_id)
    start = entries[0].at
    for e in entries:
        who = e.attributes.get("subscriber") or e.attributes.get("subscription") or ""
        attrs = " ".join(
            f"{k}={v}"
            for k, v in e.attributes.items()
            if v is not None and k not in ("subscriber", "subscription")
        )
        offset = (e.at - start).total_seconds() * 1000
        print(f"{e.at.isoformat()}  +{offset:9.1f} ms  {e.stage:<14} {who:<17} {attrs}")
    if waiting:
        print(
            "in flight: waiting for " + ", ".join(f"{n} (since {a.isoformat()})" for n, a in waiting.items())
        )
    else:
        print("finished: no subscriber is still to act")
    return 0


def cmd_inflight(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from shared.journal import Journal

    container = _container()
    journal = Journal(container.records)
    if args.stuck:
        from shared.backbone.stuck import describe, stuck_messages

        deadline = timedelta(seconds=container.settings.stuck_after_seconds)
        stuck = stuck_messages(journal, deadline, limit=args.n)
        now = datetime.now(UTC)
        _print([describe(e, now) for e in stuck])
        return 0
    entries = journal.inflight(limit=args.n, older_than=args.older_than)
    now = datetime.now(UTC)
    _print(
        [
            {
                "correlationId": e.correlation_id,
                "since": e.since.isoformat(),
                "ageSeconds": round((now - e.since).total_seconds(), 1),
                "waitingFor": sorted(e.waiting),
            }
            for e in entries
        ]
    )
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from shared.backbone import deadletter
    from shared.journal import Journal

    container = _container()
    bus, records = container.bus, container.records
    if args.dlq_cmd == "list":
        letters = deadletter.list_dead_letters(
            bus, records, topic=args.topic, subscription=args.subscription, limit=args.n
        )
        _print([letter.to_json() for letter in letters])
        return 0
    if args.dlq_cmd == "show":
        letter = deadletter.show_dead_letter(bus, records, args.topic, args.subscription, args.sequence)
        if letter is None:
            print("no such dead letter", file=sys.stderr)
            return 1
        if args.body:
            from tie.audit_cmd import audit_operator

            pairs = [(letter.message_id, letter.correlation_id)]
            audit_operator("dlq-show-body", "R", messages=pairs, detail={"topic": args.topic})
        row = letter.to_json(include_body=args.body)
        if letter.correlation_id:
            row["journal"] = [
                {"stage": e.stage, "at": e.at.isoformat(), **dict(e.attributes)}
                for e in Journal(records).trace(letter.correlation_id)
            ]
        _print(row)
        return 0
    if args.dlq_cmd == "replay":
        count = deadletter.replay(
            bus, records, Journal(records), args.topic, args.subscription, sequence_numbers=args.seq or None
        )
        from tie.audit_cmd import audit_operator

        audit_operator("dlq-replay", "E", detail={"topic": args.topic, "replayed": count})
        print(f"replayed {count}")
        return 0
    if args.dlq_cmd == "purge":
        purged = deadletter.purge(
            bus, records, older_than=args.older_than, topic=args.topic, subscription=args.subscription
        )
        from tie.audit_cmd import audit_operator

        audit_operator("dlq-purge", "D", detail={"purged": sum(purged.values())})
        for where, count in purged.items():
            print(f"purged {count} from {where}")
        print(f"purged {sum(purged.values())}")
        return 0
    return 2


def _ack_control_id(ack: bytes) -> str:
    """MSH-10 of the ACK itself (the engine sets it to the message's correlation id); "" if absent."""
    segment = re.split(rb"[\r\n]+", ack, maxsplit=1)[0]
    fields = segment[3:].split(segment[3:4]) if segment.startswith(b"MSH") and len(segment) > 3 else []
    # fields[0] is empty (MSH-1 is the separator itself), fields[1] is MSH-2, ... fields[9] is MSH-10.
    return fields[9].decode("latin-1").strip() if len(fields) > 9 else ""


def cmd_mllp(args: argparse.Namespace) -> int:
    from shared.mllp.client import read_msa, send_message
    from shared.mllp.errors import MllpError

    port = args.port
    if port is None:
        try:
            port = int(os.environ.get("TIE_MLLP_PORT") or "2575")
        except ValueError:
            print("tie mllp send: TIE_MLLP_PORT is not a port number; use --port", file=sys.stderr)
            return 2
    data = Path(args.file).read_bytes()
    # Files on disk usually end segments with LF; HL7 over MLLP wants CR.
    if not args.keep_line_endings:
        data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    try:
        ack = send_message(args.host, port, data, timeout=args.timeout)
        print(ack.replace(b"\r", b"\n").decode("latin-1"))
        summary = read_msa(ack)
    except MllpError as exc:
        hint = "is tie run up? another port: --port or TIE_MLLP_PORT"
        print(f"tie mllp send: {args.host}:{port}: {exc} ({hint})", file=sys.stderr)
        return 1
    correlation_id = _ack_control_id(ack)
    if correlation_id:
        print(f"ACK {summary.code}  correlation id: {correlation_id}")
        print(f"trace it: tie trace {shlex.quote(correlation_id)}")
    else:
        print(f"ACK {summary.code}  correlation id: (not in the ACK's MSH-10)")
    return 0 if summary.code in ("AA", "CA") else 1


# ------------------------------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from tie.localsettings import load_local_settings

    loaded = load_local_settings(args.settings)
    os.environ["TIE_LOCAL_HOST"] = "1"
    if args.port is None:  # after local.settings.json, which may set it
        try:
            args.port = int(os.environ.get("TIE_HTTP_PORT") or "7071")
        except ValueError:
            print("tie run: TIE_HTTP_PORT is not a port number; use e.g. TIE_HTTP_PORT=8081", file=sys.stderr)
            return 2
    if args.workers is None:
        try:
            args.workers = _workers(os.environ.get("TIE_HOST_WORKERS") or "0")
        except argparse.ArgumentTypeError as exc:
            print(f"tie run: TIE_HOST_WORKERS: {exc}", file=sys.stderr)
            return 2
    from shared.adapters.embedded._writelock import AVAILABLE

    if args.workers and not AVAILABLE:
        print("tie run: --workers needs POSIX file locks (fcntl); use --workers 0 here", file=sys.stderr)
        return 2
    from shared.config.settings import reset_settings

    reset_settings()
    return asyncio.run(_run(args, loaded))


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of processes, 0 to {MAX_WORKERS}") from None
    if not 0 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"not a number of processes, 0 to {MAX_WORKERS}")
    return n


#: Most worker processes ``tie run --workers`` starts (each runs every Service Bus trigger).
MAX_WORKERS = 8


async def _run(args: argparse.Namespace, loaded: Sequence[str]) -> int:
    from shared.bootstrap import bootstrap
    from shared.errors import TieError
    from shared.wiring import get_container
    from tie.localhost.discovery import load_app
    from tie.localhost.host import HostConfig, LocalHost

    bootstrap()
    # Import the app first: a test app may install its own container (custom topology) at import time.
    app = load_app(args.app)
    container = get_container()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.worker_of is not None:
        return await _run_worker(args, app, container, stop)
    # With worker processes this one keeps the edges (HTTP, MLLP) and the timers; they run the triggers.
    config = HostConfig.from_host_json(
        args.host_json, host=args.host, port=args.port, enable_service_bus=args.workers == 0
    )
    host = LocalHost(app=app, bus=container.bus, records=container.records, config=config)
    # Bind every listener before any trigger runs: a busy port then stops nothing half-started.
    try:
        extras = await _start_extras(args, container)
    except OSError as exc:
        container.close()
        port = container.settings.mllp_port if args.mllp_port is None else args.mllp_port
        return _cannot_listen("MLLP", args.host, port, exc, "MLLP_PORT", "--mllp-port")
    except TieError as exc:  # TIE_MLLP_TLS: the listener certificate is missing, expired or unreadable
        container.close()
        print(f"tie run: MLLP listener TLS not usable ({exc.code}): {exc}", file=sys.stderr, flush=True)
        return 1

    async def abandon() -> None:
        """Undo a start that failed part-way: the listeners and the host, then the stores."""
        await extras.stop()
        await host.stop(grace=0)
        container.close()

    try:
        await host.start()
    except OSError as exc:
        await abandon()
        return _cannot_listen("HTTP", args.host, config.port, exc, "PORT", "--port")
    from tie.localhost.workers import TriggerWorkers, WorkerStartFailed, worker_argv

    workers = TriggerWorkers(worker_argv(args.app, args.settings, args.host_json, os.getpid()), args.workers)
    try:
        await workers.start()
    except (WorkerStartFailed, OSError) as exc:
        await abandon()
        print(f"tie run: {exc}", file=sys.stderr, flush=True)
        return 1
    print(
        f"Serverless TIE local host ({container.settings.bus_backend.value} bus, "
        f"{container.settings.storage_backend.value} storage, data in {container.settings.local_dir})"
    )
    if loaded:
        print(f"Loaded {len(loaded)} settings from {args.settings}")
    print(host.banner())
    for line in extras.banner():
        print(line)
    if workers.count:
        print(f"Worker processes: {workers.count} running the Service Bus triggers (pids {workers.pids()})")
    print(f"Host started: {host.base_url}", flush=True)
    await stop.wait()
    print("Stopping...", flush=True)
    workers.stopping()
    await extras.stop()
    await host.stop()
    await workers.stop()
    container.close()
    return 0


async def _run_worker(args: argparse.Namespace, app: Any, container: Any, stop: asyncio.Event) -> int:
    """A worker process of ``tie run --workers N``: the Service Bus triggers only (no HTTP, MLLP or
    timers); it stops on SIGTERM or when its parent is gone."""
    from tie.localhost.host import HostConfig, LocalHost
    from tie.localhost.workers import READY, watch_parent

    config = HostConfig.from_host_json(args.host_json, enable_http=False, enable_timers=False)
    host = LocalHost(app=app, bus=container.bus, records=container.records, config=config)
    loop = asyncio.get_running_loop()

    def parent_gone() -> None:
        loop.call_soon_threadsafe(stop.set)

    watch_parent(args.worker_of, parent_gone)
    await host.start()
    print(READY, flush=True)
    await stop.wait()
    await host.stop()
    container.close()
    return 0


def _cannot_listen(what: str, host: str, port: int, exc: OSError, make_var: str, flag: str) -> int:
    """One line on stderr (no traceback) naming the port and how to pick another; exit status 1."""
    if exc.errno == errno.EADDRINUSE:
        problem = f"{what} port {port} on {host} is already in use (another tie run?)"
    else:
        problem = f"cannot listen for {what} on {host}:{port} ({exc.strerror or type(exc).__name__})"
    other = port + 1 if 0 < port < 65535 else 8081
    hint = f"pick another: make run {make_var}={other}, or tie run {flag} {other}"
    if what == "MLLP":
        hint += " (or tie run --no-mllp)"
    print(f"tie run: {problem}; {hint}", file=sys.stderr, flush=True)
    return 1


class _Extras:
    """Services that run beside the functions host (the MLLP listener, when available)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stoppers: list[Any] = []

    def banner(self) -> list[str]:
        return self.lines

    async def stop(self) -> None:
        for stopper in self.stoppers:
            await stopper()


async def _start_extras(args: argparse.Namespace, container: Any) -> _Extras:
    extras = _Extras()
    from tie.national_cmd import start_mesh_sandbox  # TIE_MESH_BACKEND=sandbox: last, nothing after it fails

    if args.no_mllp:
        await start_mesh_sandbox(container, extras)
        return extras
    from shared.ingest.mllp_listener import start_mllp_listener, tls_label

    settings = container.settings
    server = await start_mllp_listener(
        container.bus,
        container.records,
        settings,
        host=args.host,
        port=args.mllp_port,
        credentials=container.credentials if settings.mllp_tls != "off" else None,
    )
    extras.stoppers.append(server.stop)
    mode = tls_label(settings)
    extras.lines.append(f"MLLP listener: {args.host}:{server.port} (HL7 v2, {mode}, persist-before-ACK)")
    await start_mesh_sandbox(container, extras)
    return extras


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tie", description="Serverless TIE developer tool")
    sub = parser.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run the local functions host (and MLLP listener)")
    run.add_argument("--app", default="function_app", help="module[:attr] or file.py with the FunctionApp")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=None, help="default: TIE_HTTP_PORT (7071)")
    run.add_argument("--mllp-port", type=int, default=None, help="default: TIE_MLLP_PORT (2575)")
    run.add_argument("--no-mllp", action="store_true", help="do not start the MLLP listener")
    run.add_argument("--settings", default="local.settings.json")
    run.add_argument("--host-json", default="host.json")
    run.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="run the Service Bus triggers in N worker processes; this one keeps HTTP, MLLP and the timers"
        " (default: TIE_HOST_WORKERS, else 0: everything in this process)",
    )
    run.add_argument("--worker-of", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    bus = sub.add_parser("bus", help="inspect the message bus")
    bus_sub = bus.add_subparsers(dest="bus_cmd", required=True)
    topics = bus_sub.add_parser("topics", help="topics, subscriptions and counts (a table)")
    topics.add_argument("--json", action="store_true", help="machine-readable output")
    peek = bus_sub.add_parser("peek", help="browse active messages")
    peek.add_argument("topic")
    peek.add_argument("subscription")
    peek.add_argument("-n", type=int, default=20)
    peek.add_argument("--body", action="store_true", help="print bodies (patient data!)")
    send = bus_sub.add_parser("send", help="publish a file to a topic (development)")
    send.add_argument("topic")
    send.add_argument("file")
    send.add_argument("--prop", action="append", help="application property key=value")
    send.add_argument("--message-id")
    send.add_argument("--session-id")
    send.add_argument("--correlation-id")
    send.add_argument("--content-type")
    _add_dlq_commands(bus_sub.add_parser("dlq", help="deprecated alias of tie dlq"))
    bus.set_defaults(func=cmd_bus)

    mllp = sub.add_parser("mllp", help="HL7 v2 over MLLP")
    mllp_sub = mllp.add_subparsers(dest="mllp_cmd", required=True)
    mllp_send = mllp_sub.add_parser("send", help="send a file, print the ACK (exit 1 unless AA/CA)")
    mllp_send.add_argument("file")
    mllp_send.add_argument("--host", default="127.0.0.1")
    mllp_send.add_argument("--port", type=int, default=None, help="default: TIE_MLLP_PORT (2575)")
    mllp_send.add_argument("--timeout", type=float, default=30.0)
    mllp_send.add_argument("--keep-line-endings", action="store_true", help="do not convert LF to CR")
    mllp.set_defaults(func=cmd_mllp)

    trace = sub.add_parser("trace", help="what happened to a message")
    trace.add_argument("correlation_id", nargs="?")
    trace.add_argument(
        "--control-id",
        type=_control_id_argument,
        metavar="SENDER:ID",
        help="find it by sender (MSH-3 or MSH-3/MSH-4) and MSH-10, e.g. PAS:SAMPLE0001",
    )
    trace.add_argument("--json", action="store_true", help="machine-readable output")
    trace.set_defaults(func=cmd_trace)

    inflight = sub.add_parser("inflight", help="accepted but not finished")
    age = inflight.add_mutually_exclusive_group()
    age.add_argument("--older-than", type=_duration, default=None, help="e.g. 5m: only those waiting longer")
    age.add_argument(
        "--stuck", action="store_true", help="only those in flight longer than TIE_STUCK_AFTER_SECONDS"
    )
    inflight.add_argument("-n", type=int, default=200)
    inflight.set_defaults(func=cmd_inflight)

    dlq_top = sub.add_parser("dlq", help="dead letters of every subscription (list, show, replay, purge)")
    _add_dlq_commands(dlq_top)
    dlq_top.set_defaults(func=cmd_dlq)

    from tie.audit_cmd import add_audit_parser

    add_audit_parser(sub)

    from tie.certs_cmd import add_credentials_parsers

    add_credentials_parsers(sub)

    from tie.export_cmd import add_export_parser

    add_export_parser(sub)

    from tie.reconcile_cmd import add_reconcile_parser

    add_reconcile_parser(sub)

    from tie.national_cmd import add_national_parsers

    add_national_parsers(sub)
    return parser


def _add_dlq_commands(dlq_top: argparse.ArgumentParser) -> None:
    """list, show, replay, purge under ``tie dlq`` and its deprecated alias ``tie bus dlq``."""
    dlq_top_sub = dlq_top.add_subparsers(dest="dlq_cmd", required=True)
    d_list = dlq_top_sub.add_parser(
        "list", help="reason, delivery count, correlation id, last error (no bodies)"
    )
    d_list.add_argument("topic", nargs="?")
    d_list.add_argument("subscription", nargs="?")
    d_list.add_argument("-n", type=int, default=250)
    d_show = dlq_top_sub.add_parser("show", help="one dead letter with its journal")
    d_show.add_argument("topic")
    d_show.add_argument("subscription")
    d_show.add_argument("sequence", type=int)
    d_show.add_argument("--body", action="store_true", help="print the body (patient data!)")
    d_replay = dlq_top_sub.add_parser("replay", help="return to the subscription, tagged as a replay")
    d_replay.add_argument("topic")
    d_replay.add_argument("subscription")
    d_replay.add_argument("--seq", type=int, nargs="*", help="sequence numbers (default: all)")
    d_purge = dlq_top_sub.add_parser("purge", help="delete dead letters older than a duration")
    d_purge.add_argument("topic", nargs="?")
    d_purge.add_argument("subscription", nargs="?")
    d_purge.add_argument("--older-than", type=_duration, required=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd != "run":
        from tie.localsettings import load_local_settings

        load_local_settings()
    try:
        return int(args.func(args))
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe or socket broke (e.g. an MLLP peer): a real error
        # The reader went away (`tie inflight | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (``poll`` reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() here, or stdout is not a real file
        return False


if __name__ == "__main__":
    raise SystemExit(main())
