"""MLLP round-trip throughput: messages/s (each one ACKed) over 1 and 16 concurrent connections, TIE vs peers.

Default: three servers, each in its own process (its own core), driven in turn by the same client (this
process: N :class:`~shared.mllp.client.MllpClient` senders in one event loop, each sending the next message
only after the previous ACK arrived, what real HL7 senders do), for the same time and connection counts:

* ``python-hl7``: python-hl7's asyncio MLLP server (``bench/python_hl7_app.py``), parse + ``create_ack``,
  *no persistence*;
* ``medplum``: Medplum's ``Hl7Server`` (npm ``@medplum/hl7``, ``bench/medplum_hl7/``, ``npm ci`` into
  ``.local/tools/medplum-hl7`` on first use; left out with a note when node/npm are missing), parse +
  ``buildAck``, *no persistence*;
* ``tie-run``: the full ``tie run`` host (HTTP edge, MLLP listener and every trigger, on the embedded
  defaults in a fresh directory) with persist-before-ACK - what users run.

Prints msgs/s, ACK p50/p99 and TIE's ratio to each peer per connection count. ``--json PATH`` writes the
same figures for ``bench/goals.py``.

    .venv/bin/python bench/mllp_throughput.py --seconds 3 [--connections 1 16] [--servers tie-run python-hl7]

In-process handlers (the transport floor; client and server share one process and core)::

    .venv/bin/python bench/mllp_throughput.py --handler all --seconds 3
    .venv/bin/python bench/mllp_throughput.py --handler fsync --connections 1 16 64

Plug in another handler (e.g. the real persist-before-ACK one)::

    from bench.mllp_throughput import run_benchmark
    result = run_benchmark(my_handler, connections=16, seconds=3)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.mllp.client import MllpClient
from shared.mllp.server import ConnectionInfo, MllpServer, generic_nak

Handler = Callable[[bytes, ConnectionInfo], Awaitable[bytes]]

#: A synthetic ADT^A01 (invented values, no real patient data), ~400 bytes; valid ADT_A01 order (NK1, PV1).
SAMPLE_MESSAGE = (
    "MSH|^~\\&|PAS|RXX|TIE|RXX|20240101120000||ADT^A01^ADT_A01|{ctrl}|P|2.5\r"
    "EVN|A01|20240101120000\r"
    "PID|1||9999999999^^^NHS^NH~X000001^^^RXX^MR||TESTPATIENT^ALPHA^^^MR||19700101|U|||"
    "1 TEST STREET^^TESTTOWN^^ZZ99 9ZZ^GBR||||||||||||||||||||\r"
    "NK1|1|TESTRELATIVE^GAMMA|SPO\r"
    "PV1|1|I|WARD1^BED1^^RXX||||C0000000^TESTDOCTOR^BETA|||MED||||19|||||V0000001^^^RXX^VN|||||||||||||"
    "||||||||||||20240101120000\r"
    "AL1|1|DA|TESTALLERGEN\r"
)


def _ack_for(payload: bytes) -> bytes:
    """A minimal AA that echoes MSH-10 (found by position; the bench message is well formed)."""
    msh = payload.split(b"\r", 1)[0].split(b"|")
    ctrl = msh[9] if len(msh) > 9 else b""
    return b"MSH|^~\\&|TIE|RXX|PAS|RXX|20240101120000||ACK^A01|A" + ctrl + b"|P|2.5\rMSA|AA|" + ctrl + b"\r"


async def ack_handler(payload: bytes, info: ConnectionInfo) -> bytes:
    """No work at all: measures the transport alone."""
    return _ack_for(payload)


def sleep_handler(ms: float) -> Handler:
    """Simulates a remote persist of fixed latency (e.g. a blob/table write) that does not use the CPU."""

    async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
        await asyncio.sleep(ms / 1000)
        return _ack_for(payload)

    return handler


def fsync_handler(directory: Path) -> Handler:
    """A fake persist-before-ACK: append the payload to a per-connection file and fsync it in a thread."""

    def write(conn_id: str, payload: bytes) -> None:
        with open(directory / f"{conn_id}.log", "ab") as f:
            f.write(payload + b"\n")
            f.flush()
            os.fsync(f.fileno())

    async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
        await asyncio.to_thread(write, info.connection_id, payload)
        return _ack_for(payload)

    return handler


def ingest_handler(directory: Path) -> Handler:
    """The real persist-before-ACK path: :class:`~shared.ingest.hl7v2.Hl7Ingest` on the embedded
    defaults (SQLite bus + record store in ``directory``): parse, validate, duplicate check, publish to the
    ingest topic, remember the outcome, build the ACK. This is what ``make run``'s listener does."""
    from shared.adapters.embedded.sqlite_bus import SqliteBus
    from shared.adapters.embedded.sqlite_records import SqliteRecordStore
    from shared.ingest.hl7v2 import Hl7Ingest

    ingest = Hl7Ingest(SqliteBus(directory / "bus.sqlite3"), SqliteRecordStore(directory / "records.sqlite3"))
    counter = iter(range(1 << 62))

    def handle(payload: bytes) -> bytes:
        result = ingest.handle(payload, source="bench", correlation_id=f"bench-{next(counter)}")
        assert result.ack is not None
        return result.ack

    async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
        return await asyncio.to_thread(handle, payload)

    return handler


