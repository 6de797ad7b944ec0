"""The performance goals (issue 18's table), each with the figure that measures it: met / not met.

``--run DIR`` (what ``make bench`` does) runs every benchmark in ``bench/`` in turn - not the helpers other
benchmarks start (``*_app.py``) nor this file - with ``--json DIR/<bench>.json`` for the ones that feed a
goal (and ``--profile --offered-rate 200`` for ``pipeline.py``), then prints the table. ``--report DIR``
prints the table from JSON files already there. ``--quick`` runs the goal benchmarks at a small size (a
smoke run: the figures are then only indicative).

A report, not a gate: goals not met do not change the exit status; a benchmark that crashes does (1), after
the table. A goal whose figure is missing (its bench was not run, or a peer such as Medplum's server could
not run here) shows as "not measured".

    .venv/bin/python bench/goals.py --run .local/bench [--quick]
    .venv/bin/python bench/goals.py --report .local/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

#: Arguments for the benchmarks that feed goals (``--json`` is added); ``quick`` for ``--quick``.
GOAL_BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "pipeline": (
        ["--profile", "--offered-rate", "200"],
        [
            "--messages",
            "200",
            "--profile",
            "--offered-rate",
            "200",
            "--offered-messages",
            "400",
            "--no-profile",
        ],
    ),
    "mllp_throughput": ([], ["--seconds", "1", "--warmup", "0.3"]),
    "convert": ([], ["--seconds", "0.3", "--rounds", "2", "--distinct", "2000"]),
    "fhir_api": ([], ["--seconds", "1", "--rounds", "1", "--patients", "300"]),
    "hl7_parse": ([], ["--seconds", "0.5", "--only", "ours,split"]),
}


@dataclass(frozen=True)
class Goal:
    name: str
    source: str  # the bench whose JSON holds the figure
    figure: Callable[[dict[str, Any]], float]
    target: float
    higher_is_better: bool
    unit: str

    def met(self, value: float) -> bool:
        return value >= self.target if self.higher_is_better else value < self.target

    def wanted(self) -> str:
        return f"{'>=' if self.higher_is_better else '<'} {self.target:,.{_digits(self.target)}f}{self.unit}"


def _digits(x: float) -> int:
    return 0 if x >= 100 or float(x).is_integer() else 2


def _mllp(n: int, peer: str) -> Callable[[dict[str, Any]], float]:
    return lambda d: float(d["ratios"][str(n)][peer])


def _parse_ratio(d: dict[str, Any]) -> float:
    return float(d["rates"]["ours (shared.hl7v2)"] / d["rates"]["str.split floor"])


GOALS: tuple[Goal, ...] = (
    Goal(
        "pipeline HTTP -> FHIR write-back, msgs/s",
        "pipeline",
        lambda d: d["modes"]["with"]["rate"],
        1000,
        True,
        "",
    ),
    Goal(
        "pipeline e2e p50 at 200 msgs/s offered",
        "pipeline",
        lambda d: d["offered"]["e2e_p50"],
        250,
        False,
        " ms",
    ),
    Goal("idempotency overhead", "pipeline", lambda d: d["idempotency_overhead_pct"], 10, False, " %"),
    Goal(
        "MLLP 16 conns: tie run / python-hl7 (unpersisted)",
        "mllp_throughput",
        _mllp(16, "python-hl7"),
        1,
        True,
        "x",
    ),
    Goal(
        "MLLP 16 conns: tie run / Medplum (unpersisted)",
        "mllp_throughput",
        _mllp(16, "medplum"),
        1 / 3,
        True,
        "x",
    ),
    Goal(
        "MLLP 1 conn: tie run / python-hl7 (unpersisted)",
        "mllp_throughput",
        _mllp(1, "python-hl7"),
        1,
        True,
        "x",
    ),
    Goal(
        "ADT^A01 -> Bundle JSON per core, distinct patients",
        "convert",
        lambda d: d["types"]["ADT^A01"]["ours"]["best"],
        10_000,
        True,
        "/s",
    ),
    Goal(
        "ORU^R01 -> Bundle JSON per core",
        "convert",
        lambda d: d["types"]["ORU^R01"]["ours"]["best"],
        6000,
        True,
        "/s",
    ),
    Goal(
        "FHIR read-by-id / trivial endpoint",
        "fhir_api",
        lambda d: d["workloads"]["read-by-id"]["vs_trivial"],
        0.6,
        True,
        "x",
    ),
    Goal(
        "FHIR create / trivial endpoint",
        "fhir_api",
        lambda d: d["workloads"]["create"]["vs_trivial"],
        0.3,
        True,
        "x",
    ),
    Goal("FHIR create p99", "fhir_api", lambda d: d["workloads"]["create"]["p99_ms"], 50, False, " ms"),
    Goal("HL7 parse + 3 field reads / str.split floor", "hl7_parse", _parse_ratio, 0.6, True, "x"),
)


def report(directory: Path) -> int:
    """Print every goal with its figure and met / not met; the number of goals not met."""
    loaded: dict[str, dict[str, Any]] = {}
    for name in GOAL_BENCHES:
        path = directory / f"{name}.json"
        if path.is_file():
            loaded[name] = json.loads(path.read_text(encoding="utf-8"))
    print(
        f"\n== Goals (issue 18) - {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
        f"{platform.system()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"{'goal':<54}{'measured':>12}  {'target':<12}{'result':<14}")
    not_met = 0
    for goal in GOALS:
        data = loaded.get(goal.source)
        try:
            value = goal.figure(data) if data is not None else None
        except (KeyError, TypeError, ZeroDivisionError):
            value = None
        if value is None:
            shown, result = "-", "not measured"
            not_met += 1
        else:
            digits = 0 if abs(value) >= 100 else 2
            shown = f"{value:,.{digits}f}{goal.unit}"
            ok = goal.met(value)
            result = "met" if ok else "NOT met"
            not_met += 0 if ok else 1
        print(f"{goal.name:<54}{shown:>12}  {goal.wanted():<12}{result:<14}")
    for name, data in loaded.items():
        if data.get("not_run"):
            for peer, why in data["not_run"].items():
                print(f"({name}: {peer} not run: {why})")
    print(f"{len(GOALS) - not_met} of {len(GOALS)} goals met")
    return not_met


def run_all(directory: Path, quick: bool) -> int:
    """Every benchmark in turn; the number that failed."""
    directory.mkdir(parents=True, exist_ok=True)
    failed = 0
    for script in sorted(BENCH.glob("*.py")):
        name = script.stem
        if name.endswith("_app") or name.startswith("_") or script == Path(__file__).resolve():
            continue
        if quick and name not in GOAL_BENCHES:
            continue
        full, small = GOAL_BENCHES.get(name, ([], []))
        args = list(small if quick else full)
        if name in GOAL_BENCHES:
            out = directory / f"{name}.json"
            out.unlink(missing_ok=True)  # a figure from an earlier run is never reported as this run's
            args += ["--json", str(out)]
        print(f"== bench/{script.name} {' '.join(args)}", flush=True)
        done = subprocess.run([sys.executable, str(script), *args], check=False)
        if done.returncode != 0:
            print(f"== bench/{script.name} failed (exit {done.returncode})", flush=True)
            failed += 1
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--run", type=Path, metavar="DIR", help="run the benchmarks, JSON into DIR, then report"
    )
    group.add_argument("--report", type=Path, metavar="DIR", help="report from the JSON files in DIR")
    parser.add_argument(
        "--quick", action="store_true", help="with --run: the goal benchmarks only, small sizes"
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        report(args.report)
        return 0
    failed = run_all(args.run, args.quick)
    report(args.run)
    if failed:
        print(f"{failed} benchmark(s) failed to run")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
