"""HL7 v2 write-back fidelity: corpus message -> canonical -> the HL7 v2 the write-back sends, compared with
the original field by field.

For every corpus message that maps (``tests/hl7_corpus``) and whose event kind the HL7 v2 downstream writes
(:meth:`Hl7MllpDownstream.skip_reason`), the message the downstream would send
(:meth:`Hl7MllpDownstream.message_for`, the real write-back path) is paired with the original segment by
segment (same name, same occurrence) and each field is classed:

* ``same``     - equal after decoding escapes and dropping trailing empty components / repetitions;
* ``changed``  - both sides have a value and they differ;
* ``lost``     - the original has a value, the written message none;
* ``added``    - the written message has a value the original did not.

A segment the original has and the written message lacks counts once per field under ``lost`` (and
``SEG`` row ``lost``); the reverse under ``added``. A refused write is counted by its error code.

``python -m tests.corpus.hl7_fidelity [--profile FILE]`` prints the table; ``--json`` prints the form the
test compares (``tests/corpus/hl7_writeback_fidelity_expected.json`` for the default profile,
``hl7_writeback_fidelity_native_expected.json`` for v2.5.1 with native trigger events).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.backbone.errors import WriteBackUnmappable
from shared.backbone.hl7_profile import OutboundProfile, load_profile
from shared.backbone.hl7_writeback import Hl7MllpDownstream
from shared.canonical.model import ClinicalEvent
from shared.hl7v2 import Message, parse_message
from shared.hl7v2.escape import decode
from shared.hl7v2.parser import Segment, Separators

CLASSES = ("same", "changed", "lost", "added")
#: A fixed message time, so the written messages (and MSH-7) are reproducible.
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

Value = tuple[object, ...] | str


def _trim(parts: list[object]) -> list[object]:
    while parts and parts[-1] in ("", (), None):
        parts.pop()
    return parts


def _norm(raw: str, seps: Separators, codec: str) -> Value:
    """A field as nested tuples of decoded leaves, trailing empties dropped (``""`` when empty)."""
    reps: list[object] = []
    for rep in raw.split(seps.repetition):
        comps: list[object] = []
        for comp in rep.split(seps.component):
            subs = _trim([decode(s, seps, codec) for s in comp.split(seps.subcomponent)])
            comps.append(subs[0] if len(subs) == 1 else tuple(subs))
        trimmed = _trim(comps)
        reps.append(trimmed[0] if len(trimmed) == 1 else tuple(trimmed))
    out = _trim(reps)
    if not out:
        return ""
    if len(out) == 1 and isinstance(out[0], str):
        return out[0]
    return tuple(out)


def _fields(seg: Segment, msg: Message) -> dict[int, Value]:
    first = 3 if seg.name == "MSH" else 1  # MSH-1/2 are the delimiters, not data
    out: dict[int, Value] = {}
    for n in range(first, len(seg) + 1):
        value = _norm(seg.raw_field(n), msg.separators, msg.codec)
        if value != "":
            out[n] = value
    return out


@dataclass
class Fidelity:
    """Counts per ``SEG-n`` (and ``SEG`` for whole segments) per class, refusals per error code."""

    fields: dict[str, Counter[str]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    compared: int = 0
    by_type: Counter[str] = field(default_factory=Counter)

    def count(self, key: str, cls: str) -> None:
        self.fields.setdefault(key, Counter())[cls] += 1

    def as_json(self) -> dict[str, object]:
        return {
            "compared": self.compared,
            "by_type": dict(sorted(self.by_type.items())),
            "refused": dict(sorted(self.refused.items())),
            "fields": {
                k: {c: v[c] for c in CLASSES if v[c]} for k, v in sorted(self.fields.items(), key=_order)
            },
        }


def _order(item: tuple[str, object]) -> tuple[str, int]:
    seg, _, n = item[0].partition("-")
    return seg, int(n) if n else 0


def compare(original: Message, written: Message, into: Fidelity) -> None:
    """Add the field-by-field comparison of ``written`` against ``original`` to ``into``."""
    names = list(dict.fromkeys([s.name for s in original.segments] + [s.name for s in written.segments]))
    for name in names:
        left = original.segments_named(name)
        right = written.segments_named(name)
        for k in range(max(len(left), len(right))):
            a = _fields(left[k], original) if k < len(left) else None
            b = _fields(right[k], written) if k < len(right) else None
            if a is None or b is None:
                into.count(name, "added" if a is None else "lost")
                for n in (b if a is None else a) or {}:
                    into.count(f"{name}-{n}", "added" if a is None else "lost")
                continue
            into.count(name, "same")
            for n in sorted(set(a) | set(b)):
                if n not in b:
                    cls = "lost"
                elif n not in a:
                    cls = "added"
                else:
                    cls = "same" if a[n] == b[n] else "changed"
                into.count(f"{name}-{n}", cls)


def written_message(event: ClinicalEvent, downstream: Hl7MllpDownstream) -> Message:
    return parse_message(downstream.message_for(event, now=NOW))


def measure(profile: OutboundProfile | None = None) -> Fidelity:
    """The fidelity of the corpus (see the module docstring) under ``profile`` (default: the default one)."""
    from tests.hl7_corpus import corpus_events

    downstream = Hl7MllpDownstream(None, profile=profile)
    result = Fidelity()
    for _name, original, event in corpus_events():
        if event.kind.value not in _WRITTEN_KINDS:
            continue
        try:
            written = written_message(event, downstream)
        except WriteBackUnmappable as exc:
            result.refused[str(exc).rsplit("(", 1)[-1].rstrip(")")] += 1
            continue
        result.compared += 1
        result.by_type[
            f"{original.message_type}^{original.trigger_event} -> {written.message_type}^"
            f"{written.trigger_event}"
        ] += 1
        compare(original, written, result)
    return result


def _written_kinds() -> frozenset[str]:
    from shared.backbone import hl7_writeback as wb

    return frozenset(k.value for k in (*wb._ENCOUNTER_KINDS, *wb._PATIENT_KINDS, *wb._OTHER_KINDS))


_WRITTEN_KINDS = _written_kinds()


def render(result: Fidelity) -> str:
    lines = [
        f"messages compared: {result.compared}",
        *(f"  {k}: {v}" for k, v in sorted(result.by_type.items())),
        f"refused: {sum(result.refused.values())}",
        *(f"  {k}: {v}" for k, v in sorted(result.refused.items())),
        "",
        f"{'field':<8} {'same':>6} {'changed':>8} {'lost':>6} {'added':>6}",
    ]
    for key, counts in sorted(result.fields.items(), key=_order):
        lines.append(
            f"{key:<8} " + " ".join(f"{counts[c]:>{w}}" for c, w in zip(CLASSES, (6, 8, 6, 6), strict=True))
        )
    return "\n".join(lines)


def dumps(table: dict[str, object]) -> str:
    """The JSON form, one field row per line (reviewable diffs when a count moves)."""
    head = {k: v for k, v in table.items() if k != "fields"}
    rows = table["fields"]
    assert isinstance(rows, dict)
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in rows.items())
    return json.dumps(head, indent=1)[:-2] + ',\n "fields": {\n' + body + "\n }\n}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the JSON form the test compares")
    parser.add_argument("--profile", help="an outbound profile JSON file (default: the default profile)")
    args = parser.parse_args(argv)
    result = measure(load_profile(args.profile))
    text = dumps(result.as_json()) if args.json else render(result)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