@dataclass(frozen=True, slots=True)
class BenchResult:
    connections: int
    messages: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


async def drive(
    port: int, connections: int, seconds: float, *, tag: str = "B", host: str = "127.0.0.1"
) -> BenchResult:
    """``connections`` sequential senders against ``host:port`` for ``seconds``; every answer must be AA.

    Control ids are ``{tag}{connection}N{count}`` (short: HL7 v2.5 ST is 20 characters), so give every run
    against one persisting server its own ``tag`` or the server will (rightly) answer duplicates."""
    latencies: list[float] = []
    clients = [MllpClient(host, port) for _ in range(connections)]
    for client in clients:
        await client.connect()
    deadline = time.perf_counter() + seconds

    async def sender(index: int, client: MllpClient) -> int:
        sent = 0
        while time.perf_counter() < deadline:
            message = SAMPLE_MESSAGE.format(ctrl=f"{tag}{index}N{sent}").encode()
            t0 = time.perf_counter()
            ack = await client.send(message, timeout=30)
            latencies.append(time.perf_counter() - t0)
            if b"MSA|AA|" not in ack:
                code = ack.split(b"MSA|", 1)[-1][:2].decode("ascii", "replace")
                raise RuntimeError(f"server did not accept a message (MSA-1 {code})")
            sent += 1
        return sent

    try:
        start = time.perf_counter()
        counts = await asyncio.gather(*(sender(i, c) for i, c in enumerate(clients)))
        elapsed = time.perf_counter() - start
    finally:
        for client in clients:
            await client.close()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000 if latencies else 0.0
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0
    return BenchResult(connections, sum(counts), elapsed, p50, p99)


async def arun_benchmark(handler: Handler, connections: int, seconds: float) -> BenchResult:
    """Serve with ``handler`` in process and hammer it from ``connections`` sequential senders."""
    server = MllpServer(
        handler, host="127.0.0.1", port=0, nak_builder=generic_nak, max_connections=connections + 8
    )
    await server.start()
    try:
        return await drive(server.port, connections, seconds)
    finally:
        await server.stop(grace=5)


def run_benchmark(handler: Handler, connections: int, seconds: float) -> BenchResult:
    """Synchronous wrapper around :func:`arun_benchmark` (runs its own event loop)."""
    return asyncio.run(arun_benchmark(handler, connections, seconds))


# -- servers in their own processes -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
MEDPLUM_PACKAGE = ROOT / "bench" / "medplum_hl7"
MEDPLUM_DIR = ROOT / ".local" / "tools" / "medplum-hl7"
_MEDPLUM_FILES = ("package.json", "package-lock.json", "server.mjs")
PEERS = ("python-hl7", "medplum")
SERVERS = ("tie-run", *PEERS)


class Unavailable(RuntimeError):
    """A peer cannot run on this machine (e.g. no node/npm); the bench notes it and goes on."""


