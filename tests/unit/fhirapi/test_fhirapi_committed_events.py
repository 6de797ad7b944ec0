"""The FHIR API's clinical events are committed with the write (embedded store): a crash between the FHIR
commit and the publish loses nothing - the relay publishes exactly the event the write committed - and a
committed version that cannot become an event is rolled back instead of stored without one.

A crash is simulated by raising :class:`Crash` (a BaseException nothing handles) from the store's
``after_commit`` hook: after the commit, before anything is published.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.backbone import clinical
from shared.config.settings import get_settings, reset_settings
from shared.fhirapi import FhirApi
from shared.fhirapi.clinical_events import ClinicalEvents
from shared.journal import Journal
from shared.mapping.fhir_in import event_from_fhir
from shared.wiring import Container, build_container, build_fhir_event_relay
from tests.unit.fhirapi.fhirapi_helpers import (
    NHS,
    clinical_messages,
    encounter,
    observation,
    patient,
    request,
)


class Crash(BaseException):
    """The process dies here."""


class Fault:
    """``after_commit`` hook: crashes once when armed."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self) -> None:
        if self.armed:
            self.armed = False
            raise Crash


@pytest.fixture
def fault() -> Fault:
    return Fault()


@pytest.fixture
def world(container: Container, fault: Fault) -> Container:
    container.fhir_repository = SqliteFhirRepository(container.settings.fhir_path, after_commit=fault)
    return container


@pytest.fixture
def api(world: Container) -> FhirApi:
    return world.fhir_api


def _repo(world: Container) -> SqliteFhirRepository:
    repo = world.fhir
    assert isinstance(repo, SqliteFhirRepository)
    return repo


def _relay(world: Container) -> Any:
    relay = build_fhir_event_relay(world, grace=timedelta(0))
    assert relay is not None
    return relay


def test_a_crash_between_the_fhir_commit_and_the_publish_loses_no_event(
    api: FhirApi, world: Container, fault: Fault
) -> None:
    fault.armed = True
    with pytest.raises(Crash):
        api.create(request("POST", "Patient", patient(), correlation_id="crash-1"), "Patient")
    assert clinical_messages(world.bus) == [], "crashed before publishing"
    (stored,) = _repo(world).search("Patient", []).resources

    # The restarted process: the relay publishes what the write committed, exactly once.
    report = _relay(world).run_until_idle(max_seconds=5)
    assert (report.published, report.messages) == (1, 1)
    assert _relay(world).relay_once().progressed == 0 and _repo(world).pending_batches() == []
    (message,) = clinical_messages(world.bus)
    event = clinical.from_message(message.body)
    expected = event_from_fhir(stored, interaction="create", patient=None).value
    assert (event.key, event.kind, event.patient) == (expected.key, expected.kind, expected.patient)
    assert event.provenance.correlation_id == "crash-1" and message.correlation_id == "crash-1"
    relayed = [e for e in Journal(world.records).trace("crash-1") if e.stage == "published"]
    assert [e.attributes.get("relayed") for e in relayed] == [True]


def test_a_crashed_transaction_s_events_are_relayed_together_in_order(
    api: FhirApi, world: Container, fault: Fault
) -> None:
    urn = "urn:uuid:0c8b3f5e-6f0a-4a57-9d1e-5f2b6a1c9e01"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": urn, "resource": patient(NHS[1]), "request": {"method": "POST", "url": "Patient"}},
            {"resource": encounter({"reference": urn}), "request": {"method": "POST", "url": "Encounter"}},
            {
                "resource": observation({"reference": urn}),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    fault.armed = True
    with pytest.raises(Crash):
        api.bundle(request("POST", "", bundle, correlation_id="crash-2"))
    assert clinical_messages(world.bus) == []
    (batch,) = _repo(world).pending_batches()
    assert [m.message.subject for m in batch.messages] == ["patient-created", "admission", "result"]
    assert _relay(world).run_until_idle(max_seconds=5).published == 1
    assert [m.subject for m in clinical_messages(world.bus)] == ["patient-created", "admission", "result"]


def test_the_normal_path_publishes_right_after_the_commit_and_settles(api: FhirApi, world: Container) -> None:
    response = api.create(request("POST", "Patient", patient(), correlation_id="ok-1"), "Patient")
    assert response.status == 201
    assert [m.subject for m in clinical_messages(world.bus)] == ["patient-created"]
    assert _repo(world).pending_batches() == [], "settled: the relay has nothing to do"
    stages = [e.stage for e in Journal(world.records).trace("ok-1")]
    assert stages == ["fhir-write", "published"]


def test_a_committed_version_that_cannot_be_mapped_is_rolled_back(
    api: FhirApi, world: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = api.create(request("POST", "Patient", patient()), "Patient").body
    assert created is not None
    clinical_messages(world.bus)
    # The dry run passes (a race with the write, or a defect); the mapping inside the transaction does not.
    monkeypatch.setattr(ClinicalEvents, "check", lambda *args, **kwargs: None)
    result = observation({"reference": f"Patient/{created['id']}"})
    del result["identifier"]  # a result without a filler order number is no event
    response = api.create(request("POST", "Observation", result), "Observation")
    assert response.status == 422 and response.body is not None
    assert response.body["issue"][0]["code"] == "business-rule"
    assert _repo(world).search("Observation", []).total == 0, "not stored without its event"
    assert _repo(world).pending_batches() == [] and clinical_messages(world.bus) == []


def test_no_event_relay_for_a_remote_fhir_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_FHIR_BACKEND", "azure")
    monkeypatch.setenv("TieFhir__serviceUrl", "https://ws-fhir.fhir.azurehealthcareapis.com")
    reset_settings()
    remote = build_container(get_settings())
    try:
        assert build_fhir_event_relay(remote) is None
        assert remote.fhir_repository is None, "no remote client was built to find out"
    finally:
        remote.close()
