"""AHDS adapter internals that need no server: Retry-After parsing, error mapping table, split ordering."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.azure.ahds_fhir import (
    AhdsFhirRepository,
    _Context,
    _Response,
    _retry_after,
    _topological,
)
from shared.errors import PermanentError, TransientError
from shared.fhirstore.errors import (
    BundleTooLarge,
    FhirStoreError,
    InvalidResource,
    InvalidSearch,
    MultipleMatches,
    ResourceConflict,
    ResourceGone,
    ResourceNotFound,
    StoreUnavailable,
    Throttled,
    UnsupportedInteraction,
    UnsupportedResourceType,
    UpstreamError,
    VersionConflict,
)


def response(status: int, outcome: dict[str, Any] | None = None, **headers: str) -> _Response:
    body = json.dumps(outcome).encode() if outcome else b""
    return _Response(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, body)


def oo(code: str, diagnostics: str = "", expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def test_retry_after_forms() -> None:
    assert _retry_after(response(429, retry_after="3")) == 3.0
    assert _retry_after(response(429, x_ms_retry_after_ms="1500", retry_after="9")) == 1.5
    later = datetime.now(UTC) + timedelta(seconds=30)
    value = _retry_after(response(503, retry_after=email.utils.format_datetime(later, usegmt=True)))
    assert value is not None and 25 <= value <= 31
    assert _retry_after(response(503, retry_after="soon")) is None
    assert _retry_after(response(503)) is None


CTX = _Context("Patient", "p1")


@pytest.mark.parametrize(
    ("resp", "context", "error", "status"),
    [
        (
            response(400, oo("invalid", expression="birthdate")),
            _Context("Patient", search=True),
            InvalidSearch,
            400,
        ),
        (response(400, oo("invalid", expression="Patient.gender")), CTX, InvalidResource, 400),
        (response(401), CTX, UpstreamError, 502),
        (response(403), CTX, UpstreamError, 502),
        (response(404, oo("not-found")), CTX, ResourceNotFound, 404),
        (response(404, oo("not-supported")), CTX, UnsupportedResourceType, 404),
        (response(405), CTX, UnsupportedInteraction, 405),
        (response(409), CTX, ResourceConflict, 409),
        (response(410, etag='W/"4"'), CTX, ResourceGone, 410),
        (response(412, oo("conflict")), _Context("Patient", "p1", if_match="2"), VersionConflict, 412),
        (response(412, oo("processing")), _Context("Patient", conditional=True), MultipleMatches, 412),
        (
            response(412, oo("multiple-matches")),
            _Context("Patient", conditional=True, if_match="1"),
            MultipleMatches,
            412,
        ),
        (response(413), _Context(bundle_entries=600), BundleTooLarge, 413),
        (response(422, oo("invariant", expression="Patient.name[0]")), CTX, InvalidResource, 422),
        (response(429, retry_after="7"), CTX, Throttled, 429),
        (response(500), CTX, StoreUnavailable, 503),
        (response(504), CTX, StoreUnavailable, 503),
        (response(418), CTX, UpstreamError, 502),
    ],
)
def test_error_mapping(resp: _Response, context: _Context, error: type[FhirStoreError], status: int) -> None:
    repo = AhdsFhirRepository("https://example.fhir.azurehealthcareapis.com")
    mapped = repo._error(resp, context)
    assert type(mapped) is error and mapped.http_status == status
    assert isinstance(mapped, TransientError) is (status in (429, 503))
    assert isinstance(mapped, PermanentError) is (status not in (429, 503))
    repo.close()


def test_mapping_keeps_paths_but_never_upstream_diagnostics() -> None:
    repo = AhdsFhirRepository("https://example.fhir.azurehealthcareapis.com")
    secret = "Patient with NHS number 9000000009 named Testperson"
    mapped = repo._error(
        response(422, oo("invariant", diagnostics=secret, expression="Patient.name[0]")), CTX
    )
    assert mapped.expression == "Patient.name[0]"
    assert "9000000009" not in str(mapped) and "Testperson" not in str(mapped.operation_outcome())
    gone = repo._error(response(410, etag='W/"4"'), CTX)
    assert isinstance(gone, ResourceGone) and gone.version_id == "4"
    throttled = repo._error(response(429, retry_after="7"), CTX)
    assert isinstance(throttled, Throttled) and throttled.retry_after == 7.0
    repo.close()


def test_topological_order() -> None:
    assert _topological({0: {2}, 1: set(), 2: set()}, 3) == [1, 2, 0]
    assert _topological({0: set(), 1: {0}, 2: {1}}, 3) == [0, 1, 2]
    assert _topological({0: {1}, 1: {0}, 2: set()}, 3) is None


def test_base_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        AhdsFhirRepository("example.org/fhir")