@dataclass
class External:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path | None = None

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _port_line(proc: subprocess.Popen[bytes], name: str, timeout: float = 60) -> int:
    """The first stdout line of a peer: the port it listens on."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        proc.kill()
        raise Unavailable(f"{name} did not start (exit {proc.poll()})")
    return int(line)


def _medplum_installed() -> Path:
    """``npm ci`` the pinned ``@medplum/hl7`` into ``.local/tools/medplum-hl7`` unless that copy is there."""
    stamp = "".join((MEDPLUM_PACKAGE / f).read_text(encoding="utf-8") for f in _MEDPLUM_FILES)
    marker = MEDPLUM_DIR / ".installed"
    if marker.is_file() and marker.read_text(encoding="utf-8") == stamp:
        return MEDPLUM_DIR
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise Unavailable("node/npm not found on PATH")
    MEDPLUM_DIR.mkdir(parents=True, exist_ok=True)
    for f in _MEDPLUM_FILES:
        shutil.copyfile(MEDPLUM_PACKAGE / f, MEDPLUM_DIR / f)
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--omit=peer"]
    done = subprocess.run(command, cwd=MEDPLUM_DIR, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise Unavailable(f"npm ci exited {done.returncode}: {(done.stderr or done.stdout)[-400:]}")
    marker.write_text(stamp, encoding="utf-8")
    return MEDPLUM_DIR


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: ``tie run --workers`` for the ``tie-run`` server, as ``make run`` starts the host (``--workers``).
HOST_WORKERS = 2


def start_server(name: str) -> External:
    """Start one server in its own process and wait until it listens."""
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    if name == "python-hl7":
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "python_hl7_app.py")], cwd=ROOT, **pipes
        )
        return External(name, _port_line(proc, name), proc)
    if name == "medplum":
        node = shutil.which("node")
        if node is None:
            raise Unavailable("node not found on PATH")
        where = _medplum_installed()
        proc = subprocess.Popen([node, "server.mjs"], cwd=where, **pipes)
        return External(name, _port_line(proc, name), proc)
    if name != "tie-run":
        raise ValueError(name)
    workdir = Path(tempfile.mkdtemp(prefix="tie-bench-mllp-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIE_", "TieStorage__"))}
    env.update({"TIE_LOCAL_DIR": str(workdir / "local"), "TIE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    mllp_port = _free_port()
    args = [
        sys.executable,
        "-m",
        "tie.cli",
        "run",
        "--port",
        str(_free_port()),
        "--mllp-port",
        str(mllp_port),
    ]
    args += ["--settings", "none.json", "--workers", str(HOST_WORKERS)]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = External(name, mllp_port, proc, workdir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise Unavailable(f"tie run exited early ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", mllp_port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise Unavailable("tie run did not start")


def compare(servers: list[str], connections: list[int], seconds: float, warmup: float) -> dict[str, Any]:
    """Each server in turn (a fresh process), every connection count, the same client; results + ratios."""
    results: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    for name in servers:
        try:
            server = start_server(name)
        except Unavailable as exc:
            notes[name] = str(exc)
            print(f"{name:<11} not run: {exc}")
            continue
        try:
            for run, n in enumerate(connections):
                if warmup > 0:
                    asyncio.run(drive(server.port, n, warmup, tag=f"W{run}C"))
                r = asyncio.run(drive(server.port, n, seconds, tag=f"R{run}C"))
                row = {"server": name, "connections": n, "messages": r.messages, "seconds": r.seconds}
                row |= {"per_second": r.per_second, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms}
                results.append(row)
                print(
                    f"{name:<11} {n:>5} {r.messages:>9} {r.per_second:>9.0f} "
                    f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f}",
                    flush=True,
                )
        finally:
            server.stop()
    ratios: dict[str, dict[str, float]] = {}
    rate = {(r["server"], r["connections"]): r["per_second"] for r in results}
    for n in connections:
        tie = rate.get(("tie-run", n))
        for peer in PEERS:
            other = rate.get((peer, n))
            if tie is not None and other:
                ratios.setdefault(str(n), {})[peer] = tie / other
    return {"results": results, "ratios": ratios, "not_run": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--servers", nargs="+", choices=SERVERS, default=list(SERVERS), help="servers in their own processes"
    )
    parser.add_argument(
        "--handler",
        choices=["ack", "sleep", "fsync", "tie", "all"],
        default=None,
        help="instead of the servers: an in-process handler. ack: no work; sleep: fixed-latency fake "
        "persist; fsync: append+fsync per message; tie: the real HL7 ingest (parse, validate, publish to "
        "the embedded bus) before the ACK",
    )
    parser.add_argument("--sleep-ms", type=float, default=2.0, help="latency of the sleep handler")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--workers", type=int, default=2, help="tie run --workers (default: as make run)")
    args = parser.parse_args(argv)
    global HOST_WORKERS
    HOST_WORKERS = args.workers
    if args.handler is not None:
        return in_process(args)

    print(
        f"MLLP round trip, message {len(SAMPLE_MESSAGE)} bytes, {args.seconds:g}s per run "
        f"(+{args.warmup:g}s warm-up), each server in its own process, one client process, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'server':<11} {'conns':>5} {'messages':>9} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    out = compare(args.servers, args.connections, args.seconds, args.warmup)
    for n, peers in out["ratios"].items():
        shown = ", ".join(f"{peer} {ratio:.2f}x" for peer, ratio in peers.items())
        print(f"tie-run (persist-before-ACK) / unpersisted peer, {n} connection(s): {shown}")
    if args.json:
        out |= {
            "bench": "mllp_throughput",
            "seconds": args.seconds,
            "cpus": os.cpu_count(),
            "workers": HOST_WORKERS,
        }
        out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


def in_process(args: argparse.Namespace) -> int:
    kinds = ["ack", "sleep", "fsync", "tie"] if args.handler == "all" else [args.handler]
    print(f"MLLP round trip, message {len(SAMPLE_MESSAGE)} bytes, {args.seconds:g}s per run, same process")
    print(
        f"{'handler':<14} {'conns':>5} {'messages':>9} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory(prefix="mllp-bench-") as tmp:
        for kind in kinds:
            label = f"sleep {args.sleep_ms:g}ms" if kind == "sleep" else kind
            baseline: float | None = None
            for n in args.connections:
                if kind == "ack":
                    handler: Handler = ack_handler
                elif kind == "sleep":
                    handler = sleep_handler(args.sleep_ms)
                elif kind == "tie":
                    run_dir = Path(tempfile.mkdtemp(prefix=f"tie-{n}-", dir=tmp))
                    handler = ingest_handler(run_dir)
                else:
                    handler = fsync_handler(Path(tmp))
                r = run_benchmark(handler, n, args.seconds)
                baseline = baseline or r.per_second
                ratio = r.per_second / baseline if baseline else 0.0
                print(
                    f"{label:<14} {n:>5} {r.messages:>9} {r.per_second:>9.0f} {r.p50_ms:>8.2f} "
                    f"{r.p99_ms:>8.2f} {ratio:>6.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
