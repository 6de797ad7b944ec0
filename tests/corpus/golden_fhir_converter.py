"""Field-level comparison of our HL7 v2 -> FHIR output with Microsoft FHIR-Converter's expected output.

For every pair in ``../shared/corpora/fhir-converter/PAIRS.tsv`` we convert the input with our pipeline
(parse -> canonical -> UK Core transaction Bundle) and compare, field by field, what both sides should
carry: patient identifiers, names, birth date, gender, addresses; encounter class, period and identifiers;
observation codes, values, units and reference ranges; order codes. Microsoft's templates are US-oriented
(batch Bundle, different identifier systems, Provenance, extra resources), so values are compared in a
normalised form (e.g. identifier *values*, instants in UTC, code *values*). Known, deliberate differences
are listed in ``docs/mapping-differences.md`` and in :data:`DELIBERATE`.

Run ``python -m tests.corpus.golden_fhir_converter`` for the per-field agreement table.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

CORPORA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora").resolve()
ROOT = CORPORA / "fhir-converter"

Resource = dict[str, Any]


def resources(bundle: Resource, rtype: str) -> list[Resource]:
    return [
        e["resource"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType") == rtype
    ]


def _instant(text: str | None) -> str | None:
    """Normalise FHIR dateTime to a comparable string: UTC instant for times, the date text for dates."""
    if not text:
        return None
    if "T" not in text:
        return text
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if value.tzinfo is None:
        return text
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(Decimal(str(value)).normalize())
    except InvalidOperation:
        return str(value)


class _Subset(frozenset[str]):
    """A value that agrees when the other side's set contains it (ours <= theirs)."""


def _agrees(theirs: Any, ours: Any) -> bool:
    if isinstance(ours, _Subset) and isinstance(theirs, frozenset):
        return ours <= theirs
    return bool(theirs == ours)


def _codes(concept: Resource | None) -> frozenset[str]:
    if not concept:
        return frozenset()
    return frozenset(c.get("code") for c in concept.get("coding", []) if c.get("code"))


# ------------------------------------------------------------------------------------------ extractors
def patient_fields(bundle: Resource) -> dict[str, Any]:
    pats = resources(bundle, "Patient")
    if not pats:
        return {}
    p = pats[0]
    names = p.get("name", [])
    addresses = p.get("address", [])
    ids = frozenset(i.get("value") for i in p.get("identifier", []) if i.get("value"))
    first_address = addresses[0] if addresses else {}
    return {
        "patient.identifier.values": ids,
        # What both sides should carry: every identifier we emit (PID-2/3/4, NHS number) is also in theirs.
        # Theirs add US-only PID-19/PID-20 and GT1/IN1 identifiers (deliberately not mapped here).
        "patient.identifier.ours-in-theirs": _Subset(ids),
        "patient.name": tuple((n.get("family"), tuple(n.get("given", []))) for n in names),
        # The first (legal) name: family and the first two given names.
        "patient.name.primary": (names[0].get("family"), tuple(names[0].get("given", []))[:2])
        if names
        else None,
        "patient.birthDate": p.get("birthDate"),
        "patient.gender": p.get("gender"),
        "patient.address": tuple(
            (tuple(a.get("line", [])), a.get("city"), a.get("postalCode"), a.get("country"))
            for a in addresses
        ),
        # City (trimmed), postcode and country of the first address.
        "patient.address.place": (
            (
                (first_address.get("city") or "").strip() or None,
                first_address.get("postalCode"),
                first_address.get("country"),
            )
            if addresses
            else None
        ),
    }


def encounter_fields(bundle: Resource) -> dict[str, Any]:
    encs = resources(bundle, "Encounter")
    if not encs:
        return {}
    e = encs[0]
    period = e.get("period") or {}
    cls = e.get("class") or {}
    return {
        "encounter.class": cls.get("code"),
        "encounter.period.start": _instant(period.get("start")),
        "encounter.period.end": _instant(period.get("end")),
        "encounter.identifier.values": frozenset(
            i.get("value") for i in e.get("identifier", []) if i.get("value")
        ),
    }


def _obs_key(o: Resource) -> frozenset[str]:
    return _codes(o.get("code"))


