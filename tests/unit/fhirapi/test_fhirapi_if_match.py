"""Issue 12 item 5: a malformed ``If-Match`` is a bad request (400), a stale one a failed precondition (412).

``If-Match`` (and ``Bundle.entry.request.ifMatch``) must be an entity tag, ``W/"<versionId>"`` or
``"<versionId>"``. A value that is not one cannot name a version; answering 412 would tell the client to
re-read and retry a request that can never succeed.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.fhirapi import FhirApi
from tests.unit.fhirapi.fhirapi_helpers import (
    NHS,
    NHS_SYSTEM,
    outcome,
    patient,
    request,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def created(api: FhirApi) -> dict[str, Any]:
    response = api.create(request("POST", "Patient", patient(NHS[1])), "Patient")
    assert response.status == 201 and response.body is not None
    body: dict[str, Any] = response.body
    return body


# (If-Match value, expected status, OperationOutcome issue code); the resource is at version 1.
CASES = [
    ("garbage", 400, "invalid"),
    ("1", 400, "invalid"),  # an unquoted version is not an entity tag
    ('W/"', 400, "invalid"),
    ('W/"1" extra', 400, "invalid"),
    ("*", 400, "invalid"),  # "any version" is not supported for FHIR updates here
    ('W/"9"', 412, "conflict"),  # well-formed, stale
    ('"9"', 412, "conflict"),
    ('W/"1"', 200, None),
    ('"1"', 200, None),
]


@pytest.mark.parametrize(("value", "status", "code"), CASES)
def test_update_if_match(
    api: FhirApi, created: dict[str, Any], value: str, status: int, code: str | None
) -> None:
    changed = dict(created, gender="female")
    response = api.update(
        request("PUT", f"Patient/{created['id']}", changed, {"If-Match": value}), "Patient", created["id"]
    )
    assert response.status == status, response.body
    if code is not None:
        issue = outcome(response)
        assert issue["code"] == code
        assert "garbage" not in issue.get("diagnostics", "")  # the value is never echoed


@pytest.mark.parametrize(("value", "status", "code"), CASES)
def test_conditional_update_if_match(
    api: FhirApi, created: dict[str, Any], value: str, status: int, code: str | None
) -> None:
    changed = {k: v for k, v in created.items() if k not in ("id", "meta")} | {"gender": "female"}
    path = f"Patient?identifier={NHS_SYSTEM}|{NHS[1]}"
    response = api.conditional_update(request("PUT", path, changed, {"If-Match": value}), "Patient")
    assert response.status == status, response.body
    if code is not None:
        assert outcome(response)["code"] == code


@pytest.mark.parametrize(
    ("kind", "value", "status"), [("transaction", "garbage", 400), ("transaction", 'W/"9"', 412)]
)
def test_transaction_entry_if_match(
    api: FhirApi, created: dict[str, Any], kind: str, value: str, status: int
) -> None:
    entry = {
        "resource": dict(created, gender="female"),
        "request": {"method": "PUT", "url": f"Patient/{created['id']}", "ifMatch": value},
    }
    response = api.bundle(request("POST", "", {"resourceType": "Bundle", "type": kind, "entry": [entry]}))
    assert response.status == status, response.body
    assert outcome(response)["expression"] == ["Bundle.entry[0]"]


@pytest.mark.parametrize(("value", "status"), [("garbage", "400"), ('W/"9"', "412"), ('W/"1"', "200")])
def test_batch_entry_if_match(api: FhirApi, created: dict[str, Any], value: str, status: str) -> None:
    entry = {
        "resource": dict(created, gender="female"),
        "request": {"method": "PUT", "url": f"Patient/{created['id']}", "ifMatch": value},
    }
    response = api.bundle(request("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": [entry]}))
    assert response.status == 200 and response.body is not None
    assert response.body["entry"][0]["response"]["status"][:3] == status
