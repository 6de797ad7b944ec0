"""The HTTP FHIR adapter (AhdsFhirRepository) over real loopback HTTP: fault injection and request shape.

The adapter's contract over HTTP runs against the project's own FHIR API served by the local host
(tests/integration/test_fhir_api_ahds.py). Here the server is tests/fhir_test_server.py (aiohttp on
127.0.0.1, delegating to the SQLite store) because these tests script it: throttling, 5xx, timeouts, token
refresh, recorded requests and a small bundle limit for splitting. The contract scenarios below run against
the SQLite store directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.azure.ahds_fhir import AhdsFhirRepository
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.errors import TransientError
from shared.fhirstore.errors import (
    BundleTooLarge,
    InvalidSearch,
    MultipleMatches,
    ResourceGone,
    ResourceNotFound,
    StoreUnavailable,
    Throttled,
    TransactionFailed,
    TransactionPartiallyApplied,
    UnsupportedResourceType,
    UpstreamError,
    VersionConflict,
)
from shared.fhirstore.ports import FhirRepository, WriteResult
from tests.fhir_test_server import Fault, FhirTestServer
from tests.unit.fhirstore.fhirstore_fixtures import NHS, StepClock, observation, patient

pytestmark = pytest.mark.timeout(60)

LIMIT = 5  # bundle entry limit of the test server and adapter (AHDS: 500)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SqliteFhirRepository]:
    store = SqliteFhirRepository(tmp_path / "server.db", clock=StepClock(), max_transaction_entries=None)
    yield store
    store.close()


@pytest.fixture
def server(backend: SqliteFhirRepository) -> Iterator[FhirTestServer]:
    with FhirTestServer(backend, max_bundle_entries=LIMIT).running() as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(server: FhirTestServer, sleeps: list[float], **kw: Any) -> AhdsFhirRepository:
    options: dict[str, Any] = {
        "max_bundle_entries": LIMIT,
        "read_timeout": 2.0,
        "connect_timeout": 1.0,
        "backoff_base": 0.01,
        "max_retries": 3,
        "sleep": sleeps.append,
    }
    options.update(kw)
    return AhdsFhirRepository(server.base_url, **options)


@pytest.fixture
def client(server: FhirTestServer, sleeps: list[float]) -> Iterator[AhdsFhirRepository]:
    repo = make_client(server, sleeps)
    yield repo
    repo.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[FhirRepository]:
    """The embedded store (the HTTP adapter's contract runs against the real FHIR API elsewhere)."""
    store = SqliteFhirRepository(tmp_path / "direct.db", clock=StepClock(), max_transaction_entries=LIMIT)
    yield store
    store.close()


# ----------------------------------------------------------------------------------------- contract


def test_contract_crud_versions_history(repo: FhirRepository) -> None:
    assert isinstance(repo, FhirRepository)
    created = repo.create(patient(id="ignored"))
    assert created.created and created.version_id == "1" and created.id != "ignored"
    read = repo.read("Patient", created.id)
    assert read.resource == created.resource and read.etag == 'W/"1"'
    updated = repo.update("Patient", created.id, {**created.resource, "gender": "male"}, if_match='W/"1"')
    assert not updated.created and updated.version_id == "2"
    assert repo.vread("Patient", created.id, "1").resource["gender"] == "female"
    with pytest.raises(VersionConflict):
        repo.update("Patient", created.id, created.resource, if_match='W/"1"')
    repo.delete("Patient", created.id)
    repo.delete("Patient", created.id)  # no-op
    with pytest.raises(ResourceGone):
        repo.read("Patient", created.id)
    history = repo.history("Patient", created.id)
    assert [(h.version_id, h.method, h.deleted) for h in history] == [
        ("3", "DELETE", True),
        ("2", "PUT", False),
        ("1", "POST", False),
    ]
    assert [h.version_id for h in repo.history("Patient", created.id, count=2)] == ["3", "2"]
    again = repo.update("Patient", created.id, patient(id=created.id))
    assert again.created and again.version_id == "4"
    with pytest.raises(ResourceNotFound):
        repo.read("Patient", "nope")
    with pytest.raises(ResourceNotFound):
        repo.vread("Patient", created.id, "99")
    with pytest.raises(UnsupportedResourceType):
        repo.read("Basic", "x")
    created_at = repo.create(patient(nhs="9000000017"))
    type_history = repo.history("Patient")
    assert type_history[0].id == created_at.id and len(type_history) == 5


def test_contract_conditional_operations(repo: FhirRepository) -> None:
    criteria = f"identifier={NHS}|9000000009"
    first = repo.create(patient(), if_none_exist=criteria)
    second = repo.create(patient(gender="male"), if_none_exist=criteria)
    assert first.created and not second.created and second.id == first.id
    assert second.resource["gender"] == "female"
    updated = repo.conditional_update("Patient", criteria, patient(gender="male"))
    assert updated.id == first.id and updated.version_id == "2" and not updated.created
    fresh = repo.conditional_update("Patient", "identifier=9000000017", patient(nhs="9000000017"))
    assert fresh.created
    repo.update("Patient", "dup", patient(id="dup"))
    with pytest.raises(MultipleMatches):
        repo.create(patient(), if_none_exist=criteria)
    with pytest.raises(MultipleMatches):
        repo.conditional_update("Patient", criteria, patient())
    with pytest.raises(InvalidSearch):
        repo.create(patient(), if_none_exist="nickname=x")


def test_contract_search(repo: FhirRepository) -> None:
    pids = [repo.create(patient(nhs=f"90000000{n:02d}", family=f"Fam{n}")).id for n in range(7)]
    for pid in pids[:3]:
        repo.create(observation(pid))
    by_id = repo.search("Patient", [("identifier", f"{NHS}|9000000003")])
    assert by_id.total == 1 and by_id.resources[0]["id"] == pids[3]
    page = repo.search("Patient", [("_sort", "_lastUpdated")], count=2, offset=2)
    assert page.total == 7 and [r["id"] for r in page.resources] == pids[2:4] and page.has_next
    last = repo.search("Patient", [("_sort", "-_lastUpdated")], count=3, offset=6)
    assert [r["id"] for r in last.resources] == [pids[0]] and not last.has_next
    counted = repo.search("Patient", [("family", "fam")], count=0)
    assert counted.total == 7 and counted.resources == []
    with_subject = repo.search("Observation", [("patient", pids[0]), ("_include", "Observation:subject")])
    assert with_subject.total == 1 and [r["id"] for r in with_subject.included] == [pids[0]]
    lenient = repo.search("Patient", [("family", "fam1"), ("shoe-size", "9")], strict=False)
    assert lenient.ignored == ["shoe-size"] and [r["id"] for r in lenient.resources] == [pids[1]]
    with pytest.raises(InvalidSearch) as info:
        repo.search("Patient", [("shoe-size", "9")])
    assert info.value.parameter == "shoe-size"


def test_contract_transaction_and_batch(repo: FhirRepository) -> None:
    urn = "urn:uuid:1b7f3e0c-0000-4000-8000-000000000001"
    response = repo.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": observation("x") | {"subject": {"reference": urn}},
                    "request": {"method": "POST", "url": "Observation"},
                },
                {"fullUrl": urn, "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            ],
        }
    )
    assert [e["response"]["status"][:3] for e in response["entry"]] == ["201", "201"]
    pid = response["entry"][1]["resource"]["id"]
    obs = repo.read("Observation", response["entry"][0]["resource"]["id"])
    assert obs.resource["subject"]["reference"] == f"Patient/{pid}"
    before = repo.search("Patient", []).total
    with pytest.raises(TransactionFailed) as info:
        repo.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": patient(nhs="9000000017"), "request": {"method": "POST", "url": "Patient"}},
                    {
                        "resource": patient(id=pid),
                        "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"9"'},
                    },
                ],
            }
        )
    assert info.value.index == 1 and info.value.http_status == 412
    assert repo.search("Patient", []).total == before
    batch = repo.batch(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"resource": patient(nhs="9000000025"), "request": {"method": "POST", "url": "Patient"}},
                {"request": {"method": "GET", "url": "Patient/missing"}},
                {"request": {"method": "GET", "url": f"Patient/{pid}"}},
            ],
        }
    )
    assert [e["response"]["status"][:3] for e in batch["entry"]] == ["201", "404", "200"]
    assert batch["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    with pytest.raises(BundleTooLarge):
        repo.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": patient(), "request": {"method": "POST", "url": "Patient"}}]
                * (LIMIT + 1),
            }
        )


