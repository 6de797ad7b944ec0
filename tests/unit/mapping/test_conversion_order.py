"""No conversion depends on what was converted before it (issue 19 item 4, ``docs/speed-code.md``).

HL7 v2 -> canonical -> FHIR transaction Bundle, lineage off and on: the Bundle JSON and both lineage
lists must be byte for byte the same whether a message is converted first, last, alone after every memo
is emptied, or in a fresh interpreter; and a caller changing a returned Bundle in place must not change
any later conversion.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.hl7v2 import parse_message
from shared.mapping.fhir_out import serialize, to_bundle
from shared.mapping.fhir_out._bundle import clear_caches as clear_fhir_out_ids
from shared.mapping.hl7v2_in import map_message
from tests.hl7_corpus import FHIR_OUT_REFUSED, corpus_events

ROOT = Path(__file__).resolve().parents[3]


def _bench_messages(count: int) -> list[tuple[str, bytes]]:
    from bench.convert import messages

    return [
        (f"bench-{kind}-{i}", raw) for kind in ("adt", "oru") for i, raw in enumerate(messages(kind, count))
    ]


def _sender_variants() -> list[tuple[str, bytes]]:
    """One message from two senders, its hospital number without an assigning authority: the same field
    text then means each sender's namespace, so a memo by the text alone would be wrong."""
    (_, raw), *_ = _bench_messages(1)
    text = raw.decode("ascii").replace("^^^RXX01^MR", "^^^^MR")
    return [
        (f"sender-{site}", text.replace("|RXX01|TIE|", f"|{site}|TIE|").encode()) for site in ("RA1", "RB2")
    ]


def _corpus_messages() -> list[tuple[str, bytes]]:
    out = []
    for name, message, _event in corpus_events():
        if name not in FHIR_OUT_REFUSED:
            out.append((name, message.to_er7().encode("utf-8")))
    return out


def convert(raw: bytes) -> bytes:
    """Bundle JSON + lineage (HL7 -> canonical and canonical -> FHIR), lineage off and on."""
    parts: list[bytes] = []
    for lineage in (False, True):
        mapped = map_message(parse_message(raw), lineage=lineage)
        bundle = to_bundle(mapped.value, lineage=lineage)
        parts += [serialize(bundle.value), repr(mapped.lineage).encode(), repr(bundle.lineage).encode()]
    return b"\x00".join(parts)


def clear_memos() -> None:
    """Empty every memo the conversion path keeps (what a fresh process starts with)."""
    from shared import terminology
    from shared.hl7v2 import parser, paths
    from shared.mapping.hl7v2_in import _memo, mapper, rules

    for compiled in (rules.RULES, rules.STRICT_RULES):
        compiled.memo.clear()
        for rule in compiled.coded.values():
            rule.memo.clear()
            rule.values.clear()
            rule._cache.clear()
    _memo._TIMES.clear()
    _memo._quoted.cache_clear()
    mapper._SOURCES.clear()
    parser._header_cache.clear()
    parser._charset_cache.clear()
    parser._ok_prefixes.clear()
    paths._READ_KEYS.clear()
    clear_fhir_out_ids()
    terminology.clear_caches()


def _digests(items: list[tuple[str, bytes]]) -> dict[str, str]:
    return {name: hashlib.sha256(convert(raw)).hexdigest() for name, raw in items}


@pytest.mark.corpus
def test_output_does_not_depend_on_what_was_converted_before() -> None:
    items = _sender_variants() + _corpus_messages() + _bench_messages(30)
    assert len(items) >= 100
    forward = _digests(items)
    backward = _digests(items[::-1])
    shuffled = list(items)
    random.Random(19).shuffle(shuffled)
    mixed = _digests(shuffled)
    alone = {}
    for name, raw in items:
        clear_memos()
        alone[name] = hashlib.sha256(convert(raw)).hexdigest()
    assert forward == backward == mixed == alone


_FRESH = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from tests.unit.mapping.test_conversion_order import convert
items = json.loads(sys.stdin.read())
print(json.dumps({name: hashlib.sha256(convert(raw.encode("latin-1"))).hexdigest() for name, raw in items}))
"""


def test_a_fresh_process_gives_the_same_bytes() -> None:
    items = _bench_messages(15)
    random.Random(4).shuffle(items)
    warm = _digests(items + items[::-1])  # this process has converted plenty by now
    payload = json.dumps([(name, raw.decode("latin-1")) for name, raw in items[:8]])
    run = subprocess.run(
        [sys.executable, "-c", _FRESH, str(ROOT)], input=payload, capture_output=True, text=True, check=True
    )
    fresh = json.loads(run.stdout)
    assert fresh == {name: warm[name] for name, _raw in items[:8]}


def _scribble(node: Any) -> None:
    """Change every container of a JSON tree in place (what a careless caller might do)."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if isinstance(value, dict | list):
                _scribble(value)
            else:
                node[key] = f"changed-{value}"
        node["scribbled"] = True
    elif isinstance(node, list):
        for value in node:
            _scribble(value)
        node.append({"scribbled": True})


def test_changing_a_returned_bundle_changes_no_later_conversion() -> None:
    items = _bench_messages(3)
    items += items  # the same messages again: same patients, wards, consultants, codes, times
    expected = {
        name: serialize(to_bundle(map_message(parse_message(raw)).value).value) for name, raw in items
    }
    for name, raw in items:
        bundle = to_bundle(map_message(parse_message(raw)).value).value
        assert serialize(bundle) == expected[name]
        _scribble(bundle)  # every part of a returned bundle is the caller's to change
    for name, raw in items:
        assert serialize(to_bundle(map_message(parse_message(raw)).value).value) == expected[name], name
