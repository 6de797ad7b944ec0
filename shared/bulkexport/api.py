"""The Bulk Data HTTP interactions, framework-free: kick-off, status, cancel and file download.

* ``GET [base]/$export`` (system level) and ``GET [base]/Patient/$export`` (patient level) with
  ``Prefer: respond-async``: ``202 Accepted`` and ``Content-Location: [base]/bulkstatus/<job>``.
  Parameters: ``_outputFormat`` (NDJSON only), ``_type``, ``_since``, ``_typeFilter`` (one simple search
  per type) and the extension ``_pseudonymise=true``. Unknown parameters are refused unless the request
  says ``Prefer: handling=lenient``.
* ``GET [base]/bulkstatus/<job>``: ``202`` with ``X-Progress`` and ``Retry-After`` while it runs, ``200``
  and the manifest when complete, ``500`` OperationOutcome when it failed, ``404`` once cancelled.
* ``DELETE [base]/bulkstatus/<job>``: cancel (``202``); its files are deleted.
* ``GET [base]/bulkfiles/<job>/<file>``: a manifest file (``application/fhir+ndjson``), through the same
  gateway and client checks as every FHIR call (``requiresAccessToken: true``; no anonymous URLs).

Who may export: ``TIE_EXPORT_CLIENTS`` (:class:`ExportAccess`); a job is visible only to the client that
started it (another client gets 404).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from shared.bulkexport.model import (
    NDJSON,
    OUTPUT_FORMATS,
    ExportError,
    ExportForbidden,
    ExportNotConfigured,
    ExportNotFound,
    ExportRequest,
    Job,
    JobStatus,
    JobStore,
    Level,
)
from shared.bulkexport.pseudonymise import Rules, load_rules
from shared.fhirapi.errors import FhirApiError
from shared.fhirapi.http import FhirRequest, base_url, parse_prefer
from shared.fhirapi.minimise import CLIENT_HEADER
from shared.fhirstore.errors import FhirStoreError
from shared.fhirstore.ports import format_instant
from shared.fhirstore.search import SUPPORTED_TYPES, parse_query_string, parse_search
from shared.storage.errors import BlobNotFound, ConcurrencyConflict
from shared.storage.names import CONTAINER_BULK_EXPORT
from shared.storage.ports import BlobStore

JsonDict = dict[str, Any]

#: Types in the Patient compartment (what a patient-level export holds).
PATIENT_COMPARTMENT: tuple[str, ...] = (
    "Patient",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "Specimen",
    "ServiceRequest",
    "MedicationRequest",
    "AllergyIntolerance",
    "Condition",
    "DocumentReference",
)
KNOWN_PARAMETERS = frozenset({"_outputFormat", "_type", "_since", "_typeFilter", "_pseudonymise"})
#: Search parameters a ``_typeFilter`` may use besides the type's own (result parameters are refused).
_FILTER_COMMON = frozenset({"_id", "_tag", "_profile", "_security", "_lastUpdated"})
#: The extension parameter's definition, as advertised in the CapabilityStatement.
PSEUDONYMISE_PARAMETER = "_pseudonymise"


class Mode:
    IDENTIFIED = "identified"
    PSEUDONYMISED = "pseudonymised"


@dataclass(frozen=True, slots=True)
class ExportAccess:
    """Who may export what: ``client:mode`` entries (``lakehouse:pseudonymised,ics-bi:identified``;
    ``*`` for any client). ``identified`` may also ask for pseudonymised exports; ``pseudonymised`` must.
    Empty: nobody may export (fail closed)."""

    modes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ExportAccess:
        modes: dict[str, str] = {}
        for entry in text.split(","):
            if not entry.strip():
                continue
            client, _, mode = entry.strip().rpartition(":")
            if not client or mode not in (Mode.IDENTIFIED, Mode.PSEUDONYMISED):
                raise ValueError("TIE_EXPORT_CLIENTS entries are <client id>:identified|pseudonymised")
            modes[client.strip()] = mode
        return cls(modes)

    def mode(self, client: str | None) -> str | None:
        if client is not None and client in self.modes:
            return self.modes[client]
        return self.modes.get("*")


@dataclass(frozen=True, slots=True)
class ExportConfig:
    access: ExportAccess
    base_url: str | None = None
    pseudonym_key_configured: bool = False
    retry_after_seconds: int = 5


@dataclass(slots=True)
class ExportResponse:
    status: int
    body: JsonDict | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/fhir+json"


def _client(request: FhirRequest) -> str | None:
    value = request.header(CLIENT_HEADER)
    return value or None


def _bool(name: str, raw: str) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise ExportError(f"{name} must be true or false", expression=name)


def _since(raw: str) -> str:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ExportError("_since must be a FHIR instant", expression="_since") from None
    if moment.tzinfo is None or "T" not in raw:
        raise ExportError("_since must be a FHIR instant with a time zone", expression="_since")
    return format_instant(moment)


class BulkExportApi:
    """The interactions (module docs) over a job store and the blob store holding the files."""

    def __init__(
        self, jobs: JobStore, blobs: BlobStore, config: ExportConfig, *, rules: Rules | None = None
    ) -> None:
        self._jobs = jobs
        self._blobs = blobs
        self._config = config
        self._rules = rules or load_rules()

    def _base(self, request: FhirRequest) -> str:
        return base_url(request.url, self._config.base_url)

    # -- kick-off ------------------------------------------------------------------------------------

    def parse_kickoff(self, request: FhirRequest, level: Level) -> ExportRequest:
        """The request as a job would run it, or the :class:`ExportError` to answer with."""
        prefer = request.header("Prefer") or ""
        if "respond-async" not in [p.strip().split(";")[0] for p in prefer.split(",")]:
            raise ExportError("$export needs the header Prefer: respond-async", expression="Prefer")
        lenient = parse_prefer(prefer).handling == "lenient" and "handling=lenient" in prefer.replace(" ", "")
        allowed = PATIENT_COMPARTMENT if level is Level.PATIENT else SUPPORTED_TYPES
        types: list[str] = []
        since: str | None = None
        filters: dict[str, str] = {}
        pseudonymise = False
        ignored: list[str] = []
        for name, raw in request.query_params():
            value = raw.strip()
            if name == "_outputFormat":
                if value not in OUTPUT_FORMATS:
                    raise ExportError("_outputFormat: only application/fhir+ndjson", expression=name)
            elif name == "_type":
                for item in (v.strip() for v in value.split(",")):
                    if item and item not in allowed:
                        raise ExportError("_type names a type this export does not serve", expression=name)
                    if item and item not in types:
                        types.append(item)
            elif name == "_since":
                since = _since(value)
            elif name == "_typeFilter":
                rtype, _, query = value.partition("?")
                if rtype in filters:
                    raise ExportError("one _typeFilter per type is supported", expression=name)
                filters[rtype] = self._check_filter(rtype, query, allowed)
            elif name == PSEUDONYMISE_PARAMETER:
                pseudonymise = _bool(name, value)
            elif not lenient:
                raise ExportError("unsupported $export parameter", expression=name)
            elif name not in ignored:
                ignored.append(name)
        if pseudonymise:
            exportable = self._rules.types
            if any(t not in exportable for t in types):
                raise ExportError("_type names a type that is not exported pseudonymised", expression="_type")
            default = tuple(t for t in allowed if t in exportable)
        else:
            default = tuple(allowed)
        chosen = tuple(types) or default
        if not types:
            filters = {t: q for t, q in filters.items() if t in chosen}
        elif any(t not in chosen for t in filters):
            raise ExportError("_typeFilter names a type not in _type", expression="_typeFilter")
        return ExportRequest(
            level=level,
            types=chosen,
            since=since,
            type_filters=filters,
            pseudonymise=pseudonymise,
            client=_client(request),
            request_url=request.url,
            ignored=tuple(ignored),
        )

    @staticmethod
    def _check_filter(rtype: str, query: str, allowed: tuple[str, ...]) -> str:
        if rtype not in allowed or not query:
            raise ExportError("_typeFilter must be <Type>?<search>", expression="_typeFilter")
        params = parse_query_string(query)
        for pname, _ in params:
            if pname.startswith("_") and pname.split(":")[0] not in _FILTER_COMMON:
                raise ExportError("_typeFilter takes search criteria only", expression="_typeFilter")
        parse_search(rtype, params, strict=True)  # InvalidSearch (400) names the parameter
        return query

    def _authorise(self, export: ExportRequest) -> None:
        mode = self._config.access.mode(export.client)
        if mode is None:
            raise ExportForbidden("this client may not use bulk export")
        if mode == Mode.PSEUDONYMISED and not export.pseudonymise:
            raise ExportForbidden("this client may only receive pseudonymised exports (_pseudonymise=true)")
        if export.pseudonymise:
            if not self._config.pseudonym_key_configured:
                raise ExportNotConfigured("pseudonymised export is not configured on this server")
            if not export.client:
                raise ExportForbidden("a pseudonymised export needs a known recipient (client id)")

    def kickoff(self, request: FhirRequest, level: Level) -> ExportResponse:
        try:
            export = self.parse_kickoff(request, level)
            self._authorise(export)
        except (FhirApiError, FhirStoreError) as exc:
            return _error(exc)
        job = self._jobs.create(export)
        location = f"{self._base(request)}/bulkstatus/{job.id}"
        return ExportResponse(202, None, {"Content-Location": location})

    # -- status / cancel / files --------------------------------------------------------------------

    def _own(self, request: FhirRequest, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.status is JobStatus.CANCELLED or job.request.client != _client(request):
            raise ExportNotFound("no such export")
        return job

    def status(self, request: FhirRequest, job_id: str) -> ExportResponse:
        try:
            job = self._own(request, job_id)
        except ExportError as exc:
            return _error(exc)
        if job.status is JobStatus.COMPLETED:
            headers = {"Expires": _expires(job)} if job.finished else {}
            return ExportResponse(200, self.manifest(request, job), headers, content_type="application/json")
        if job.status is JobStatus.FAILED:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception", "diagnostics": "the export failed"}],
            }
            return ExportResponse(500, outcome)
        headers = {"X-Progress": job.progress(), "Retry-After": str(self._config.retry_after_seconds)}
        return ExportResponse(202, None, headers)

    def cancel(self, request: FhirRequest, job_id: str) -> ExportResponse:
        for _ in range(5):
            try:
                job = self._own(request, job_id)
            except ExportError as exc:
                return _error(exc)
            try:
                self._jobs.save(_cancelled(job, format_instant(self._jobs.now())))
                break
            except ConcurrencyConflict:
                continue  # the worker saved progress meanwhile: read again
        else:
            return _error(ExportError("the export is busy; retry the cancellation"))
        for info in self._blobs.list(CONTAINER_BULK_EXPORT, prefix=f"{job_id}/"):
            self._blobs.delete(CONTAINER_BULK_EXPORT, info.name)
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "information", "code": "informational", "diagnostics": "export cancelled"}
            ],
        }
        return ExportResponse(202, outcome)

    def download(self, request: FhirRequest, job_id: str, file: str) -> ExportResponse:
        try:
            job = self._own(request, job_id)
            names = {f.name for f in (*job.outputs, *job.deleted, *job.errors)}
            name = f"{job_id}/{file}"
            if job.status is not JobStatus.COMPLETED or name not in names:
                raise ExportNotFound("no such export file")
            data = self._blobs.get(CONTAINER_BULK_EXPORT, name)
        except ExportError as exc:
            return _error(exc)
        except BlobNotFound:
            return _error(ExportNotFound("no such export file"))
        return ExportResponse(200, data, content_type=NDJSON)

    def manifest(self, request: FhirRequest, job: Job) -> JsonDict:
        base = self._base(request)

        def entries(files: tuple[Any, ...]) -> list[JsonDict]:
            return [
                {"type": f.type, "url": f"{base}/bulkfiles/{quote(f.name)}", "count": f.count} for f in files
            ]

        manifest: JsonDict = {
            "transactionTime": job.transaction_time,
            "request": job.request.request_url,
            "requiresAccessToken": True,
            "output": entries(job.outputs),
            "deleted": entries(job.deleted),
            "error": entries(job.errors),
        }
        if job.request.pseudonymise:
            manifest["extension"] = {"pseudonymisation": self._rules.describe()}
        return manifest


def _expires(job: Job) -> str:
    """HTTP date when the files are deleted (:data:`shared.bulkexport.runner.RETENTION` after finishing)."""
    from shared.bulkexport.runner import RETENTION
    from shared.fhirapi.http import http_date

    finished = datetime.fromisoformat((job.finished or job.created).replace("Z", "+00:00"))
    return http_date(finished + RETENTION)


def _cancelled(job: Job, now: str) -> Job:
    from dataclasses import replace

    return replace(job, status=JobStatus.CANCELLED, finished=now, lease_until=None)


def _error(exc: Exception) -> ExportResponse:
    if isinstance(exc, FhirApiError):
        return ExportResponse(exc.http_status, exc.operation_outcome(), dict(exc.headers))
    if isinstance(exc, FhirStoreError):
        return ExportResponse(exc.http_status, exc.operation_outcome())
    raise exc
