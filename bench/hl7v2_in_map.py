"""Benchmark: HL7 v2 ADT^A01 (~1 KB) -> canonical ClinicalEvent with shared.mapping.hl7v2_in.

Prints maps/s for: map only (message parsed once), parse + map (the ingest hot path, lineage off), map
with lineage on, and the ratio of each to parse + map. Best of several rounds (the machine is shared).

    .venv/bin/python bench/hl7v2_in_map.py [--seconds 1]

The message is synthetic (fabricated test patient, NHS test-range number). Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.hl7v2 import parse_message
from shared.mapping.hl7v2_in import map_message

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
    "PV1|1|I|RXX01W12^BAY2^BED05^RXX01^^^^^Ward 12|E|||"
    "C1234567^CONSULTANT^TEST^^^DR^^^GMC|"
    "G1234567^GPNAME^TEST^^^DR^^^GMC||300^General Medicine^NHSSPEC||||19^Usual place of residence^NHSDD|||"
    "C1234567^CONSULTANT^TEST^^^DR^^^GMC||VN00987654^^^RXX01^VN|||||||||||||||||||||RXX01||||"
    "20240315142500",
    "PV2|||R69X^Illness unspecified^I10|||||||2|||||||||||||N",
    "AL1|1|DA|N0000145918^Penicillin^SNOMEDCT|SV^Severe^HL70128|Rash",
    "DG1|1||R69X^Illness unspecified^I10||20240315143000|A",
]
ADT_A01 = ("\r".join(SEGMENTS) + "\r").encode("ascii")


def rate(fn: Callable[[], object], seconds: float, rounds: int = 5) -> float:
    """Best calls/s over ``rounds`` rounds of about ``seconds / rounds`` each."""
    best = 0.0
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(100):
                fn()
            n += 100
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    msg = parse_message(ADT_A01)
    map_message(msg)  # warm the rules' memo and the concept-map caches
    rows = [
        ("parse + map (lineage off)", rate(lambda: map_message(parse_message(ADT_A01)), args.seconds)),
        ("map only, parsed once", rate(lambda: map_message(msg), args.seconds)),
        ("map with lineage", rate(lambda: map_message(msg, lineage=True), args.seconds)),
    ]
    base = rows[0][1]
    print(f"ADT^A01 of {len(ADT_A01)} bytes")
    for name, per_second in rows:
        print(f"{name:28s} {per_second:10,.0f} /s  {1e6 / per_second:7.1f} us  x{per_second / base:4.2f}")


if __name__ == "__main__":
    main()
