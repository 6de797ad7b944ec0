"""The HL7 mapper builds canonical models without pydantic validation (shared.mapping._construct): every
event it produces must be exactly what full validation of the same data gives - for the fabricated
messages of the tests and bench, and every corpus message it maps.

``ClinicalEvent.model_validate(event.model_dump())`` re-runs every field and model validator of every
nested model (check digits, aware times, literals, min lengths, tuple types, "a Patient is identified"...);
it must succeed and compare equal."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from shared.canonical.model import ClinicalEvent, Concept, HumanName, Identifier, PartialDate
from shared.mapping._construct import builder
from shared.mapping.hl7v2_in import map_message
from tests.hl7_corpus import corpus_events
from tests.unit.mapping.hl7v2_in.test_hl7in_lineage import MESSAGES


def _revalidated(event: ClinicalEvent) -> ClinicalEvent:
    return ClinicalEvent.model_validate(event.model_dump())


def _walk_types(node: object, out: set[type[BaseModel]]) -> None:
    if isinstance(node, BaseModel):
        out.add(type(node))
        for name in type(node).model_fields:
            _walk_types(getattr(node, name), out)
    elif isinstance(node, tuple):
        for item in node:
            _walk_types(item, out)
    else:
        assert not isinstance(node, list | dict | set), "a mutable value inside a frozen model"


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_fabricated_messages_equal_their_validated_selves(name: str) -> None:
    from shared.hl7v2 import parse_message

    event = map_message(parse_message(MESSAGES[name])).value
    assert _revalidated(event) == event
    _walk_types(event, set())


def test_bench_messages_equal_their_validated_selves() -> None:
    from bench.convert import messages
    from shared.hl7v2 import parse_message

    for kind in ("adt", "oru"):
        for raw in messages(kind, 300):
            event = map_message(parse_message(raw)).value
            assert _revalidated(event) == event


@pytest.mark.corpus
def test_corpus_events_equal_their_validated_selves() -> None:
    checked = 0
    types: set[type[BaseModel]] = set()
    for name, _msg, event in corpus_events():  # messages that do not map fail as tests/hl7_corpus lists
        assert _revalidated(event) == event, name
        _walk_types(event, types)
        checked += 1
    assert checked >= 50
    assert {Identifier, HumanName, Concept} <= types


def test_builder_gives_a_normal_model() -> None:
    new_identifier = builder(Identifier)
    fast = new_identifier(system="urn:x", value="1")
    slow = Identifier(system="urn:x", value="1")
    assert fast == slow and hash(fast) == hash(slow) and fast.type is None
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_copy(update={"type": "MR"}) == Identifier(system="urn:x", value="1", type="MR")
    with pytest.raises(TypeError):
        new_identifier("urn:x", "1")  # keyword-only: no value lands in the wrong field
    with pytest.raises(TypeError):
        builder(PartialDate)(year=2000, colour="blue")
    with pytest.raises(Exception):  # noqa: B017 - frozen like any canonical model
        fast.value = "2"  # type: ignore[misc]
