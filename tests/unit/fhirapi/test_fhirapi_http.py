"""Header, media-type, body and URL helpers of the FHIR API (shared.fhirapi.http)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.fhirapi.errors import MalformedBody, NotAcceptable, PayloadTooLarge, UnsupportedMediaType
from shared.fhirapi.http import (
    FHIR_JSON,
    JSON,
    Headers,
    base_url,
    check_body_media_type,
    decode_form,
    decode_json_object,
    http_date,
    parse_http_date,
    parse_prefer,
    response_media_type,
)


@pytest.mark.parametrize(
    ("header", "returns", "handling"),
    [
        (None, "representation", "lenient"),
        ("return=minimal", "minimal", "lenient"),
        ("return=OperationOutcome, handling=strict", "OperationOutcome", "strict"),
        ('return="minimal"; x=1', "minimal", "lenient"),
        ("handling=strict,respond-async", "representation", "strict"),
        ("return=everything, handling=maybe", "representation", "lenient"),
        ("RETURN=minimal", "minimal", "lenient"),
    ],
)
def test_prefer(header: str | None, returns: str, handling: str) -> None:
    prefs = parse_prefer(header)
    assert (prefs.return_, prefs.handling) == (returns, handling)


@pytest.mark.parametrize(
    ("accept", "fmt", "expected"),
    [
        (None, None, FHIR_JSON),
        ("*/*", None, FHIR_JSON),
        ("application/fhir+json;q=0.9, */*;q=0.1", None, FHIR_JSON),
        ("application/json", None, JSON),
        ("text/html,application/xhtml+xml,*/*;q=0.8", None, FHIR_JSON),
        ("application/fhir+xml", "json", FHIR_JSON),
        (None, "application/json", JSON),
    ],
)
def test_response_media_type(accept: str | None, fmt: str | None, expected: str) -> None:
    assert response_media_type(accept, fmt) == expected


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("application/fhir+xml", None),
        ("application/xml, text/xml", None),
        (None, "xml"),
        (None, "csv"),
        ("application/fhir+json;q=0, application/xml", None),
    ],
)
def test_not_acceptable(accept: str | None, fmt: str | None) -> None:
    with pytest.raises(NotAcceptable) as info:
        response_media_type(accept, fmt)
    assert info.value.http_status == 406


def test_body_media_types() -> None:
    assert check_body_media_type("application/fhir+json; charset=utf-8; fhirVersion=4.0") == FHIR_JSON
    assert check_body_media_type("Application/JSON") == JSON
    for bad in (None, "", "text/plain", "application/fhir+xml"):
        with pytest.raises(UnsupportedMediaType):
            check_body_media_type(bad)
    with pytest.raises(UnsupportedMediaType):
        check_body_media_type("application/x-www-form-urlencoded")
    assert check_body_media_type("application/x-www-form-urlencoded", allow_form=True).endswith("urlencoded")


@pytest.mark.parametrize(
    "raw",
    [b"", b"  ", b"{", b"[]", b'"x"', b'{"a": NaN}', b'{"a": Infinity}', b"\xff", b'{"a": "\\udbb5"}'],
)
def test_bodies_that_are_not_json_objects(raw: bytes) -> None:
    with pytest.raises(MalformedBody) as info:
        decode_json_object(raw, limit=1024)
    assert info.value.http_status == 400 and info.value.issue_code == "structure"


def test_body_decoding() -> None:
    assert decode_json_object(b'{"a": "\\ud83d\\ude00", "n": 1.5}', limit=100) == {
        "a": "\U0001f600",
        "n": 1.5,
    }
    with pytest.raises(PayloadTooLarge) as info:
        decode_json_object(b"{}" + b" " * 200, limit=100)
    assert info.value.http_status == 413
    assert decode_form(b"identifier=a%7Cb&_count=2", limit=100) == [("identifier", "a|b"), ("_count", "2")]
    with pytest.raises(PayloadTooLarge):
        decode_form(b"x" * 200, limit=100)


def test_headers_are_case_insensitive() -> None:
    headers = Headers({"If-Match": 'W/"1"', "content-type": FHIR_JSON})
    assert headers["if-match"] == 'W/"1"' and "CONTENT-TYPE" in headers and len(headers) == 2
    assert set(headers) == {"If-Match", "content-type"}


def test_base_url() -> None:
    assert base_url("http://127.0.0.1:7071/api/fhir/Patient/1?x=1") == "http://127.0.0.1:7071/api/fhir"
    assert base_url("http://127.0.0.1:7071/api/fhir") == "http://127.0.0.1:7071/api/fhir"
    assert base_url("https://x/api/FHIR/metadata") == "https://x/api/FHIR"
    assert base_url("http://h/api/fhir/x", "https://gw.example/tie/fhir/") == "https://gw.example/tie/fhir"


def test_http_dates() -> None:
    moment = datetime(2024, 5, 1, 9, 30, 0, 123000, tzinfo=UTC)
    assert http_date(moment) == "Wed, 01 May 2024 09:30:00 GMT"
    assert parse_http_date("Wed, 01 May 2024 09:30:00 GMT") == moment.replace(microsecond=0)
    assert parse_http_date("yesterday") is None and parse_http_date(None) is None
