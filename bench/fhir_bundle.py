"""Benchmark: canonical ADT^A01 / ORU^R01 event -> FHIR transaction Bundle -> bytes, and validation.

Rows (bundles/s, and the ratio to "map+serialize"):

* ``map``            shared.mapping.fhir_out.to_bundle (plain dicts, lineage off)
* ``map+serialize``  ... + shared.fhir.json.dumps (orjson when installed, else the stdlib encoder)
* ``map+lineage``    to_bundle(lineage=True)
* ``serialize/json`` the stdlib encoder alone (what runs when orjson is absent)
* ``fhir.resources`` building the same Bundle as fhir.resources R4B models and serialising it
  (``Bundle.model_validate(d).model_dump_json()``) - the path the mapper deliberately avoids
* ``validate/own``   shared.fhir.validation.validate_bundle(structural=False)
* ``validate/full``  validate_bundle (fhir.resources R4B structure + own checks)
* ``hl7->canonical``  (a01 only, when shared.mapping.hl7v2_in is present) parse + map a ~0.5 KB ADT^A01
* ``hl7->fhir bytes`` ... + to_bundle + serialize: the end-to-end hot path (lineage off)

    .venv/bin/python bench/fhir_bundle.py [--seconds 1] [--event a01|oru]

Events are the fabricated ones the unit tests use (tests/unit/mapping/fhir_out/fhirout_events.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.fhir import json as fjson
from shared.fhir.validation import validate_bundle
from shared.mapping.fhir_out import serialize, to_bundle
from tests.unit.mapping.fhir_out import fhirout_events


def rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            fn()
        n += 20
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--event", choices=("a01", "oru"), default="a01")
    args = ap.parse_args()
    event = fhirout_events.adt_a01() if args.event == "a01" else fhirout_events.oru_r01()

    from fhir.resources.R4B.bundle import Bundle

    bundle = to_bundle(event).value
    size = len(serialize(bundle))
    rows: list[tuple[str, Callable[[], object]]] = [
        ("map", lambda: to_bundle(event)),
        ("map+serialize", lambda: serialize(to_bundle(event).value)),
        ("map+lineage", lambda: to_bundle(event, lineage=True)),
        ("serialize/json", lambda: fjson._dumps_stdlib(bundle)),
        ("fhir.resources", lambda: Bundle.model_validate(bundle).model_dump_json()),
        ("validate/own", lambda: validate_bundle(bundle, structural=False)),
        ("validate/full", lambda: validate_bundle(bundle)),
    ]
    if args.event == "a01":
        try:
            from shared.mapping.hl7v2_in import map_bytes
        except ImportError:
            map_bytes = None
        if map_bytes is not None:
            from tests.fixtures.hl7_messages import adt_a01

            raw = adt_a01()
            rows.append(("hl7->canonical", lambda: map_bytes(raw)))
            rows.append(("hl7->fhir bytes", lambda: serialize(to_bundle(map_bytes(raw).value).value)))
    print(f"event {args.event}: {len(bundle['entry'])} entries, {size} bytes, json backend {fjson.BACKEND}")
    results = {name: rate(fn, args.seconds) for name, fn in rows}
    base = results["map+serialize"]
    for name, per_s in results.items():
        print(f"{name:16s} {per_s:10.0f} /s   {1e6 / per_s:8.1f} us   x{per_s / base:6.2f}")


if __name__ == "__main__":
    main()