# --------------------------------------------------------------------------------------- retries


def test_429_retry_after_is_honoured(
    server: FhirTestServer, client: AhdsFhirRepository, sleeps: list[float]
) -> None:
    pid = client.create(patient()).id
    server.inject(Fault(429, headers={"Retry-After": "1"}))
    assert client.read("Patient", pid).id == pid
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 1.1
    server.inject(Fault(429, headers={"x-ms-retry-after-ms": "250", "Retry-After": "9"}))
    client.read("Patient", pid)
    assert 0.25 <= sleeps[1] <= 0.275
    assert server.count("GET", f"/Patient/{pid}") == 4


def test_503_is_retried_even_for_a_plain_create(
    server: FhirTestServer, client: AhdsFhirRepository, sleeps: list[float]
) -> None:
    server.inject(Fault(503, times=2))
    created = client.create(patient())
    assert created.created
    assert server.count("POST", "/Patient") == 3 and len(sleeps) == 2
    assert all(0 <= s <= 0.04 for s in sleeps), "exponential backoff from backoff_base with jitter"
    assert client.search("Patient", []).total == 1


def test_exhausted_retries(server: FhirTestServer, client: AhdsFhirRepository, sleeps: list[float]) -> None:
    server.inject(Fault(503, times=10))
    with pytest.raises(StoreUnavailable) as unavailable:
        client.read("Patient", "x")
    assert isinstance(unavailable.value, TransientError) and unavailable.value.http_status == 503
    assert server.count("GET") == 4 and len(sleeps) == 3  # max_retries=3
    server._faults.clear()
    server.inject(Fault(429, headers={"Retry-After": "2"}, times=10))
    with pytest.raises(Throttled) as throttled:
        client.search("Patient", [])
    assert throttled.value.retry_after == 2.0 and throttled.value.http_status == 429


