"""fhir_out's caches (reference-data resources, Patient/Encounter resources of a repeated canonical object,
ids) never change what a bundle says: a bundle built from the caches equals a fresh build, the shared
parts are read-only, and every bundle can still be copied and changed freely."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from shared.hl7v2 import parse_message
from shared.mapping.fhir_out import FhirOutError, serialize, to_bundle
from shared.mapping.fhir_out._bundle import clear_caches
from shared.mapping.fhir_out._frozen import FrozenDict, FrozenList, freeze, thaw
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


def test_shared_parts_are_read_only_and_bundles_copy_freely() -> None:
    from bench.convert import messages

    event = map_message(parse_message(messages("adt", 1)[0])).value
    to_bundle(event)
    bundle = to_bundle(event).value  # Patient, Encounter, Practitioner, Location... from the caches
    shared = [e["resource"] for e in bundle["entry"]]
    assert any(isinstance(r, FrozenDict) for r in shared)
    practitioner = next(r for r in shared if r["resourceType"] == "Practitioner")
    with pytest.raises(TypeError):
        practitioner["name"] = []
    with pytest.raises(TypeError):
        practitioner["identifier"].append({})
    mine = copy.deepcopy(bundle)
    mine["entry"][0]["resource"]["gender"] = "other"  # a copy is plain and mutable
    assert type(mine["entry"][0]["resource"]) is dict
    assert to_bundle(event).value["entry"][0]["resource"].get("gender") != "other"
    plain = json.loads(serialize(bundle))
    assert plain == thaw(bundle)
    # the bundle itself (entries, requests) is the caller's: only shared resources are frozen
    bundle["entry"].append({"fullUrl": "urn:uuid:x"})


def test_freeze_and_thaw() -> None:
    tree = {"a": [1, {"b": "c"}], "d": None}
    frozen = freeze(tree)
    assert isinstance(frozen, FrozenDict) and isinstance(frozen["a"], FrozenList)
    assert frozen == tree and thaw(frozen) == tree and type(thaw(frozen)["a"]) is list
    changes: list[Callable[[], object]] = [
        lambda: frozen.update(x=1),
        lambda: frozen.pop("a"),
        lambda: frozen.setdefault("x", 1),
        lambda: frozen["a"].extend([2]),
        lambda: frozen["a"].sort(),
        lambda: frozen["a"].__setitem__(0, 2),
    ]
    for change in changes:
        with pytest.raises(TypeError):
            change()
    assert copy.copy(frozen) == tree and type(copy.copy(frozen)) is dict


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
