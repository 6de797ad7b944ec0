"""Benchmark: HL7 v2 work must grow linearly with the input (issue 12, "Quadratic validation hangs the host").

Builds an ADT^A01 whose PID-3 holds N repetitions (NHS number + local identifiers), doubling N
(500, 1000, 2000, 4000, 8000 by default), and times parse + validate and parse + validate + map. Prints
the time per repetition and the ratio of each time to the previous (half-size) one: linear work gives
~2x per doubling, quadratic ~4x. Inputs beyond the validator's repetition bound
(``shared.hl7v2.limits``: repetitions, field length) are rejected early (AR); by default the bench lifts
the bounds so the scaling of the code itself is visible; ``--limits`` keeps them in force.

    .venv/bin/python bench/hl7_scaling.py [--reps 500 1000 2000 4000 8000] [--rounds 3] [--limits]

Synthetic data only (fabricated test patient, NHS test-range number). Not a test: it asserts nothing and
always exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.hl7v2 import parse_message
from shared.hl7v2.validation import validate
from shared.mapping.errors import MappingError
from shared.mapping.hl7v2_in import map_message

MSH = "MSH|^~\\&|PAS|RXX01|TIE|RXX01|20240315143012||ADT^A01^ADT_A01|MSG000123456|P|2.5|||AL|NE"
EVN = "EVN|A01|20240315143000"
PV1 = "PV1|1|I|RXX01W12^BAY2^BED05|E" + "|" * 15 + "VN00987654^^^RXX01^VN" + "|" * 25 + "20240315142500"


def message(reps: int, variant: int = 0) -> bytes:
    """ADT^A01 whose PID-3 has ``reps`` repetitions: one NHS number, then local MRNs. ``variant`` changes
    every identifier, so no round is served from the mapper's memo of an earlier round's text."""
    ids = ["9434765919^^^NHS^NH"] + [f"RXX{variant:02d}{i:07d}^^^RXX01^MR" for i in range(1, reps)]
    pid = f"PID|1||{'~'.join(ids)}||TESTPATIENT^ALEX||19800229|F"
    return ("\r".join([MSH, EVN, pid, PV1]) + "\r").encode("ascii")


def best_time(fn: Callable[[bytes], object], reps: int, rounds: int) -> float:
    """Best of ``rounds`` runs of ``fn``, each on a fresh variant of the message (built untimed)."""
    best = float("inf")
    for variant in range(rounds):
        data = message(reps, variant)
        start = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - start)
    return best


@contextmanager
def limits_lifted(lift: bool) -> Iterator[None]:
    """Lift the repetition and length bounds (if this tree has them): measure the unbounded code path."""
    try:
        from shared.hl7v2 import limits
    except ImportError:  # older tree without bounds
        yield
        return
    saved = limits.MAX_FIELD_REPETITIONS, limits.MAX_FIELD_LENGTH
    if lift:
        limits.MAX_FIELD_REPETITIONS = limits.MAX_FIELD_LENGTH = 10**9
    try:
        yield
    finally:
        limits.MAX_FIELD_REPETITIONS, limits.MAX_FIELD_LENGTH = saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, nargs="+", default=[500, 1000, 2000, 4000, 8000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limits", action="store_true", help="keep the repetition bound in force")
    args = parser.parse_args()

    def validate_only(data: bytes) -> object:
        return validate(parse_message(data))

    def validate_and_map(data: bytes) -> object:
        msg = parse_message(data)
        validate(msg)  # mapped whatever the verdict: the bench measures the work, not the pipeline's gate
        try:
            return map_message(msg)
        except MappingError as exc:  # a mapping verdict is a result here, not a failure
            return exc

    with limits_lifted(not args.limits):
        for label, fn in (("parse+validate", validate_only), ("parse+validate+map", validate_and_map)):
            print(f"== {label}{' (bounds in force)' if args.limits else ''}")
            print(f"{'reps':>6} {'bytes':>8} {'seconds':>9} {'us/rep':>8} {'ratio':>6}")
            previous: float | None = None
            for reps in args.reps:
                size = len(message(reps))
                seconds = best_time(fn, reps, args.rounds)
                ratio = f"{seconds / previous:5.2f}x" if previous else "     -"
                print(f"{reps:>6} {size:>8} {seconds:>9.4f} {seconds / reps * 1e6:>8.2f} {ratio:>6}")
                previous = seconds
    return 0


if __name__ == "__main__":
    sys.exit(main())
