"""Transaction and batch Bundles on the SQLite store: reference rewriting, conditional entries, ordering,
all-or-nothing rollback, independent batch entries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.fhirstore.errors import (
    BundleTooLarge,
    InvalidBundle,
    InvalidResource,
    MultipleMatches,
    ResourceConflict,
    TransactionFailed,
    UnsupportedInteraction,
    VersionConflict,
)
from tests.unit.fhirstore.fhirstore_fixtures import NHS, StepClock, observation, patient

PAT_URN = "urn:uuid:6b4e0a4e-1d2b-4c44-9a55-0c1b2f6c0001"
ENC_URN = "urn:uuid:6b4e0a4e-1d2b-4c44-9a55-0c1b2f6c0002"
OBS_URN = "urn:uuid:6b4e0a4e-1d2b-4c44-9a55-0c1b2f6c0003"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SqliteFhirRepository]:
    store = SqliteFhirRepository(tmp_path / "fhir.db", clock=StepClock())
    yield store
    store.close()


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(url: str, resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": "PUT", "url": url, **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def req(method: str, url: str) -> dict[str, Any]:
    return {"request": {"method": method, "url": url}}


def snapshot(repo: SqliteFhirRepository) -> tuple[Any, ...]:
    conn = sqlite3.connect(repo._db.path)
    try:
        return tuple(
            conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            for table in ("fhir_resource", "fhir_version", "fhir_idx_token", "fhir_idx_ref")
        )
    finally:
        conn.close()


def encounter(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "IMP"},
        "subject": {"reference": subject},
    }


def test_transaction_rewrites_urn_references_everywhere(repo: SqliteFhirRepository) -> None:
    obs = observation("ignored")
    obs["subject"] = {"reference": PAT_URN}
    obs["encounter"] = {"reference": ENC_URN}
    obs["contained"] = [{"resourceType": "Specimen", "id": "s1", "subject": {"reference": PAT_URN}}]
    obs["extension"] = [{"url": "https://example.org/ext", "valueReference": {"reference": ENC_URN}}]
    obs["component"] = [
        {"code": {"text": "c"}, "extension": [{"url": "x", "valueReference": {"reference": PAT_URN}}]}
    ]
    obs["note"] = [{"text": PAT_URN}]  # not a reference: untouched
    response = repo.transaction(
        tx(post(obs, OBS_URN), post(encounter(PAT_URN), ENC_URN), post(patient(), PAT_URN))
    )
    assert response["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created"] * 3
    pat_id = response["entry"][2]["resource"]["id"]
    enc_id = response["entry"][1]["resource"]["id"]
    assert response["entry"][2]["response"]["location"] == f"Patient/{pat_id}/_history/1"
    assert response["entry"][2]["response"]["etag"] == 'W/"1"'
    stored = repo.read("Observation", response["entry"][0]["resource"]["id"]).resource
    assert stored["subject"]["reference"] == f"Patient/{pat_id}"
    assert stored["encounter"]["reference"] == f"Encounter/{enc_id}"
    assert stored["contained"][0]["subject"]["reference"] == f"Patient/{pat_id}"
    assert stored["extension"][0]["valueReference"]["reference"] == f"Encounter/{enc_id}"
    assert stored["component"][0]["extension"][0]["valueReference"]["reference"] == f"Patient/{pat_id}"
    assert stored["note"][0]["text"] == PAT_URN
    assert repo.read("Encounter", enc_id).resource["subject"]["reference"] == f"Patient/{pat_id}"
    # The rewritten references are indexed: searchable by the new ids.
    assert repo.search("Observation", [("patient", pat_id), ("encounter", enc_id)]).total == 1


def test_if_none_exist_in_transaction_resolves_to_existing(repo: SqliteFhirRepository) -> None:
    existing = repo.create(patient())
    criteria = f"identifier={NHS}|9000000009"
    response = repo.transaction(
        tx(post(patient(gender="male"), PAT_URN, ifNoneExist=criteria), post(encounter(PAT_URN), ENC_URN))
    )
    first, second = response["entry"]
    assert first["response"]["status"] == "200 OK" and first["resource"]["id"] == existing.id
    assert first["response"]["location"] == f"Patient/{existing.id}/_history/1"
    assert (
        repo.read("Encounter", second["resource"]["id"]).resource["subject"]["reference"]
        == f"Patient/{existing.id}"
    )
    assert repo.search("Patient", []).total == 1
    assert repo.read("Patient", existing.id).resource["gender"] == "female"


def test_conditional_put_and_conditional_reference(repo: SqliteFhirRepository) -> None:
    existing = repo.create(patient())
    response = repo.transaction(
        tx(
            put(f"Patient?identifier={NHS}|9000000009", patient(gender="male"), PAT_URN),
            put("Patient?identifier=9000000017", patient(nhs="9000000017")),
            post(encounter("Patient?identifier=9000000009")),
            post(observation("x") | {"subject": {"reference": PAT_URN}}),
        )
    )
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["200 OK", "201 Created", "201 Created", "201 Created"]
    assert response["entry"][0]["resource"]["id"] == existing.id
    assert response["entry"][0]["response"]["etag"] == 'W/"2"'
    enc = response["entry"][2]["resource"]
    assert enc["subject"]["reference"] == f"Patient/{existing.id}"
    assert response["entry"][3]["resource"]["subject"]["reference"] == f"Patient/{existing.id}"


def test_processing_order_delete_post_put_get(repo: SqliteFhirRepository) -> None:
    repo.update("Patient", "keep", patient(id="keep"))
    repo.update("Patient", "drop", patient(id="drop", nhs="9000000017"))
    response = repo.transaction(
        tx(
            req("GET", "Patient/keep"),
            put("Patient/keep", patient(id="keep", gender="male")),
            req("GET", "Patient?identifier=9000000017"),
            post(patient(nhs="9000000017")),
            req("DELETE", "Patient/drop"),
            req("GET", "Patient/keep/_history/1"),
            req("GET", "Patient/keep/_history"),
        )
    )
    entries = response["entry"]
    # GETs run last, so they see the PUT, the DELETE and the POST.
    assert entries[0]["resource"]["gender"] == "male" and entries[0]["response"]["etag"] == 'W/"2"'
    search = entries[2]["resource"]
    assert search["type"] == "searchset" and search["total"] == 1
    assert search["entry"][0]["resource"]["id"] == entries[3]["resource"]["id"] != "drop"
    assert entries[4]["response"]["status"] == "204 No Content"
    assert entries[5]["resource"]["gender"] == "female"
    history = entries[6]["resource"]
    assert history["type"] == "history" and [e["response"]["etag"] for e in history["entry"]] == [
        'W/"2"',
        'W/"1"',
    ]


@pytest.mark.parametrize(
    ("bad_entry", "error", "status"),
    [
        (put("Patient/p2", patient(id="p2"), ifMatch='W/"1"'), TransactionFailed, 409),
        (put("Patient/p3", patient(id="p3"), ifMatch='W/"9"'), VersionConflict, 412),
        (put("Patient/p1", patient(id="other")), InvalidResource, 400),
        (post({"resourceType": "Patient", "birthDate": "x", "id": "not valid!"}), InvalidResource, 400),
        (post(observation("x") | {"subject": {"reference": "urn:uuid:nowhere"}}), TransactionFailed, 400),
        (post(encounter("Patient?identifier=nobody")), TransactionFailed, 400),
        (req("GET", "Patient/unknown"), TransactionFailed, 404),
        (req("PATCH", "Patient/p1"), UnsupportedInteraction, 405),
        (req("DELETE", "Patient?identifier=9000000009"), UnsupportedInteraction, 405),
        ({"request": {"method": "FETCH", "url": "Patient"}}, InvalidBundle, 400),
        ({"resource": patient()}, InvalidBundle, 400),
        (post(patient(), ifNoneExist="identifier=9000000009&identifier=dup"), TransactionFailed, 200),
    ],
)
def test_one_bad_entry_rolls_back_everything(
    repo: SqliteFhirRepository, bad_entry: dict[str, Any], error: type[Exception], status: int
) -> None:
    repo.update("Patient", "p1", patient(id="p1"))
    repo.update("Patient", "p2", patient(id="p2", nhs="9000000025"))
    before = snapshot(repo)
    bundle = tx(
        post(patient(nhs="9000000017"), PAT_URN),
        post(encounter(PAT_URN)),
        put("Patient/p1", patient(id="p1", gender="male")),
        req("DELETE", "Patient/p2"),
        bad_entry,
    )
    if status == 200:  # a valid entry: the transaction succeeds; checks the fixture itself is sound
        repo.transaction(bundle)
        assert snapshot(repo) != before
        return
    with pytest.raises(TransactionFailed) as info:
        repo.transaction(bundle)
    assert info.value.index == 4
    assert isinstance(info.value.cause, error) or error is TransactionFailed
    assert info.value.http_status == status
    assert info.value.operation_outcome()["issue"][0]["expression"] == ["Bundle.entry[4]"]
    assert snapshot(repo) == before, "nothing written"


def test_failure_in_the_write_phase_rolls_back_earlier_writes(repo: SqliteFhirRepository) -> None:
    repo.update("Patient", "p1", patient(id="p1"))
    repo.update("Patient", "p2", patient(id="p2"))
    before = snapshot(repo)
    with pytest.raises(TransactionFailed) as info:
        repo.transaction(
            tx(
                post(patient(nhs="9000000017")),
                put("Patient/p1", patient(id="p1", gender="male")),
                put("Patient/p2", patient(id="p2"), ifMatch='W/"5"'),
            )
        )
    assert info.value.index == 2 and isinstance(info.value.cause, VersionConflict)
    assert snapshot(repo) == before


def test_multiple_matches_in_transaction(repo: SqliteFhirRepository) -> None:
    repo.create(patient())
    repo.create(patient())
    with pytest.raises(TransactionFailed) as info:
        repo.transaction(tx(post(patient(), ifNoneExist="identifier=9000000009")))
    assert isinstance(info.value.cause, MultipleMatches) and info.value.http_status == 412


def test_two_entries_writing_one_resource_conflict(repo: SqliteFhirRepository) -> None:
    repo.update("Patient", "p1", patient(id="p1"))
    with pytest.raises(TransactionFailed) as info:
        repo.transaction(
            tx(put("Patient/p1", patient(id="p1")), put(f"Patient?identifier={NHS}|9000000009", patient()))
        )
    assert isinstance(info.value.cause, ResourceConflict) and info.value.http_status == 409
    with pytest.raises(TransactionFailed):
        repo.transaction(tx(req("DELETE", "Patient/p1"), put("Patient/p1", patient(id="p1"))))
    assert repo.read("Patient", "p1").version_id == "1"


def test_duplicate_full_url_rejected(repo: SqliteFhirRepository) -> None:
    with pytest.raises(TransactionFailed) as info:
        repo.transaction(tx(post(patient(), PAT_URN), post(patient(), PAT_URN)))
    assert info.value.index == 1 and info.value.http_status == 400
    assert repo.search("Patient", []).total == 0


def test_bundle_shape_errors(repo: SqliteFhirRepository) -> None:
    with pytest.raises(InvalidBundle):
        repo.transaction({"resourceType": "Patient"})
    with pytest.raises(InvalidBundle) as info:
        repo.transaction(tx(kind="batch"))
    assert info.value.expression == "Bundle.type"
    with pytest.raises(InvalidBundle):
        repo.batch(tx())
    assert repo.transaction(tx()) == {"resourceType": "Bundle", "type": "transaction-response", "entry": []}


def test_transaction_size_limit(tmp_path: Path) -> None:
    store = SqliteFhirRepository(tmp_path / "s.db", max_transaction_entries=2)
    try:
        with pytest.raises(BundleTooLarge) as info:
            store.transaction(tx(post(patient()), post(patient()), post(patient())))
        assert info.value.http_status == 413 and info.value.issue_code == "too-costly"
        assert store.search("Patient", []).total == 0
        assert len(store.transaction(tx(post(patient()), post(patient())))["entry"]) == 2
        # batches are not limited: each entry is its own unit
        assert (
            len(store.batch(tx(post(patient()), post(patient()), post(patient()), kind="batch"))["entry"])
            == 3
        )
    finally:
        store.close()


def test_batch_entries_are_independent(repo: SqliteFhirRepository) -> None:
    repo.update("Patient", "p1", patient(id="p1"))
    response = repo.batch(
        tx(
            post(patient(nhs="9000000017")),
            put("Patient/p1", patient(id="p1"), ifMatch='W/"7"'),
            req("GET", "Patient/unknown"),
            {"request": {"method": "PUT"}},
            req("DELETE", "Patient/p1"),
            req("GET", "Patient?identifier=9000000017"),
            post(observation("x") | {"subject": {"reference": PAT_URN}}),
            req("PATCH", "Patient/p1"),
            kind="batch",
        )
    )
    assert response["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == [
        "201 Created",
        "412 Precondition Failed",
        "404 Not Found",
        "400 Bad Request",
        "204 No Content",
        "200 OK",
        "201 Created",
        "405 Method Not Allowed",
    ]
    for index in (1, 2, 3, 7):
        outcome = response["entry"][index]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    assert response["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "conflict"
    # Effects of the successful entries persisted despite the failures.
    assert repo.search("Patient", [("identifier", "9000000017")]).total == 1
    assert response["entry"][5]["resource"]["total"] == 1
    # No reference rewriting in a batch.
    obs_id = response["entry"][6]["resource"]["id"]
    assert repo.read("Observation", obs_id).resource["subject"]["reference"] == PAT_URN
    # The DELETE ran before the failing PUT (processing order), so p1 is deleted.
    assert repo.history("Patient", "p1")[0].deleted


def test_batch_conditional_create(repo: SqliteFhirRepository) -> None:
    bundle = tx(post(patient(), ifNoneExist="identifier=9000000009"), kind="batch")
    first = repo.batch(bundle)
    second = repo.batch(bundle)
    assert first["entry"][0]["response"]["status"] == "201 Created"
    assert second["entry"][0]["response"]["status"] == "200 OK"
    assert first["entry"][0]["resource"]["id"] == second["entry"][0]["resource"]["id"]
