from __future__ import annotations

import pytest

from tie.localhost.routes import RouteTemplate, RouteTemplateError


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("health", "/health", {}),
        ("health", "/HEALTH", {}),
        ("health", "/healthz", None),
        ("items/{id}", "/items/42", {"id": "42"}),
        ("items/{id:int}", "/items/42", {"id": "42"}),
        ("items/{id:int}", "/items/abc", None),
        ("items/{id:int?}", "/items", {}),
        ("items/{id=7}", "/items", {"id": "7"}),
        ("items/{name:alpha}", "/items/abc", {"name": "abc"}),
        ("items/{name:alpha}", "/items/ab1", None),
        (
            "items/{id:guid}",
            "/items/1c7e8d58-7a51-4d41-9d1f-0d3a8f2c1b2a",
            {"id": "1c7e8d58-7a51-4d41-9d1f-0d3a8f2c1b2a"},
        ),
        ("items/{id:guid}", "/items/nope", None),
        ("items/{id:minlength(3)}", "/items/ab", None),
        ("items/{id:length(2,3)}", "/items/abc", {"id": "abc"}),
        ("items/{id:range(1,5)}", "/items/6", None),
        ("items/{id:int:min(10)}", "/items/12", {"id": "12"}),
        ("items/{id:int:min(10)}", "/items/9", None),
        ("items/{id:regex(^[a-z]{{2}}\\d$)}", "/items/ab1", None),
        ("files/{*path}", "/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("files/{*path}", "/files", {}),
        (
            "fhir/{type}/{id}/_history/{vid}",
            "/fhir/Patient/p1/_history/2",
            {"type": "Patient", "id": "p1", "vid": "2"},
        ),
        ("fhir/{type}/{id}", "/fhir/Patient/p1/extra", None),
        ("messages/{correlationId}", "/messages/abc%2Fdef", {"correlationId": "abc/def"}),
    ],
)
def test_match(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate.parse(template).match(path) == expected


def test_regex_constraint() -> None:
    t = RouteTemplate.parse(r"v/{code:regex(^[A-Z]\d+$)}")
    assert t.match("/v/A12") == {"code": "A12"}
    assert t.match("/v/a12") is None


def test_precedence_literal_before_constrained_before_plain_before_catch_all() -> None:
    templates = ["items/{*rest}", "items/{name}", "items/{id:int}", "items/new"]
    ordered = sorted((RouteTemplate.parse(t) for t in templates), key=lambda t: t.precedence)
    assert [t.template for t in ordered] == ["items/new", "items/{id:int}", "items/{name}", "items/{*rest}"]


@pytest.mark.parametrize("bad", ["items//x", "items/{id:nosuch}", "{*rest}/x", "items/{id"])
def test_invalid_templates(bad: str) -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate.parse(bad)