def observation_fields(bundle: Resource) -> dict[str, Any]:
    out: dict[str, Any] = {}
    obs = resources(bundle, "Observation")
    if not obs:
        return out
    out["observation.codes"] = frozenset(c for o in obs for c in _obs_key(o))
    values = set()
    units = set()
    ranges = set()
    for o in obs:
        key = tuple(sorted(_obs_key(o)))
        if "valueQuantity" in o:
            values.add((key, _num(o["valueQuantity"].get("value"))))
            if o["valueQuantity"].get("unit") or o["valueQuantity"].get("code"):
                units.add((key, o["valueQuantity"].get("unit") or o["valueQuantity"].get("code")))
        elif "valueString" in o:
            values.add((key, o["valueString"].strip()))
        for r in o.get("referenceRange", []):
            ranges.add(
                (
                    key,
                    _num((r.get("low") or {}).get("value")),
                    _num((r.get("high") or {}).get("value")),
                    (r.get("text") or "").strip() or None,
                )
            )
    out["observation.values"] = frozenset(values)
    out["observation.units"] = frozenset(units)
    out["observation.referenceRange"] = frozenset(ranges)
    return out


def order_fields(bundle: Resource) -> dict[str, Any]:
    srs = resources(bundle, "ServiceRequest")
    if not srs:
        return {}
    return {"order.codes": frozenset(c for s in srs for c in _codes(s.get("code")))}


EXTRACTORS: tuple[Callable[[Resource], dict[str, Any]], ...] = (
    patient_fields,
    encounter_fields,
    observation_fields,
    order_fields,
)


def extract(bundle: Resource) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for extractor in EXTRACTORS:
        fields.update(extractor(bundle))
    return fields


# ------------------------------------------------------------------------------------------ comparison
@dataclass
class FieldStats:
    agree: int = 0
    differ: int = 0
    only_theirs: int = 0
    only_ours: int = 0
    examples: list[str] = field(default_factory=list)
    #: file name -> "differ" | "theirs-only" | "ours-only", for every pair that does not agree.
    disagreements: dict[str, str] = field(default_factory=dict)

    @property
    def compared(self) -> int:
        return self.agree + self.differ

    @property
    def agreement(self) -> float:
        return self.agree / self.compared if self.compared else 1.0


@dataclass
class Report:
    pairs: int = 0
    converted: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldStats] = field(default_factory=lambda: defaultdict(FieldStats))

    def table(self) -> str:
        lines = [
            f"FHIR-Converter golden comparison: {self.converted}/{self.pairs} pairs converted",
            f"{'field':<34} {'agree':>6} {'differ':>6} {'theirs only':>11} {'ours only':>9} {'agreement':>9}",
        ]
        for name in sorted(self.fields):
            s = self.fields[name]
            counts = f"{s.agree:>6} {s.differ:>6} {s.only_theirs:>11} {s.only_ours:>9}"
            lines.append(f"{name:<34} {counts} {s.agreement:>9.0%}")
        for name, reason in sorted(self.failures.items()):
            lines.append(f"not converted: {name}: {reason}")
        return "\n".join(lines)


def pairs() -> list[tuple[str, Path, Path]]:
    with (ROOT / "PAIRS.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(r["message_type"], ROOT / r["input"], ROOT / r["expected"]) for r in rows]


def compare(convert: Callable[[bytes], Resource], selected: Iterable[str] | None = None) -> Report:
    report = Report()
    wanted = set(selected) if selected else None
    for message_type, src, expected in pairs():
        if wanted is not None and message_type not in wanted:
            continue
        report.pairs += 1
        name = src.name
        try:
            ours = convert(src.read_bytes())
        except Exception as exc:
            report.failures[name] = f"{type(exc).__name__}: {getattr(exc, 'code', '')}"
            continue
        report.converted += 1
        theirs = json.loads(expected.read_text(encoding="utf-8"))
        a, b = extract(theirs), extract(ours)
        for key in set(a) | set(b):
            stats = report.fields[key]
            va, vb = a.get(key), b.get(key)
            if not va and not vb:
                continue
            if va and not vb:
                stats.only_theirs += 1
                stats.disagreements[name] = "theirs-only"
            elif vb and not va:
                stats.only_ours += 1
                stats.disagreements[name] = "ours-only"
            elif _agrees(va, vb):
                stats.agree += 1
            else:
                stats.differ += 1
                stats.disagreements[name] = "differ"
                if len(stats.examples) < 3:
                    stats.examples.append(name)
    return report


def our_converter() -> Callable[[bytes], Resource]:
    from shared.hl7v2 import parse_message
    from shared.mapping.fhir_out import to_bundle
    from shared.mapping.hl7v2_in import map_message

    def convert(raw: bytes) -> Resource:
        event = map_message(parse_message(raw)).value
        return to_bundle(event).value

    return convert


if __name__ == "__main__":
    print(compare(our_converter()).table())