def test_retry_after_longer_than_the_cap_is_not_slept(server: FhirTestServer, sleeps: list[float]) -> None:
    client = make_client(server, sleeps, max_retry_after=5)
    server.inject(Fault(429, headers={"Retry-After": "120"}))
    with pytest.raises(Throttled) as info:
        client.read("Patient", "x")
    assert info.value.retry_after == 120 and sleeps == []
    client.close()


def test_500_retried_only_when_safe(
    server: FhirTestServer, client: AhdsFhirRepository, sleeps: list[float]
) -> None:
    server.inject(Fault(500))
    with pytest.raises(ResourceNotFound):
        client.read("Patient", "x")  # retried after the 500, then a real 404
    assert server.count("GET") == 2
    server.inject(Fault(500))
    with pytest.raises(StoreUnavailable):
        client.create(patient())
    assert server.count("POST") == 1, "a plain create is not repeated after a 500"
    server.inject(Fault(502))
    assert client.create(patient(), if_none_exist="identifier=9000000009").created
    assert server.count("POST") == 3, "a conditional create is safe to repeat"


def test_read_timeout_retried_for_get_not_for_plain_post(server: FhirTestServer, sleeps: list[float]) -> None:
    # Held requests wait for the test's event, so they outlast any read timeout; the others answer at once
    # (the timeout is generous for them).
    client = make_client(server, sleeps, read_timeout=1.5)
    pid = client.create(patient()).id
    held = threading.Event()
    try:
        server.inject(Fault(None, hold=held))
        assert client.read("Patient", pid).id == pid
        assert server.count("GET") == 2 and len(sleeps) == 1
        server.inject(Fault(None, hold=held))
        with pytest.raises(StoreUnavailable):
            client.create(patient(nhs="9000000017"))
        assert server.count("POST") == 2, "no retry: the request may have been processed"
    finally:
        held.set()
        client.close()


class GatedCreates:
    """The server's store, with the first two creates held at a barrier until both have arrived: both
    contenders are inside the conditional create at the same time, then race for the store. Later creates
    pass straight through. ``results`` keeps what the store answered each gated contender."""

    def __init__(self, repo: SqliteFhirRepository) -> None:
        self.repo = repo
        self.barrier = threading.Barrier(2, timeout=60)
        self.results: list[WriteResult] = []
        self.both_done = threading.Event()
        self._arrived = 0
        self._lock = threading.Lock()

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        with self._lock:
            self._arrived += 1
            gated = self._arrived <= 2
        if not gated:
            return self.repo.create(resource, if_none_exist=if_none_exist)
        self.barrier.wait()
        result = self.repo.create(resource, if_none_exist=if_none_exist)
        with self._lock:
            self.results.append(result)
            if len(self.results) == 2:
                self.both_done.set()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)


