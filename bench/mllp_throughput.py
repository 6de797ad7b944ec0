"""MLLP round-trip throughput: messages/s (each one ACKed) over 1 and 16 concurrent connections.

Runs an in-process :class:`~shared.mllp.server.MllpServer` on an ephemeral loopback port and N
:class:`~shared.mllp.client.MllpClient` senders in the same event loop, each sending the next message only
after the previous ACK arrived (what real HL7 senders do). Client and server share one process and core,
so the numbers are a floor for the transport, not a capacity figure.

Standalone::

    .venv/bin/python bench/mllp_throughput.py --seconds 3
    .venv/bin/python bench/mllp_throughput.py --seconds 3 --handler fsync --connections 1 16 64

Plug in another handler (e.g. the real persist-before-ACK one)::

    from bench.mllp_throughput import run_benchmark
    result = run_benchmark(my_handler, connections=16, seconds=3)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

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
    """The real persist-before-ACK path: :class:`~shared.pipeline.hl7v2.Hl7Ingest` on the embedded
    defaults (SQLite bus + record store in ``directory``): parse, validate, duplicate check, publish to the
    ingest topic, remember the outcome, build the ACK. This is what ``make run``'s listener does."""
    from shared.messaging.sqlite_bus import SqliteBus
    from shared.pipeline.hl7v2 import Hl7Ingest
    from shared.storage.sqlite_records import SqliteRecordStore

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


async def arun_benchmark(handler: Handler, connections: int, seconds: float) -> BenchResult:
    """Serve with ``handler`` and hammer it from ``connections`` sequential senders for ``seconds``."""
    server = MllpServer(
        handler, host="127.0.0.1", port=0, nak_builder=generic_nak, max_connections=connections + 8
    )
    await server.start()
    latencies: list[float] = []
    try:
        clients = [MllpClient("127.0.0.1", server.port) for _ in range(connections)]
        for client in clients:
            await client.connect()
        deadline = time.perf_counter() + seconds

        async def sender(index: int, client: MllpClient) -> int:
            sent = 0
            while time.perf_counter() < deadline:
                message = SAMPLE_MESSAGE.format(ctrl=f"B{index}-{sent}").encode()
                t0 = time.perf_counter()
                ack = await client.send(message, timeout=30)
                latencies.append(time.perf_counter() - t0)
                if b"MSA|AA|" not in ack:
                    raise RuntimeError("benchmark handler did not accept a message")
                sent += 1
            return sent

        start = time.perf_counter()
        counts = await asyncio.gather(*(sender(i, c) for i, c in enumerate(clients)))
        elapsed = time.perf_counter() - start
        for client in clients:
            await client.close()
    finally:
        await server.stop(grace=5)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000 if latencies else 0.0
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0
    return BenchResult(connections, sum(counts), elapsed, p50, p99)


def run_benchmark(handler: Handler, connections: int, seconds: float) -> BenchResult:
    """Synchronous wrapper around :func:`arun_benchmark` (runs its own event loop)."""
    return asyncio.run(arun_benchmark(handler, connections, seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--handler",
        choices=["ack", "sleep", "fsync", "tie", "all"],
        default="all",
        help="ack: no work; sleep: fixed-latency fake persist; fsync: append+fsync per message; "
        "tie: the real HL7 ingest (parse, validate, publish to the embedded bus) before the ACK",
    )
    parser.add_argument("--sleep-ms", type=float, default=2.0, help="latency of the sleep handler")
    args = parser.parse_args(argv)

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
