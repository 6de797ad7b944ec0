"""Benchmark: the pipeline end to end on the embedded defaults, with and without write-back idempotency.

ADT^A01 messages go in over HTTP (``POST /api/hl7v2`` on ``tie run``, a subprocess: the host on one core,
this load generator on the other) -> parsed, validated, mapped, published to ``tie-ingest`` -> the ingest
processor maps and publishes the clinical event to ``clinical-events`` -> the ``writeback-fhir``
subscriber writes it back to the embedded FHIR store (``writeback-hl7v2`` runs too and skips: no MLLP
downstream is configured, as under ``make run``). Every message is a distinct admission (``--patients``
patients), sent by ``--clients`` concurrent HTTP clients with keep-alive.

Reported per mode (``with`` = production: idempotency guard + transactional outbox for the
writeback.completed event; ``without`` = ``bench/pipeline_app.py`` with ``BENCH_IDEMPOTENCY=0``):

* messages/s end to end: messages / (last FHIR write-back - first send);
* ACK latency (HTTP round trip: the edge persisted the message before AA), p50 / p99;
* end-to-end latency per message: send -> its ``written-back`` journal stage, p50 / p99;
* where the time goes: per-stage medians from the journal (edge, ingest queue + processor,
  clinical-events queue + write-back).

Then ``with / without`` ratios (the idempotency overhead), and:

* ``--offered-rate R``: one more production run offering messages at R/s (open loop, latency counted from
  when each message was due): e2e p50/p99 at a fixed load;
* ``--profile``: one more production run of the full host instrumented by ``bench/pipeline_app.py``
  (``BENCH_PROFILE_OUT``): per-stage calls, wall and CPU time per message as a call tree (trigger functions,
  edge parse/validate/map/persist/ACK, bus publish/receive/complete, journal, record store, idempotency
  guard + outbox, FHIR write-back and store), the whole process's CPU per message, and SQLite statements,
  BEGINs, COMMITs and ROLLBACKs per message per database file and per top-level stage;
* unless ``--no-profile``: a single-thread, in-process cost breakdown of one message through each component
  (microseconds of CPU), with the idempotency guard's share, and the top functions by own time (cProfile);
* ``--json PATH``: the figures as JSON (read by ``bench/goals.py``).

    .venv/bin/python bench/pipeline.py [--messages 1000] [--clients 8] [--rounds 1] [--no-profile]
        [--profile] [--offered-rate 200] [--json .local/bench/pipeline.json]

Not a test: it asserts nothing. Targets (issue 18): >= 1,000 messages/s end to end on two cores, e2e p50
< 250 ms at 200 msgs/s offered, idempotency overhead < 10 %.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository  # noqa: E402
from shared.adapters.embedded.sqlite_records import SqliteRecordStore  # noqa: E402
from shared.identifiers.nhs_number import is_valid_nhs_number  # noqa: E402

CONTENT_TYPE = "x-application/hl7-v2+er7"


def nhs_numbers(count: int, start: int = 943_476_000) -> list[str]:
    out: list[str] = []
    n = start
    while len(out) < count:
        for check in range(10):
            candidate = f"{n:09d}{check}"
            if is_valid_nhs_number(candidate):
                out.append(candidate)
                break
        n += 1
    return out


def adt_a01(control_id: str, nhs: str, visit: str) -> bytes:
    """A fabricated ADT^A01 (~450 bytes): NHS number + hospital number, name, address, consultant, bed."""
    segments = [
        f"MSH|^~\\&|PAS|RGT01|TIE|RGT01|20260315103000||ADT^A01^ADT_A01|{control_id}|P|2.5.1",
        "EVN|A01|20260315102900",
        f"PID|1||{nhs}^^^NHS^NH~H{visit}^^^RGT01^MR||TESTPATIENT^ALEX^J^^MX||19800101|F|||"
        "1 TEST STREET^^LEEDS^^LS1 4AP^GBR||01130000000",
        "PV1|1|I|WARD1^BED2^^RGT01||||C1234567^CONSULTANT^ANNA|||MED||||1|||C1234567^CONSULTANT^ANNA|IP|"
        f"{visit}|||||||||||||||||||||||||20260315102900",
    ]
    return ("\r".join(segments) + "\r").encode("ascii")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- one end-to-end run ---------------------------------------------------------------------------------


#: ``tie run --workers``: Service Bus trigger processes, as ``make run`` starts the host (``--workers``).
HOST_WORKERS = 2


def start_host(
    local: Path, idempotency: bool, profile_out: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIE_", "TieStorage__"))}
    env.update(
        {
            "TIE_LOCAL_DIR": str(local),
            "TIE_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            "BENCH_IDEMPOTENCY": "1" if idempotency else "0",
        }
    )
    if profile_out is not None:
        env["BENCH_PROFILE_OUT"] = str(profile_out)
    args = [sys.executable, "-m", "tie.cli", "run", "--app", "bench/pipeline_app.py", "--port", str(port)]
    # The profile instruments one process: the profiled host runs everything in it (--workers 0).
    workers = 0 if profile_out is not None else HOST_WORKERS
    args += ["--settings", "none.json", "--no-mllp", "--workers", str(workers)]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"host exited early ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("host did not start")


def send_all(
    port: int, messages: list[tuple[str, bytes]], clients: int, rate: float = 0.0
) -> tuple[dict[str, float], list[float]]:
    """POST every message (keep-alive, ``clients`` threads): send wall-clock times and ACK latencies.

    ``rate`` > 0 offers the messages at that rate (message i is due at start + i / rate) instead of as fast
    as the clients go; a message's send time is then when it was due, so a host that falls behind is
    charged for the wait (no coordinated omission)."""
    work: queue.Queue[tuple[int, str, bytes]] = queue.Queue()
    for i, (corr, body) in enumerate(messages):
        work.put((i, corr, body))
    start_wall, start = time.time(), time.perf_counter()
    sent: dict[str, float] = {}
    acks: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            try:
                index, corr, body = work.get_nowait()
            except queue.Empty:
                conn.close()
                return
            started, wall = time.perf_counter(), time.time()
            if rate > 0:
                due = index / rate
                wait = start + due - started
                if wait > 0:
                    time.sleep(wait)  # pacing the offered load (a load generator, not a test)
                started, wall = start + due, start_wall + due
            conn.request("POST", "/api/hl7v2", body, {"Content-Type": CONTENT_TYPE, "X-Correlation-ID": corr})
            response = conn.getresponse()
            response.read()
            took = time.perf_counter() - started
            with lock:
                sent[corr] = wall
                acks.append(took)
                if response.status != 200:
                    failures.append(f"{corr}: HTTP {response.status}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} messages not accepted, e.g. {failures[0]}")
    return sent, acks


def wait_written_back(local: Path, expected: int, timeout: float = 600) -> None:
    repo = SqliteFhirRepository(local / "fhir.sqlite3")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            total = repo.search("Encounter", count=1).total or 0
            if total >= expected:
                return
            time.sleep(0.2)
        raise SystemExit(f"only {total} of {expected} written back within {timeout:.0f} s")
    finally:
        repo.close()


def journal_times(local: Path) -> dict[str, dict[str, float]]:
    """correlation id -> stage (qualified by subscriber) -> wall-clock seconds (first occurrence)."""
    records = SqliteRecordStore(local / "records.sqlite3")
    try:
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for rec in records.query("journal"):
            attrs = rec.value.get("attributes") or {}
            stage = str(rec.value["stage"])
            who = attrs.get("subscriber")
            name = f"{stage}@{who}" if who else stage
            at = datetime.fromisoformat(str(rec.value["at"])).timestamp()
            corr = rec.partition_key  # safe_key(correlation id): the ids used here need no escaping
            out[corr].setdefault(name, at)
        return out
    finally:
        records.close()


def run_once(
    messages: int,
    clients: int,
    idempotency: bool,
    patients: int,
    tag: str,
    rate: float = 0.0,
    profile: dict[str, Any] | None = None,
) -> dict[str, float]:
    """One host, 50 warm-up messages, then ``messages`` measured. ``profile`` (a dict) asks for the
    instrumented host (``bench/pipeline_app.py``): its per-stage window is stored there."""
    workdir = Path(tempfile.mkdtemp(prefix="tie-bench-pipeline-"))
    local = workdir / "local"
    profile_out = workdir / "profile.json" if profile is not None else None
    try:
        proc, port = start_host(local, idempotency, profile_out)
        try:
            nhs = nhs_numbers(patients)
            warm = [
                (f"warm-{tag}-{i}", adt_a01(f"W{i:06d}", nhs[i % patients], f"WV{tag}{i:06d}"))
                for i in range(50)
            ]
            send_all(port, warm, clients)
            wait_written_back(local, len(warm))
            batch = [
                (f"m-{tag}-{i}", adt_a01(f"M{i:06d}", nhs[i % patients], f"MV{tag}{i:06d}"))
                for i in range(messages)
            ]
            if profile_out is not None:
                proc.send_signal(signal.SIGUSR1)  # the measured window starts here
            t0 = time.time()
            sent, acks = send_all(port, batch, clients, rate)
            wait_written_back(local, len(warm) + messages)
            time.sleep(0.5)  # the last journal writes
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if profile is not None and profile_out is not None and profile_out.is_file():
            profile.update(json.loads(profile_out.read_text()))
            profile["messages"] = messages
        stages = journal_times(local)
        e2e: list[float] = []
        edge: list[float] = []
        ingest: list[float] = []
        writeback: list[float] = []
        last = t0
        for corr, at in sent.items():
            s = stages.get(corr, {})
            done = s.get("written-back@writeback-fhir")
            if done is None:
                continue
            last = max(last, done)
            e2e.append(done - at)
            if "acknowledged" in s and "received" in s:
                edge.append(s["acknowledged"] - s["received"])
            if "mapped" in s and "acknowledged" in s:
                ingest.append(s["mapped"] - s["acknowledged"])
            if "mapped" in s:
                writeback.append(done - s["mapped"])
        return {
            "messages": len(e2e),
            "rate": len(e2e) / max(1e-9, last - t0),
            "ack_p50": percentile(acks, 0.5) * 1000,
            "ack_p99": percentile(acks, 0.99) * 1000,
            "e2e_p50": percentile(e2e, 0.5) * 1000,
            "e2e_p99": percentile(e2e, 0.99) * 1000,
            "edge_ms": statistics.median(edge) * 1000 if edge else float("nan"),
            "ingest_ms": statistics.median(ingest) * 1000 if ingest else float("nan"),
            "writeback_ms": statistics.median(writeback) * 1000 if writeback else float("nan"),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- in-process cost breakdown ------------------------------------------------------------------------------


def _drain(
    bus: Any, topic: str, sub: str, handle: Callable[[Any], Any], sessions: bool
) -> Callable[[], None]:
    from shared.messaging.ports import NEXT_AVAILABLE_SESSION

    def run() -> None:
        while True:
            got = bus.receive(
                topic, sub, max_messages=1, session_id=NEXT_AVAILABLE_SESSION if sessions else None
            )
            if not got:
                return
            handle(got[0])
            bus.complete(got[0])
            if sessions and got[0].session_id:
                bus.release_session(topic, sub, got[0].session_id)

    return run


def _cpu(fn: Callable[[], None], n: int) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) / n * 1e6


def _components(n: int, idempotency: bool, nhs: list[str]) -> tuple[dict[str, float], str]:
    """CPU microseconds per message of each component for one mode, and (with idempotency) a profile."""
    from shared.adapters.embedded.sqlite_bus import SqliteBus
    from shared.backbone.delivery import Delivery
    from shared.backbone.runtime import WriteBackOptions, build_backbone, default_downstreams
    from shared.config.settings import Settings
    from shared.ingest import ingest
    from shared.ingest.channels import PROCESSORS
    from shared.ingest.hl7v2 import Hl7Ingest
    from shared.journal import Journal
    from shared.messaging.topology import (
        SUB_INGEST_PROCESSOR,
        SUB_WRITEBACK_FHIR,
        SUB_WRITEBACK_HL7V2,
        TOPIC_CLINICAL,
        TOPIC_INGEST,
    )

    root = Path(tempfile.mkdtemp(prefix="tie-bench-components-"))
    bus = SqliteBus(root / "bus.sqlite3")
    records = SqliteRecordStore(root / "records.sqlite3")
    fhir = SqliteFhirRepository(root / "fhir.sqlite3")
    settings = Settings.model_validate({"TIE_LOCAL_DIR": str(root)})
    bb = build_backbone(
        bus=bus,
        records=records,
        downstreams=default_downstreams(settings, fhir),
        options=WriteBackOptions(idempotency=idempotency),
    )
    tag = "with" if idempotency else "without"
    edge = Hl7Ingest(bus, records)
    context = ingest.ProcessorContext(bus=bus, journal=Journal(records))
    raws = [adt_a01(f"P{i:06d}", nhs[i % len(nhs)], f"PV{tag}{i:06d}") for i in range(n)]

    def do_edge() -> None:
        for i, raw in enumerate(raws):
            edge.handle(raw, source="http", correlation_id=f"p-{i}")

    def process(m: Any) -> None:
        d = Delivery.from_received(m)
        inbound = ingest.inbound_from_properties(
            body=d.body,
            message_id=d.message_id,
            correlation_id=d.correlation_id,
            content_type=d.content_type,
            delivery_count=d.delivery_count,
            properties=d.properties,
        )
        ingest.process(inbound, context, PROCESSORS)

    fhir_sub, hl7_sub = bb.subscriber(SUB_WRITEBACK_FHIR), bb.subscriber(SUB_WRITEBACK_HL7V2)
    row = {
        "edge (parse, validate, map, publish, ACK)": _cpu(do_edge, n),
        "ingest processor (map, publish clinical event)": _cpu(
            _drain(bus, TOPIC_INGEST, SUB_INGEST_PROCESSOR, process, False), n
        ),
    }
    profiler = cProfile.Profile()
    profiler.enable()
    row["write-back FHIR (receive, guard, FHIR writes, journal, complete)"] = _cpu(
        _drain(
            bus,
            TOPIC_CLINICAL,
            SUB_WRITEBACK_FHIR,
            lambda m: fhir_sub.handle(Delivery.from_received(m)),
            True,
        ),
        n,
    )
    profiler.disable()
    row["write-back HL7 v2 (not configured: skip)"] = _cpu(
        _drain(
            bus,
            TOPIC_CLINICAL,
            SUB_WRITEBACK_HL7V2,
            lambda m: hl7_sub.handle(Delivery.from_received(m)),
            True,
        ),
        n,
    )
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(18)
    bb.close()
    for closable in (bus, records, fhir):
        closable.close()
    shutil.rmtree(root, ignore_errors=True)
    return row, buf.getvalue()


def component_costs(n: int) -> None:
    """CPU microseconds per message of each component, one thread, no contention (where the time goes)."""
    nhs = nhs_numbers(200)
    without, _ = _components(n, False, nhs)
    with_, profile_text = _components(n, True, nhs)
    print(f"\nIn-process, one thread, {n} messages: CPU microseconds per message")
    print(f"{'component':<66}{'without':>10}{'with':>10}{'ratio':>8}")
    total_a = total_b = 0.0
    for name, b in with_.items():
        a = without[name]
        total_a, total_b = total_a + a, total_b + b
        print(f"{name:<66}{a:>10.0f}{b:>10.0f}{b / a:>8.2f}")
    print(f"{'total per message':<66}{total_a:>10.0f}{total_b:>10.0f}{total_b / total_a:>8.2f}")
    print(f"=> one core, all stages serial: {1e6 / total_b:.0f} messages/s with idempotency")
    print("\nTop functions by own time in the FHIR write-back (with idempotency):")
    print("\n".join(profile_text.splitlines()[:40]))


def _tree(stages: dict[str, dict[str, float]]) -> list[tuple[int, str, dict[str, float]]]:
    """Stages in call-tree order (callers before callees), siblings by CPU time, heaviest first."""
    children: dict[str, list[str]] = defaultdict(list)
    for key, row in stages.items():
        if row["calls"] > 0:
            parent = key.rsplit(" > ", 1)[0] if " > " in key else ""
            children[parent].append(key)
    out: list[tuple[int, str, dict[str, float]]] = []

    def walk(parent: str, depth: int) -> None:
        for key in sorted(children.get(parent, []), key=lambda k: -stages[k]["cpu_s"]):
            out.append((depth, key.rsplit(" > ", 1)[-1], stages[key]))
            walk(key, depth + 1)

    walk("", 0)
    return out


def print_profile(profile: dict[str, Any]) -> None:
    """The instrumented host's window: per-stage calls, wall and CPU per message; SQLite per message."""
    n = max(1, int(profile["messages"]))
    window = profile.get("window_s") or float("nan")
    print(
        f"\nWhere the time goes: the full `tie run` host (production mode, instrumented), {n} messages, "
        f"{window:.1f} s window. Wall time of concurrent threads adds up past the window; CPU is per thread."
    )
    print(
        f"{'stage (callees indented under their caller)':<62}"
        f"{'calls/msg':>10}{'wall ms/msg':>13}{'CPU ms/msg':>12}"
    )
    top_cpu = 0.0
    hidden = 0
    for depth, name, row in _tree(profile["stages"]):
        top_cpu += row["cpu_s"] if depth == 0 else 0.0
        if row["cpu_s"] * 1000 / n < 0.005 and row["calls"] / n < 0.5:
            hidden += 1  # timers firing a few times in the window
            continue
        label = ("  " * depth + name)[:61]
        print(
            f"{label:<62}{row['calls'] / n:>10.2f}"
            f"{row['wall_s'] * 1000 / n:>13.2f}{row['cpu_s'] * 1000 / n:>12.2f}"
        )
    if hidden:
        print(f"({hidden} stages under 0.005 CPU ms per message left out: timer functions and the like)")
    print(f"{'all top-level stages: CPU ms per message':<62}{'':>10}{'':>13}{top_cpu * 1000 / n:>12.2f}")
    if "process_cpu_s" in profile:
        whole = profile["process_cpu_s"] * 1000 / n
        print(
            f"{'whole host process (also HTTP server, timers, relays, idle polls)':<62}{'':>23}{whole:>12.2f}"
            f"  => {1000 / whole:.0f} msgs/s per busy core"
        )
    sql = profile["sqlite"]
    by_db: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    by_stage: dict[str, int] = defaultdict(int)
    for row in sql:
        acc = by_db[row["database"]]
        acc[0] += row["statements"]
        acc[1] += row["begins"]
        acc[2] += row["commits"]
        acc[3] += row["rollbacks"]
        by_stage[row["stage"]] += row["commits"]
    print(
        "\nSQLite per message (trace callback on every connection of the host; idle polling included: "
        "an empty receive is a transaction too)"
    )
    print(f"{'database':<30}{'statements':>12}{'BEGINs':>10}{'COMMITs':>10}{'ROLLBACKs':>11}")
    totals = [sum(v[i] for v in by_db.values()) for i in range(4)]
    for db, counts in [*sorted(by_db.items()), ("total", totals)]:
        print(
            f"{db:<30}" + "".join(f"{c / n:>{w}.1f}" for c, w in zip(counts, (12, 10, 10, 11), strict=True))
        )
    print(
        "COMMITs per message by top-level stage: "
        + ", ".join(
            f"{stage} {c / n:.1f}"
            for stage, c in sorted(by_stage.items(), key=lambda kv: -kv[1])
            if c / n >= 0.05
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1, help="alternating without/with rounds")
    parser.add_argument("--no-profile", action="store_true", help="skip the in-process component costs")
    parser.add_argument("--profile-messages", type=int, default=300)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also one instrumented run of the full host: per-stage breakdown and SQLite commits per message",
    )
    parser.add_argument(
        "--offered-rate",
        type=float,
        default=0.0,
        help="also one run offering messages at this rate (msgs/s; e2e latency at a fixed load)",
    )
    parser.add_argument("--offered-messages", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--workers", type=int, default=2, help="tie run --workers (default: as make run)")
    args = parser.parse_args()
    global HOST_WORKERS
    HOST_WORKERS = args.workers

    print(
        f"End to end over HTTP on `tie run --workers {args.workers}` (subprocess), {args.messages} "
        f"ADT^A01 per run, {args.clients} clients, {os.cpu_count()} CPUs"
    )
    runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    for r in range(args.rounds):
        for idempotency in (False, True):
            tag = "with" if idempotency else "without"
            runs[tag].append(run_once(args.messages, args.clients, idempotency, args.patients, f"{tag}{r}"))
    cols = ("rate", "ack_p50", "ack_p99", "e2e_p50", "e2e_p99", "edge_ms", "ingest_ms", "writeback_ms")
    head = ("msgs/s", "ACK p50", "ACK p99", "e2e p50", "e2e p99", "edge", "ingest", "write-back")
    print(f"{'mode':<10}" + "".join(f"{h:>11}" for h in head) + "   (latencies and stage medians in ms)")
    med: dict[str, dict[str, float]] = {}
    for tag in ("without", "with"):
        med[tag] = {c: statistics.median(run[c] for run in runs[tag]) for c in cols}
        print(f"{tag:<10}" + "".join(f"{med[tag][c]:>11.1f}" for c in cols))
    overhead = 100 * (med["without"]["rate"] / med["with"]["rate"] - 1)
    print(
        f"idempotency: throughput with/without = {med['with']['rate'] / med['without']['rate']:.2f} "
        f"(overhead {overhead:.1f} %), "
        f"e2e p50 ratio {med['with']['e2e_p50'] / med['without']['e2e_p50']:.2f}, "
        f"write-back stage ratio {med['with']['writeback_ms'] / med['without']['writeback_ms']:.2f}"
    )
    print(f"target >= 1,000 msgs/s end to end: {'met' if med['with']['rate'] >= 1000 else 'NOT met'}")
    out: dict[str, Any] = {"bench": "pipeline", "messages": args.messages, "clients": args.clients}
    out |= {
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "modes": med,
        "idempotency_overhead_pct": overhead,
    }
    if args.offered_rate > 0:
        paced = run_once(
            args.offered_messages, max(args.clients, 32), True, args.patients, "paced", args.offered_rate
        )
        print(
            f"offered {args.offered_rate:g} msgs/s ({args.offered_messages} messages, production mode): "
            f"e2e p50 {paced['e2e_p50']:.0f} ms, p99 {paced['e2e_p99']:.0f} ms; "
            f"ACK p99 {paced['ack_p99']:.0f} ms; "
            f"completed at {paced['rate']:.0f} msgs/s"
        )
        out["offered"] = {"rate": args.offered_rate, **paced}
    if args.profile:
        profile: dict[str, Any] = {}
        run_once(args.messages, args.clients, True, args.patients, "prof", profile=profile)
        if profile:
            print_profile(profile)
            out["profile"] = profile
        else:
            print("\n(profile: the instrumented host wrote no figures)")
    if not args.no_profile:
        component_costs(args.profile_messages)
    if args.json:
        out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