def test_timeout_on_conditional_create_retries_without_duplicates(
    backend: SqliteFhirRepository, sleeps: list[float]
) -> None:
    """The first attempt reaches the server and is held there; the client times out and retries (the
    create carries If-None-Exist, so it is safe to repeat); the retry arrives while the first is still in
    flight, and both enter the conditional create together (a barrier, not a sleep). Exactly one
    resource exists afterwards, and it is the one the client was told about."""
    gate = GatedCreates(backend)
    server = FhirTestServer(cast(FhirRepository, gate), max_bundle_entries=LIMIT, threaded_creates=True)
    body = patient()
    with server.running():
        # The first attempt is held by the barrier until the retry arrives, so it always outlasts the
        # timeout; the retry answers at once once released.
        client = make_client(server, sleeps, read_timeout=1.0)
        try:
            result = client.create(body, if_none_exist="identifier=9000000009")
            assert gate.both_done.wait(60), "the first attempt never finished on the server"
            found = client.search("Patient", [("identifier", "9000000009")])
        finally:
            client.close()
    # One contender created it, the other found it: the same resource, created once.
    assert sorted(r.created for r in gate.results) == [False, True]
    assert {r.id for r in gate.results} == {result.id}
    assert found.total == 1 and [m["id"] for m in found.resources] == [result.id]
    stored = backend.read("Patient", result.id).resource
    assert (stored["identifier"], stored["name"], stored["birthDate"]) == (
        body["identifier"],
        body["name"],
        body["birthDate"],
    )
    assert stored["meta"]["versionId"] == "1"  # never overwritten by the other attempt
    posts = [r for r in server.requests if r.method == "POST"]
    assert len(posts) >= 2 and all(r.headers.get("If-None-Exist") for r in posts)


def test_connection_refused_is_transient(sleeps: list[float]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AhdsFhirRepository(
        f"http://127.0.0.1:{port}/fhir", max_retries=2, backoff_base=0.01, sleep=sleeps.append
    )
    with pytest.raises(StoreUnavailable):
        client.create(patient())
    assert len(sleeps) == 2, "not sent, so even a plain create is retried"
    client.close()


# ------------------------------------------------------------------------------------------ auth


class FakeCredential:
    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(f"tok-{len(self.scopes)}", int(time.time() + self.lifetime))


def test_managed_identity_token_cached_and_sent(server: FhirTestServer, sleeps: list[float]) -> None:
    credential = FakeCredential(lifetime=3600)
    client = make_client(server, sleeps, credential=credential)
    client.create(patient())
    client.search("Patient", [])
    assert credential.scopes == [f"{server.base_url}/.default"]
    assert {r.headers.get("Authorization") for r in server.requests} == {"Bearer tok-1"}
    client.close()


def test_token_near_expiry_is_refreshed(server: FhirTestServer, sleeps: list[float]) -> None:
    credential = FakeCredential(lifetime=120)  # inside the 5-minute refresh margin
    client = make_client(server, sleeps, credential=credential)
    client.search("Patient", [])
    client.search("Patient", [])
    assert len(credential.scopes) == 2
    assert [r.headers["Authorization"] for r in server.requests] == ["Bearer tok-1", "Bearer tok-2"]
    client.close()


def test_401_refreshes_the_token_once(server: FhirTestServer, sleeps: list[float]) -> None:
    server.required_token = "tok-2"
    credential = FakeCredential(lifetime=3600)
    client = make_client(server, sleeps, credential=credential)
    assert client.search("Patient", []).total == 0
    assert len(credential.scopes) == 2
    server.required_token = "never"
    with pytest.raises(UpstreamError) as info:
        client.search("Patient", [])
    assert info.value.http_status == 502 and "401" in str(info.value)
    client.close()


def test_token_provider_and_no_auth(server: FhirTestServer, sleeps: list[float]) -> None:
    with_provider = make_client(server, sleeps, token_provider=lambda: "static-token")
    with_provider.search("Patient", [])
    without = make_client(server, sleeps)
    without.search("Patient", [])
    assert server.requests[0].headers["Authorization"] == "Bearer static-token"
    assert "Authorization" not in server.requests[1].headers
    with_provider.close()
    without.close()


# ------------------------------------------------------------------------------------- requests


def test_request_shape(server: FhirTestServer, client: AhdsFhirRepository) -> None:
    created = client.create(patient(), if_none_exist=f"identifier={NHS}|9000000009")
    client.update("Patient", created.id, created.resource, if_match="1")
    post, put = server.requests[0], server.requests[1]
    assert post.headers["Content-Type"].startswith("application/fhir+json")
    assert post.headers["Prefer"] == "return=representation"
    assert "9000000009" in post.headers["If-None-Exist"]
    assert put.headers["If-Match"] == 'W/"1"'


def test_long_searches_use_post_search(server: FhirTestServer, client: AhdsFhirRepository) -> None:
    client.create(patient())
    many = ",".join(f"90000{n:05d}" for n in range(400))
    assert client.search("Patient", [("identifier", many)]).total == 1
    assert server.count("POST", "/Patient/_search") == 1


def test_next_links_outside_the_origin_are_not_followed(
    server: FhirTestServer, client: AhdsFhirRepository
) -> None:
    body = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": patient(id="p1"), "search": {"mode": "match"}}],
        "link": [{"relation": "next", "url": "http://127.0.0.2:9/fhir/Patient?ct=abc"}],
    }
    server.inject(Fault(200, body=body))
    with pytest.raises(UpstreamError):
        client.search("Patient", [], count=2)


