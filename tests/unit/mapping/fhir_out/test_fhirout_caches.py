"""fhir_out's memoised ids never change what a bundle says: a bundle built after others equals a fresh
build, and bundles share no container (see also tests/unit/mapping/test_conversion_order.py)."""

from __future__ import annotations

import pytest

from shared.hl7v2 import parse_message
from shared.mapping.fhir_out import FhirOutError, serialize, to_bundle
from shared.mapping.fhir_out._bundle import clear_caches
from shared.mapping.hl7v2_in import map_message
from tests.hl7_corpus import FHIR_OUT_REFUSED, corpus_events
from tests.unit.mapping.fhir_out import fhirout_events


def _events() -> list[object]:
    from bench.convert import messages

    out: list[object] = [fhirout_events.adt_a01(), fhirout_events.oru_r01()]
    for kind in ("adt", "oru"):
        out += [map_message(parse_message(raw)).value for raw in messages(kind, 40)]
    return out


def _fresh(event: object) -> bytes:
    clear_caches()
    return serialize(to_bundle(event).value)  # type: ignore[arg-type]


def test_cached_bundles_equal_fresh_ones() -> None:
    events = _events()
    fresh = [_fresh(e) for e in events]
    for _ in range(2):  # the second round is served from the caches the first filled
        assert [serialize(to_bundle(e).value) for e in events] == fresh  # type: ignore[arg-type]
    # the lineage path never uses the caches: same resources
    for e, expected in zip(events, fresh, strict=True):
        assert serialize(to_bundle(e, lineage=True).value) == expected  # type: ignore[arg-type]


def test_the_same_hl7_message_twice_gives_the_same_bundle_bytes() -> None:
    from bench.convert import messages

    raw = messages("adt", 1)[0]
    first = serialize(to_bundle(map_message(parse_message(raw)).value).value)
    again = serialize(to_bundle(map_message(parse_message(raw)).value).value)
    assert first == again == _fresh(map_message(parse_message(raw)).value)


def test_bundles_share_nothing() -> None:
    """No container of one bundle is a container of another (each bundle is the caller's own)."""
    from bench.convert import messages

    events = [map_message(parse_message(raw)).value for raw in messages("adt", 2) * 2]
    seen: dict[int, int] = {}
    keep = []  # every bundle stays alive, so ids are not reused
    for n, event in enumerate(events):
        bundle = to_bundle(event).value
        keep.append(bundle)
        stack: list[object] = [bundle]
        while stack:
            node = stack.pop()
            if isinstance(node, dict | list):
                assert seen.setdefault(id(node), n) == n, "a container shared between two bundles"
                stack += node.values() if isinstance(node, dict) else node
    assert len(keep) == 4


@pytest.mark.corpus
def test_corpus_bundles_from_caches_equal_fresh_ones() -> None:
    events = [(name, event) for name, _msg, event in corpus_events()]  # the rest fail as listed there
    fresh: dict[str, bytes] = {}
    for name, event in events:
        if name in FHIR_OUT_REFUSED:
            with pytest.raises(FhirOutError) as info:
                _fresh(event)
            assert info.value.field == FHIR_OUT_REFUSED[name]
        else:
            fresh[name] = _fresh(event)
    for name, event in events:
        if name in fresh:
            assert serialize(to_bundle(event).value) == fresh[name], name
    assert len(fresh) >= 40
