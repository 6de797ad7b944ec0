"""Bulk Data export on every storage backend: job records in the record store (embedded SQLite, Azure
Tables on Azurite) and files in the blob store (embedded SQLite, Azure Blob Storage on Azurite). A worker
killed mid-export resumes from the job record and the manifest lists each resource exactly once; a
cancelled export leaves no file behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_blobs import SqliteBlobStore
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.bulkexport import BulkExportApi, ExportAccess, ExportConfig, ExportRunner, JobStore, Level
from shared.fhirapi.http import FhirRequest, Headers
from shared.storage.names import CONTAINER_BULK_EXPORT
from shared.storage.ports import BlobStore, RecordStore
from tests.contract.backends import BACKENDS
from tests.unit.bulkexport.support import KEY, Clock, DiesAfter, Killed

BASE = "https://tie.example/api/fhir"
HEADERS = {"Prefer": "respond-async", "X-TIE-Client-Id": "lake"}


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RecordStore, BlobStore]]:
    records: RecordStore
    blobs: BlobStore
    if request.param == "sqlite":
        records, blobs = SqliteRecordStore(tmp_path / "records.sqlite3"), SqliteBlobStore(tmp_path / "blobs")
    else:
        from shared.adapters.azure.blobs import AzureBlobStore
        from shared.adapters.azure.tables import AzureTableRecordStore

        connection = request.getfixturevalue("azurite")
        records = AzureTableRecordStore.from_connection_string(connection)
        blobs = AzureBlobStore.from_connection_string(connection)
        for job in JobStore(records).all():  # jobs of earlier tests on the shared emulator
            JobStore(records).delete(job.id)
    yield records, blobs
    records.close()
    blobs.close()


def request(path: str) -> FhirRequest:
    return FhirRequest("GET", f"{BASE}/{path}", Headers(HEADERS))


def test_killed_export_resumes_and_cancel_removes_files(
    stores: tuple[RecordStore, BlobStore], tmp_path: Path
) -> None:
    records, blobs = stores
    clock = Clock()
    fhir = SqliteFhirRepository(tmp_path / "fhir.sqlite3", clock=clock)
    expected = set()
    for n in range(17):
        expected.add(
            fhir.create({"resourceType": "Patient", "gender": "other", "birthDate": f"19{n + 10}"}).id
        )
        clock.advance(milliseconds=1 + n % 2)
    jobs = JobStore(records, clock=clock)
    api = BulkExportApi(
        jobs, blobs, ExportConfig(ExportAccess.parse("lake:identified"), pseudonym_key_configured=True)
    )
    kicked = api.kickoff(request("$export?_type=Patient"), Level.SYSTEM)
    job = kicked.headers["Content-Location"].rsplit("/", 1)[1]

    def runner(repo: Any) -> ExportRunner:
        return ExportRunner(repo, blobs, jobs, pseudonym_key=KEY, page_size=4, max_file_bytes=300)

    with pytest.raises(Killed):
        runner(DiesAfter(fhir, 3)).run_pending()
    clock.advance(minutes=6)
    assert runner(fhir).run_pending() == 1

    manifest = api.status(request(f"bulkstatus/{job}"), job).body
    assert isinstance(manifest, dict)
    found: list[str] = []
    for output in manifest["output"]:
        name = output["url"].rsplit("/", 1)[1]
        data = api.download(request(f"bulkfiles/{job}/{name}"), job, name).body
        assert isinstance(data, bytes)
        found += [json.loads(line)["id"] for line in data.decode().splitlines()]
    assert sorted(found) == sorted(expected)

    assert api.cancel(request(f"bulkstatus/{job}"), job).status == 202
    assert blobs.list(CONTAINER_BULK_EXPORT, prefix=f"{job}/") == []
    assert api.status(request(f"bulkstatus/{job}"), job).status == 404
    fhir.close()
