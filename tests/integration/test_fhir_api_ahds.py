"""The HTTP FHIR adapter (AhdsFhirRepository) against the project's own FHIR API, served by the local
functions host on loopback: a real HTTP round trip through functions/fhir.py, shared/fhirapi and the
embedded SQLite store. (Fault injection - throttling, 5xx, timeouts, token refresh, bundle splitting - stays
on the scriptable stand-in server in tests/integration/test_fhirstore_ahds_adapter.py.)

The API is stricter than a bare FHIR store (validation, clinical-event mapping, no deletion of clinical
records), so the resources here are valid UK Core and mappable; what the API refuses is checked to arrive
as the port's errors with the right status.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.adapters.azure.ahds_fhir import AhdsFhirRepository
from shared.fhirstore.errors import (
    InvalidResource,
    InvalidSearch,
    MultipleMatches,
    ResourceGone,
    ResourceNotFound,
    TransactionFailed,
    UnsupportedInteraction,
    UnsupportedResourceType,
    VersionConflict,
)
from shared.fhirstore.ports import FhirRepository
from shared.wiring import get_container
from tests.integration.fhir_api_support import fhir_host
from tests.unit.fhirapi.fhirapi_helpers import (
    NHS,
    NHS_SYSTEM,
    clinical_messages,
    encounter,
    observation,
    organization,
    patient,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def client() -> Iterator[AhdsFhirRepository]:
    with fhir_host() as base:
        repo = AhdsFhirRepository(base, max_retries=0, read_timeout=10, connect_timeout=2)
        yield repo
        repo.close()


def test_crud_versions_and_history(client: AhdsFhirRepository) -> None:
    assert isinstance(client, FhirRepository)
    created = client.create(patient(id="ignored"))
    assert created.created and created.version_id == "1" and created.id != "ignored"
    read = client.read("Patient", created.id)
    assert read.resource == created.resource and read.etag == 'W/"1"'
    updated = client.update("Patient", created.id, {**created.resource, "gender": "male"}, if_match='W/"1"')
    assert not updated.created and updated.version_id == "2"
    assert client.vread("Patient", created.id, "1").resource["gender"] == "female"
    with pytest.raises(VersionConflict) as conflict:
        client.update("Patient", created.id, created.resource, if_match='W/"1"')
    assert conflict.value.http_status == 412
    assert [h.version_id for h in client.history("Patient", created.id)] == ["2", "1"]
    again = client.update("Patient", "chosen", patient(NHS[1], id="chosen"))
    assert again.created and again.id == "chosen"
    with pytest.raises(ResourceNotFound):
        client.read("Patient", "nope")
    with pytest.raises(ResourceNotFound):
        client.vread("Patient", created.id, "99")
    with pytest.raises(UnsupportedResourceType):
        client.read("Basic", "x")
    assert [h.id for h in client.history("Patient")][:1] == ["chosen"]


def test_deletion_is_an_encounter_event_and_refused_for_clinical_records(client: AhdsFhirRepository) -> None:
    pid = client.create(patient()).id
    eid = client.create(encounter({"reference": f"Patient/{pid}"})).id
    client.delete("Encounter", eid)
    client.delete("Encounter", eid)  # no-op
    with pytest.raises(ResourceGone):
        client.read("Encounter", eid)
    history = client.history("Encounter", eid)
    assert [(h.version_id, h.deleted) for h in history] == [("2", True), ("1", False)]
    with pytest.raises(UnsupportedInteraction) as refused:
        client.delete("Patient", pid)
    assert refused.value.http_status == 405
    org = client.create(organization()).id
    client.delete("Organization", org)
    with pytest.raises(ResourceGone):
        client.read("Organization", org)
    kinds = _event_kinds()
    assert kinds == ["patient-created", "admission", "cancel-admission"]


def test_conditional_operations(client: AhdsFhirRepository) -> None:
    criteria = f"identifier={NHS_SYSTEM}|{NHS[0]}"
    first = client.create(patient(), if_none_exist=criteria)
    second = client.create(patient(gender="male"), if_none_exist=criteria)
    assert first.created and not second.created and second.id == first.id
    updated = client.conditional_update("Patient", criteria, patient(gender="male"))
    assert updated.id == first.id and updated.version_id == "2" and not updated.created
    fresh = client.conditional_update("Patient", f"identifier={NHS[1]}", patient(NHS[1]))
    assert fresh.created
    client.update("Patient", "dup", patient(id="dup"))
    with pytest.raises(MultipleMatches):
        client.create(patient(), if_none_exist=criteria)
    with pytest.raises(InvalidSearch):
        client.create(patient(), if_none_exist="nickname=x")


def test_search_paging_and_include(client: AhdsFhirRepository) -> None:
    ids = [client.create(patient(n, name=[{"family": f"Fam{i}"}])).id for i, n in enumerate(NHS[:6])]
    obs = client.create(observation({"reference": f"Patient/{ids[0]}"})).id
    by_id = client.search("Patient", [("identifier", f"{NHS_SYSTEM}|{NHS[3]}")])
    assert by_id.total == 1 and by_id.resources[0]["id"] == ids[3]
    page = client.search("Patient", [("_sort", "_lastUpdated")], count=2, offset=2)
    assert page.total == 6 and [r["id"] for r in page.resources] == ids[2:4] and page.has_next
    last = client.search("Patient", [("_sort", "-_lastUpdated")], count=4, offset=4)
    assert [r["id"] for r in last.resources] == [ids[1], ids[0]] and not last.has_next
    counted = client.search("Patient", [("family", "fam")], count=0)
    assert counted.total == 6 and counted.resources == []
    with_subject = client.search("Observation", [("patient", ids[0]), ("_include", "Observation:subject")])
    assert [r["id"] for r in with_subject.resources] == [obs]
    assert [r["id"] for r in with_subject.included] == [ids[0]]
    lenient = client.search("Patient", [("family", "fam1"), ("shoe-size", "9")], strict=False)
    assert lenient.ignored == ["shoe-size"] and [r["id"] for r in lenient.resources] == [ids[1]]


def test_validation_errors_arrive_as_422_with_the_element(client: AhdsFhirRepository) -> None:
    with pytest.raises(InvalidResource) as invalid:
        client.create(patient(birthDate="1980-13-45"))
    assert invalid.value.http_status == 422 and invalid.value.expression == "Patient.birthDate"
    unmappable = observation({"reference": "Patient/nobody"})
    with pytest.raises(InvalidResource) as refused:
        client.create(unmappable)
    assert refused.value.http_status == 422 and refused.value.expression == "Observation.subject"
    assert client.search("Observation", []).total == 0


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_transaction_and_batch(client: AhdsFhirRepository) -> None:
    urn = "urn:uuid:1b7f3e0c-0000-4000-8000-000000000001"
    response = client.transaction(
        _bundle(
            "transaction",
            {
                "resource": observation({"reference": urn}),
                "request": {"method": "POST", "url": "Observation"},
            },
            {"fullUrl": urn, "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        )
    )
    assert [e["response"]["status"][:3] for e in response["entry"]] == ["201", "201"]
    pid = response["entry"][1]["resource"]["id"]
    obs = client.read("Observation", response["entry"][0]["resource"]["id"])
    assert obs.resource["subject"]["reference"] == f"Patient/{pid}"
    before = client.search("Patient", []).total
    with pytest.raises(TransactionFailed) as failed:
        client.transaction(
            _bundle(
                "transaction",
                {"resource": patient(NHS[2]), "request": {"method": "POST", "url": "Patient"}},
                {
                    "resource": patient(id=pid),
                    "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"9"'},
                },
            )
        )
    assert failed.value.index == 1 and failed.value.http_status == 412
    assert client.search("Patient", []).total == before
    batch = client.batch(
        _bundle(
            "batch",
            {"resource": patient(NHS[3]), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        )
    )
    assert [e["response"]["status"][:3] for e in batch["entry"]] == ["201", "404", "200"]
    assert batch["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"


def _event_kinds() -> list[str]:
    return [m.subject or "" for m in clinical_messages(get_container().bus)]
