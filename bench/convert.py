"""Benchmark: HL7 v2 -> FHIR R4 transaction Bundle JSON end to end, on one core.

The issue 4 hot path: ``parse_message`` -> ``hl7v2_in.map_message`` (lineage off) -> ``fhir_out.to_bundle``
-> ``fhir_out.serialize`` (compact JSON bytes). Validation runs in the tests and at the write boundary, not
here. Two realistic, fabricated UK messages of about 1 KB each (test-range NHS numbers, no real people):

* ``ADT^A01`` - admission with NHS number + hospital number, two names, address, telecom, GP practice,
  consultant (GMC), ward/bay/bed, visit number, NK1/AL1/DG1 segments that are not mapped;
* ``ORU^R01`` - a urea & electrolytes report: ORC/OBR with placer/filler, PV1 visit, five NM results with
  UCUM units, reference ranges and flags, and a comment.

Messages: ``--distinct N`` (default 20,000) fabricated messages per type, cycled - every message a different
patient and visit (numbers, names, address, times, results), with consultants, wards and GP practices from
small sets as in a real feed. This is the worst case for the mapper's reuse of repeated patients / visits
(``shared.mapping.hl7v2_in``, ``fhir_out``): nothing patient-level repeats. ``--distinct 1`` sends the same
message again and again (the best case, and how the issue 4 baseline of ~5,000 ADT^A01/s was measured);
a real feed, where each patient's PID recurs across the messages of their stay, lies in between.

Rows, per message type (messages per CPU-second of the benchmark process - one core; ``time.process_time``,
so time spent descheduled on a shared machine is not counted - best and median of ``--rounds`` rounds of
``--seconds`` each; compare best figures):

* ``ours``            parse + map + to_bundle + serialize (the whole conversion)
* ``  parse``, ``  parse+hl7v2_in``, ``  fhir_out+json``   parts of it timed alone (the parser splits
  segments lazily, so field splitting is paid by the first reader; ``fhir_out+json`` cycles through 2,000
  mapped events)
* ``fhir.resources``  constructing and serialising the *same* Bundle as fhir.resources R4B models
  (``Bundle.model_validate(d).model_dump_json()``), measured in the same run; ``ratio`` = ours / it

    .venv/bin/python bench/convert.py [--seconds 1] [--rounds 5] [--only adt|oru] [--distinct 20000]
        [--json .local/bench/convert.json]

Not a test: it asserts nothing (the outputs are checked in tests/unit/mapping).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.canonical.model import ClinicalEvent
from shared.hl7v2 import parse_message
from shared.mapping.fhir_out import serialize, to_bundle
from shared.mapping.hl7v2_in import map_message

ADT_A01_SEGMENTS = [
    "MSH|^~\\&|PAS|RXX01|TIE|RXX01|{ts}12||ADT^A01^ADT_A01|MSG{n:09d}|P|2.5.1|||AL|NE|GBR|UNICODE UTF-8",
    "EVN|A01|{ts}00|||C0012345^OFFICER^ADMITTING^^^DR^^^NHS|{ts}00",
    "PID|1||{nhs}^^^NHS^NH~RXX{n:07d}^^^RXX01^MR||{family}^{given}^JANE^^MS^^L~{family2}^ALEX^^^^^M||"
    "{dob}|F|||{house}&{street}^Flat {flat}^{town}^Testshire^{postcode}^GBR^H||"
    "0113496{n4}^PRN^PH~07700900{n3}^PRS^CP|0113496{n4b}^WPN^PH|ENG^English^ISO639|M^Married^HL70002|"
    "C^Church of England^HL70006|||||A^White - British^NHSETHNIC||N||||||||NSTS01",
    "PD1|||TEST SURGERY^^{gp}|G1234567^GPNAME^TEST^^^DR^^^GMP",
    "NK1|1|{family}^CHRIS^^^MR|SPO^Spouse^HL70063|{house} {street}^Flat {flat}^{town}^Testshire^{postcode}"
    "^GBR^H|07700900456^PRN^CP||NOK^Next of kin^HL70131",
    "PV1|1|I|{ward}^BAY2^BED{bed:02d}^RXX01^^^^^Ward {ward}|E|||{consultant}^CONSULTANT^TEST^^^DR^^^GMC|"
    "G1234567^GPNAME^TEST^^^DR^^^GMP||300^General Medicine^NHSSPEC||||19^Usual place of residence^NHSDD|||"
    "{consultant}^CONSULTANT^TEST^^^DR^^^GMC||VN{n:08d}^^^RXX01^VN|||||||||||||||||||||RXX01||||{ts}00",
    "PV2|||R69X^Illness unspecified^I10|||||||2|||||||||||||N",
    "AL1|1|DA|N0000145918^Penicillin^SNOMEDCT|SV^Severe^HL70128|Rash",
    "DG1|1||R69X^Illness unspecified^I10||{ts}00|A",
]

ORU_R01_SEGMENTS = [
    "MSH|^~\\&|WINPATH|RXX01|TIE|RXX01|{ts}12||ORU^R01^ORU_R01|LAB{n:09d}|P|2.5.1|||AL|NE|GBR",
    "PID|1||{nhs}^^^NHS^NH~RXX{n:07d}^^^RXX01^MR||{family}^{given}^ROSE^^MRS||{dob}|F|||"
    "{house}&{street}^^{town}^^{postcode}^GBR^H",
    "PV1|1|O|OPD1^^^RXX01||||{consultant}^PHYSICIAN^TEST^^^DR^^^GMC||||||||||||VN{n:08d}^^^RXX01^VN",
    "ORC|RE|ORD{n:07d}^ICE|LAB{n:07d}^WINPATH||CM||||{ts}00|||{consultant}^PHYSICIAN^TEST^^^DR^^^GMC",
    "OBR|1|ORD{n:07d}^ICE|LAB{n:07d}^WINPATH|UE^Urea and electrolytes^EXAMPLE-TRUST-LAB|||{ts}00|||"
    "||||||{consultant}^PHYSICIAN^TEST^^^DR^^^GMC||||||{ts}30|||F",
    "NTE|1||Sample received haemolysed; potassium may be falsely raised.",
    "OBX|1|NM|NA^Sodium^EXAMPLE-TRUST-LAB||{na}|mmol/L^^UCUM|133-146|N|||F|||{ts}00",
    "OBX|2|NM|K^Potassium^EXAMPLE-TRUST-LAB||{k}|mmol/L^^UCUM|3.5-5.3|H|||F|||{ts}00",
    "OBX|3|NM|UREA^Urea^EXAMPLE-TRUST-LAB||{urea}|mmol/L^^UCUM|2.5-7.8|N|||F|||{ts}00",
    "OBX|4|NM|CREA^Creatinine^EXAMPLE-TRUST-LAB||{crea}|umol/L^^UCUM|45-84|H|||F|||{ts}00",
    "OBX|5|NM|EGFR^eGFR^EXAMPLE-TRUST-LAB||>90|mL/min/{{1.73_m2}}|||||F|||{ts}00",
]

_FAMILIES = ("TESTPATIENT", "SAMPLE", "EXAMPLE", "DUMMY", "FICTIONAL", "MADEUP", "PRETEND", "SPECIMEN")
_GIVENS = ("ALEXANDRA", "BEATRICE", "CHARLOTTE", "DEBORAH", "ELEANOR", "FRANCES", "GEORGIA", "HANNAH")
_STREETS = ("Test Street", "Sample Road", "Example Lane", "Demo Avenue", "Mock Close", "Trial Way")
_TOWNS = ("Testtown", "Samplecity", "Exampleton", "Demoford")


def _nhs_number(i: int) -> str:
    """The i-th valid Modulus 11 number in the 999 (test) range: never a real patient's."""
    stem = 999_000_000 + i * 7
    while True:
        digits = f"{stem:09d}"
        check = 11 - sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return f"{digits}{check}"
        stem += 1


