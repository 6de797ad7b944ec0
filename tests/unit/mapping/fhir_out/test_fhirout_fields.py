"""The field helpers fhir_out builders are written with: each writes the element and, only when lineage is
on, records source -> target (the hot path passes ``lin=None`` and records nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.mapping.fhir_out._build import (
    RULE_COPY,
    Lin,
    each,
    fixed_concept,
    set_built,
    set_field,
    set_opt,
    texts,
    trace,
)
from shared.mapping.lineage import LineageEntry

URL = "urn:uuid:x"


def _lin() -> tuple[Lin, list[LineageEntry]]:
    sink: list[LineageEntry] = []
    return Lin(sink, "Obs.", URL), sink


def _pairs(sink: list[LineageEntry]) -> list[tuple[str | None, str, str]]:
    assert all(e.resource == URL for e in sink)
    return [(e.source, e.target, e.rule) for e in sink]


@pytest.mark.parametrize(
    ("value", "written", "traced"),
    [
        ("final", {"status": "final"}, [("o.status", "Obs.a.status", "r")]),
        (None, {}, []),
        ("", {"status": ""}, [("o.status", "Obs.a.status", "r")]),  # only None is "no value"
    ],
)
def test_set_opt_writes_and_traces_only_a_value(
    value: Any, written: dict[str, Any], traced: list[Any]
) -> None:
    lin, sink = _lin()
    res: dict[str, Any] = {}
    set_opt(res, "status", value, lin, "o.status", "r", at="a.")
    assert res == written
    assert _pairs(sink) == traced


def test_set_field_always_writes_and_traces_to_its_key() -> None:
    lin, sink = _lin()
    res: dict[str, Any] = {}
    set_field(res, "intent", "order", lin, None, "constant")
    assert res == {"intent": "order"}
    assert _pairs(sink) == [(None, "Obs.intent", "constant")]


def test_lineage_off_writes_the_same_and_records_nothing() -> None:
    on, sink = _lin()
    out_on: dict[str, Any] = {}
    out_off: dict[str, Any] = {}
    for res, lin in ((out_on, on), (out_off, None)):
        set_field(res, "status", "final", lin, "o.status")
        set_opt(res, "priority", "stat", lin, "o.priority")
        set_built(res, "note", texts(("a", "b"), lin, "o.notes", "note"))
        set_built(res, "code", fixed_concept("http://s", "c", lin, "o.code", "code", "constant"))
        trace(lin, "o.x", "x")
    assert (
        out_on
        == out_off
        == {
            "status": "final",
            "priority": "stat",
            "note": [{"text": "a"}, {"text": "b"}],
            "code": {"coding": [{"system": "http://s", "code": "c"}]},
        }
    )
    assert _pairs(sink) == [
        ("o.status", "Obs.status", RULE_COPY),
        ("o.priority", "Obs.priority", RULE_COPY),
        ("o.notes[0]", "Obs.note[0].text", RULE_COPY),
        ("o.notes[1]", "Obs.note[1].text", RULE_COPY),
        (None, "Obs.code.coding[0].system", "constant"),
        ("o.code", "Obs.code.coding[0].code", RULE_COPY),
        ("o.x", "Obs.x", RULE_COPY),
    ]


@pytest.mark.parametrize(("built", "present"), [([], False), ({}, False), (None, False), ([{"a": 1}], True)])
def test_set_built_leaves_out_empty_elements(built: Any, present: bool) -> None:
    res: dict[str, Any] = {}
    set_built(res, "k", built)
    assert ("k" in res) is present


def test_each_indexes_source_and_target_paths() -> None:
    lin, sink = _lin()
    seen: list[tuple[str, str]] = []

    def build(x: str, lin: Lin | None, src: str, dst: str) -> dict[str, Any]:
        seen.append((src, dst))
        return {"v": x}

    assert each(build, ("a", "b"), lin, "o.items", "item") == [{"v": "a"}, {"v": "b"}]
    assert seen == [("o.items[0]", "item[0]"), ("o.items[1]", "item[1]")]
    seen.clear()
    assert each(build, ("a",), None, "o.items", "item") == [{"v": "a"}]
    assert seen == [("", "")]  # no paths built with lineage off
    assert sink == []
