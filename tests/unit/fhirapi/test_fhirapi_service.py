"""The FHIR API core (shared.fhirapi.service) over the embedded stores: interactions, HTTP semantics, bad
input, validation, and the write path to clinical events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.backbone import clinical
from shared.fhirapi import FhirApi
from shared.fhirapi.clinical_events import OUTBOX_OWNER_PARTITION
from shared.fhirapi.minimise import CLIENT_HEADER, StaticElementsPolicy
from shared.fhirapi.service import MAX_OFFSET, FhirApiConfig
from shared.journal import Journal
from shared.mapping.fhir_in import event_from_fhir
from shared.messaging.errors import BusUnavailable
from shared.messaging.ports import MessageBus, OutboundMessage
from shared.outbox import CommittedBatchRelay
from shared.storage.names import TABLE_OUTBOX
from tests.unit.fhirapi.fhirapi_helpers import (
    BASE,
    NHS,
    NHS_SYSTEM,
    Stores,
    clinical_messages,
    encounter,
    make_api,
    observation,
    organization,
    outcome,
    patient,
    request,
)

pytestmark = pytest.mark.timeout(60)

CRITERIA = f"identifier={NHS_SYSTEM}|{NHS[0]}"


def create(api: FhirApi, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = api.create(
        request("POST", resource["resourceType"], resource, headers), resource["resourceType"]
    )
    assert response.status == 201, response.body
    assert response.body is not None
    return response.body


# ------------------------------------------------------------------------------------------ create


def test_create_answers_201_with_location_etag_last_modified_and_publishes_the_event(
    api: FhirApi, s: Stores
) -> None:
    response = api.create(request("POST", "Patient", patient(id="client-chosen")), "Patient")
    assert response.status == 201
    body = response.body
    assert body is not None and body["id"] != "client-chosen" and body["meta"]["versionId"] == "1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"] == f"{BASE}/Patient/{body['id']}/_history/1"
    modified = parsedate_to_datetime(response.headers["Last-Modified"])
    assert modified.tzinfo is not None and response.headers["Last-Modified"].endswith("GMT")
    assert response.content_type == "application/fhir+json"
    # The event: same key as mapping the stored resource directly (the HL7 path uses the same identity).
    (message,) = clinical_messages(s.bus)
    expected = event_from_fhir(body, interaction="create", patient=None).value
    assert clinical.from_message(message.body).key == expected.key and message.subject == "patient-created"
    assert message.correlation_id == "test-corr-1"
    envelope = json.loads(message.body)
    assert envelope["data"]["patient"]["nhs_number"]["value"] == NHS[0]
    stages = [(e.stage, e.attributes.get("resource")) for e in Journal(s.records).trace("test-corr-1")]
    assert ("fhir-write", f"Patient/{body['id']}/_history/1") in stages
    assert ("published", None) in stages


def test_conditional_create_finds_instead_of_duplicating(api: FhirApi, s: Stores) -> None:
    first = api.create(request("POST", "Patient", patient(), {"If-None-Exist": CRITERIA}), "Patient")
    second = api.create(
        request("POST", "Patient", patient(gender="male"), {"If-None-Exist": CRITERIA}), "Patient"
    )
    assert (first.status, second.status) == (201, 200)
    assert first.body is not None and second.body is not None
    assert second.body["id"] == first.body["id"] and second.body["gender"] == "female"
    assert len(clinical_messages(s.bus)) == 1, "a conditional create that matched writes nothing"
    s.repo.update("Patient", "dup", patient(id="dup"))
    several = api.create(request("POST", "Patient", patient(), {"If-None-Exist": CRITERIA}), "Patient")
    assert several.status == 412 and outcome(several)["code"] == "multiple-matches"
    unknown = api.create(request("POST", "Patient", patient(), {"If-None-Exist": "shoe-size=9"}), "Patient")
    assert unknown.status == 400 and outcome(unknown)["expression"] == ["shoe-size"]


# ------------------------------------------------------------------------------------------ update


def test_update_with_if_match_versions_and_mismatch_is_412(api: FhirApi) -> None:
    body = create(api, patient())
    pid = body["id"]
    changed = dict(body, gender="male")
    ok = api.update(request("PUT", f"Patient/{pid}", changed, {"If-Match": 'W/"1"'}), "Patient", pid)
    assert ok.status == 200 and ok.headers["ETag"] == 'W/"2"' and ok.body is not None
    assert ok.body["gender"] == "male"
    stale = api.update(request("PUT", f"Patient/{pid}", changed, {"If-Match": 'W/"1"'}), "Patient", pid)
    assert stale.status == 412 and outcome(stale)["code"] == "conflict"
    created = api.update(
        request("PUT", "Patient/chosen-id", patient(NHS[1], id="chosen-id")), "Patient", "chosen-id"
    )
    assert created.status == 201 and created.headers["Location"].endswith("/Patient/chosen-id/_history/1")


def test_update_url_and_body_must_agree(api: FhirApi) -> None:
    mismatch = api.update(request("PUT", "Patient/a", patient(id="b")), "Patient", "a")
    assert mismatch.status == 400 and outcome(mismatch)["expression"] == ["Patient.id"]
    missing = api.update(request("PUT", "Patient/a", patient()), "Patient", "a")
    assert missing.status == 400 and outcome(missing)["expression"] == ["Patient.id"]
    wrong_type = api.update(request("PUT", "Patient/a", organization() | {"id": "a"}), "Patient", "a")
    assert wrong_type.status == 400 and outcome(wrong_type)["expression"] == ["resourceType"]
    bad_id = api.update(request("PUT", "Patient/a_b", patient(id="a_b")), "Patient", "a_b")
    assert bad_id.status == 400


def test_conditional_update_updates_the_match_or_creates(api: FhirApi) -> None:
    first = api.conditional_update(request("PUT", f"Patient?{CRITERIA}", patient()), "Patient")
    assert first.status == 201 and first.body is not None
    again = api.conditional_update(request("PUT", f"Patient?{CRITERIA}", patient(gender="male")), "Patient")
    assert again.status == 200 and again.body is not None and again.body["id"] == first.body["id"]
    assert again.headers["ETag"] == 'W/"2"'
    no_criteria = api.conditional_update(request("PUT", "Patient", patient()), "Patient")
    assert no_criteria.status == 400


# --------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{not json", "application/fhir+json", 400, "structure"),
        (b"[1, 2]", "application/fhir+json", 400, "structure"),
        (b'{"resourceType": "Patient", "x": NaN}', "application/fhir+json", 400, "structure"),
        (b"\xff\xfe", "application/fhir+json", 400, "structure"),
        (b"", "application/fhir+json", 400, "structure"),
        (b'{"resourceType": "Patient"}', "text/plain", 415, "not-supported"),
        (b'{"resourceType": "Patient"}', None, 415, "not-supported"),
        (b'{"resourceType": "Patient"}', "application/fhir+xml", 415, "not-supported"),
    ],
)
def test_malformed_bodies(api: FhirApi, raw: bytes, content_type: str | None, status: int, code: str) -> None:
    response = api.create(request("POST", "Patient", raw, content_type=content_type), "Patient")
    assert response.status == status and outcome(response)["code"] == code


def test_oversized_body_is_413(s: Stores) -> None:
    api = make_api(s, max_body_bytes=2048)
    big = patient(name=[{"family": "x" * 3000}])
    response = api.create(request("POST", "Patient", big), "Patient")
    assert response.status == 413 and outcome(response)["code"] == "too-long"


def test_wrong_resource_type_for_the_url(api: FhirApi) -> None:
    response = api.create(request("POST", "Patient", organization()), "Patient")
    assert response.status == 400 and outcome(response)["expression"] == ["resourceType"]


def test_only_json_is_produced(api: FhirApi) -> None:
    xml = api.metadata(request("GET", "metadata", headers={"Accept": "application/fhir+xml"}))
    assert xml.status == 406 and outcome(xml)["code"] == "not-supported"
    fmt = api.metadata(request("GET", "metadata?_format=xml"))
    assert fmt.status == 406
    plain = api.metadata(request("GET", "metadata", headers={"Accept": "application/json"}))
    assert plain.status == 200 and plain.content_type == "application/json"


def test_invalid_resources_are_422_with_the_element_path_and_no_values(api: FhirApi, s: Stores) -> None:
    bad_date = api.create(request("POST", "Patient", patient(birthDate="1980-13-45")), "Patient")
    assert bad_date.status == 422
    assert outcome(bad_date)["expression"] == ["Patient.birthDate"]
    assert "1980-13-45" not in json.dumps(bad_date.body)
    bad_nhs = api.create(request("POST", "Patient", patient("9000000000")), "Patient")
    assert bad_nhs.status == 422
    issue = outcome(bad_nhs)
    assert issue["expression"][0].startswith("Patient.identifier[0]") and "9000000000" not in json.dumps(
        bad_nhs.body
    )
    bad_code = api.create(request("POST", "Patient", patient(gender="sometimes")), "Patient")
    assert bad_code.status == 422 and outcome(bad_code)["expression"] == ["Patient.gender"]
    assert s.repo.search("Patient", []).total == 0 and clinical_messages(s.bus) == []


def test_a_write_that_cannot_become_a_clinical_event_is_422_and_not_stored(api: FhirApi, s: Stores) -> None:
    pid = create(api, patient())["id"]
    clinical_messages(s.bus)
    no_filler = observation({"reference": f"Patient/{pid}"})
    del no_filler["identifier"]
    response = api.create(request("POST", "Observation", no_filler), "Observation")
    assert response.status == 422
    issue = outcome(response)
    assert issue["code"] == "business-rule" and issue["expression"] == ["Observation.identifier"]
    unknown_subject = api.create(
        request("POST", "Observation", observation({"reference": "Patient/nobody"})), "Observation"
    )
    assert unknown_subject.status == 422 and outcome(unknown_subject)["expression"] == ["Observation.subject"]
    assert s.repo.search("Observation", []).total == 0 and clinical_messages(s.bus) == []


def test_subject_by_nhs_number_is_resolved_by_search(api: FhirApi, s: Stores) -> None:
    create(api, patient())
    clinical_messages(s.bus)
    logical = {"identifier": {"system": NHS_SYSTEM, "value": NHS[0]}}
    created = api.create(request("POST", "Observation", observation(logical)), "Observation")
    assert created.status == 201, created.body
    (message,) = clinical_messages(s.bus)
    assert message.subject == "result"
    assert json.loads(message.body)["data"]["patient"]["nhs_number"]["value"] == NHS[0]


# --------------------------------------------------------------------------------------------- read


def test_read_vread_and_conditional_read(api: FhirApi) -> None:
    body = create(api, patient())
    pid = body["id"]
    api.update(request("PUT", f"Patient/{pid}", dict(body, gender="male")), "Patient", pid)
    read = api.read(request("GET", f"Patient/{pid}"), "Patient", pid)
    assert read.status == 200 and read.headers["ETag"] == 'W/"2"' and read.body is not None
    assert read.body["gender"] == "male" and "Last-Modified" in read.headers
    old = api.vread(request("GET", f"Patient/{pid}/_history/1"), "Patient", pid, "1")
    assert old.status == 200 and old.body is not None and old.body["gender"] == "female"
    assert api.vread(request("GET", "x"), "Patient", pid, "9").status == 404
    unchanged = api.read(request("GET", f"Patient/{pid}", headers={"If-None-Match": 'W/"2"'}), "Patient", pid)
    assert unchanged.status == 304 and unchanged.body is None
    changed = api.read(request("GET", f"Patient/{pid}", headers={"If-None-Match": 'W/"1"'}), "Patient", pid)
    assert changed.status == 200
    since = api.read(
        request("GET", f"Patient/{pid}", headers={"If-Modified-Since": read.headers["Last-Modified"]}),
        "Patient",
        pid,
    )
    assert since.status == 304
    missing = api.read(request("GET", "Patient/nope"), "Patient", "nope")
    assert missing.status == 404 and outcome(missing)["code"] == "not-found"
    unsupported = api.read(request("GET", "Basic/x"), "Basic", "x")
    assert unsupported.status == 404 and outcome(unsupported)["code"] == "not-supported"


def test_elements_subset_is_tagged(api: FhirApi) -> None:
    pid = create(api, patient())["id"]
    response = api.read(request("GET", f"Patient/{pid}?_elements=name,Patient.gender"), "Patient", pid)
    assert response.body is not None
    assert set(response.body) == {"resourceType", "id", "meta", "name", "gender"}
    assert [t["code"] for t in response.body["meta"]["tag"]] == ["SUBSETTED"]


# ------------------------------------------------------------------------------------------- delete


def test_delete_is_refused_where_it_is_not_a_clinical_event(api: FhirApi) -> None:
    pid = create(api, patient())["id"]
    response = api.delete(request("DELETE", f"Patient/{pid}"), "Patient", pid)
    assert response.status == 405 and response.headers["Allow"] == "GET, PUT"
    assert "entered-in-error" in outcome(response)["diagnostics"]
    assert api.read(request("GET", f"Patient/{pid}"), "Patient", pid).status == 200


def test_encounter_delete_is_a_cancel_admission_event_then_410(api: FhirApi, s: Stores) -> None:
    pid = create(api, patient())["id"]
    eid = create(api, encounter({"reference": f"Patient/{pid}"}))["id"]
    kinds = [m.subject for m in clinical_messages(s.bus)]
    assert kinds == ["patient-created", "admission"]
    deleted = api.delete(request("DELETE", f"Encounter/{eid}"), "Encounter", eid)
    assert deleted.status == 204 and deleted.body is None and deleted.headers["ETag"] == 'W/"2"'
    assert [m.subject for m in clinical_messages(s.bus)] == ["cancel-admission"]
    gone = api.read(request("GET", f"Encounter/{eid}"), "Encounter", eid)
    assert gone.status == 410 and outcome(gone)["code"] == "deleted"
    again = api.delete(request("DELETE", f"Encounter/{eid}"), "Encounter", eid)
    assert again.status == 204 and clinical_messages(s.bus) == []
    org = create(api, organization())["id"]
    assert api.delete(request("DELETE", f"Organization/{org}"), "Organization", org).status == 204
    assert clinical_messages(s.bus) == [], "reference data carries no clinical event"


# ------------------------------------------------------------------------------------------- Prefer


def test_prefer_return(api: FhirApi) -> None:
    minimal = api.create(request("POST", "Patient", patient(), {"Prefer": "return=minimal"}), "Patient")
    assert minimal.status == 201 and minimal.body is None and minimal.headers["Location"]
    oo = api.create(
        request("POST", "Patient", patient(NHS[1]), {"Prefer": "return=OperationOutcome"}), "Patient"
    )
    assert oo.status == 201 and outcome(oo)["severity"] == "information"
    full = api.create(
        request("POST", "Patient", patient(NHS[2]), {"Prefer": "return=representation"}), "Patient"
    )
    assert full.body is not None and full.body["resourceType"] == "Patient"


# ------------------------------------------------------------------------------------------- search


def _link(bundle: dict[str, Any], relation: str) -> dict[str, list[str]] | None:
    for link in bundle["link"]:
        if link["relation"] == relation:
            assert link["url"].startswith(f"{BASE}/Patient?")
            return parse_qs(urlsplit(link["url"]).query)
    return None


def test_search_by_identifier_and_paging_links(api: FhirApi) -> None:
    ids = [create(api, patient(n))["id"] for n in NHS[:5]]
    found = api.search(request("GET", f"Patient?identifier={NHS_SYSTEM}|{NHS[3]}"), "Patient")
    assert found.status == 200 and found.body is not None and found.body["total"] == 1
    entry = found.body["entry"][0]
    assert entry["resource"]["id"] == ids[3] and entry["fullUrl"] == f"{BASE}/Patient/{ids[3]}"
    assert entry["search"] == {"mode": "match"}

    page1 = api.search(request("GET", "Patient?_count=2&_sort=_lastUpdated"), "Patient").body
    assert page1 is not None and [e["resource"]["id"] for e in page1["entry"]] == ids[:2]
    next_query = _link(page1, "next")
    assert next_query is not None and next_query["_offset"] == ["2"] and next_query["_count"] == ["2"]
    assert next_query["_sort"] == ["_lastUpdated"] and _link(page1, "previous") is None
    last = _link(page1, "last")
    assert last is not None and last["_offset"] == ["4"]
    page2 = api.search(request("GET", "Patient?_count=2&_sort=_lastUpdated&_offset=2"), "Patient").body
    assert page2 is not None and [e["resource"]["id"] for e in page2["entry"]] == ids[2:4]
    previous = _link(page2, "previous")
    assert previous is not None and previous["_offset"] == ["0"]
    page3 = api.search(request("GET", "Patient?_count=2&_sort=-_lastUpdated&_offset=4"), "Patient").body
    assert page3 is not None and [e["resource"]["id"] for e in page3["entry"]] == [ids[0]]
    assert _link(page3, "next") is None
    counted = api.search(request("GET", "Patient?_summary=count"), "Patient").body
    assert counted is not None and counted["total"] == 5 and "entry" not in counted


def test_search_include_subject(api: FhirApi) -> None:
    pid = create(api, patient())["id"]
    create(api, observation({"reference": f"Patient/{pid}"}))
    bundle = api.search(
        request("GET", f"Observation?patient={pid}&_include=Observation:subject"), "Observation"
    ).body
    assert bundle is not None
    modes = sorted((e["search"]["mode"], e["resource"]["resourceType"]) for e in bundle["entry"])
    assert modes == [("include", "Patient"), ("match", "Observation")]


def test_unknown_parameters_lenient_by_default_strict_on_request(api: FhirApi) -> None:
    create(api, patient())
    lenient = api.search(request("GET", "Patient?shoe-size=9&_summary=true"), "Patient")
    assert lenient.status == 200 and lenient.body is not None and lenient.body["total"] == 1
    (note,) = [e for e in lenient.body["entry"] if e["search"]["mode"] == "outcome"]
    text = note["resource"]["issue"][0]["diagnostics"]
    assert "shoe-size" in text and "_summary" in text and "9" not in text
    strict = api.search(
        request("GET", "Patient?shoe-size=9", headers={"Prefer": "handling=strict"}), "Patient"
    )
    assert strict.status == 400 and outcome(strict)["expression"] == ["shoe-size"]


@pytest.mark.parametrize(
    "query",
    [
        "birthdate=notadate",
        "birthdate=2020-02-30",
        "_count=-1",
        "_offset=x",
        f"_offset={MAX_OFFSET + 1}",
        "_sort=family:x",
    ],
)
def test_bad_search_values_are_400(api: FhirApi, query: str) -> None:
    response = api.search(request("GET", f"Patient?{query}"), "Patient")
    assert response.status == 400, response.body
    assert outcome(response)["code"] == "invalid"


def test_post_search_takes_a_form(api: FhirApi) -> None:
    create(api, patient())
    form = f"identifier={NHS_SYSTEM}|{NHS[0]}".encode()
    found = api.search(
        request("POST", "Patient/_search", form, content_type="application/x-www-form-urlencoded"),
        "Patient",
        post=True,
    )
    assert found.status == 200 and found.body is not None and found.body["total"] == 1
    wrong = api.search(request("POST", "Patient/_search", {"a": 1}), "Patient", post=True)
    assert wrong.status == 400
    none = api.search(
        request("POST", "Patient/_search", form, content_type="text/plain"), "Patient", post=True
    )
    assert none.status == 415


# ------------------------------------------------------------------------------------------ history


def test_instance_and_type_history(api: FhirApi) -> None:
    body = create(api, patient())
    pid = body["id"]
    for gender in ("male", "other", "female"):
        body = (
            api.update(request("PUT", f"Patient/{pid}", dict(body, gender=gender)), "Patient", pid).body or {}
        )
    history = api.history(request("GET", f"Patient/{pid}/_history"), "Patient", pid).body
    assert history is not None and history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["4", "3", "2", "1"]
    assert history["entry"][-1]["request"] == {"method": "POST", "url": "Patient"}
    assert (
        history["entry"][0]["response"]["status"].startswith("200")
        and history["entry"][0]["response"]["etag"]
    )
    paged = api.history(request("GET", f"Patient/{pid}/_history?_count=3"), "Patient", pid).body
    assert paged is not None and len(paged["entry"]) == 3
    (nxt,) = [link["url"] for link in paged["link"] if link["relation"] == "next"]
    assert parse_qs(urlsplit(nxt).query)["_offset"] == ["3"]
    bad = api.history(request("GET", f"Patient/{pid}/_history?_since=yesterday"), "Patient", pid)
    assert bad.status == 400
    strict = api.history(
        request("GET", f"Patient/{pid}/_history?_at=2020", headers={"Prefer": "handling=strict"}),
        "Patient",
        pid,
    )
    assert strict.status == 400
    create(api, patient(NHS[1]))
    everything = api.history(request("GET", "Patient/_history"), "Patient").body
    assert everything is not None and len(everything["entry"]) == 5
    assert api.history(request("GET", "Patient/nope/_history"), "Patient", "nope").status == 404


# ------------------------------------------------------------------------------------------ bundles


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


URN = "urn:uuid:6f1c2d3e-0000-4000-8000-000000000001"


def _patient_entry() -> dict[str, Any]:
    return {
        "fullUrl": URN,
        "resource": patient(),
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": CRITERIA},
    }


def test_transaction_rewrites_urn_references_and_publishes_all_events(api: FhirApi, s: Stores) -> None:
    bundle = _transaction(
        {"resource": observation({"reference": URN}), "request": {"method": "POST", "url": "Observation"}},
        _patient_entry(),
        {"resource": encounter({"reference": URN}), "request": {"method": "POST", "url": "Encounter"}},
    )
    response = api.bundle(request("POST", "", bundle))
    assert response.status == 200 and response.body is not None
    assert response.body["type"] == "transaction-response"
    statuses = [e["response"]["status"][:3] for e in response.body["entry"]]
    assert statuses == ["201", "201", "201"]
    pid = response.body["entry"][1]["resource"]["id"]
    obs_id = response.body["entry"][0]["resource"]["id"]
    assert s.repo.read("Observation", obs_id).resource["subject"] == {"reference": f"Patient/{pid}"}
    kinds = sorted(m.subject or "" for m in clinical_messages(s.bus))
    assert kinds == ["admission", "patient-created", "result"]


@pytest.mark.parametrize(
    ("breakage", "status", "expression"),
    [
        ("invalid-date", 422, "Bundle.entry[1].resource.effectiveDateTime"),
        ("unmappable", 422, "Bundle.entry[1].resource.identifier"),
        ("if-match", 412, "Bundle.entry[2]"),
        ("delete-patient", 405, "Bundle.entry[2]"),
        ("dangling-urn", 422, "Bundle.entry[1].resource.subject"),
    ],
)
def test_a_transaction_with_one_bad_entry_writes_nothing(
    api: FhirApi, s: Stores, breakage: str, status: int, expression: str
) -> None:
    existing = create(api, patient(NHS[3]))
    clinical_messages(s.bus)
    before = s.repo.search("Patient", []).total
    obs = observation({"reference": URN})
    third: dict[str, Any] = {"resource": organization(), "request": {"method": "POST", "url": "Organization"}}
    if breakage == "invalid-date":
        obs["effectiveDateTime"] = "2026-02-30T10:00:00Z"
    elif breakage == "unmappable":
        del obs["identifier"]
    elif breakage == "if-match":
        third = {
            "resource": dict(existing, gender="male"),
            "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"7"'},
        }
    elif breakage == "delete-patient":
        third = {"request": {"method": "DELETE", "url": f"Patient/{existing['id']}"}}
    elif breakage == "dangling-urn":
        obs["subject"] = {"reference": "urn:uuid:00000000-0000-4000-8000-00000000dead"}
    bundle = _transaction(
        _patient_entry(), {"resource": obs, "request": {"method": "POST", "url": "Observation"}}, third
    )
    response = api.bundle(request("POST", "", bundle))
    assert response.status == status, response.body
    issue = outcome(response)
    assert any(e.startswith(expression) for e in issue["expression"]), issue
    assert s.repo.search("Patient", []).total == before
    assert s.repo.search("Observation", []).total == 0 and s.repo.search("Organization", []).total == 0
    assert clinical_messages(s.bus) == []


def test_bundle_must_be_a_transaction_or_batch(api: FhirApi) -> None:
    wrong = api.bundle(request("POST", "", {"resourceType": "Bundle", "type": "collection"}))
    assert wrong.status == 400 and outcome(wrong)["expression"] == ["Bundle.type"]
    not_bundle = api.bundle(request("POST", "", patient()))
    assert not_bundle.status == 400


def test_batch_applies_entries_independently(api: FhirApi, s: Stores) -> None:
    pid = create(api, patient())["id"]
    clinical_messages(s.bus)
    no_filler = observation({"reference": f"Patient/{pid}"})
    del no_filler["identifier"]
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient(NHS[1]), "request": {"method": "POST", "url": "Patient"}},
            {"resource": patient(NHS[2], birthDate="xx"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": no_filler, "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
            {"request": {"method": "DELETE", "url": f"Patient/{pid}"}},
            {"request": {"method": "FETCH", "url": "Patient"}},
        ],
    }
    response = api.bundle(request("POST", "", batch, {"Prefer": "return=minimal"}))
    assert response.status == 200 and response.body is not None
    entries = response.body["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["201", "422", "422", "200", "405", "400"]
    assert entries[1]["response"]["outcome"]["issue"][0]["expression"] == [
        "Bundle.entry[1].resource.birthDate"
    ]
    assert "resource" not in entries[0], "Prefer: return=minimal"
    assert [m.subject for m in clinical_messages(s.bus)] == ["patient-created"]


# ---------------------------------------------------------------------------------- publish failure


class DownBus:
    """A bus whose publish fails (transient); everything else is the real embedded bus."""

    def __init__(self, inner: MessageBus) -> None:
        self.inner = inner

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> None:
        raise BusUnavailable("bus down")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_failed_publish_does_not_fail_the_committed_write_and_the_outbox_delivers(s: Stores) -> None:
    api = make_api(s, bus=DownBus(s.bus))  # type: ignore[arg-type]
    response = api.create(request("POST", "Patient", patient(), correlation_id="down-1"), "Patient")
    assert response.status == 201 and response.body is not None
    assert s.repo.read("Patient", response.body["id"]).version_id == "1"
    assert clinical_messages(s.bus) == []
    # Committed with the write in the FHIR store's own outbox; nothing went to the record-store outbox.
    assert len(s.repo.pending_batches()) == 1
    assert s.records.query(TABLE_OUTBOX, OUTBOX_OWNER_PARTITION) == []
    stages = [e.stage for e in Journal(s.records).trace("down-1")]
    assert "publish-deferred" in stages and "published" not in stages
    report = CommittedBatchRelay(s.repo, s.bus, grace=timedelta(0)).run_until_idle(max_seconds=5)
    assert report.published == 1 and s.repo.pending_batches() == []
    (message,) = clinical_messages(s.bus)
    assert message.subject == "patient-created" and message.correlation_id == "down-1"
    assert (
        clinical.from_message(message.body).key
        == event_from_fhir(response.body, interaction="create", patient=None).value.key
    )


# ------------------------------------------------------------------------------- gateway / policy


def test_gateway_header_required_when_configured(s: Stores) -> None:
    api = make_api(s, require_gateway_header=True, gateway_header="X-TIE-Gateway")
    refused = api.metadata(request("GET", "metadata"))
    assert refused.status == 403 and outcome(refused)["code"] == "forbidden"
    passed = api.metadata(request("GET", "metadata", headers={"x-tie-gateway": "apim-tie-dev"}))
    assert passed.status == 200


def test_data_minimisation_policy_applies_per_client(s: Stores) -> None:
    policy = StaticElementsPolicy({"reporting": {"Patient": {"identifier", "birthDate"}}})
    api = FhirApi(
        s.repo,
        s.bus,
        s.records,
        config=FhirApiConfig(require_gateway_header=True),
        elements_policy=policy,
    )
    gw = {"X-TIE-Gateway": "apim"}
    created = api.create(request("POST", "Patient", patient(), gw), "Patient").body
    assert created is not None and "name" in created, "no client header: unrestricted"
    pid = created["id"]
    restricted = api.read(
        request("GET", f"Patient/{pid}", headers={**gw, CLIENT_HEADER: "reporting"}), "Patient", pid
    )
    assert restricted.body is not None
    assert set(restricted.body) == {"resourceType", "id", "meta", "identifier", "birthDate"}
    searched = api.search(
        request("GET", "Patient", headers={**gw, CLIENT_HEADER: "reporting"}), "Patient"
    ).body
    assert searched is not None and "name" not in searched["entry"][0]["resource"]
    other = api.read(request("GET", f"Patient/{pid}", headers={**gw, CLIENT_HEADER: "epr"}), "Patient", pid)
    assert other.body is not None and "name" in other.body


def test_metadata_lists_what_is_served(api: FhirApi) -> None:
    response = api.metadata(request("GET", "metadata"))
    assert response.status == 200 and response.body is not None
    statement = response.body
    assert statement["fhirVersion"] == "4.0.1" and statement["implementation"]["url"] == BASE
    types = {r["type"]: {i["code"] for i in r["interaction"]} for r in statement["rest"][0]["resource"]}
    assert "delete" in types["Encounter"] and "delete" not in types["Patient"]
    assert {i["code"] for i in statement["rest"][0]["interaction"]} == {"transaction", "batch"}


def test_conflicts_are_409(api: FhirApi, s: Stores) -> None:
    existing = create(api, patient())
    # Conditional update: no match for the criteria, but the body's id is taken by another resource.
    taken = api.conditional_update(
        request("PUT", f"Patient?identifier={NHS_SYSTEM}|{NHS[4]}", patient(NHS[4], id=existing["id"])),
        "Patient",
    )
    assert taken.status == 409 and outcome(taken)["code"] == "conflict"
    twice = _transaction(
        {"resource": patient(NHS[5], id="same"), "request": {"method": "PUT", "url": "Patient/same"}},
        {"resource": patient(NHS[6], id="same"), "request": {"method": "PUT", "url": "Patient/same"}},
    )
    response = api.bundle(request("POST", "", twice))
    assert response.status == 409 and outcome(response)["expression"] == ["Bundle.entry[1]"]
    assert s.repo.search("Patient", []).total == 1


class FlakyBus:
    """Counts publishes; fails from the ``fail_from``-th call on."""

    def __init__(self, inner: MessageBus, fail_from: int | None = None) -> None:
        self.inner = inner
        self.fail_from = fail_from
        self.batches: list[int] = []

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> None:
        if self.fail_from is not None and len(self.batches) + 1 >= self.fail_from:
            raise BusUnavailable("bus down")
        self.batches.append(len(messages))
        self.inner.publish(topic, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _patients_transaction(count: int) -> dict[str, Any]:
    from shared.identifiers.nhs_number import is_valid_nhs_number

    numbers = [str(n) for n in range(9_200_000_000, 9_200_001_000) if is_valid_nhs_number(str(n))][:count]
    return _transaction(
        *({"resource": patient(n), "request": {"method": "POST", "url": "Patient"}} for n in numbers)
    )


def test_a_transactions_events_go_in_bus_sized_batches(s: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.fhirapi.clinical_events.MAX_BATCH_MESSAGES", 3)
    bus = FlakyBus(s.bus)
    api = make_api(s, bus=bus)  # type: ignore[arg-type]
    assert api.bundle(request("POST", "", _patients_transaction(7))).status == 200
    assert bus.batches == [3, 3, 1]
    assert len(clinical_messages(s.bus)) == 7


def test_events_the_bus_refuses_part_way_go_to_the_outbox(s: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.fhirapi.clinical_events.MAX_BATCH_MESSAGES", 3)
    bus = FlakyBus(s.bus, fail_from=2)
    api = make_api(s, bus=bus)  # type: ignore[arg-type]
    response = api.bundle(request("POST", "", _patients_transaction(7), correlation_id="part-1"))
    assert response.status == 200 and bus.batches == [3]
    assert len(clinical_messages(s.bus)) == 3
    stages = [e.stage for e in Journal(s.records).trace("part-1")]
    assert stages.count("published") == 3 and stages.count("publish-deferred") == 4
    CommittedBatchRelay(s.repo, s.bus, grace=timedelta(0)).run_until_idle(max_seconds=5)
    assert len(clinical_messages(s.bus)) == 4, "the whole batch again: the first 3 are duplicates, dropped"
