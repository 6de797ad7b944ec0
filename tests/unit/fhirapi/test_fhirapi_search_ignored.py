"""Issue 12 item 5: unsupported search parameters under lenient handling (FHIR R4 search.html#errors).

The searchset says what it ignored: an OperationOutcome entry with ``search.mode = outcome`` names each
ignored parameter (never its value), and ``Bundle.link`` (self, next, ...) holds only the parameters the
search applied. ``Prefer: handling=strict`` turns the same request into 400. Same for ``POST _search``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from shared.fhirapi import FhirApi, FhirResponse
from tests.unit.fhirapi.fhirapi_helpers import NHS, Stores, make_api, outcome, patient, request

pytestmark = pytest.mark.timeout(60)

SECRET = "9434765919"  # a value that must never be echoed
FORM = "application/x-www-form-urlencoded"
#: (query, parameter names that must be reported as ignored)
CASES = [
    (f"shoe-size={SECRET}&gender=female", ["shoe-size"]),
    (f"subject.name={SECRET}&gender=female", ["subject.name"]),
    (f"_has:Observation:subject:code={SECRET}&gender=female", ["_has:Observation:subject:code"]),
    (f"_text={SECRET}&gender=female&_content={SECRET}", ["_content", "_text"]),
]


@pytest.fixture
def api(s: Stores) -> FhirApi:
    built = make_api(s)
    for number in NHS[:3]:
        assert built.create(request("POST", "Patient", patient(number)), "Patient").status == 201
    return built


def search(api: FhirApi, query: str, *, post: bool, strict: bool = False) -> FhirResponse:
    headers = {"Prefer": "handling=strict"} if strict else {}
    if post:
        form = request("POST", "Patient/_search", query.encode(), headers, content_type=FORM)
        return api.search(form, "Patient", post=True)
    return api.search(request("GET", f"Patient?{query}&_count=1", headers=headers), "Patient")


def link_params(bundle: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    return {link["relation"]: parse_qsl(urlsplit(link["url"]).query) for link in bundle["link"]}


@pytest.mark.parametrize("post", [False, True], ids=["GET", "POST _search"])
@pytest.mark.parametrize(("query", "ignored"), CASES)
def test_lenient_search_reports_ignored_parameters_and_links_the_applied_search(
    api: FhirApi, query: str, ignored: list[str], post: bool
) -> None:
    response = search(api, query, post=post)
    assert response.status == 200 and response.body is not None
    bundle = response.body
    assert SECRET not in str(bundle)
    [note] = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert note["resource"]["resourceType"] == "OperationOutcome"
    [issue] = note["resource"]["issue"]
    assert issue["severity"] == "warning" and issue["code"] == "not-supported"
    assert issue["diagnostics"].endswith(": " + ", ".join(ignored))
    links = link_params(bundle)
    assert "self" in links and (post or "next" in links)  # GET pages one at a time: a next link too
    for params in links.values():
        names = {name for name, _ in params}
        assert ("gender", "female") in params and not names & set(ignored)
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert matches and all(e["resource"]["gender"] == "female" for e in matches)


@pytest.mark.parametrize("post", [False, True], ids=["GET", "POST _search"])
@pytest.mark.parametrize(("query", "ignored"), CASES)
def test_strict_search_rejects_the_first_unsupported_parameter(
    api: FhirApi, query: str, ignored: list[str], post: bool
) -> None:
    response = search(api, query, post=post, strict=True)
    assert response.status == 400
    issue = outcome(response)
    assert issue["code"] == "invalid" and issue["expression"][0] in ignored
    assert SECRET not in str(response.body)
