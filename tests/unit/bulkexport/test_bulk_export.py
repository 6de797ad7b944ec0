"""Bulk Data export core: kick-off, status, manifest, download, cancel, _type/_since/_typeFilter, access,
resumption after a killed worker, and ties in lastUpdated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.bulkexport import Level
from shared.storage.names import CONTAINER_BULK_EXPORT
from tests.unit.bulkexport.support import (
    ASYNC,
    DiesAfter,
    Env,
    Killed,
    env,
    get,
    job_id,
    kickoff,
    lines,
    manifest,
    resources,
)

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.fixture
def e(tmp_path: Path) -> Iterator[Env]:
    built = env(tmp_path)
    yield built
    built.close()


def patient(nhs: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_SYSTEM, "value": nhs}],
        "name": [{"family": "Exportperson", "given": ["Sam"]}],
        "birthDate": "1970-01-02",
    }


def observation(pid: str, code: str = "2823-3") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


def populate(e: Env, patients: int = 3, per_patient: int = 2) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {"Patient": set(), "Observation": set()}
    for n in range(patients):
        pid = e.fhir.create(patient(f"90000000{n:02d}")).id
        ids["Patient"].add(pid)
        for _ in range(per_patient):
            ids["Observation"].add(e.fhir.create(observation(pid)).id)
            e.clock.advance(milliseconds=3)
    return ids


def by_type(found: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for resource in found:
        out.setdefault(resource["resourceType"], []).append(resource["id"])
    return out


def test_kickoff_poll_manifest_download(e: Env) -> None:
    ids = populate(e)
    api = e.api()
    job = job_id(kickoff(api, "_type=Patient,Observation&_outputFormat=application/fhir%2Bndjson"))

    waiting = api.status(get(f"bulkstatus/{job}"), job)
    assert waiting.status == 202
    assert waiting.headers["Retry-After"] == "5" and "X-Progress" in waiting.headers

    assert e.runner().run_pending() == 1
    m = manifest(api, job)
    assert m["requiresAccessToken"] is True and m["transactionTime"].endswith("Z")
    assert m["request"].endswith("$export?_type=Patient,Observation&_outputFormat=application/fhir%2Bndjson")
    assert [(o["type"], o["count"]) for o in m["output"]] == [("Patient", 3), ("Observation", 6)]
    assert m["deleted"] == [] and m["error"] == []
    found = by_type(resources(api, m))
    assert {t: set(v) for t, v in found.items()} == ids
    assert all(len(v) == len(set(v)) for v in found.values())


def test_patient_level_exports_the_compartment_types_only(e: Env) -> None:
    populate(e, patients=1, per_patient=1)
    e.fhir.create({"resourceType": "Organization", "name": "Trust"})
    api = e.api()
    job = job_id(kickoff(api, level=Level.PATIENT))
    e.runner().run_pending()
    types = {o["type"] for o in manifest(api, job)["output"]}
    assert types == {"Patient", "Observation"}
    refused = kickoff(api, "_type=Organization", level=Level.PATIENT)
    assert refused.status == 400


@pytest.mark.parametrize(
    ("query", "headers", "status", "expression"),
    [
        ("", {"Accept": "application/fhir+json"}, 400, "Prefer"),
        ("_outputFormat=text/csv", ASYNC, 400, "_outputFormat"),
        ("_type=Spaceship", ASYNC, 400, "_type"),
        ("_since=yesterday", ASYNC, 400, "_since"),
        ("_since=2026-01-01", ASYNC, 400, "_since"),
        ("_elements=id", ASYNC, 400, "_elements"),
        ("_typeFilter=Observation?_count=5", ASYNC, 400, "_typeFilter"),
        ("_typeFilter=Observation?code=1&_typeFilter=Observation?code=2", ASYNC, 400, "_typeFilter"),
        ("_type=Patient&_typeFilter=Observation?code=1", ASYNC, 400, "_typeFilter"),
        ("_pseudonymise=yes", ASYNC, 400, "_pseudonymise"),
    ],
)
def test_kickoff_refusals(e: Env, query: str, headers: dict[str, str], status: int, expression: str) -> None:
    response = e.api().kickoff(get(f"$export?{query}", **headers), Level.SYSTEM)
    assert response.status == status
    assert isinstance(response.body, dict)
    assert response.body["issue"][0]["expression"] == [expression]
    assert e.jobs.all() == []


def test_unknown_parameter_is_ignored_when_lenient_and_reported_in_the_error_file(e: Env) -> None:
    populate(e, patients=1, per_patient=0)
    headers = {**ASYNC, "Prefer": "respond-async, handling=lenient"}
    api = e.api()
    job = job_id(api.kickoff(get("$export?_type=Patient&_elements=id&_elements=x", **headers), Level.SYSTEM))
    e.runner().run_pending()
    m = manifest(api, job)
    assert [(o["type"], o["count"]) for o in m["output"]] == [("Patient", 1)]
    assert [(o["type"], o["count"]) for o in m["error"]] == [("OperationOutcome", 1)]
    (outcome,) = [json.loads(line) for line in lines(api, m["error"])]
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["_elements"]


def test_type_filter_selects(e: Env) -> None:
    pid = e.fhir.create(patient("9000000009")).id
    wanted = e.fhir.create(observation(pid, "1111-1")).id
    e.fhir.create(observation(pid, "2222-2"))
    api = e.api()
    job = job_id(kickoff(api, "_type=Observation&_typeFilter=Observation%3Fcode%3D1111-1"))
    e.runner().run_pending()
    assert [r["id"] for r in resources(api, manifest(api, job))] == [wanted]


@pytest.mark.parametrize(
    ("access", "query", "client", "status"),
    [
        ("", "", "bi", 403),  # nobody configured: fail closed
        ("lake:identified", "", "bi", 403),  # another client
        ("lake:pseudonymised", "", "lake", 403),  # must ask for pseudonymised
        ("lake:pseudonymised", "_pseudonymise=true", "lake", 202),
        ("*:identified", "_pseudonymise=true", None, 403),  # recipient unknown
        ("*:identified", "", None, 202),
    ],
)
def test_access(e: Env, access: str, query: str, client: str | None, status: int) -> None:
    assert kickoff(e.api(access), query, client).status == status


def test_pseudonymised_export_needs_the_key(e: Env) -> None:
    response = kickoff(e.api(key=False), "_pseudonymise=true", "lake")
    assert response.status == 501


def test_jobs_are_visible_to_their_client_only(e: Env) -> None:
    populate(e, patients=1, per_patient=0)
    api = e.api()
    job = job_id(kickoff(api, "_type=Patient", "lake"))
    e.runner().run_pending()
    assert api.status(get(f"bulkstatus/{job}", "other"), job).status == 404
    name = manifest(api, job, "lake")["output"][0]["url"].rsplit("/", 1)[1]
    assert api.download(get("f", "other"), job, name).status == 404
    assert api.download(get("f", "lake"), job, name).status == 200
    assert api.download(get("f", "lake"), job, "../x").status == 404


def test_cancel_deletes_files_and_status_is_404(e: Env) -> None:
    populate(e)
    api = e.api()
    job = job_id(kickoff(api, "_type=Patient"))
    e.runner().run_pending()
    assert e.blobs.list(CONTAINER_BULK_EXPORT, prefix=f"{job}/")
    assert api.cancel(get(f"bulkstatus/{job}"), job).status == 202
    assert api.status(get(f"bulkstatus/{job}"), job).status == 404
    assert e.blobs.list(CONTAINER_BULK_EXPORT, prefix=f"{job}/") == []
    assert api.cancel(get(f"bulkstatus/{job}"), job).status == 404


def test_cancel_before_the_worker_runs_stops_it(e: Env) -> None:
    populate(e)
    api = e.api()
    job = job_id(kickoff(api))
    api.cancel(get(f"bulkstatus/{job}"), job)
    assert e.runner().run_pending() == 0
    assert e.blobs.list(CONTAINER_BULK_EXPORT, prefix=f"{job}/") == []


def test_since_takes_exactly_the_changed_and_deleted(e: Env) -> None:
    ids = populate(e, patients=3, per_patient=2)
    api = e.api()
    first = job_id(kickoff(api))
    e.runner().run_pending()
    since = manifest(api, first)["transactionTime"]

    e.clock.advance(seconds=5)
    pids = sorted(ids["Patient"])
    changed = e.fhir.read("Patient", pids[0]).resource
    changed["gender"] = "female"
    e.fhir.update("Patient", pids[0], changed)
    created = e.fhir.create(observation(pids[1])).id
    gone_obs = sorted(ids["Observation"])[0]
    e.fhir.delete("Observation", gone_obs)
    # deleted and re-created: its current state is exported, not a deletion
    e.fhir.delete("Patient", pids[2])
    again = e.fhir.read("Patient", pids[1]).resource
    e.fhir.update("Patient", pids[2], {**again, "id": pids[2]})

    second = job_id(kickoff(api, f"_since={since}"))
    e.runner().run_pending()
    m = manifest(api, second)
    found = by_type(resources(api, m))
    assert {t: sorted(v) for t, v in found.items()} == {
        "Patient": sorted([pids[0], pids[2]]),
        "Observation": [created],
    }
    bundles = [json.loads(line) for line in lines(api, m["deleted"])]
    urls = [entry["request"]["url"] for b in bundles for entry in b["entry"]]
    assert urls == [f"Observation/{gone_obs}"]
    assert {entry["request"]["method"] for b in bundles for entry in b["entry"]} == {"DELETE"}
    assert all(b["resourceType"] == "Bundle" and b["type"] == "transaction" for b in bundles)


def test_changes_after_the_transaction_time_wait_for_the_next_export(e: Env) -> None:
    ids = populate(e, patients=2, per_patient=0)
    api = e.api()
    job = job_id(kickoff(api, "_type=Patient"))
    e.clock.advance(seconds=1)
    e.fhir.create(patient("9000000999"))
    e.runner().run_pending()
    assert {r["id"] for r in resources(api, manifest(api, job))} == ids["Patient"]


@pytest.mark.parametrize("kill_at", [1, 2, 3, 5])
def test_a_host_killed_mid_export_resumes_and_lists_each_resource_once(e: Env, kill_at: int) -> None:
    ids = populate(e, patients=9, per_patient=3)
    api = e.api()
    job = job_id(kickoff(api, "_type=Patient,Observation"))
    small = {"page_size": 4, "max_file_bytes": 1024}
    with pytest.raises(Killed):
        e.runner(DiesAfter(e.fhir, kill_at), **small).run_pending()
    assert e.runner(**small).run_pending() == 0  # the dead worker's lease still holds
    e.clock.advance(minutes=6)
    assert e.runner(**small).run_pending() == 1
    m = manifest(api, job)
    assert len(m["output"]) > 2, "small files: the kill fell between files"
    found = by_type(resources(api, m))
    for rtype, expected in ids.items():
        assert sorted(found[rtype]) == sorted(expected), rtype
    assert sum(o["count"] for o in m["output"]) == sum(len(v) for v in ids.values())


def test_resources_with_one_last_updated_are_each_exported_once(e: Env) -> None:
    expected = {e.fhir.create(patient(f"90000001{n:02d}")).id for n in range(23)}  # the clock stands still
    api = e.api()
    job = job_id(kickoff(api, "_type=Patient"))
    e.runner(page_size=5, max_file_bytes=1024).run_pending()
    found = [r["id"] for r in resources(api, manifest(api, job))]
    assert sorted(found) == sorted(expected)


def test_a_slice_out_of_budget_saves_progress(e: Env) -> None:
    populate(e, patients=10, per_patient=0)
    api = e.api()
    job = job_id(kickoff(api, "_type=Patient"))
    assert e.runner(page_size=3).run_pending(max_pages=2) == 0
    progress = api.status(get(f"bulkstatus/{job}"), job).headers["X-Progress"]
    assert progress == "0/1 types, 6 resources"
    assert e.runner(page_size=3).run_pending() == 1
    assert len(resources(api, manifest(api, job))) == 10


def test_files_are_deleted_a_day_after_the_export_finished(e: Env) -> None:
    populate(e, patients=2, per_patient=0)
    api = e.api()
    job = job_id(kickoff(api, "_type=Patient"))
    e.runner().run_pending()
    done = api.status(get(f"bulkstatus/{job}"), job)
    assert done.status == 200 and done.headers["Expires"] == "Mon, 02 Mar 2026 09:00:00 GMT"
    e.clock.advance(hours=23, minutes=59)
    assert e.runner().purge_expired() == 0
    e.clock.advance(minutes=1)
    e.runner().run_pending()
    assert e.blobs.list(CONTAINER_BULK_EXPORT, prefix=f"{job}/") == []
    assert api.status(get(f"bulkstatus/{job}"), job).status == 404
