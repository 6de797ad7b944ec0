"""Bulk Data export: the kick-off request, the job record and its store (see docs/bulk-export.md).

A job is one record in the ``bulkexport`` table (partition ``job``, row key the job id): the request as
parsed at kick-off, the transaction time (the snapshot's upper bound), per-type cursors, the files
written so far and a lease. Every change is an ETag-conditional update, so two workers never both run
one job and a worker that dies leaves a record another worker resumes once the lease has expired.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.fhirapi.errors import FhirApiError
from shared.fhirstore.ports import format_instant
from shared.storage.errors import ConcurrencyConflict, RecordNotFound
from shared.storage.names import TABLE_BULK_EXPORT
from shared.storage.ports import RecordStore

NDJSON = "application/fhir+ndjson"
#: ``_outputFormat`` values meaning NDJSON (Bulk Data IG: the server must accept these three).
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
_PARTITION = "job"


class ExportError(FhirApiError):
    """A kick-off, status or download request the server refuses (status and issue code per subclass)."""

    code = "bulk-export"


class ExportForbidden(ExportError):
    code = "bulk-export-forbidden"
    http_status = 403
    issue_code = "forbidden"


class ExportNotConfigured(ExportError):
    code = "bulk-export-not-configured"
    http_status = 501
    issue_code = "not-supported"


class ExportNotFound(ExportError):
    code = "bulk-export-not-found"
    http_status = 404
    issue_code = "not-found"


class Level(StrEnum):
    SYSTEM = "system"
    PATIENT = "patient"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """A kick-off request as accepted: types in export order, filters per type (one query string each)."""

    level: Level
    types: tuple[str, ...]
    since: str | None = None
    type_filters: dict[str, str] = field(default_factory=dict)
    pseudonymise: bool = False
    #: Who asked (``X-TIE-Client-Id``); the recipient a pseudonymised export's references are keyed to.
    client: str | None = None
    request_url: str = ""
    #: Kick-off parameters ignored under ``Prefer: handling=lenient`` (reported in the error file).
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TypeCursor:
    """Where the scan of one type stands: resources with lastUpdated ``after`` already written ``skip``
    of them (ties in lastUpdated are ordered by id), ``part`` files written, ``done`` when finished."""

    after: str | None = None
    skip: int = 0
    part: int = 0
    count: int = 0
    done: bool = False


@dataclass(frozen=True, slots=True)
class OutputFile:
    type: str
    name: str
    count: int
    size: int


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    request: ExportRequest
    transaction_time: str
    created: str
    status: JobStatus = JobStatus.QUEUED
    cursors: dict[str, TypeCursor] = field(default_factory=dict)
    outputs: tuple[OutputFile, ...] = ()
    deleted: tuple[OutputFile, ...] = ()
    errors: tuple[OutputFile, ...] = ()
    deleted_done: bool = False
    lease_until: str | None = None
    finished: str | None = None
    #: A fixed, value-free reason when the job failed.
    failure: str | None = None
    etag: str = ""

    @property
    def written(self) -> int:
        return sum(c.count for c in self.cursors.values())

    def progress(self) -> str:
        """``X-Progress`` text: which type is being exported and how many resources are written."""
        done = sum(1 for t in self.request.types if self.cursors.get(t, TypeCursor()).done)
        return f"{done}/{len(self.request.types)} types, {self.written} resources"

    def to_value(self) -> dict[str, Any]:
        value = asdict(self)
        value.pop("etag")
        value["request"]["level"] = self.request.level.value
        value["status"] = self.status.value
        return value

    @classmethod
    def from_value(cls, value: dict[str, Any], etag: str) -> Job:
        req = dict(value["request"])
        request = ExportRequest(
            level=Level(req["level"]),
            types=tuple(req["types"]),
            since=req.get("since"),
            type_filters=dict(req.get("type_filters") or {}),
            pseudonymise=bool(req.get("pseudonymise")),
            client=req.get("client"),
            request_url=req.get("request_url", ""),
            ignored=tuple(req.get("ignored") or ()),
        )
        return cls(
            id=value["id"],
            request=request,
            transaction_time=value["transaction_time"],
            created=value["created"],
            status=JobStatus(value["status"]),
            cursors={k: TypeCursor(**v) for k, v in (value.get("cursors") or {}).items()},
            outputs=tuple(OutputFile(**o) for o in value.get("outputs") or ()),
            deleted=tuple(OutputFile(**o) for o in value.get("deleted") or ()),
            errors=tuple(OutputFile(**o) for o in value.get("errors") or ()),
            deleted_done=bool(value.get("deleted_done")),
            lease_until=value.get("lease_until"),
            finished=value.get("finished"),
            failure=value.get("failure"),
            etag=etag,
        )


Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """Export jobs in a :class:`~shared.storage.ports.RecordStore` (ETag-guarded updates)."""

    def __init__(self, records: RecordStore, *, clock: Clock = _utc_now) -> None:
        self._records = records
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    def create(self, request: ExportRequest) -> Job:
        now = self._clock()
        job = Job(
            id=secrets.token_hex(16),
            request=request,
            transaction_time=format_instant(now),
            created=format_instant(now),
        )
        record = self._records.insert(TABLE_BULK_EXPORT, _PARTITION, job.id, job.to_value())
        return replace(job, etag=record.etag)

    def get(self, job_id: str) -> Job | None:
        if not job_id.isalnum() or len(job_id) > 64:
            return None
        record = self._records.get(TABLE_BULK_EXPORT, _PARTITION, job_id)
        return None if record is None else Job.from_value(record.value, record.etag)

    def save(self, job: Job) -> Job:
        """Store ``job`` if nobody changed it since it was read; :class:`ConcurrencyConflict` otherwise."""
        record = self._records.update(TABLE_BULK_EXPORT, _PARTITION, job.id, job.to_value(), etag=job.etag)
        return replace(job, etag=record.etag)

    def delete(self, job_id: str) -> bool:
        return self._records.delete(TABLE_BULK_EXPORT, _PARTITION, job_id)

    def runnable(self, *, limit: int = 20) -> list[Job]:
        """Jobs not finished whose lease is free (never taken, or expired), oldest first."""
        now = format_instant(self._clock())
        jobs = [Job.from_value(r.value, r.etag) for r in self._records.query(TABLE_BULK_EXPORT, _PARTITION)]
        free = [j for j in jobs if not j.status.finished and (j.lease_until is None or j.lease_until <= now)]
        return sorted(free, key=lambda j: j.created)[:limit]

    def claim(self, job: Job, lease: timedelta) -> Job | None:
        """Take the lease on ``job`` (None when another worker took it or it changed meanwhile)."""
        until = format_instant(self._clock() + lease)
        try:
            return self.save(replace(job, status=JobStatus.RUNNING, lease_until=until))
        except (ConcurrencyConflict, RecordNotFound):
            return None

    def expired(self, retention: timedelta) -> list[Job]:
        """Finished jobs whose files have been kept for ``retention``."""
        cutoff = format_instant(self._clock() - retention)
        return [
            j for j in self.all() if j.status.finished and j.finished is not None and j.finished <= cutoff
        ]

    def all(self) -> Sequence[Job]:
        return [Job.from_value(r.value, r.etag) for r in self._records.query(TABLE_BULK_EXPORT, _PARTITION)]
