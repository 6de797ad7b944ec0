"""PDS client against the local stand-in: the sandbox scenario tables, headers, retries, restricted data."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from shared.adapters.embedded.pds_stub import PdsStub, StubTransport, serve
from shared.pds.auth import NoToken, StaticTokenSource
from shared.pds.client import PdsFhirClient, Reply, Urllib3Transport
from shared.pds.errors import PatientNotFound, PdsRejected, PdsUnavailable, PdsVersionConflict
from shared.pds.model import RESTRICTED_FIELDS, parse_patient, redact


class Recording:
    """Transport wrapper that keeps the headers and sleeps of each call."""

    def __init__(self, inner: StubTransport) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> Reply:
        self.calls.append((method, path, dict(headers)))
        return self.inner.request(method, path, params, headers, body)


def client(stub: PdsStub, sleeps: list[float] | None = None) -> PdsFhirClient:
    slept = sleeps if sleeps is not None else []
    return PdsFhirClient(StubTransport(stub), NoToken(), sleep=slept.append)


def test_retrieve_patient_exists(stub: PdsStub) -> None:
    patient = client(stub).retrieve("9000000009", correlation_id="c1")
    assert patient.nhs_number == "9000000009"
    assert patient.verification_status == "01"
    assert not patient.restricted and patient.superseded_from is None
    assert patient.version is not None and patient.etag == f'W/"{patient.version}"'


def test_sensitive_patient_keeps_no_restricted_field(stub: PdsStub) -> None:
    patient = client(stub).retrieve("9000000025", correlation_id="c1")
    assert patient.restricted
    assert not set(RESTRICTED_FIELDS) & patient.resource.keys()
    assert patient.postcodes == ()


def test_restricted_fields_dropped_even_when_pds_sends_them(pds_corpus: Path) -> None:
    resource = json.loads((pds_corpus / "sandbox/mocks/Sensitive_Patient.json").read_text())
    resource["address"] = [{"line": ["1 Hidden Lane"], "postalCode": "LS2 9ZZ"}]
    resource["telecom"] = [{"system": "phone", "value": "01130000000"}]
    resource["generalPractitioner"] = [{"identifier": {"value": "Y12345"}}]
    patient = parse_patient(resource)
    assert patient.restricted
    assert not set(RESTRICTED_FIELDS) & patient.resource.keys()
    assert patient.postcodes == ()
    assert "Hidden" not in repr(patient) and "LS2" not in json.dumps(dict(patient.resource))
    # An unrestricted record keeps them.
    resource["meta"]["security"][0]["code"] = "U"
    assert "address" in redact(resource)


def test_superseded_number_answers_the_current_record(stub: PdsStub) -> None:
    patient = client(stub).retrieve("9000000017", correlation_id="c1")
    assert (patient.nhs_number, patient.superseded_from) == ("9000000009", "9000000017")


@pytest.mark.parametrize(
    ("number", "error", "code"),
    [
        ("9111231130", PatientNotFound, "RESOURCE_NOT_FOUND"),
        ("9000000041", PatientNotFound, "INVALIDATED_RESOURCE"),
    ],
)
def test_not_found_is_permanent(stub: PdsStub, number: str, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as caught:
        client(stub).retrieve(number, correlation_id="c1")
    assert caught.value.pds_code == code  # type: ignore[attr-defined]
    assert number not in str(caught.value)


def test_invalid_nhs_number_is_refused_before_the_call(stub: PdsStub) -> None:
    with pytest.raises(PdsRejected) as caught:
        client(stub).retrieve("9000000000", correlation_id="c1")
    assert caught.value.status == 400 and stub.requests == 0
    assert stub.respond("GET", "/Patient/9000000000", (), {"X-Request-ID": "r"}).status == 400


def test_every_call_carries_request_and_correlation_ids(stub: PdsStub) -> None:
    transport = Recording(StubTransport(stub))
    pds = PdsFhirClient(transport, StaticTokenSource("tok"))
    pds.retrieve("9000000009", correlation_id="corr-1")
    pds.search([("family", "Smith"), ("birthdate", "eq2010-10-22")], correlation_id="corr-2")
    (_, _, first), (_, _, second) = transport.calls
    assert first["X-Correlation-ID"] == "corr-1" and second["X-Correlation-ID"] == "corr-2"
    assert first["X-Request-ID"] and first["X-Request-ID"] != second["X-Request-ID"]
    assert first["Authorization"] == "Bearer tok"


def test_missing_request_id_and_missing_token_are_refused(pds_corpus: Path) -> None:
    stub = PdsStub(pds_corpus, require_token=True)
    assert stub.respond("GET", "/Patient/9000000009", (), {"X-Request-ID": "r"}).status == 401
    with pytest.raises(PdsRejected) as caught:
        client(stub).retrieve("9000000009", correlation_id="c")
    assert (caught.value.status, caught.value.pds_code) == (401, "ACCESS_DENIED")
    open_stub = PdsStub(pds_corpus)
    reply = open_stub.respond("GET", "/Patient/9000000009", (), {})
    assert reply.status == 400 and b"MISSING_VALUE" in reply.body


def test_rate_limit_is_retried_honouring_retry_after_then_transient(stub: PdsStub) -> None:
    sleeps: list[float] = []
    with pytest.raises(PdsUnavailable) as caught:
        client(stub, sleeps).retrieve("9000000068", correlation_id="c1")
    assert caught.value.status == 429
    assert sleeps == [1.0, 1.0]  # Retry-After: 1, between the three attempts
    assert stub.requests == 3


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 412, "PRECONDITION_FAILED"),
        ({"If-Match": 'W/"99"'}, 409, "RESOURCE_VERSION_MISMATCH"),
    ],
)
def test_update_needs_the_current_etag(
    stub: PdsStub, headers: dict[str, str], status: int, code: str
) -> None:
    reply = stub.respond("PATCH", "/Patient/9000000009", (), {"X-Request-ID": "r", **headers})
    assert reply.status == status and code.encode() in reply.body


def test_update_with_the_current_etag_moves_the_version(stub: PdsStub) -> None:
    current = client(stub).retrieve("9000000009", correlation_id="c")
    assert current.etag is not None
    reply = stub.respond("PATCH", "/Patient/9000000009", (), {"X-Request-ID": "r", "If-Match": current.etag})
    assert reply.status == 200
    after = client(stub).retrieve("9000000009", correlation_id="c")
    assert int(after.version or 0) == int(current.version or 0) + 1


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        (
            [("family", "Smith"), ("invalidParam", "1"), ("birthdate", "eq2010-10-22")],
            400,
            "ADDITIONAL_PROPERTIES",
        ),
        ([("family", "Smith"), ("birthdate", "22-10-2010")], 400, "INVALID_SEARCH_DATA"),
        ([("gender", "female")], 400, "TOO_FEW_VALUES_SUBMITTED"),
    ],
)
def test_search_errors(stub: PdsStub, params: list[tuple[str, str]], status: int, code: str) -> None:
    with pytest.raises(PdsRejected) as caught:
        client(stub).search(params, correlation_id="c")
    assert (caught.value.status, caught.value.pds_code) == (status, code)


def test_search_too_many_matches(stub: PdsStub) -> None:
    result = client(stub).search([("family", "Jones"), ("birthdate", "eq1980-01-01")], correlation_id="c")
    assert result.too_many and result.patients == ()


def test_address_search_never_returns_a_restricted_patient(stub: PdsStub) -> None:
    base = [("family", "Smythe"), ("given", "Janet"), ("gender", "female"), ("birthdate", "eq2005-06-16")]
    assert len(client(stub).search(base, correlation_id="c").patients) == 1
    with_postcode = [*base, ("address-postalcode", "LS*")]
    assert client(stub).search(with_postcode, correlation_id="c").patients == ()


@pytest.fixture
def http_stub(stub: PdsStub) -> Iterator[str]:
    server = serve(stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/personal-demographics/FHIR/R4"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_transport_over_loopback(http_stub: str) -> None:
    transport = Urllib3Transport(http_stub, timeout=5)
    pds = PdsFhirClient(transport, NoToken())
    try:
        assert pds.retrieve("9000000009", correlation_id="c").nhs_number == "9000000009"
        with pytest.raises(PatientNotFound):
            pds.retrieve("9111231130", correlation_id="c")
    finally:
        transport.close()


def test_http_transport_connection_refused_is_transient() -> None:
    from tests.helpers import free_port

    sleeps: list[float] = []
    transport = Urllib3Transport(f"http://127.0.0.1:{free_port()}", timeout=1)
    pds = PdsFhirClient(transport, NoToken(), sleep=sleeps.append)
    with pytest.raises(PdsUnavailable):
        pds.retrieve("9000000009", correlation_id="c")
    assert len(sleeps) == 2


PATCH = [{"op": "replace", "path": "/gender", "value": "female"}]


def test_update_sends_if_match_and_a_stale_etag_is_a_version_conflict(http_stub: str) -> None:
    transport = Urllib3Transport(http_stub, timeout=5)
    pds = PdsFhirClient(transport, NoToken())
    try:
        current = pds.retrieve("9000000009", correlation_id="c")
        assert current.etag is not None
        updated = pds.update("9000000009", PATCH, etag=current.etag, correlation_id="c")
        assert int(updated.version or 0) == int(current.version or 0) + 1
        with pytest.raises(PdsVersionConflict) as caught:
            pds.update("9000000009", PATCH, etag=current.etag, correlation_id="c")  # now stale
        assert (caught.value.status, caught.value.pds_code) == (409, "RESOURCE_VERSION_MISMATCH")
    finally:
        transport.close()
