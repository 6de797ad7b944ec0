"""The export worker: runs queued jobs a slice at a time (the ``bulk_export_worker`` timer calls
:meth:`ExportRunner.run_pending`), saving its place after every file it writes.

Per type, resources are read through the repository's search - ``_lastUpdated`` at most the job's
transaction time (and after ``_since``), sorted by ``_lastUpdated`` then id - a page at a time from a
cursor (the last lastUpdated written and how many resources with exactly that lastUpdated were written),
so memory holds one page and one file, never the export. A file is stored under a deterministic name
(``<job>/<Type>-<n>.ndjson``) and only then does the job record advance the cursor; a worker killed in
between leaves the old cursor, and the worker that resumes rewrites the same file: each resource is in the
manifest exactly once. With ``_since``, deletions after it (as of the transaction time) go to
``deleted`` files: Bundles of ``DELETE`` entries (Bulk Data IG v2).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from shared.bulkexport.model import NDJSON, Job, JobStatus, JobStore, OutputFile, TypeCursor
from shared.bulkexport.pseudonymise import Pseudonymiser, Rules, load_rules
from shared.errors import PermanentError, TransientError
from shared.fhirstore.ports import FhirRepository, StoredResource, format_instant
from shared.storage.errors import ConcurrencyConflict, RecordNotFound
from shared.storage.names import CONTAINER_BULK_EXPORT
from shared.storage.ports import BlobStore

_log = logging.getLogger("tie.bulkexport")
JsonDict = dict[str, Any]
PAGE_SIZE = 500
#: Files and the job record of a finished export are deleted this long after it finished.
RETENTION = timedelta(hours=24)
#: Entries per ``deleted`` Bundle line.
DELETED_PER_BUNDLE = 500


def _line(resource: JsonDict) -> bytes:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def file_name(job_id: str, kind: str, part: int) -> str:
    return f"{job_id}/{kind}-{part}.ndjson"


@dataclass
class _Buffer:
    lines: list[bytes]
    size: int = 0
    count: int = 0

    def add(self, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line)
        self.count += 1


class JobGone(Exception):
    """The job was cancelled or taken over while this worker ran it (not an error: the slice stops)."""


class ExportRunner:
    """Runs export jobs (see the module docs). ``pseudonym_key``: None refuses pseudonymised jobs."""

    def __init__(
        self,
        repository: FhirRepository,
        blobs: BlobStore,
        jobs: JobStore,
        *,
        pseudonym_key: bytes | None = None,
        max_file_bytes: int = 16 * 1024 * 1024,
        page_size: int = PAGE_SIZE,
        lease: timedelta = timedelta(minutes=5),
        rules: Rules | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repository
        self._blobs = blobs
        self._jobs = jobs
        self._key = pseudonym_key
        self._max_file_bytes = max_file_bytes
        self._page_size = page_size
        self._lease = lease
        self._rules = rules or load_rules()
        self._monotonic = monotonic

    def pseudonymiser(self, job: Job) -> Pseudonymiser | None:
        if not job.request.pseudonymise:
            return None
        if self._key is None:
            raise PermanentError("pseudonymised export without a pseudonym key")
        return Pseudonymiser(self._key, job.request.client or "", self._rules)

    # -- scheduling ----------------------------------------------------------------------------------

    def run_pending(self, *, budget_seconds: float = 50.0, max_pages: int | None = None) -> int:
        """Run runnable jobs until ``budget_seconds`` have passed (or ``max_pages`` pages were read);
        returns how many jobs finished in this call."""
        deadline = self._monotonic() + budget_seconds
        pages = [max_pages]
        finished = 0
        self.purge_expired()
        for candidate in self._jobs.runnable():
            if self._monotonic() >= deadline or pages[0] == 0:
                break
            job = self._jobs.claim(candidate, self._lease)
            if job is None:
                continue
            try:
                job = self._run(job, deadline, pages)
            except JobGone:
                continue
            except TransientError as exc:
                _log.warning("export slice stopped", extra={"error_code": exc.code, "job": job.id})
                self._release(job)
                continue
            except PermanentError as exc:
                _log.error("export failed", extra={"error_code": exc.code, "job": job.id})
                self._finish(job, JobStatus.FAILED, failure=exc.code)
                finished += 1
                continue
            if job.status.finished:
                finished += 1
            else:  # out of budget: free the job for the next call (of any worker) at once
                with contextlib.suppress(ConcurrencyConflict, RecordNotFound):
                    self._jobs.save(replace(job, lease_until=None))
        return finished

    def purge_expired(self) -> int:
        """Delete the files and records of exports finished more than :data:`RETENTION` ago."""
        purged = 0
        for job in self._jobs.expired(RETENTION):
            for info in self._blobs.list(CONTAINER_BULK_EXPORT, prefix=f"{job.id}/"):
                self._blobs.delete(CONTAINER_BULK_EXPORT, info.name)
            purged += int(self._jobs.delete(job.id))
        return purged

    def _release(self, job: Job) -> None:
        fresh = self._jobs.get(job.id)
        if fresh is not None and fresh.status is JobStatus.RUNNING:
            with contextlib.suppress(ConcurrencyConflict, RecordNotFound):
                self._jobs.save(replace(fresh, lease_until=None))

    def _save(self, job: Job, written: list[str]) -> Job:
        """Save progress (renewing the lease); a job cancelled meanwhile loses the files just written."""
        until = format_instant(self._jobs.now() + self._lease)
        try:
            return self._jobs.save(replace(job, lease_until=until))
        except (ConcurrencyConflict, RecordNotFound):
            current = self._jobs.get(job.id)
            if current is None or current.status is JobStatus.CANCELLED:
                for name in written:
                    self._blobs.delete(CONTAINER_BULK_EXPORT, name)
            raise JobGone(job.id) from None

    def _finish(self, job: Job, status: JobStatus, failure: str | None = None) -> Job:
        current = self._jobs.get(job.id)
        if current is None or current.status.finished:
            return current or job
        done = replace(
            current,
            status=status,
            failure=failure,
            lease_until=None,
            finished=format_instant(self._jobs.now()),
        )
        try:
            return self._jobs.save(done)
        except (ConcurrencyConflict, RecordNotFound):
            raise JobGone(job.id) from None

    # -- one job ------------------------------------------------------------------------------------

    def _run(self, job: Job, deadline: float, pages: list[int | None]) -> Job:
        pseudo = self.pseudonymiser(job)
        for rtype in job.request.types:
            cursor = job.cursors.get(rtype, TypeCursor())
            if cursor.done:
                continue
            job = self._export_type(job, rtype, pseudo, deadline, pages)
            if not job.cursors[rtype].done:
                return job  # out of budget: the next slice resumes from the saved cursor
        if job.request.since and not job.deleted_done:
            job = self._export_deleted(job, pseudo)
        if job.request.ignored and not job.errors:
            job = self._export_errors(job)
        return self._finish(job, JobStatus.COMPLETED)

    def _export_errors(self, job: Job) -> Job:
        """The error file: an OperationOutcome per kick-off parameter ignored (``handling=lenient``)."""
        lines = [
            _line(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "information",
                            "code": "not-supported",
                            "diagnostics": "kick-off parameter not supported; ignored",
                            "expression": [name],
                        }
                    ],
                }
            )
            for name in job.request.ignored
        ]
        name = file_name(job.id, "errors", 1)
        info = self._blobs.put(CONTAINER_BULK_EXPORT, name, b"".join(lines), content_type=NDJSON)
        errors = (OutputFile("OperationOutcome", name, len(lines), info.size),)
        return self._save(replace(job, errors=errors), [name])

    def _query(self, job: Job, rtype: str, cursor: TypeCursor) -> list[tuple[str, str]]:
        params = [
            ("_lastUpdated", f"le{job.transaction_time}"),
            ("_sort", "_lastUpdated"),
            ("_total", "none"),
        ]
        if job.request.since:
            params.append(("_lastUpdated", f"gt{job.request.since}"))
        if cursor.after:
            params.append(("_lastUpdated", f"ge{cursor.after}"))
        criteria = job.request.type_filters.get(rtype)
        if criteria:
            from shared.fhirstore.search import parse_query_string

            params.extend(parse_query_string(criteria))
        return params

    def _pages(
        self, job: Job, rtype: str, cursor: TypeCursor, deadline: float, pages: list[int | None]
    ) -> Iterator[tuple[list[JsonDict], bool]]:
        """Pages from ``cursor``: (resources, last page?)."""
        after, skip = cursor.after, cursor.skip
        while True:
            if pages[0] is not None:
                if pages[0] <= 0:
                    return
                pages[0] -= 1
            query = self._query(job, rtype, replace(cursor, after=after))
            result = self._repo.search(rtype, query, count=self._page_size, offset=skip, strict=True)
            batch = result.resources
            last = len(batch) < self._page_size
            yield batch, last
            if last:
                return
            for resource in batch:
                stamp = str(resource.get("meta", {}).get("lastUpdated", ""))
                if stamp == after:
                    skip += 1
                else:
                    after, skip = stamp, 1
            if self._monotonic() >= deadline:
                return

    def _export_type(
        self, job: Job, rtype: str, pseudo: Pseudonymiser | None, deadline: float, pages: list[int | None]
    ) -> Job:
        cursor = job.cursors.get(rtype, TypeCursor())
        buffer = _Buffer([])
        after, skip = cursor.after, cursor.skip
        finished = False
        for batch, last in self._pages(job, rtype, cursor, deadline, pages):
            for resource in batch:
                out = pseudo.transform(resource) if pseudo is not None else resource
                buffer.add(_line(out))
                stamp = str(resource.get("meta", {}).get("lastUpdated", ""))
                if stamp == after:
                    skip += 1
                else:
                    after, skip = stamp, 1
                if buffer.size >= self._max_file_bytes:
                    job = self._flush(job, rtype, buffer, after, skip, done=False)
                    buffer = _Buffer([])
            finished = last
        return self._flush(job, rtype, buffer, after, skip, done=finished)

    def _flush(
        self, job: Job, rtype: str, buffer: _Buffer, after: str | None, skip: int, *, done: bool
    ) -> Job:
        cursor = job.cursors.get(rtype, TypeCursor())
        outputs = job.outputs
        written: list[str] = []
        part = cursor.part
        if buffer.count:
            part += 1
            name = file_name(job.id, rtype, part)
            info = self._blobs.put(CONTAINER_BULK_EXPORT, name, b"".join(buffer.lines), content_type=NDJSON)
            written.append(name)
            outputs = (*outputs, OutputFile(rtype, name, buffer.count, info.size))
        advanced = TypeCursor(after=after, skip=skip, part=part, count=cursor.count + buffer.count, done=done)
        return self._save(replace(job, cursors={**job.cursors, rtype: advanced}, outputs=outputs), written)

    def _export_deleted(self, job: Job, pseudo: Pseudonymiser | None) -> Job:
        """Resources whose newest version at the transaction time is a deletion after ``_since``."""
        since, until = job.request.since or "", job.transaction_time
        deleted = list(job.deleted)
        written: list[str] = []
        for rtype in job.request.types:
            urls: list[str] = []
            seen: set[str] = set()
            for version in self._repo.history(rtype, since=_parse(since)):
                stamp = format_instant(version.last_modified)
                if stamp > until or stamp <= since or version.id in seen:
                    continue
                seen.add(version.id)
                if version.deleted:
                    urls.append(_deleted_url(version, pseudo))
            if not urls:
                continue
            lines = [
                _line(_delete_bundle(urls[i : i + DELETED_PER_BUNDLE]))
                for i in range(0, len(urls), DELETED_PER_BUNDLE)
            ]
            name = file_name(job.id, f"deleted-{rtype}", 1)
            info = self._blobs.put(CONTAINER_BULK_EXPORT, name, b"".join(lines), content_type=NDJSON)
            written.append(name)
            deleted.append(OutputFile("Bundle", name, len(urls), info.size))
        return self._save(replace(job, deleted=tuple(deleted), deleted_done=True), written)


def _parse(instant: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(instant.replace("Z", "+00:00"))


def _deleted_url(version: StoredResource, pseudo: Pseudonymiser | None) -> str:
    if pseudo is not None:
        return pseudo.deleted_url(version.resource_type, version.id)
    return f"{version.resource_type}/{version.id}"


def _delete_bundle(urls: list[str]) -> JsonDict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": url}} for url in urls],
    }