def test_upstream_multiple_matches_by_diagnostics(server: FhirTestServer, client: AhdsFhirRepository) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": "Multiple resources match"}],
    }
    server.inject(Fault(412, body=outcome))
    with pytest.raises(MultipleMatches):
        client.conditional_update("Patient", "identifier=9000000009", patient(), if_match="1")


# --------------------------------------------------------------------------------------- bundles


def _posts(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"resource": patient(nhs=f"91000{n:05d}"), "request": {"method": "POST", "url": "Patient"}}
        for n in range(start, start + count)
    ]


def test_batch_is_split_into_chunks(server: FhirTestServer, client: AhdsFhirRepository) -> None:
    entries = _posts(12)
    entries[7] = {"request": {"method": "GET", "url": "Patient/missing"}}
    entries[9] = {"request": {"method": "FETCH", "url": "Patient"}}  # invalid: answered locally
    response = client.batch({"resourceType": "Bundle", "type": "batch", "entry": entries})
    statuses = [e["response"]["status"][:3] for e in response["entry"]]
    assert statuses == ["201"] * 7 + ["404", "201", "400", "201", "201"]
    assert server.count("POST") == 3  # 11 valid entries in chunks of 5
    assert client.search("Patient", []).total == 10


def test_batch_chunk_failure_is_reported_per_entry(
    server: FhirTestServer, client: AhdsFhirRepository
) -> None:
    server.inject(Fault(400, match=lambda request: server.count("POST") == 2))
    response = client.batch({"resourceType": "Bundle", "type": "batch", "entry": _posts(8)})
    statuses = [e["response"]["status"][:3] for e in response["entry"]]
    assert statuses == ["201"] * 5 + ["400"] * 3


def test_oversized_transaction_is_refused_without_split(
    server: FhirTestServer, client: AhdsFhirRepository
) -> None:
    with pytest.raises(BundleTooLarge) as info:
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": _posts(LIMIT + 2)})
    assert info.value.http_status == 413 and "atomicity" in str(info.value)
    assert server.requests == []


def test_split_transaction_orders_and_rewrites_references(
    server: FhirTestServer, sleeps: list[float]
) -> None:
    client = make_client(server, sleeps, split_transactions=True)
    urn = "urn:uuid:7a0c2b9e-0000-4000-8000-000000000001"
    entries = [
        {
            "resource": observation("x") | {"subject": {"reference": urn}},
            "request": {"method": "POST", "url": "Observation"},
        },
        *_posts(5),
        {
            "fullUrl": urn,
            "resource": patient(nhs="9000000009"),
            "request": {"method": "POST", "url": "Patient"},
        },
    ]
    response = client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert server.count("POST") == 2
    assert [e["response"]["status"][:3] for e in response["entry"]] == ["201"] * 7
    pid = response["entry"][6]["resource"]["id"]
    obs_id = response["entry"][0]["resource"]["id"]
    assert client.read("Observation", obs_id).resource["subject"]["reference"] == f"Patient/{pid}"
    client.close()


def test_split_transaction_failure_reports_committed_entries(
    server: FhirTestServer, sleeps: list[float]
) -> None:
    client = make_client(server, sleeps, split_transactions=True)
    entries = [
        *_posts(6),
        {"resource": patient(id="p9"), "request": {"method": "PUT", "url": "Patient/p9", "ifMatch": 'W/"3"'}},
    ]
    with pytest.raises(TransactionPartiallyApplied) as info:
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert info.value.committed_entries == [0, 1, 2, 3, 4]
    assert isinstance(info.value.cause, TransactionFailed)
    assert client.search("Patient", []).total == 5
    cyclic = [
        {
            "fullUrl": "urn:uuid:a",
            "resource": observation("x") | {"subject": {"reference": "urn:uuid:b"}},
            "request": {"method": "POST", "url": "Observation"},
        },
        {
            "fullUrl": "urn:uuid:b",
            "resource": observation("x") | {"subject": {"reference": "urn:uuid:a"}},
            "request": {"method": "POST", "url": "Observation"},
        },
        *_posts(5, start=10),
    ]
    with pytest.raises(BundleTooLarge):
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": cyclic})
    client.close()


def test_capabilities_match_the_embedded_store(
    client: AhdsFhirRepository, backend: SqliteFhirRepository
) -> None:
    assert client.capabilities()["rest"] == backend.capabilities()["rest"]
