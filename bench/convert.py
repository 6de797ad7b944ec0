"""Benchmark: HL7 v2 -> FHIR R4 transaction Bundle JSON end to end, on one core.

The issue 4 hot path: ``parse_message`` -> ``hl7v2_in.map_message`` (lineage off) -> ``fhir_out.to_bundle``
-> ``fhir_out.serialize`` (compact JSON bytes). Validation runs in the tests and at the write boundary, not
here. Two realistic, fabricated UK messages of about 1 KB each (test-range NHS numbers, no real people):

* ``ADT^A01`` - admission with NHS number + hospital number, two names, address, telecom, GP practice,
  consultant (GMC), ward/bay/bed, visit number, NK1/AL1/DG1 segments that are not mapped;
* ``ORU^R01`` - a urea & electrolytes report: ORC/OBR with placer/filler, PV1 visit, five NM results with
  UCUM units, reference ranges and flags, and a comment.

Rows, per message type (messages/s, best and median of ``--rounds`` rounds of ``--seconds`` each; the
machine is shared, so compare best figures):

* ``ours``            parse + map + to_bundle + serialize (the whole conversion)
* ``  parse``, ``  hl7v2_in``, ``  fhir_out+json``   the same three stages timed alone (the parser
  splits segments lazily, so field splitting is paid by the first reader: ``hl7v2_in`` maps an already
  read message here, and the stages add up to less than ``ours``)
* ``fhir.resources``  constructing and serialising the *same* Bundle as fhir.resources R4B models
  (``Bundle.model_validate(d).model_dump_json()``), measured in the same run; ``ratio`` = ours / it

    .venv/bin/python bench/convert.py [--seconds 1] [--rounds 5] [--only adt|oru]

Not a test: it asserts nothing (the outputs are checked in tests/unit/mapping).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.canonical.model import ClinicalEvent
from shared.hl7v2 import parse_message
from shared.mapping.fhir_out import serialize, to_bundle
from shared.mapping.hl7v2_in import map_message

ADT_A01_SEGMENTS = [
    "MSH|^~\\&|PAS|RXX01|TIE|RXX01|20260315143012||ADT^A01^ADT_A01|MSG000123456|P|2.5.1|||AL|NE|GBR|"
    "UNICODE UTF-8",
    "EVN|A01|20260315143000|||C0012345^OFFICER^ADMITTING^^^DR^^^NHS|20260315142500",
    "PID|1||9434765919^^^NHS^NH~RXX0012345^^^RXX01^MR||TESTPATIENT^ALEXANDRA^JANE^^MS^^L~BLOGGS^ALEX^^^^^N||"
    "19800229|F|||12&Test Street^Flat 3^Testtown^Testshire^LS1 4AP^GBR^H||"
    "01134960000^PRN^PH~07700900123^ORN^CP|01134960999^WPN^PH|ENG^English^ISO639|M^Married^HL70002|"
    "C^Church of England^HL70006|||||A^White - British^NHSETHNIC||N|||||||||",
    "PD1|||TEST SURGERY^^B86016|G1234567^GPNAME^TEST^^^DR^^^GMP",
    "NK1|1|TESTPATIENT^CHRIS^^^MR|SPO^Spouse^HL70063|12 TEST STREET^FLAT 3^TESTTOWN^TESTSHIRE^LS1 4AP^GBR^H|"
    "07700900456^PRN^CP||NOK^Next of kin^HL70131",
    "PV1|1|I|W12^BAY2^BED05^RXX01^^^^^Ward 12|E|||C1234567^CONSULTANT^TEST^^^DR^^^GMC|"
    "G1234567^GPNAME^TEST^^^DR^^^GMP||300^General Medicine^NHSSPEC||||19^Usual place of residence^NHSDD|||"
    "C1234567^CONSULTANT^TEST^^^DR^^^GMC||VN00987654^^^RXX01^VN|||||||||||||||||||||RXX01||||"
    "20260315142500",
    "PV2|||R69X^Illness unspecified^I10|||||||2|||||||||||||N",
    "AL1|1|DA|N0000145918^Penicillin^SNOMEDCT|SV^Severe^HL70128|Rash",
    "DG1|1||R69X^Illness unspecified^I10||20260315143000|A",
]

ORU_R01_SEGMENTS = [
    "MSH|^~\\&|WINPATH|RXX01|TIE|RXX01|20260316091512||ORU^R01^ORU_R01|LAB000098765|P|2.5.1|||AL|NE|GBR",
    "PID|1||9449305552^^^NHS^NH~RXX0054321^^^RXX01^MR||TESTPATIENT^BEATRICE^ROSE^^MRS||19621103|F|||"
    "4&Sample Road^^Testville^^TE5 7ST^GBR^H",
    "PV1|1|O|OPD1^^^RXX01||||C7654321^PHYSICIAN^TEST^^^DR^^^GMC||||||||||||VN00123987^^^RXX01^VN",
    "ORC|RE|ORD778899^ICE|LAB445566^WINPATH||CM||||20260316080000|||C7654321^PHYSICIAN^TEST^^^DR^^^GMC",
    "OBR|1|ORD778899^ICE|LAB445566^WINPATH|UE^Urea and electrolytes^EXAMPLE-TRUST-LAB|||20260316081500|||"
    "||||||C7654321^PHYSICIAN^TEST^^^DR^^^GMC||||||20260316091000|||F",
    "NTE|1||Sample received haemolysed; potassium may be falsely raised.",
    "OBX|1|NM|NA^Sodium^EXAMPLE-TRUST-LAB||138|mmol/L^^UCUM|133-146|N|||F|||20260316081500",
    "OBX|2|NM|K^Potassium^EXAMPLE-TRUST-LAB||5.9|mmol/L^^UCUM|3.5-5.3|H|||F|||20260316081500",
    "OBX|3|NM|UREA^Urea^EXAMPLE-TRUST-LAB||6.1|mmol/L^^UCUM|2.5-7.8|N|||F|||20260316081500",
    "OBX|4|NM|CREA^Creatinine^EXAMPLE-TRUST-LAB||88|umol/L^^UCUM|45-84|H|||F|||20260316081500",
    "OBX|5|NM|EGFR^eGFR^EXAMPLE-TRUST-LAB||>90|mL/min/{1.73_m2}|||||F|||20260316081500",
]


def _message(segments: list[str]) -> bytes:
    return ("\r".join(segments) + "\r").encode("ascii")


MESSAGES: dict[str, bytes] = {"adt": _message(ADT_A01_SEGMENTS), "oru": _message(ORU_R01_SEGMENTS)}


def convert(raw: bytes) -> bytes:
    """The hot path: parse, map (lineage off), build the transaction Bundle, serialise it."""
    return serialize(to_bundle(map_message(parse_message(raw)).value).value)


def _fhir_out(event: ClinicalEvent) -> bytes:
    return serialize(to_bundle(event).value)


def _fhir_resources(bundle_model: Any, bundle: dict[str, Any]) -> str:
    """The same Bundle built as fhir.resources models and serialised (validation included)."""
    return str(bundle_model.model_validate(bundle).model_dump_json())


def rates(fn: Callable[[], object], seconds: float, rounds: int) -> list[float]:
    """Calls/s of each of ``rounds`` rounds of about ``seconds`` each."""
    fn()
    out: list[float] = []
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(50):
                fn()
            n += 50
            now = time.perf_counter()
            if now >= deadline:
                break
        out.append(n / (now - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one measurement round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per row (best and median printed)")
    parser.add_argument("--only", choices=tuple(MESSAGES), help="one message type only")
    args = parser.parse_args()

    from fhir.resources.R4B.bundle import Bundle

    print(f"{'row':18s} {'best/s':>10s} {'median/s':>10s} {'us (best)':>10s} {'ratio':>8s}")
    for name, raw in MESSAGES.items():
        if args.only and name != args.only:
            continue
        msg = parse_message(raw)
        event = map_message(msg).value
        bundle = to_bundle(event).value
        size = len(serialize(bundle))
        mtype = "ADT^A01" if name == "adt" else "ORU^R01"
        print(f"{mtype}: {len(raw)} bytes HL7 -> {len(bundle['entry'])} entries, {size} bytes JSON")
        rows: list[tuple[str, Callable[[], object]]] = [
            ("ours", partial(convert, raw)),
            ("  parse", partial(parse_message, raw)),
            ("  hl7v2_in", partial(map_message, msg)),
            ("  fhir_out+json", partial(_fhir_out, event)),
            ("fhir.resources", partial(_fhir_resources, Bundle, bundle)),
        ]
        results = {label: rates(fn, args.seconds, args.rounds) for label, fn in rows}
        reference = max(results["fhir.resources"])
        for label, values in results.items():
            best, median = max(values), statistics.median(values)
            ratio = f"x{best / reference:7.1f}" if label in ("ours", "fhir.resources") else ""
            print(f"{label:18s} {best:10,.0f} {median:10,.0f} {1e6 / best:10.1f} {ratio:>8s}")


if __name__ == "__main__":
    main()
