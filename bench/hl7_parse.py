"""Benchmark: parse a ~1 KB ADT^A01 and read PID-3, PID-5, PV1-19.

Compares shared.hl7v2 with hl7apy, python-hl7 and a plain ``str.split`` floor (no validation, no escape
handling: the lower bound for any pure-Python ER7 parser). Prints msg/s and the ratio to ours.

    .venv/bin/python bench/hl7_parse.py [--seconds 2] [--only ours,split] [--json .local/bench/hl7_parse.json]

The message is synthetic (fabricated test patient, NHS test-range number).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.hl7v2 import parse_message

SEGMENTS = [
    "MSH|^~\\&|PAS|RXX01|TIE|RXX01|20240315143012||ADT^A01^ADT_A01|MSG000123456|P|2.5|||AL|NE|GBR|"
    "UNICODE UTF-8",
    "EVN|A01|20240315143000|||C0012345^OFFICER^ADMITTING^^^DR^^^NHS|20240315142500",
    "PID|1||9434765919^^^NHS^NH~RXX0012345^^^RXX01^MR||TESTPATIENT^ALEXANDRA^JANE^^MS^^L~BLOGGS^ALEX^^^^^N||"
    "19800229|F|||12 TEST STREET^FLAT 3^TESTTOWN^TESTSHIRE^LS1 4AP^GBR^H||"
    "01134960000^PRN^PH~07700900123^ORN^CP|01134960999^WPN^PH|ENG^English^ISO639|M^Married^HL70002|"
    "C^Church of England^HL70006|||||A^White - British^NHSDD||N|||||||||",
    "PD1|||TEST SURGERY^^B86016|G1234567^GPNAME^TEST^^^DR^^^GMC",
    "NK1|1|TESTPATIENT^CHRIS^^^MR|SPO^Spouse^HL70063|12 TEST STREET^FLAT 3^TESTTOWN^TESTSHIRE^LS1 4AP^GBR^H|"
    "07700900456^PRN^CP||NOK^Next of kin^HL70131",
    "PV1|1|I|RXX01W12^BAY2^BED05^RXX01^^^^^Ward 12|21^Emergency^HL70007|||"
    "C1234567^CONSULTANT^TEST^^^DR^^^GMC|"
    "G1234567^GPNAME^TEST^^^DR^^^GMC||300^General Medicine^NHSSPEC||||19^Usual place of residence^NHSDD|||"
    "C1234567^CONSULTANT^TEST^^^DR^^^GMC||VN00987654^^^RXX01^VN|||||||||||||||||||||RXX01||||||"
    "20240315142500",
    "PV2|||R69X^Illness unspecified^I10|||||||2|||||||||||||N",
    "AL1|1|DA|N0000145918^Penicillin^SNOMEDCT|SV^Severe^HL70128|Rash",
    "DG1|1||R69X^Illness unspecified^I10||20240315143000|A",
]
ADT_A01 = ("\r".join(SEGMENTS) + "\r").encode("ascii")


def ours(data: bytes) -> tuple[object, ...]:
    msg = parse_message(data)
    return msg["PID-3"], msg["PID-5"], msg["PV1-19"]


def ours_parse_only(data: bytes) -> tuple[object, ...]:
    return (parse_message(data),)


def plain_split(data: bytes) -> tuple[object, ...]:
    segs = data.decode("utf-8").split("\r")
    found: dict[str, list[str]] = {}
    for s in segs:
        if s[:3] == "PID" or s[:3] == "PV1":
            found[s[:3]] = s.split("|")
    pid, pv1 = found["PID"], found["PV1"]
    return pid[3].split("~")[0].split("^")[0], pid[5].split("~")[0].split("^")[0], pv1[19].split("^")[0]


def python_hl7() -> Callable[[bytes], tuple[object, ...]] | None:
    try:
        import hl7
    except ImportError:
        return None

    def run(data: bytes) -> tuple[object, ...]:
        msg = hl7.parse(data.decode("utf-8"))
        return (
            str(msg.extract_field("PID", 1, 3, 1, 1)),
            str(msg.extract_field("PID", 1, 5, 1, 1)),
            str(msg.extract_field("PV1", 1, 19, 1, 1)),
        )

    return run


def hl7apy_runner() -> Callable[[bytes], tuple[object, ...]] | None:
    try:
        from hl7apy.parser import parse_message as apy_parse
    except ImportError:
        return None

    def run(data: bytes) -> tuple[object, ...]:
        msg = apy_parse(data.decode("utf-8"), find_groups=False)
        return (
            msg.pid.pid_3.cx_1.value,
            msg.pid.pid_5.xpn_1.value,
            msg.pv1.pv1_19.cx_1.value,
        )

    return run


def measure(fn: Callable[[bytes], tuple[object, ...]], seconds: float) -> tuple[float, tuple[object, ...]]:
    result = fn(ADT_A01)  # warm-up (caches, imports)
    count = 0
    batch = 50
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn(ADT_A01)
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            break
    return count / (now - start), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per parser (default 2)")
    parser.add_argument(
        "--only", default="", help="comma-separated subset: ours,parse,hl7apy,python-hl7,split"
    )
    parser.add_argument("--json", type=Path, help="also write the figures (msg/s per parser) as JSON")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    candidates: dict[str, Callable[[bytes], tuple[object, ...]] | None] = {
        "ours (shared.hl7v2)": ours,
        "ours, parse only": ours_parse_only,
        "hl7apy": hl7apy_runner(),
        "python-hl7": python_hl7(),
        "str.split floor": plain_split,
    }
    keys = {
        "ours": "ours (shared.hl7v2)",
        "parse": "ours, parse only",
        "hl7apy": "hl7apy",
        "python-hl7": "python-hl7",
        "split": "str.split floor",
    }
    chosen = [k.strip() for k in args.only.split(",") if k.strip()]
    if any(k not in keys for k in chosen):
        parser.error(f"--only accepts: {','.join(keys)}")
    wanted = {keys[k] for k in chosen} or set(candidates)
    print(f"message: {len(ADT_A01)} bytes, {len(SEGMENTS)} segments; {args.seconds:.1f}s per parser")
    results: dict[str, float] = {}
    expected = ours(ADT_A01)
    for name, fn in candidates.items():
        if name not in wanted:
            continue
        if fn is None:
            print(f"{name:26s} not installed")
            continue
        rate, values = measure(fn, args.seconds)
        if fn is not ours_parse_only and values != expected:
            print(f"{name:26s} WARNING: read different values")
        results[name] = rate
    base = results.get("ours (shared.hl7v2)")
    print(f"{'parser':26s} {'msg/s':>12s} {'rate/ours':>10s} {'ours faster by':>15s}")
    for name, rate in results.items():
        ratio = f"{rate / base:9.2f}x" if base else "         -"
        speedup = f"{base / rate:14.1f}x" if base else "             -"
        print(f"{name:26s} {rate:12,.0f} {ratio} {speedup}")
    if args.json:
        out = {"bench": "hl7_parse", "seconds": args.seconds, "rates": results}
        out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
