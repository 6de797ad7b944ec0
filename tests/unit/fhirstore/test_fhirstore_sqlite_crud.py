"""SqliteFhirRepository: create/read/update/delete, versions, history, If-Match, conditional writes."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.errors import PermanentError, TransientError
from shared.fhirstore.errors import (
    FhirStoreError,
    InvalidResource,
    InvalidSearch,
    MultipleMatches,
    ResourceConflict,
    ResourceGone,
    ResourceNotFound,
    StoreUnavailable,
    UnsupportedResourceType,
    VersionConflict,
)
from shared.fhirstore.ports import FhirRepository, parse_etag
from tests.unit.fhirstore.fhirstore_fixtures import NHS, StepClock, observation, patient

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
INSTANT_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def repo(tmp_path: Path, clock: StepClock) -> Iterator[SqliteFhirRepository]:
    store = SqliteFhirRepository(tmp_path / "fhir.db", clock=clock)
    yield store
    store.close()


def count_rows(repo: SqliteFhirRepository, table: str) -> int:
    conn = sqlite3.connect(repo._db.path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_implements_the_port(repo: SqliteFhirRepository) -> None:
    assert isinstance(repo, FhirRepository)


def test_create_assigns_id_version_and_last_updated(repo: SqliteFhirRepository, clock: StepClock) -> None:
    before = clock.now
    body = patient(id="client-chosen", meta={"profile": ["https://example.org/p"], "versionId": "99"})
    result = repo.create(body)
    assert result.created and result.version_id == "1"
    assert UUID4.match(result.id), "create ignores a client id and assigns a uuid4"
    meta = result.resource["meta"]
    assert meta["versionId"] == "1" and meta["profile"] == ["https://example.org/p"]
    assert INSTANT_MS.match(meta["lastUpdated"])
    assert result.last_modified == before
    assert result.etag == 'W/"1"' and result.location == f"Patient/{result.id}/_history/1"
    assert body["id"] == "client-chosen" and body["meta"]["versionId"] == "99", "input not mutated"
    stored = repo.read("Patient", result.id)
    assert stored.resource == result.resource and not stored.deleted and stored.method == "POST"


def test_read_errors(repo: SqliteFhirRepository) -> None:
    with pytest.raises(ResourceNotFound) as info:
        repo.read("Patient", "missing")
    assert info.value.http_status == 404 and info.value.issue_code == "not-found"
    assert isinstance(info.value, PermanentError) and isinstance(info.value, FhirStoreError)
    with pytest.raises(ResourceNotFound):
        repo.read("Patient", "bad id with spaces")
    with pytest.raises(UnsupportedResourceType):
        repo.read("Basic", "x")


def test_update_versions_and_vread(repo: SqliteFhirRepository) -> None:
    created = repo.create(patient(family="One"))
    v2 = repo.update("Patient", created.id, {**created.resource, "name": [{"family": "Two"}]})
    v3 = repo.update("Patient", created.id, {**created.resource, "name": [{"family": "Three"}]})
    assert (v2.created, v2.version_id, v3.version_id) == (False, "2", "3")
    assert repo.read("Patient", created.id).resource["name"] == [{"family": "Three"}]
    old = repo.vread("Patient", created.id, "1")
    assert old.resource["name"][0]["family"] == "One" and old.resource["meta"]["versionId"] == "1"
    assert repo.vread("Patient", created.id, "2").resource["name"] == [{"family": "Two"}]
    with pytest.raises(ResourceNotFound) as info:
        repo.vread("Patient", created.id, "4")
    assert info.value.version_id == "4"
    with pytest.raises(ResourceNotFound):
        repo.vread("Patient", created.id, "x")
    # Searching sees only the current version's index.
    assert repo.search("Patient", [("family", "three")]).total == 1
    assert repo.search("Patient", [("family", "one")]).total == 0


def test_update_as_create_with_client_id(repo: SqliteFhirRepository) -> None:
    result = repo.update("Patient", "pat-1", patient(id="pat-1"))
    assert result.created and result.version_id == "1" and result.id == "pat-1"
    again = repo.update("Patient", "pat-1", patient(id="pat-1", gender="male"))
    assert not again.created and again.version_id == "2"


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        (patient(), "Patient.id"),  # no id in an update body
        (patient(id="other"), "Patient.id"),
        ({**patient(id="pat-1"), "resourceType": "Observation"}, "resourceType"),
        ({"id": "pat-1"}, "resourceType"),
    ],
)
def test_update_body_must_match_url(
    repo: SqliteFhirRepository, body: dict[str, object], expression: str
) -> None:
    with pytest.raises(InvalidResource) as info:
        repo.update("Patient", "pat-1", body)  # type: ignore[arg-type]
    assert info.value.http_status == 400 and info.value.expression == expression
    assert count_rows(repo, "fhir_version") == 0


def test_invalid_bodies_on_create(repo: SqliteFhirRepository) -> None:
    with pytest.raises(InvalidResource):
        repo.create([])  # type: ignore[arg-type]
    with pytest.raises(UnsupportedResourceType):
        repo.create({"resourceType": "Basic"})
    with pytest.raises(InvalidResource):
        repo.create({**patient(), "meta": "nope"})
    with pytest.raises(InvalidResource):
        repo.update("Patient", "bad id", patient(id="bad id"))
    with pytest.raises(InvalidResource):
        repo.create(patient(birthDate=object()))
    assert count_rows(repo, "fhir_version") == 0


@pytest.mark.parametrize("form", ['W/"{v}"', '"{v}"', "{v}", 'w/"{v}"'])
def test_if_match_forms(repo: SqliteFhirRepository, form: str) -> None:
    created = repo.create(patient())
    result = repo.update("Patient", created.id, created.resource, if_match=form.format(v="1"))
    assert result.version_id == "2"
    assert parse_etag(form.format(v="7")) == "7"


def test_if_match_mismatch_is_412_and_writes_nothing(repo: SqliteFhirRepository) -> None:
    created = repo.create(patient())
    repo.update("Patient", created.id, created.resource)
    versions = count_rows(repo, "fhir_version")
    with pytest.raises(VersionConflict) as info:
        repo.update("Patient", created.id, {**created.resource, "gender": "male"}, if_match='W/"1"')
    assert info.value.http_status == 412 and (info.value.expected, info.value.actual) == ("1", "2")
    assert count_rows(repo, "fhir_version") == versions
    assert repo.read("Patient", created.id).resource["gender"] == "female"
    with pytest.raises(VersionConflict) as absent:
        repo.update("Patient", "nobody", patient(id="nobody"), if_match='W/"1"')
    assert absent.value.actual is None
    with pytest.raises(ResourceNotFound):
        repo.read("Patient", "nobody")


def test_delete_then_gone_then_recreate(repo: SqliteFhirRepository) -> None:
    created = repo.create(patient())
    repo.update("Patient", created.id, created.resource)
    assert repo.delete("Patient", created.id) is None
    with pytest.raises(ResourceGone) as info:
        repo.read("Patient", created.id)
    assert (
        info.value.http_status == 410 and info.value.issue_code == "deleted" and info.value.version_id == "3"
    )
    with pytest.raises(ResourceGone):
        repo.vread("Patient", created.id, "3")
    assert repo.vread("Patient", created.id, "2").resource["id"] == created.id
    assert repo.search("Patient", [("identifier", f"{NHS}|9000000009")]).total == 0
    assert count_rows(repo, "fhir_idx_token") == 0, "index rows of a deleted resource are removed"
    # Deleting again, or deleting something unknown, changes nothing.
    repo.delete("Patient", created.id)
    repo.delete("Patient", "never-existed")
    repo.delete("Patient", "bad id")
    assert [v.version_id for v in repo.history("Patient", created.id)] == ["3", "2", "1"]
    with pytest.raises(VersionConflict):
        repo.update("Patient", created.id, patient(id=created.id), if_match='W/"3"')
    recreated = repo.update("Patient", created.id, patient(id=created.id))
    assert recreated.created and recreated.version_id == "4"
    assert repo.read("Patient", created.id).version_id == "4"
    assert repo.search("Patient", [("identifier", "9000000009")]).total == 1


def test_history_newest_first_with_interactions(repo: SqliteFhirRepository, clock: StepClock) -> None:
    created = repo.create(patient())
    repo.update("Patient", created.id, {**created.resource, "gender": "male"})
    repo.delete("Patient", created.id)
    history = repo.history("Patient", created.id)
    assert [(h.version_id, h.method, h.deleted) for h in history] == [
        ("3", "DELETE", True),
        ("2", "PUT", False),
        ("1", "POST", False),
    ]
    stub = history[0].resource
    assert set(stub) == {"resourceType", "id", "meta"} and stub["meta"]["versionId"] == "3"
    assert history[1].resource["gender"] == "male"
    assert [h.version_id for h in repo.history("Patient", created.id, count=2)] == ["3", "2"]
    since = history[1].last_modified
    assert [h.version_id for h in repo.history("Patient", created.id, since=since)] == ["3", "2"]
    assert repo.history("Patient", created.id, since=clock.now + timedelta(days=1)) == []
    with pytest.raises(ResourceNotFound):
        repo.history("Patient", "missing")


def test_type_history(repo: SqliteFhirRepository) -> None:
    a = repo.create(patient(nhs="9000000017"))
    b = repo.create(patient(nhs="9000000025"))
    repo.update("Patient", a.id, a.resource)
    repo.create(observation(a.id))
    history = repo.history("Patient")
    assert [(h.id, h.version_id) for h in history] == [(a.id, "2"), (b.id, "1"), (a.id, "1")]


def test_conditional_create(repo: SqliteFhirRepository) -> None:
    criteria = f"identifier={NHS}|9000000009"
    first = repo.create(patient(), if_none_exist=criteria)
    assert first.created
    second = repo.create(patient(gender="male"), if_none_exist=criteria)
    assert not second.created and second.id == first.id and second.version_id == "1"
    assert second.resource["gender"] == "female", "the existing resource is returned unchanged"
    # URL-encoded and with the type prefix, as clients send it.
    third = repo.create(patient(), if_none_exist=f"Patient?identifier={NHS.replace(':', '%3A')}%7C9000000009")
    assert third.id == first.id
    repo.update("Patient", "dup", patient(id="dup"))
    with pytest.raises(MultipleMatches) as info:
        repo.create(patient(), if_none_exist=criteria)
    assert info.value.http_status == 412 and info.value.issue_code == "multiple-matches"
    assert repo.search("Patient", [("identifier", "9000000009")]).total == 2


def test_conditional_create_bad_criteria(repo: SqliteFhirRepository) -> None:
    with pytest.raises(InvalidSearch) as info:
        repo.create(patient(), if_none_exist="nhs=9000000009")
    assert info.value.parameter == "nhs" and "9000000009" not in str(info.value)
    with pytest.raises(InvalidSearch) as empty:
        repo.create(patient(), if_none_exist="_count=1")
    assert empty.value.parameter == "If-None-Exist"
    assert count_rows(repo, "fhir_resource") == 0


def test_conditional_create_ignores_deleted_matches(repo: SqliteFhirRepository) -> None:
    first = repo.create(patient())
    repo.delete("Patient", first.id)
    again = repo.create(patient(), if_none_exist="identifier=9000000009")
    assert again.created and again.id != first.id


def test_conditional_update(repo: SqliteFhirRepository) -> None:
    criteria = f"identifier={NHS}|9000000009"
    created = repo.conditional_update("Patient", criteria, patient())
    assert created.created and UUID4.match(created.id)
    updated = repo.conditional_update("Patient", criteria, patient(gender="male"))
    assert not updated.created and updated.id == created.id and updated.version_id == "2"
    same_id = repo.conditional_update("Patient", criteria, patient(id=created.id, gender="other"))
    assert same_id.version_id == "3"
    with pytest.raises(InvalidResource):
        repo.conditional_update("Patient", criteria, patient(id="someone-else"))
    with pytest.raises(VersionConflict):
        repo.conditional_update("Patient", criteria, patient(), if_match='W/"1"')
    assert repo.conditional_update("Patient", criteria, patient(), if_match='W/"3"').version_id == "4"
    # No match: the body id is used, unless it already exists.
    with_id = repo.conditional_update("Patient", "identifier=9000000017", patient(nhs="9000000017", id="p17"))
    assert with_id.created and with_id.id == "p17"
    with pytest.raises(ResourceConflict) as info:
        repo.conditional_update("Patient", "identifier=9000000025", patient(nhs="9000000025", id="p17"))
    assert info.value.http_status == 409
    repo.update("Patient", "dup", patient(id="dup"))
    with pytest.raises(MultipleMatches):
        repo.conditional_update("Patient", criteria, patient())


def test_persists_across_reopen(tmp_path: Path) -> None:
    first = SqliteFhirRepository(tmp_path / "f.db")
    created = first.create(patient())
    first.close()
    second = SqliteFhirRepository(tmp_path / "f.db")
    try:
        assert second.read("Patient", created.id).resource == created.resource
        assert second.search("Patient", [("family", "testp")]).total == 1
    finally:
        second.close()


def test_locked_database_is_transient(tmp_path: Path) -> None:
    repo = SqliteFhirRepository(tmp_path / "f.db", busy_timeout=0.05)
    blocker = sqlite3.connect(tmp_path / "f.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable) as info:
            repo.create(patient())
        assert isinstance(info.value, TransientError) and info.value.http_status == 503
        assert repo.search("Patient", []).total == 0, "readers are not blocked by a writer (WAL)"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        repo.close()
    reopened = SqliteFhirRepository(tmp_path / "f.db")
    assert reopened.search("Patient", []).total == 0, "the failed write left nothing behind"
    reopened.close()


def test_error_texts_carry_no_patient_data(repo: SqliteFhirRepository) -> None:
    errors: list[FhirStoreError] = []
    for action in (
        lambda: repo.create(patient(), if_none_exist="birthdate=Testperson"),
        lambda: repo.search("Patient", [("family:text", "Testperson")]),
        lambda: repo.search("Patient", [("nickname", "Testperson")], strict=True),
        lambda: repo.search("Patient", [("identifier", "a|9000000009|b")]),
        lambda: repo.update("Patient", "x", patient(id="y")),
    ):
        with pytest.raises(FhirStoreError) as info:
            action()
        errors.append(info.value)
    for error in errors:
        outcome = error.operation_outcome()
        text = str(outcome)
        assert "9000000009" not in text and "Testperson" not in text
        assert (
            outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == error.issue_code
        )


def test_sql_defects_are_not_reported_as_transient(repo: SqliteFhirRepository) -> None:
    conn = sqlite3.connect(repo._db.path)
    conn.execute("DROP TABLE fhir_idx_token")
    conn.close()
    with pytest.raises(RuntimeError) as info:
        repo.search("Patient", [("identifier", "9000000009")])
    assert not isinstance(info.value, TransientError)
