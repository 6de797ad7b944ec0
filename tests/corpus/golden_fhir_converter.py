"""Field-level comparison of our HL7 v2 -> FHIR output with Microsoft FHIR-Converter's expected output.

Every one of the 72 pairs in ``../shared/corpora/fhir-converter/PAIRS.tsv`` counts. Each pair has an
expected outcome in :data:`OUTCOMES` (converts, or rejected with a named mapping error); a pair we reject
contributes "only theirs" for every field their output carries. Per field and pair the result is one of
*agree*, *differ*, *only ours*, *only theirs* (or nothing on either side, not counted), and the agreement
figure is ``agree / (agree + differ + only ours + only theirs)``: one-sided pairs are in the denominator.

"Full" fields compare the whole element (every name with use, given names, prefix, suffix and period;
every address with all its parts, untrimmed; ...). The only normalisations are semantic: dateTimes with an
offset are compared as UTC instants, decimals by value, repeated elements as multisets (order ignored),
both sides' namespaces for a sender's local code system read as one. Display texts, identifier *systems*
and assigners are not compared (theirs are ``example.com`` placeholders). "Relaxed"
fields are the looser views an earlier version of this comparison reported; they are printed separately and
labelled as such. Why fields differ: ``docs/mapping-differences.md``.

``python -m tests.corpus.golden_fhir_converter`` prints the tables; ``--write`` rewrites the snapshot
``golden_fhir_converter_expected.json`` that ``test_golden_fhir_converter.py`` compares exactly.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

CORPORA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora").resolve()
ROOT = CORPORA / "fhir-converter"
SNAPSHOT = Path(__file__).with_name("golden_fhir_converter_expected.json")

Resource = dict[str, Any]

# ------------------------------------------------------------------------------------------ outcomes
CONVERTS = "converts"
_UNSUPPORTED_TYPE = "rejected: UnsupportedMessageType mapping-unsupported-message-type at MSH-9 (ERR 200)"
_UNSUPPORTED_EVENT = "rejected: UnsupportedEvent mapping-unsupported-event at MSH-9 (ERR 201)"

#: The expected outcome of every pair, written by hand (not generated): "converts", or the mapping error
#: class, its reason code, the field it names and its HL7 table 0357 code. Each rejection is explained in
#: docs/mapping-differences.md. A pair that starts or stops converting fails the test until this table,
#: the docs and the snapshot are updated together.
OUTCOMES: dict[str, str] = {
    "ADT-A01-01.hl7": CONVERTS,
    "ADT-A01-02.hl7": CONVERTS,
    "ADT01-23.hl7": CONVERTS,
    "ADT01-28.hl7": "rejected: MissingRequiredField mapping-missing-field at PV1-19 (ERR 101)",
    "ADT-A02-01.hl7": CONVERTS,
    "ADT-A02-02.hl7": CONVERTS,
    "ADT-A03-01.hl7": CONVERTS,
    "ADT-A03-02.hl7": CONVERTS,
    "ADT-A04-01.hl7": CONVERTS,
    "ADT-A04-02.hl7": CONVERTS,
    "ADT04-23.hl7": "rejected: UnmappedSourceCode mapping-unmapped-code at PID-13[1].3 (ERR 103)",
    "ADT04-251.hl7": "rejected: MissingRequiredField mapping-missing-field at PV1-19 (ERR 101)",
    "ADT04-28.hl7": CONVERTS,
    "ADT-A08-01.hl7": CONVERTS,
    "ADT-A08-02.hl7": CONVERTS,
    "ADT-A11-01.hl7": CONVERTS,
    "ADT-A11-02.hl7": CONVERTS,
    "ADT-A13-01.hl7": "rejected: MissingRequiredField mapping-missing-field at PV1-45 (ERR 101)",
    "ADT-A13-02.hl7": CONVERTS,
    "ADT-A28-01.hl7": CONVERTS,
    "ADT-A28-02.hl7": CONVERTS,
    "ADT-A31-01.hl7": CONVERTS,
    "ADT-A31-02.hl7": CONVERTS,
    "ADT-A40-01.hl7": CONVERTS,
    "ADT-A40-02.hl7": "rejected: InvalidValue mapping-invalid-value at PID(2) (ERR 207)",
    "ORU-R01-01.hl7": CONVERTS,
    "LAB-ORU-1.hl7": CONVERTS,
    "LAB-ORU-2.hl7": CONVERTS,
    "LRI_2.0-NG_CBC_Typ_Message.hl7": CONVERTS,
    "ORU-R01-RMGEAD.hl7": CONVERTS,
    "ORM-O01-01.hl7": CONVERTS,
    "ORM-O01-02.hl7": CONVERTS,
    "ORM-O01-03.hl7": CONVERTS,
    "ORM-O01-04.hl7": _UNSUPPORTED_EVENT,
    "ORM-O01-05.hl7": _UNSUPPORTED_EVENT,
    "ORM-O01-06.hl7": _UNSUPPORTED_EVENT,
    "OML-O21-01.hl7": _UNSUPPORTED_TYPE,
    "OML-O21-02.hl7": CONVERTS,
    "OML-O21-03.hl7": _UNSUPPORTED_TYPE,
    "MDHHS-OML-O21-1.hl7": _UNSUPPORTED_TYPE,
    "MDHHS-OML-O21-2.hl7": _UNSUPPORTED_TYPE,
    "MDM-T01-01.hl7": _UNSUPPORTED_TYPE,
    "MDM-T01-02.hl7": _UNSUPPORTED_TYPE,
    "MDM-T02-01.hl7": _UNSUPPORTED_TYPE,
    "MDM-T02-02.hl7": _UNSUPPORTED_TYPE,
    "MDM-T02-03.hl7": _UNSUPPORTED_TYPE,
    "MDM-T05-01.hl7": _UNSUPPORTED_TYPE,
    "MDM-T05-02.hl7": _UNSUPPORTED_TYPE,
    "MDM-T06-01.hl7": _UNSUPPORTED_TYPE,
    "MDM-T06-02.hl7": _UNSUPPORTED_TYPE,
    "MDM-T09-01.hl7": _UNSUPPORTED_TYPE,
    "MDM-T09-02.hl7": _UNSUPPORTED_TYPE,
    "MDM-T10-01.hl7": _UNSUPPORTED_TYPE,
    "MDM-T10-02.hl7": _UNSUPPORTED_TYPE,
    "SIU-S12-01.hl7": _UNSUPPORTED_TYPE,
    "SIU-S12-02.hl7": _UNSUPPORTED_TYPE,
    "SIU-S13-01.hl7": _UNSUPPORTED_TYPE,
    "SIU-S13-02.hl7": _UNSUPPORTED_TYPE,
    "SIU-S14-01.hl7": _UNSUPPORTED_TYPE,
    "SIU-S14-02.hl7": _UNSUPPORTED_TYPE,
    "SIU-S15-01.hl7": _UNSUPPORTED_TYPE,
    "SIU-S15-02.hl7": _UNSUPPORTED_TYPE,
    "SIU-S16-01.hl7": _UNSUPPORTED_TYPE,
    "SIU-S16-02.hl7": _UNSUPPORTED_TYPE,
    "SIU-S17-01.hl7": _UNSUPPORTED_TYPE,
    "SIU-S17-02.hl7": _UNSUPPORTED_TYPE,
    "SIU-S26-01.hl7": _UNSUPPORTED_TYPE,
    "SIU-S26-02.hl7": _UNSUPPORTED_TYPE,
    "VXU-V04-01.hl7": _UNSUPPORTED_TYPE,
    "VXU-V04-02.hl7": _UNSUPPORTED_TYPE,
    "VXU.hl7": _UNSUPPORTED_TYPE,
    "IZ_1_1.1_Admin_Child_Max_Message.hl7": _UNSUPPORTED_TYPE,
}


class Rejected(Exception):
    """Raised by a converter for a message it rejects as a permanent error (the outcome text in
    :data:`OUTCOMES` form). A converter raises only this; anything else is a bug and propagates."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


