"""The one HTTP wrapper (functions._http.endpoint) behind the JSON functions and the FHIR interactions:
correlation ID echoed, escaped exceptions mapped without details, the gateway refusal answered in each
style, the worker-facing name and signature."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable

import azure.functions as func
import pytest

from functions._fhir import fhir_endpoint
from functions._http import http_endpoint, ungated_endpoint
from shared.config.settings import reset_settings
from shared.errors import PermanentError, TransientError
from shared.fhirapi import FhirApi, FhirRequest, FhirResponse

SECRET_DETAIL = "NHS 9434765919 in a message"


class _Transient(TransientError):
    code = "test-transient"


class _Permanent(PermanentError):
    code = "test-permanent"


def _request(
    correlation_id: str | None = "corr-1", headers: dict[str, str] | None = None
) -> func.HttpRequest:
    all_headers = dict(headers or {})
    if correlation_id is not None:
        all_headers["X-Correlation-ID"] = correlation_id
    return func.HttpRequest(method="GET", url="http://localhost/api/x", headers=all_headers, body=b"")


def _raising(exc: Exception) -> Callable[[func.HttpRequest, str], func.HttpResponse]:
    def handler(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
        raise exc

    return handler


# (exception, JSON status, JSON error code, Retry-After, FHIR status)
_FAILURES: list[tuple[Exception, int, str, str | None, int]] = [
    (_Transient(SECRET_DETAIL), 503, "unavailable", "5", 503),
    (_Permanent(SECRET_DETAIL), 400, "test-permanent", None, 500),
    (RuntimeError(SECRET_DETAIL), 500, "internal_error", None, 500),
]


@pytest.mark.parametrize(("exc", "status", "code", "retry_after", "fhir_status"), _FAILURES)
def test_an_escaped_exception_becomes_an_error_without_details(
    exc: Exception, status: int, code: str, retry_after: str | None, fhir_status: int
) -> None:
    json_handler = http_endpoint(_raising(exc))
    response = json_handler(_request())
    body = response.get_body().decode()
    assert (response.status_code, json.loads(body)["error"]["code"]) == (status, code)
    assert response.headers.get("Retry-After") == retry_after
    assert response.headers["X-Correlation-ID"] == "corr-1"
    assert json.loads(body)["error"]["correlationId"] == "corr-1"
    assert SECRET_DETAIL not in body

    def interaction(api: FhirApi, request: FhirRequest, params: dict[str, str]) -> FhirResponse:
        raise exc

    fhir = fhir_endpoint(interaction, "fhir_test_read")(_request())
    fhir_body = fhir.get_body().decode()
    assert fhir.status_code == fhir_status
    assert json.loads(fhir_body)["resourceType"] == "OperationOutcome"
    assert fhir.headers["X-Correlation-ID"] == "corr-1"
    assert SECRET_DETAIL not in fhir_body


def test_a_correlation_id_is_generated_and_echoed_when_absent() -> None:
    def ok(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
        return func.HttpResponse(correlation_id, status_code=200)

    response = ungated_endpoint(ok)(_request(correlation_id=None))
    generated = response.headers["X-Correlation-ID"]
    assert generated and response.get_body().decode() == generated


def test_the_gateway_refusal_is_answered_before_the_handler_in_each_style(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TIE_REQUIRE_APIM_HEADER", "true")
    monkeypatch.setenv("TIE_APIM_SHARED_SECRET", "s3cret-from-key-vault-0123456789")
    calls: list[str] = []

    def handler(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
        calls.append("json")
        return func.HttpResponse("ok")

    def interaction(api: FhirApi, request: FhirRequest, params: dict[str, str]) -> FhirResponse:
        calls.append("fhir")
        return FhirResponse(200, None, {})

    reset_settings()  # the container is built on first use (none is installed: tests/conftest.py)
    refused = http_endpoint(handler)(_request())
    assert (refused.status_code, json.loads(refused.get_body())["error"]["code"]) == (401, "gateway_missing")
    fhir = fhir_endpoint(interaction, "fhir_test_read")(_request())
    assert fhir.status_code == 401 and json.loads(fhir.get_body())["resourceType"] == "OperationOutcome"
    assert ungated_endpoint(handler)(_request()).status_code == 200
    assert calls == ["json"]  # only the ungated one ran


def test_the_worker_sees_the_function_name_and_a_req_parameter() -> None:
    def ingest_example(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
        """Docstring kept."""
        return func.HttpResponse("ok")

    wrapped = http_endpoint(ingest_example)
    fhir = fhir_endpoint(lambda api, r, p: FhirResponse(200, None, {}), "fhir_patient_read")
    for handler, name in ((wrapped, "ingest_example"), (fhir, "fhir_patient_read")):
        assert handler.__name__ == name
        assert list(inspect.signature(handler).parameters) == ["req"]
    assert wrapped.__doc__ == "Docstring kept."
    assert not hasattr(wrapped, "__wrapped__")
