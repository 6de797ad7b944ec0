"""Benchmark: cost of the idempotency guard on the embedded SQLite store (with vs without).

Effects measured, each over N distinct clinical-event keys (first deliveries) plus one repeat per key:

* ``noop``      the effect does nothing: the guard's absolute cost per call;
* ``writeback`` the effect upserts one ~2 KB record into the embedded store (a stand-in for writing a
                FHIR resource to the embedded FHIR store): the ratio that matters for the pipeline;
* ``+outbox``   ``writeback`` through ``run_and_publish`` with one message via the transactional outbox
                to the embedded bus, against the same effect publishing directly.

Prints per-call microseconds and the with/without ratio; asserts nothing (issue 6 targets < 15%
idempotency overhead end to end; the real pipeline measurement is ``bench/pipeline.py``).

    .venv/bin/python bench/idempotency_overhead.py [--n 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.idempotency import IdempotencyConfig, IdempotencyGuard, RecordStorePersistence, WithMessages
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SubscriptionSpec, TopicSpec
from shared.outbox import Outbox, OutboxMessage

RESOURCE = {"resourceType": "Encounter", "status": "in-progress", "text": "x" * 2000}
TOPIC = "clinical-events"


def timed(n: int, call: Callable[[int], object], offset: int = 0) -> float:
    """Microseconds per call of ``call(i)`` for ``i`` in ``offset .. offset + n``."""
    start = time.perf_counter()
    for i in range(offset, offset + n):
        call(i)
    return (time.perf_counter() - start) / n * 1e6


def compare(
    rounds: int, n: int, without: Callable[[int], object], with_: Callable[[int], object]
) -> tuple[float, float]:
    """Median per-call time of each side over ``rounds`` interleaved rounds (fresh keys every round):
    the machine is shared, so single runs are noisy (WAL checkpoints, other processes)."""
    a: list[float] = []
    b: list[float] = []
    for r in range(rounds):
        a.append(timed(n, without, r * n))
        b.append(timed(n, with_, r * n))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.n, args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        records = SqliteRecordStore(Path(tmp) / "records.sqlite3")
        bus = SqliteBus(Path(tmp) / "bus.sqlite3", (TopicSpec(TOPIC, (SubscriptionSpec("audit"),)),))
        outbox = Outbox(records)
        guard = IdempotencyGuard(
            RecordStorePersistence(records), IdempotencyConfig(namespace="bench"), outbox=outbox, bus=bus
        )

        def writeback(i: int, tag: str) -> dict[str, str]:
            records.upsert("fhir", tag, f"Encounter-{i}", RESOURCE)
            return {"id": f"Encounter/{i}"}

        def message(i: int, tag: str) -> OutboundMessage:
            return OutboundMessage(body=b'{"event":"admission"}', message_id=f"{tag}-admission-{i}")

        rows: list[tuple[str, float, float]] = []
        # warm-up (tables, connections)
        guard.run("warm", None, lambda: None)
        writeback(0, "warm")

        rows.append(
            (
                "noop (first delivery)",
                *compare(rounds, n, lambda i: None, lambda i: guard.run(f"noop-{i}", {"k": i}, lambda: None)),
            )
        )
        rows.append(
            (
                "noop (duplicate: stored result)",
                *compare(rounds, n, lambda i: None, lambda i: guard.run(f"noop-{i}", {"k": i}, lambda: None)),
            )
        )
        rows.append(
            (
                "writeback",
                *compare(
                    rounds,
                    n,
                    lambda i: writeback(i, "plain"),
                    lambda i: guard.run(f"wb-{i}", {"k": i}, lambda: writeback(i, "guarded")),
                ),
            )
        )

        def direct(i: int) -> None:
            writeback(i, "direct")
            bus.publish(TOPIC, [message(i, "direct")])

        def through_outbox(i: int) -> None:
            guard.run_and_publish(
                f"ob-{i}",
                {"k": i},
                lambda: WithMessages(writeback(i, "outbox"), [OutboxMessage(TOPIC, message(i, "outbox"))]),
            )

        rows.append(("writeback + publish (outbox)", *compare(rounds, n, direct, through_outbox)))
        bus.close()
        records.close()

    print(
        f"idempotency guard overhead on SQLite: median of {rounds} rounds x {n} calls (microseconds per call)"
    )
    print(f"{'case':34} {'without':>10} {'with':>10} {'added':>10} {'ratio':>7}")
    for name, without, with_ in rows:
        ratio = f"{with_ / without:6.2f}x" if without >= 1 else "   n/a"
        print(f"{name:34} {without:10.1f} {with_:10.1f} {with_ - without:10.1f} {ratio}")


if __name__ == "__main__":
    main()