# ------------------------------------------------------------------------------------------ normalising
def resources(bundle: Resource, rtype: str) -> list[Resource]:
    return [
        e["resource"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType") == rtype
    ]


def _instant(text: str | None) -> str | None:
    """A dateTime with an offset as a UTC instant; a date, or a time without offset, as written."""
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
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _num(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return format(Decimal(str(value)).normalize(), "f")
    except InvalidOperation:
        return str(value)


def _multiset(items: Iterable[Any]) -> tuple[Any, ...]:
    """Repeated elements compared regardless of order (but with multiplicity)."""
    return tuple(sorted(items, key=repr))


def _period(p: Resource | None) -> tuple[str | None, str | None] | None:
    if not p:
        return None
    return (_instant(p.get("start")), _instant(p.get("end")))


#: Each side's namespace for a sender's local coding system (CWE.3 not a known system): both name the
#: same thing, "the sender's local system called X", so both are read as ``local:X``.
_LOCAL_SYSTEM_PREFIXES = ("http://example.com/v2-to-fhir-converter/CodeSystem/", "urn:tie:codesystem:")


def _system(system: str | None) -> str | None:
    for prefix in _LOCAL_SYSTEM_PREFIXES:
        if system and system.startswith(prefix):
            return "local:" + system[len(prefix) :]
    return system


def _codings(concept: Resource | None) -> tuple[tuple[str | None, str | None], ...]:
    """A CodeableConcept as its (system, code) pairs; display and text are not compared."""
    if not concept:
        return ()
    return _multiset(
        (_system(c.get("system")), c.get("code")) for c in concept.get("coding", []) if c.get("code")
    )


def _code_values(concept: Resource | None) -> tuple[str, ...]:
    if not concept:
        return ()
    return tuple(sorted({c["code"] for c in concept.get("coding", []) if c.get("code")}))


def _identifiers(items: Iterable[Resource]) -> tuple[Any, ...]:
    """Identifier value and type codes; system and assigner are not compared (see module docstring)."""
    return _multiset((i.get("value"), _code_values(i.get("type"))) for i in items if i.get("value"))


def _quantity(q: Resource | None) -> tuple[Any, ...] | None:
    if not q:
        return None
    return (_num(q.get("value")), q.get("unit"), q.get("system"), q.get("code"))


def _value(o: Resource) -> Any:
    """An Observation's value[x] in full (quantity with unit and code, text unstripped, codings)."""
    if "valueQuantity" in o:
        return ("Quantity", _quantity(o["valueQuantity"]))
    if "valueCodeableConcept" in o:
        return ("CodeableConcept", _codings(o["valueCodeableConcept"]))
    if "valueDateTime" in o:
        return ("dateTime", _instant(o["valueDateTime"]))
    if "valuePeriod" in o:
        return ("Period", _period(o["valuePeriod"]))
    if "valueRange" in o:
        r = o["valueRange"]
        return ("Range", _quantity(r.get("low")), _quantity(r.get("high")))
    if "valueRatio" in o:
        r = o["valueRatio"]
        return ("Ratio", _quantity(r.get("numerator")), _quantity(r.get("denominator")))
    for key, value in sorted(o.items()):
        if key.startswith("value"):
            return (key[5:], json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value)
    return None


# ------------------------------------------------------------------------------------------ extractors
# Each extractor returns field name -> comparable value; an empty value (None, "", ()) means "absent".
def patient_fields(bundle: Resource) -> dict[str, Any]:
    pats = resources(bundle, "Patient")
    if not pats:
        return {}
    p = pats[0]
    names = p.get("name", [])
    addresses = p.get("address", [])
    deceased: Any = None
    if "deceasedBoolean" in p:
        deceased = ("boolean", p["deceasedBoolean"])
    elif "deceasedDateTime" in p:
        deceased = ("dateTime", _instant(p["deceasedDateTime"]))
    return {
        "patient.identifier": _identifiers(p.get("identifier", [])),
        "patient.name": _multiset(
            (
                n.get("use"),
                n.get("family"),
                tuple(n.get("given", [])),
                tuple(n.get("prefix", [])),
                tuple(n.get("suffix", [])),
                _period(n.get("period")),
            )
            for n in names
        ),
        "patient.telecom": _multiset(
            (t.get("system"), t.get("value"), t.get("use")) for t in p.get("telecom", [])
        ),
        "patient.birthDate": p.get("birthDate"),
        "patient.gender": p.get("gender"),
        "patient.address": _multiset(
            (
                a.get("use"),
                a.get("type"),
                tuple(a.get("line", [])),
                a.get("city"),
                a.get("district"),
                a.get("state"),
                a.get("postalCode"),
                a.get("country"),
                _period(a.get("period")),
            )
            for a in addresses
        ),
        "patient.deceased": deceased,
        "patient.maritalStatus": _codings(p.get("maritalStatus")),
    }


def encounter_fields(bundle: Resource) -> dict[str, Any]:
    encs = resources(bundle, "Encounter")
    if not encs:
        return {}
    e = encs[0]
    cls = e.get("class") or {}
    return {
        "encounter.class": (cls.get("system"), cls.get("code")) if cls.get("code") else None,
        "encounter.status": e.get("status"),
        "encounter.period": _period(e.get("period")),
        "encounter.identifier": _identifiers(e.get("identifier", [])),
    }


def observation_fields(bundle: Resource) -> dict[str, Any]:
    obs = resources(bundle, "Observation")
    if not obs:
        return {}

    def key(o: Resource) -> tuple[str, ...]:
        return _code_values(o.get("code"))

    return {
        "observation.code": _multiset(_codings(o.get("code")) for o in obs),
        "observation.value": _multiset((key(o), _value(o)) for o in obs if _value(o) is not None),
        "observation.status": _multiset((key(o), o.get("status")) for o in obs),
        "observation.effective": _multiset(
            (key(o), _instant(o.get("effectiveDateTime"))) for o in obs if o.get("effectiveDateTime")
        ),
        "observation.interpretation": _multiset(
            (key(o), _multiset(_codings(c) for c in o["interpretation"]))
            for o in obs
            if o.get("interpretation")
        ),
        "observation.referenceRange": _multiset(
            (
                key(o),
                _multiset(
                    (_quantity(r.get("low")), _quantity(r.get("high")), r.get("text"))
                    for r in o["referenceRange"]
                ),
            )
            for o in obs
            if o.get("referenceRange")
        ),
    }


def report_fields(bundle: Resource) -> dict[str, Any]:
    reps = resources(bundle, "DiagnosticReport")
    if not reps:
        return {}
    return {
        "diagnosticReport.code": _multiset(_codings(r.get("code")) for r in reps),
        "diagnosticReport.status": _multiset(r.get("status") for r in reps),
    }


def order_fields(bundle: Resource) -> dict[str, Any]:
    srs = resources(bundle, "ServiceRequest")
    if not srs:
        return {}
    return {
        "serviceRequest.code": _multiset(_codings(s.get("code")) for s in srs),
        "serviceRequest.status": _multiset(s.get("status") for s in srs),
        "serviceRequest.intent": _multiset(s.get("intent") for s in srs),
        "serviceRequest.identifier": _identifiers(i for s in srs for i in s.get("identifier", [])),
    }


def relaxed_fields(bundle: Resource) -> dict[str, Any]:
    """The looser views reported before: NOT full-field agreement, printed and stored separately."""
    out: dict[str, Any] = {}
    pats = resources(bundle, "Patient")
    if pats:
        p = pats[0]
        names = p.get("name", [])
        addresses = p.get("address", [])
        first = addresses[0] if addresses else {}
        out["patient.name (first name: family + first two given)"] = (
            (names[0].get("family"), tuple(names[0].get("given", []))[:2]) if names else None
        )
        out["patient.address (first address: city trimmed, postcode, country)"] = (
            ((first.get("city") or "").strip() or None, first.get("postalCode"), first.get("country"))
            if addresses
            else None
        )
        out["patient.identifier (values; ours a subset of theirs)"] = _Subset(
            i["value"] for i in p.get("identifier", []) if i.get("value")
        )
    encs = resources(bundle, "Encounter")
    if encs:
        period = encs[0].get("period") or {}
        out["encounter.period.start (start only)"] = _instant(period.get("start"))
        out["encounter.identifier (values only)"] = frozenset(
            i["value"] for i in encs[0].get("identifier", []) if i.get("value")
        )
    obs = resources(bundle, "Observation")
    if obs:
        out["observation.code (code values only)"] = frozenset(
            c for o in obs for c in _code_values(o.get("code"))
        )
        values = set()
        for o in obs:
            if "valueQuantity" in o:
                values.add((_code_values(o.get("code")), _num(o["valueQuantity"].get("value"))))
            elif "valueString" in o:
                values.add((_code_values(o.get("code")), o["valueString"].strip()))
        out["observation.value (number or trimmed text only)"] = frozenset(values)
    srs = resources(bundle, "ServiceRequest")
    if srs:
        out["serviceRequest.code (code values only)"] = frozenset(
            c for s in srs for c in _code_values(s.get("code"))
        )
    return out


class _Subset(frozenset[str]):
    """A relaxed value that agrees when the other side's set contains it (ours <= theirs)."""


FULL_EXTRACTORS: tuple[Callable[[Resource], dict[str, Any]], ...] = (
    patient_fields,
    encounter_fields,
    observation_fields,
    report_fields,
    order_fields,
)


def extract(bundle: Resource) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for extractor in FULL_EXTRACTORS:
        fields.update(extractor(bundle))
    return fields


# ------------------------------------------------------------------------------------------ comparison
AGREE, DIFFER, ONLY_OURS, ONLY_THEIRS = "agree", "differ", "only-ours", "only-theirs"
COLUMNS = (AGREE, DIFFER, ONLY_OURS, ONLY_THEIRS)


def _status(theirs: Any, ours: Any) -> str | None:
    if not theirs and not ours:
        return None
    if not ours:
        return ONLY_THEIRS
    if not theirs:
        return ONLY_OURS
    if isinstance(ours, _Subset):
        return AGREE if ours <= theirs else DIFFER
    return AGREE if theirs == ours else DIFFER


@dataclass
class Report:
    #: pair file name -> outcome text ("converts" or "rejected: ...").
    outcomes: dict[str, str] = field(default_factory=dict)
    #: "full" / "relaxed" -> field -> pair -> status (pairs where neither side has the field are absent).
    statuses: dict[str, dict[str, dict[str, str]]] = field(
        default_factory=lambda: {"full": {}, "relaxed": {}}
    )

    @property
    def pairs(self) -> int:
        return len(self.outcomes)

    @property
    def converted(self) -> int:
        return sum(1 for o in self.outcomes.values() if o == CONVERTS)

    def counts(self, view: str) -> dict[str, dict[str, int]]:
        out = {}
        for name, per_pair in sorted(self.statuses[view].items()):
            c = Counter(per_pair.values())
            out[name] = {col: c[col] for col in COLUMNS}
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "_comment": (
                "Snapshot of tests/corpus/golden_fhir_converter.py over all 72 FHIR-Converter pairs, "
                "compared exactly by test_golden_fhir_converter.py. Regenerate deliberately (python -m "
                "tests.corpus.golden_fhir_converter --write) and explain the diff in the commit."
            ),
            "pairs": self.pairs,
            "converted": self.converted,
            "outcomes": dict(sorted(self.outcomes.items())),
            "full": self.counts("full"),
            "relaxed": self.counts("relaxed"),
            "not_agreeing": {
                view: {
                    name: dict(sorted((p, s) for p, s in per_pair.items() if s != AGREE))
                    for name, per_pair in sorted(self.statuses[view].items())
                }
                for view in ("full", "relaxed")
            },
        }

    def table(self) -> str:
        def block(view: str, title: str) -> list[str]:
            width = max(len(n) for n in self.statuses[view]) if self.statuses[view] else 10
            cols = f"{'agree':>6} {'differ':>6} {'only ours':>9} {'only theirs':>11} {'agreement':>9}"
            head = f"{'field':<{width}} {cols}"
            lines = [title, head]
            for name, c in self.counts(view).items():
                seen = sum(c.values())
                pct = f"{c[AGREE] / seen:.0%}" if seen else "-"
                counts = f"{c[AGREE]:>6} {c[DIFFER]:>6} {c[ONLY_OURS]:>9} {c[ONLY_THEIRS]:>11}"
                lines.append(f"{name:<{width}} {counts} {pct:>9}")
            return lines

        lines = [
            f"FHIR-Converter golden comparison: {self.converted}/{self.pairs} pairs convert "
            "(a rejected pair counts as 'only theirs' for every field their output has)",
            "agreement = agree / (agree + differ + only ours + only theirs)",
            "",
            *block("full", "FULL-FIELD (whole element; identifier systems not compared)"),
            "",
            *block("relaxed", "RELAXED (looser views, NOT full-field agreement)"),
            "",
            "Outcomes of pairs that do not convert:",
        ]
        lines += [f"  {name}: {o}" for name, o in sorted(self.outcomes.items()) if o != CONVERTS]
        return "\n".join(lines)


def pairs() -> list[tuple[str, Path, Path]]:
    with (ROOT / "PAIRS.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(r["message_type"], ROOT / r["input"], ROOT / r["expected"]) for r in rows]


def compare(convert: Callable[[bytes], Resource]) -> Report:
    """Convert every pair; ``convert`` raises :class:`Rejected` (only) for a message it refuses."""
    report = Report()
    for _message_type, src, expected in pairs():
        name = src.name
        try:
            ours: Resource = convert(src.read_bytes())
        except Rejected as rejected:
            report.outcomes[name] = rejected.outcome
            ours = {}
        else:
            report.outcomes[name] = CONVERTS
        theirs = json.loads(expected.read_text(encoding="utf-8"))
        for view, get in (("full", extract), ("relaxed", relaxed_fields)):
            a, b = get(theirs), get(ours)
            for key in set(a) | set(b):
                status = _status(a.get(key), b.get(key))
                if status is not None:
                    report.statuses[view].setdefault(key, {})[name] = status
    return report


def our_converter() -> Callable[[bytes], Resource]:
    from shared.hl7v2 import parse_message
    from shared.hl7v2.errors import Hl7ParseError
    from shared.mapping.errors import MappingError
    from shared.mapping.fhir_out import to_bundle
    from shared.mapping.hl7v2_in import map_message

    def convert(raw: bytes) -> Resource:
        try:
            event = map_message(parse_message(raw)).value
            return to_bundle(event).value
        except (MappingError, Hl7ParseError) as exc:  # the permanent rejections an ACK AE/AR reports
            where = getattr(exc, "field", None)
            at = f" at {where}" if where else ""
            raise Rejected(
                f"rejected: {type(exc).__name__} {exc.code}{at} (ERR {getattr(exc, 'error_code', '?')})"
            ) from exc

    return convert


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="rewrite the snapshot JSON")
    args = parser.parse_args(argv)
    report = compare(our_converter())
    print(report.table())
    if args.write:
        SNAPSHOT.write_text(
            json.dumps(report.snapshot(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"wrote {SNAPSHOT.name}")


if __name__ == "__main__":
    main()