def _fill(segments: list[str], n: int) -> bytes:
    """Message ``n`` of a series: patient, visit, numbers, times and results differ; the consultant,
    wards and GP practice come from small sets, as in a real feed."""
    fields = {
        "n": n,
        "n4": f"{n % 10000:04d}",
        "n4b": f"{(n * 7) % 10000:04d}",
        "n3": f"{n % 1000:03d}",
        "ts": f"2026{1 + n % 12:02d}{1 + n % 28:02d}{n % 24:02d}{n % 60:02d}",
        "nhs": _nhs_number(n),
        "family": _FAMILIES[n % len(_FAMILIES)],
        "family2": _FAMILIES[(n // 8) % len(_FAMILIES)],
        "given": _GIVENS[(n // 3) % len(_GIVENS)],
        "dob": f"{1930 + n % 90}{1 + n % 12:02d}{1 + n % 28:02d}",
        "house": 1 + n % 200,
        "street": _STREETS[n % len(_STREETS)],
        "flat": 1 + n % 9,
        "town": _TOWNS[n % len(_TOWNS)],
        "postcode": f"LS{1 + n % 29} {n % 10}{chr(65 + n % 26)}{chr(65 + (n // 26) % 26)}",
        "gp": f"B8{2000 + n % 40}",
        "ward": f"W{1 + n % 20}",
        "bed": 1 + n % 30,
        "consultant": f"C{1234500 + n % 60}",
        "na": 130 + n % 15,
        "k": f"{3.0 + (n % 40) / 10:.1f}",
        "urea": f"{2.0 + (n % 80) / 10:.1f}",
        "crea": 40 + n % 120,
    }
    text = "\r".join(segments).format(**fields) + "\r"
    return text.encode("ascii")


def messages(kind: str, count: int) -> list[bytes]:
    """``count`` distinct fabricated messages of ``kind`` (``adt`` or ``oru``)."""
    segments = ADT_A01_SEGMENTS if kind == "adt" else ORU_R01_SEGMENTS
    return [_fill(segments, n) for n in range(count)]


def convert(raw: bytes) -> bytes:
    """The hot path: parse, map (lineage off), build the transaction Bundle, serialise it."""
    return serialize(to_bundle(map_message(parse_message(raw)).value).value)


def _fhir_out(event: ClinicalEvent) -> bytes:
    return serialize(to_bundle(event).value)


def _fhir_resources(bundle_model: Any, bundle: dict[str, Any]) -> str:
    """The same Bundle built as fhir.resources models and serialised (validation included)."""
    return str(bundle_model.model_validate(bundle).model_dump_json())


def rates(fn: Callable[[], object], seconds: float, rounds: int) -> list[float]:
    """Calls per CPU-second of this process (``time.process_time``: on a shared machine, time spent
    descheduled is not counted) in each of ``rounds`` rounds of about ``seconds`` CPU time each."""
    fn()
    out: list[float] = []
    for _ in range(rounds):
        n, start = 0, time.process_time()
        deadline = start + seconds
        while True:
            for _ in range(50):
                fn()
            n += 50
            now = time.process_time()
            if now >= deadline:
                break
        out.append(n / (now - start))
    return out


def _cycling(fn: Callable[[Any], object], items: list[Any]) -> Callable[[], object]:
    it = itertools.cycle(items)
    return lambda: fn(next(it))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one measurement round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per row (best and median printed)")
    parser.add_argument("--only", choices=("adt", "oru"), help="one message type only")
    parser.add_argument(
        "--distinct",
        type=int,
        default=20_000,
        help="distinct messages per type, cycled (1 = the same message again and again)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args()

    from fhir.resources.R4B.bundle import Bundle

    report: dict[str, Any] = {
        "bench": "convert",
        "distinct": args.distinct,
        "rounds": args.rounds,
        "types": {},
    }

    print(f"{'row':18s} {'best/s':>10s} {'median/s':>10s} {'us (best)':>10s} {'ratio':>8s}")
    for kind in ("adt", "oru"):
        if args.only and kind != args.only:
            continue
        raws = messages(kind, max(1, args.distinct))
        sample = [to_bundle(map_message(parse_message(r)).value).value for r in raws[:200]]
        size = sum(len(serialize(b)) for b in sample) // len(sample)
        mtype = "ADT^A01" if kind == "adt" else "ORU^R01"
        print(
            f"{mtype}: {len(raws):,} distinct messages of ~{sum(map(len, raws)) // len(raws)} bytes HL7 -> "
            f"{len(sample[0]['entry'])} entries, ~{size} bytes JSON"
        )
        # Each row's inputs are built just before it and dropped after it: data a row keeps alive would
        # make Python's garbage collector slower for every other row.
        results: dict[str, list[float]] = {}
        results["ours"] = rates(_cycling(convert, raws), args.seconds, args.rounds)
        results["  parse"] = rates(_cycling(parse_message, raws), args.seconds, args.rounds)
        results["  parse+hl7v2_in"] = rates(
            _cycling(lambda r: map_message(parse_message(r)), raws), args.seconds, args.rounds
        )
        events = [map_message(parse_message(r)).value for r in raws[:2000]]
        results["  fhir_out+json"] = rates(_cycling(_fhir_out, events), args.seconds, args.rounds)
        del events
        results["fhir.resources"] = rates(
            _cycling(partial(_fhir_resources, Bundle), sample), args.seconds, args.rounds
        )
        reference = max(results["fhir.resources"])
        for label, values in results.items():
            best, median = max(values), statistics.median(values)
            ratio = f"x{best / reference:7.1f}" if label in ("ours", "fhir.resources") else ""
            print(f"{label:18s} {best:10,.0f} {median:10,.0f} {1e6 / best:10.1f} {ratio:>8s}")
        report["types"][mtype] = {
            label.strip(): {"best": max(values), "median": statistics.median(values)}
            for label, values in results.items()
        }
    if args.json:
        report["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
