"""Bulk Data export over HTTP on the local functions host: kick-off, poll, download and cancel as a
client sees them, the worker driven by its timer function, and the gateway check in front of it all."""

from __future__ import annotations

import json
from collections.abc import Iterator

import azure.functions as func
import pytest

from functions import bulk_export
from functions._fhir import blueprints
from shared.config.settings import reset_settings
from shared.wiring import get_container
from tests.helpers import HttpResult, http
from tests.integration.fhir_api_support import fhir_host
from tests.unit.fhirapi.fhirapi_helpers import NHS, patient

pytestmark = pytest.mark.timeout(90)

FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
ASYNC = {"Accept": "application/fhir+json", "Prefer": "respond-async", "X-TIE-Client-Id": "lakehouse"}
SECRET = "gateway-secret-for-tests-0123456789"
KEY = "pseudonym-key-for-tests-only-0123456789abcdef"


def app() -> func.FunctionApp:
    built = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for bp in blueprints():
        built.register_functions(bp)
    built.register_functions(bulk_export.bp)
    return built


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TIE_EXPORT_CLIENTS", "lakehouse:identified")
    monkeypatch.setenv("TIE_EXPORT_PSEUDONYM_KEY", KEY)
    reset_settings()
    with fhir_host(app()) as url:
        yield url


def call(method: str, url: str, headers: dict[str, str] | None = None, body: object = None) -> HttpResult:
    raw = json.dumps(body).encode() if body is not None else None
    return http(method, url, raw, {**FHIR, **(headers or {})})


def worker() -> None:
    """One tick of the ``bulk_export_worker`` timer (timers are off in the test host: no races)."""
    bulk_export.bulk_export_worker(None)  # type: ignore[arg-type]


def test_kickoff_poll_download_over_http(base: str) -> None:
    pid = call("POST", f"{base}/Patient", body=patient(NHS[0])).json()["id"]
    call("POST", f"{base}/Patient", body=patient(NHS[1]))

    kicked = call("GET", f"{base}/$export?_type=Patient", ASYNC)
    assert kicked.status == 202, kicked.body
    status_url = kicked.headers["Content-Location"]
    assert status_url.startswith(f"{base}/bulkstatus/")

    pending = call("GET", status_url, ASYNC)
    assert pending.status == 202 and pending.headers["X-Progress"] and pending.headers["Retry-After"] == "5"

    worker()
    done = call("GET", status_url, ASYNC)
    assert done.status == 200
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True
    (output,) = manifest["output"]
    assert output["type"] == "Patient" and output["count"] == 2
    assert output["url"].startswith(f"{base}/bulkfiles/")

    file = call("GET", output["url"], ASYNC)
    assert file.status == 200 and file.headers["Content-Type"].startswith("application/fhir+ndjson")
    ids = [json.loads(line)["id"] for line in file.body.decode().splitlines()]
    assert pid in ids and len(ids) == 2

    other = call("GET", output["url"], {**ASYNC, "X-TIE-Client-Id": "someone-else"})
    assert other.status == 404

    cancelled = call("DELETE", status_url, ASYNC)
    assert cancelled.status == 202
    assert call("GET", status_url, ASYNC).status == 404
    assert call("GET", output["url"], ASYNC).status == 404


def test_pseudonymised_export_over_http_holds_no_nhs_number(base: str) -> None:
    call("POST", f"{base}/Patient", body=patient(NHS[2]))
    kicked = call("GET", f"{base}/Patient/$export?_pseudonymise=true", ASYNC)
    assert kicked.status == 202, kicked.body
    worker()
    manifest = call("GET", kicked.headers["Content-Location"], ASYNC).json()
    assert manifest["extension"]["pseudonymisation"]["version"]
    body = b"".join(call("GET", o["url"], ASYNC).body for o in manifest["output"]).decode()
    assert body.count("\n") == 1
    for needle in (NHS[2], "Testperson", "Alex", "1980-05-01"):
        assert needle not in body


def test_kickoff_without_prefer_is_an_operation_outcome(base: str) -> None:
    refused = call("GET", f"{base}/$export", {"X-TIE-Client-Id": "lakehouse"})
    assert refused.status == 400
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_export_routes_pass_the_gateway_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_EXPORT_CLIENTS", "*:identified")
    monkeypatch.setenv("TIE_REQUIRE_APIM_HEADER", "true")
    monkeypatch.setenv("TIE_APIM_SHARED_SECRET", SECRET)
    reset_settings()
    assert get_container().settings.require_apim_header
    with fhir_host(app()) as url:
        for method, path in (
            ("GET", "$export"),
            ("GET", "bulkstatus/abc"),
            ("DELETE", "bulkstatus/abc"),
            ("GET", "bulkfiles/abc/Patient-1.ndjson"),
            ("GET", "Patient/$export"),
        ):
            refused = call(method, f"{url}/{path}", ASYNC)
            assert refused.status == 401, (method, path)
            assert refused.json()["issue"][0]["code"] == "login"
        wrong = call("GET", f"{url}/$export", {**ASYNC, "X-TIE-Gateway": "not-the-secret-value"})
        assert wrong.status == 403
        passed = call("GET", f"{url}/$export", {**ASYNC, "X-TIE-Gateway": SECRET})
        assert passed.status == 202
