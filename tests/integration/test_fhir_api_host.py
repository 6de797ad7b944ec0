"""The FHIR API through the local functions host over loopback HTTP: a standard FHIR client flow,
concurrent conditional creates, headers and errors as a client sees them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.wiring import get_container
from tests.helpers import HttpResult, http
from tests.integration.fhir_api_support import fhir_host, send
from tests.unit.fhirapi.fhirapi_helpers import NHS, NHS_SYSTEM, clinical_messages, patient

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def base() -> Iterator[str]:
    with fhir_host() as url:
        yield url


def test_standard_fhir_client_flow(base: str) -> None:
    """Create Patient -> conditional create again -> search by NHS number -> update (If-Match) -> history."""
    criteria = f"identifier={NHS_SYSTEM}|{NHS[0]}"
    created = send(
        "POST", f"{base}/Patient", patient(), **{"If-None-Exist": criteria, "X-Correlation-ID": "flow-1"}
    )
    assert created.status == 201, created.body
    assert created.headers["Content-Type"].startswith("application/fhir+json")
    assert created.headers["X-Correlation-ID"] == "flow-1"
    pid = created.json()["id"]
    assert created.headers["Location"] == f"{base}/Patient/{pid}/_history/1"
    assert created.headers["ETag"] == 'W/"1"' and created.headers["Last-Modified"].endswith("GMT")

    again = send("POST", f"{base}/Patient", patient(), **{"If-None-Exist": criteria})
    assert again.status == 200 and again.json()["id"] == pid

    found = send("GET", f"{base}/Patient?identifier={NHS_SYSTEM}|{NHS[0]}")
    assert found.status == 200
    bundle = found.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    current = bundle["entry"][0]["resource"]
    assert current["id"] == pid

    current["gender"] = "male"
    updated = send("PUT", f"{base}/Patient/{pid}", current, **{"If-Match": created.headers["ETag"]})
    assert updated.status == 200 and updated.headers["ETag"] == 'W/"2"'
    stale = send("PUT", f"{base}/Patient/{pid}", current, **{"If-Match": 'W/"1"'})
    assert stale.status == 412 and stale.json()["resourceType"] == "OperationOutcome"

    history = send("GET", f"{base}/Patient/{pid}/_history")
    assert history.status == 200
    versions = [(e["request"]["method"], e["resource"]["meta"]["versionId"]) for e in history.json()["entry"]]
    assert versions == [("PUT", "2"), ("POST", "1")]
    kinds = [m.subject for m in clinical_messages(get_container().bus)]
    assert kinds == ["patient-created", "patient-updated"]


def _race(base: str, nhs: str) -> list[HttpResult]:
    """Two conditional creates of the same patient, released together from two threads."""
    criteria = f"identifier={NHS_SYSTEM}|{nhs}"
    barrier = threading.Barrier(2)
    results: list[HttpResult] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait(5)
        result = send("POST", f"{base}/Patient", patient(nhs), **{"If-None-Exist": criteria})
        with lock:
            results.append(result)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_conditional_creates_create_once(base: str) -> None:
    for nhs in NHS[1:6]:
        results = _race(base, nhs)
        assert sorted(r.status for r in results) == [200, 201], [r.body for r in results]
        assert len({r.json()["id"] for r in results}) == 1
        total = send("GET", f"{base}/Patient?identifier={NHS_SYSTEM}|{nhs}&_summary=count").json()["total"]
        assert total == 1
    assert len([m for m in clinical_messages(get_container().bus) if m.subject == "patient-created"]) == 5


def test_errors_are_operation_outcomes_with_the_right_status(base: str) -> None:
    bad_json = send("POST", f"{base}/Patient", b"{oops")
    assert bad_json.status == 400 and bad_json.json()["issue"][0]["code"] == "structure"
    too_big = send("POST", f"{base}/Patient", b'{"resourceType":"Patient","x":"' + b"a" * 1_100_000 + b'"}')
    assert too_big.status == 413 and too_big.json()["resourceType"] == "OperationOutcome"
    wrong_media = http("POST", f"{base}/Patient", b"{}", {"Content-Type": "text/plain"})
    assert wrong_media.status == 415
    invalid = send("POST", f"{base}/Patient", patient(birthDate="1980-02-30"))
    assert invalid.status == 422 and invalid.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    refused = send("DELETE", f"{base}/Patient/x")
    assert refused.status == 405 and refused.headers["Allow"] == "GET, PUT"
    missing = send("GET", f"{base}/Patient/nope")
    assert missing.status == 404 and missing.json()["issue"][0]["code"] == "not-found"
    generated = send("GET", f"{base}/metadata")
    assert generated.status == 200 and generated.headers["X-Correlation-ID"]
    assert generated.json()["fhirVersion"] == "4.0.1"
    assert send("GET", f"{base}/Basic/x").status == 404, "a type no family serves"


def test_transaction_through_http(base: str) -> None:
    urn = "urn:uuid:2f6e8a3c-0000-4000-8000-000000000001"
    org_urn = "urn:uuid:2f6e8a3c-0000-4000-8000-000000000002"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": urn,
                "resource": patient(NHS[6], managingOrganization={"reference": org_urn}),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": org_urn,
                "resource": {"resourceType": "Organization", "name": "Trust"},
                "request": {"method": "POST", "url": "Organization"},
            },
        ],
    }
    response = send("POST", base, bundle, Prefer="return=minimal")
    assert response.status == 200, response.body
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "201 Created"]
    assert all("resource" not in e for e in entries)
    org_location = entries[1]["response"]["location"]
    pid = entries[0]["response"]["location"].split("/")[1]
    stored = send("GET", f"{base}/Patient/{pid}").json()
    assert stored["managingOrganization"]["reference"] == org_location.split("/_history")[0]
