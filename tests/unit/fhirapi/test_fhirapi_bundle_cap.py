"""Issue 12 item 5: one entry cap for batch and transaction Bundles.

``TIE_FHIR_MAX_BUNDLE_ENTRIES`` (default 500, never above the repository's own transaction limit) caps
both kinds. A Bundle over the cap is answered 413 with an OperationOutcome (``too-costly``) before any
entry is looked at - shown here with entries that would each fail validation - and nothing is written.
The CapabilityStatement states the cap.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.config.settings import get_settings, reset_settings
from shared.fhirapi import FhirApi
from shared.fhirapi.service import DEFAULT_MAX_BUNDLE_ENTRIES
from shared.wiring import build_container
from tests.unit.fhirapi.fhirapi_helpers import Stores, make_api, outcome, patient, request

pytestmark = pytest.mark.timeout(60)


def creates(n: int) -> list[dict[str, Any]]:
    return [{"resource": patient(), "request": {"method": "POST", "url": "Patient"}} for _ in range(n)]


def junk(n: int) -> list[dict[str, Any]]:
    """Entries that fail as soon as they are looked at (no request, no resource)."""
    return [{"bogus": i} for i in range(n)]


def post(api: FhirApi, kind: str, entries: list[dict[str, Any]]) -> Any:
    return api.bundle(request("POST", "", {"resourceType": "Bundle", "type": kind, "entry": entries}))


def patients(s: Stores) -> int:
    return s.repo.search("Patient", [("_summary", "count")]).total or 0


@pytest.mark.parametrize("kind", ["batch", "transaction"])
@pytest.mark.parametrize("size", [DEFAULT_MAX_BUNDLE_ENTRIES + 1, 1_500])
def test_default_cap_rejects_either_kind_before_processing(s: Stores, kind: str, size: int) -> None:
    api = make_api(s)
    for entries in (junk(size), creates(size)):
        response = post(api, kind, entries)
        assert response.status == 413, (kind, size, response.body)
        issue = outcome(response)
        assert issue["code"] == "too-costly"
        assert f"limit is {DEFAULT_MAX_BUNDLE_ENTRIES}" in issue["diagnostics"]
    assert patients(s) == 0


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_configured_cap_applies_to_both_kinds(s: Stores, kind: str) -> None:
    api = make_api(s, max_bundle_entries=3)
    assert post(api, kind, junk(4)).status == 413
    assert post(api, kind, creates(4)).status == 413
    assert patients(s) == 0
    at_cap = post(api, kind, creates(3))
    assert at_cap.status == 200 and patients(s) == 3


def test_cap_never_exceeds_the_repository_limit(s: Stores) -> None:
    api = make_api(s, max_bundle_entries=10_000)  # the embedded store applies 500 to a transaction
    for kind in ("batch", "transaction"):
        response = post(api, kind, junk(DEFAULT_MAX_BUNDLE_ENTRIES + 1))
        assert response.status == 413 and "limit is 500" in outcome(response)["diagnostics"]


def test_capability_statement_states_the_cap(s: Stores) -> None:
    statement = make_api(s, max_bundle_entries=3).metadata(request("GET", "metadata")).body
    assert statement is not None
    rest = statement["rest"][0]
    assert "maxEntries=3" in rest["documentation"]
    documented = {i["code"]: i.get("documentation", "") for i in rest["interaction"]}
    assert set(documented) == {"batch", "transaction"}
    assert all("maxEntries=3" in text and "413" in text for text in documented.values())


def test_cap_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_FHIR_MAX_BUNDLE_ENTRIES", "7")
    reset_settings()
    container = build_container(get_settings())
    try:
        assert container.fhir_api.config.max_bundle_entries == 7
    finally:
        container.close()
    monkeypatch.delenv("TIE_FHIR_MAX_BUNDLE_ENTRIES")
    reset_settings()
    assert get_settings().fhir_max_bundle_entries == DEFAULT_MAX_BUNDLE_ENTRIES
