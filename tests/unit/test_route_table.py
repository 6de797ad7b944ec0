"""The local host's route table finds exactly what a scan of every route template finds, in the same
(precedence) order, while trying only the routes that can match a path's first segment and length."""

from __future__ import annotations

import itertools

from tie.localhost.routes import RouteTable, RouteTemplate

TEMPLATES = [
    "fhir",
    "fhir/metadata",
    "fhir/{resourceType:regex(^Patient$)}",
    "fhir/{resourceType:regex(^Patient$)}/{id}",
    "fhir/{resourceType:regex(^Patient$)}/{id}/_history/{vid}",
    "fhir/{resourceType:regex(^Observation$|^Specimen$)}/{id}",
    "fhir/{resourceType:regex(^Observation$|^Specimen$)}/_history",
    "bench/ping",
    "Mixed/Case",
    "files/{name?}",
    "items/{id:int}/{sub=main}",
    "{a}/{b:alpha}/c",
    "{a:int}",
    "static/{*rest}",
    "{*anything}",
]
SEGMENTS = ["fhir", "FHIR", "Patient", "Observation", "Specimen", "metadata", "_history", "1", "abc", "c"]
SEGMENTS += ["bench", "ping", "mixed", "CASE", "files", "items", "static", "a%2Fb", "Pat%69ent", ""]


def _table() -> tuple[list[RouteTemplate], RouteTable[str]]:
    routes = sorted((RouteTemplate.parse(t) for t in TEMPLATES), key=lambda r: r.precedence)
    return routes, RouteTable((r, r.template) for r in routes)


def test_table_matches_like_a_scan_of_every_route() -> None:
    routes, table = _table()
    combos = ["/".join(p) for n in range(1, 5) for p in itertools.product(SEGMENTS, repeat=n)]
    paths = ["", "/", *combos[::7]]
    found = 0
    for path in paths:
        scanned = [(r.template, params) for r in routes if (params := r.match(path)) is not None]
        assert list(table.matches(path)) == scanned, path
        found += bool(scanned)
    assert found > 100  # the paths exercise the routes, not just misses


def test_examples() -> None:
    _, table = _table()
    assert next(table.matches("/fhir/Patient/p1")) == (
        "fhir/{resourceType:regex(^Patient$)}/{id}",
        {
            "resourceType": "Patient",
            "id": "p1",
        },
    )
    assert next(table.matches("FHIR/metadata"))[0] == "fhir/metadata"
    assert next(table.matches("items/7")) == ("items/{id:int}/{sub=main}", {"id": "7", "sub": "main"})
    assert next(table.matches("static/a/b%20c")) == ("static/{*rest}", {"rest": "a/b c"})
    assert next(table.matches("x/y/c")) == ("{a}/{b:alpha}/c", {"a": "x", "b": "y"})
