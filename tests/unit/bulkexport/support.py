"""Embedded stores, a controllable clock and request helpers for the bulk export tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.embedded.sqlite_blobs import SqliteBlobStore
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.bulkexport import BulkExportApi, ExportAccess, ExportConfig, ExportRunner, JobStore, Level
from shared.bulkexport.api import ExportResponse
from shared.fhirapi.http import FhirRequest, Headers

BASE = "https://tie.example/api/fhir"
KEY = b"k" * 16 + b"bulk-export-test-key-not-real"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 1, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Env:
    tmp: Path
    clock: Clock
    fhir: SqliteFhirRepository
    records: SqliteRecordStore
    blobs: SqliteBlobStore
    jobs: JobStore

    def api(self, access: str = "*:identified", *, key: bool = True) -> BulkExportApi:
        config = ExportConfig(ExportAccess.parse(access), base_url=BASE, pseudonym_key_configured=key)
        return BulkExportApi(self.jobs, self.blobs, config)

    def runner(self, repository: Any = None, **kwargs: Any) -> ExportRunner:
        return ExportRunner(repository or self.fhir, self.blobs, self.jobs, pseudonym_key=KEY, **kwargs)

    def close(self) -> None:
        for store in (self.fhir, self.records, self.blobs):
            store.close()


def env(tmp: Path) -> Env:
    clock = Clock()
    records = SqliteRecordStore(tmp / "records.sqlite3")
    return Env(
        tmp=tmp,
        clock=clock,
        fhir=SqliteFhirRepository(tmp / "fhir.sqlite3", clock=clock),
        records=records,
        blobs=SqliteBlobStore(tmp / "blobs"),
        jobs=JobStore(records, clock=clock),
    )


def get(path: str, client: str | None = None, **headers: str) -> FhirRequest:
    all_headers = dict(headers)
    if client is not None:
        all_headers["X-TIE-Client-Id"] = client
    return FhirRequest("GET", f"{BASE}/{path}", Headers(all_headers))


def kickoff(
    api: BulkExportApi, query: str = "", client: str | None = None, level: Level = Level.SYSTEM
) -> ExportResponse:
    path = "$export" if level is Level.SYSTEM else "Patient/$export"
    return api.kickoff(get(f"{path}?{query}" if query else path, client, **ASYNC), level)


def job_id(response: ExportResponse) -> str:
    assert response.status == 202, response.body
    location = response.headers["Content-Location"]
    assert location.startswith(f"{BASE}/bulkstatus/")
    return location.rsplit("/", 1)[1]


def manifest(api: BulkExportApi, job: str, client: str | None = None) -> dict[str, Any]:
    response = api.status(get(f"bulkstatus/{job}", client), job)
    assert response.status == 200, (response.status, response.headers)
    assert isinstance(response.body, dict)
    return response.body


def lines(api: BulkExportApi, files: Sequence[dict[str, Any]], client: str | None = None) -> list[str]:
    """Every line of every file of a manifest section, downloaded through the API."""
    out: list[str] = []
    for entry in files:
        job, name = entry["url"].split("/bulkfiles/", 1)[1].split("/", 1)
        response = api.download(get(f"bulkfiles/{job}/{name}", client), job, name)
        assert response.status == 200 and response.content_type == "application/fhir+ndjson"
        assert isinstance(response.body, bytes)
        out.extend(response.body.decode("utf-8").splitlines())
    return out


def resources(api: BulkExportApi, m: dict[str, Any], client: str | None = None) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(api, m["output"], client)]


class Killed(BaseException):
    """The host dies (not an Exception: nothing in the worker may catch it)."""


class DiesAfter:
    """The FHIR repository of a host that is killed at its ``searches``-th search."""

    def __init__(self, inner: Any, searches: int) -> None:
        self._inner = inner
        self._left = searches

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self._left -= 1
        if self._left < 0:
            raise Killed
        return self._inner.search(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
