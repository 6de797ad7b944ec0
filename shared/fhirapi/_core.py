"""The FHIR API's shared core: configuration, request plumbing (gateway, format, audit of every interaction)
and the OperationOutcome error responses. Interactions: :mod:`._reads`, :mod:`._writes`, :mod:`._bundles`;
the assembled API and its semantics: :mod:`.service`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.audit.fhir_access import Audited, FhirAccessAuditor
from shared.errors import TransientError
from shared.fhir.validation import FhirValidationError, ValidationIssue, to_operation_outcome
from shared.fhirapi.clinical_events import DELETABLE_TYPES, ClinicalEvents
from shared.fhirapi.errors import FhirApiError, GatewayRequired
from shared.fhirapi.http import (
    FhirRequest,
    FhirResponse,
    Preferences,
    check_body_media_type,
    decode_json_object,
    parse_http_date,
    parse_prefer,
    response_media_type,
)
from shared.fhirapi.http import base_url as derive_base
from shared.fhirapi.minimise import CLIENT_HEADER, ElementsPolicy, NoPolicy, combine, subset
from shared.fhirstore.errors import FhirStoreError, InvalidSearch, Throttled, UnsupportedResourceType
from shared.fhirstore.ports import (
    EventCommittingRepository,
    FhirRepository,
    JsonDict,
    StoredResource,
    parse_etag,
)
from shared.fhirstore.search import SUPPORTED_TYPES, date_range
from shared.journal import Journal
from shared.messaging.ports import MessageBus
from shared.outbox import Outbox
from shared.storage.ports import RecordStore

#: Parameters every interaction accepts and ignores (presentation).
_PRESENTATION = frozenset({"_format", "_pretty"})
_HISTORY_PARAMS = frozenset({"_count", "_since", "_offset"})
_SUMMARY_HONOURED = frozenset({"count", "false"})
_NO_STORE = ("_elements", "_format", "_pretty")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Deepest page start accepted (``_offset``); beyond it narrow the search instead (and SQLite's
#: integers end at 2**63).
MAX_OFFSET = 1_000_000
#: Default of :attr:`FhirApiConfig.max_bundle_entries`: the AHDS bundle limit, which the embedded store
#: mirrors.
DEFAULT_MAX_BUNDLE_ENTRIES = 500
#: The resources one interaction returned or wrote, unsubsetted (what its audit record names).
_touched: ContextVar[list[JsonDict] | None] = ContextVar("fhirapi_touched", default=None)


def _touch(resource: JsonDict) -> None:
    seen = _touched.get()
    if seen is not None:
        seen.append(resource)


@dataclass(frozen=True, slots=True)
class FhirApiConfig:
    max_body_bytes: int = 1_048_576
    #: Public base URL (``TIE_FHIR_BASE_URL``); ``None``: derived from each request.
    base_url: str | None = None
    require_gateway_header: bool = False
    gateway_header: str = "X-TIE-Gateway"
    #: Require ``meta.profile`` to name the UK Core profile on client writes (see the module docs).
    require_profile: bool = False
    resource_types: tuple[str, ...] = SUPPORTED_TYPES
    deletable_types: frozenset[str] = field(default=DELETABLE_TYPES)
    #: Most entries in one batch or transaction Bundle (``TIE_FHIR_MAX_BUNDLE_ENTRIES``), capped by the
    #: repository's own transaction limit; more -> 413 before any entry is looked at.
    max_bundle_entries: int = DEFAULT_MAX_BUNDLE_ENTRIES


class FhirApiCore:
    """What every interaction shares: the repository, events, audit, configuration and request plumbing."""

    def __init__(
        self,
        repository: FhirRepository,
        bus: MessageBus,
        records: RecordStore,
        *,
        config: FhirApiConfig | None = None,
        elements_policy: ElementsPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        audit: FhirAccessAuditor | None = None,
    ) -> None:
        self.repository = repository
        #: One audit record per interaction (``None``: not audited; see docs/audit.md).
        self.audit = audit
        self.config = config or FhirApiConfig()
        self.policy: ElementsPolicy = elements_policy or NoPolicy()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.events = ClinicalEvents(repository, bus, Journal(records), Outbox(records), clock=self._clock)
        self._types = frozenset(self.config.resource_types)
        #: The repository when it commits events with its writes (the embedded store); None: events are
        #: published after the write (a remote FHIR server).
        self._committing: EventCommittingRepository | None = (
            repository if isinstance(repository, EventCommittingRepository) else None
        )

    # ================================================================================== plumbing
    def _guard(self, request: FhirRequest) -> tuple[str, Preferences]:
        """Gateway and format checks shared by every interaction: (response media type, preferences)."""
        if self.config.require_gateway_header and not request.header(self.config.gateway_header):
            raise GatewayRequired("requests must come through the API gateway")
        fmt = next((v for k, v in request.query_params() if k == "_format"), None)
        media = response_media_type(request.header("Accept"), fmt)
        return media, parse_prefer(request.header("Prefer"))

    def _type(self, resource_type: str) -> str:
        if resource_type not in self._types:
            raise UnsupportedResourceType(resource_type)
        return resource_type

    def _base(self, request: FhirRequest) -> str:
        return derive_base(request.url, self.config.base_url)

    def _client(self, request: FhirRequest) -> str | None:
        """The client identity for the data-minimisation policy; trusted only behind the gateway."""
        return request.header(CLIENT_HEADER) if self.config.require_gateway_header else None

    def _shown(
        self, request: FhirRequest, resource: JsonDict, requested: frozenset[str] | None = None
    ) -> JsonDict:
        _touch(resource)
        rtype = str(resource.get("resourceType"))
        return subset(resource, combine(self.policy.elements(self._client(request), rtype), requested))

    def _body(self, request: FhirRequest) -> JsonDict:
        check_body_media_type(request.header("Content-Type"))
        return decode_json_object(request.body, limit=self.config.max_body_bytes)

    def handle(
        self,
        request: FhirRequest,
        action: Callable[[str, Preferences], FhirResponse],
        audited: Audited | None = None,
    ) -> FhirResponse:
        """Run ``action(media type, preferences)`` and turn every error into an OperationOutcome;
        ``audited``: the interaction's audit record is appended (failing closed: 503 if it cannot be)."""
        media = "application/fhir+json"
        token = _touched.set([])
        try:
            try:
                media, prefs = self._guard(request)
                response = action(media, prefs)
            except Exception as exc:
                if not isinstance(exc, (FhirApiError, FhirStoreError, FhirValidationError, TransientError)):
                    raise
                response = error_response(exc)
            if self.audit is not None and audited is not None:
                try:
                    self.audit.interaction(request, audited, response, _touched.get() or [])
                except TransientError as exc:
                    response = error_response(exc)
        finally:
            _touched.reset(token)
        response.content_type = media
        return response

    def _max_bundle_entries(self, capabilities: Mapping[str, Any]) -> int:
        """The one entry cap for batch and transaction Bundles: the configured cap, lowered to the
        repository's transaction limit when it has one (a batch is capped the same, so a client that fits
        one fits the other)."""
        limits = capabilities.get("limits")
        store = limits.get("maxTransactionEntries") if isinstance(limits, Mapping) else None
        cap = self.config.max_bundle_entries
        return min(cap, store) if isinstance(store, int) and store > 0 else cap


# ============================================================================================ helpers


def _known(response: JsonDict) -> dict[str, JsonDict]:
    """``Type/id -> resource`` for the resources a Bundle response carries (mapping context)."""
    known: dict[str, JsonDict] = {}
    for answer in response.get("entry") or []:
        resource = answer.get("resource") if isinstance(answer, dict) else None
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            known[f"{resource.get('resourceType')}/{resource['id']}"] = resource
    return known


def _outcome(severity: str, code: str, diagnostics: str, expression: str | None = None) -> JsonDict:
    issue: JsonDict = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _status(exc: Exception) -> int:
    if isinstance(exc, FhirValidationError):
        return 422
    status = getattr(exc, "http_status", 500)
    return status if isinstance(status, int) else 500


def _outcome_of(exc: Exception) -> JsonDict:
    if isinstance(exc, FhirValidationError):
        return to_operation_outcome(exc.issues)
    if isinstance(exc, (FhirApiError, FhirStoreError)):
        return exc.operation_outcome()
    if isinstance(exc, TransientError):
        return _outcome("error", "transient", "a dependency is unavailable; retry later")
    return _outcome("fatal", "exception", "an internal error occurred")


def error_response(exc: Exception) -> FhirResponse:
    """The OperationOutcome response for an error raised while handling a request."""
    headers: dict[str, str] = {}
    if isinstance(exc, FhirValidationError):
        status = 422
    elif isinstance(exc, FhirApiError):
        status = exc.http_status
        headers.update(exc.headers)
    elif isinstance(exc, FhirStoreError):
        status = exc.http_status
    elif isinstance(exc, TransientError):
        status = 503
    else:
        status = 500
    if status in (429, 503):
        retry = exc.retry_after if isinstance(exc, Throttled) and exc.retry_after else 5
        headers["Retry-After"] = str(max(1, round(retry)))
    return FhirResponse(status, _outcome_of(exc), headers)


def _rebase(issues: Sequence[ValidationIssue], rtype: str, prefix: str) -> list[ValidationIssue]:
    out = []
    for issue in issues:
        path = issue.path
        if path == rtype or path.startswith(rtype + ".") or path.startswith(rtype + "["):
            path = prefix + path[len(rtype) :]
        elif not path.startswith("Bundle"):
            path = f"{prefix}.{path}" if path else prefix
        out.append(ValidationIssue(issue.severity, issue.code, path, issue.message))
    return out


def _not_modified(request: FhirRequest, stored: StoredResource) -> bool:
    none_match = request.header("If-None-Match")
    if none_match:
        tags = [t.strip() for t in none_match.split(",")]
        return "*" in tags or any(parse_etag(t) == stored.version_id for t in tags if t)
    since = parse_http_date(request.header("If-Modified-Since"))
    return since is not None and stored.last_modified.replace(microsecond=0) <= since


def _non_negative(name: str, value: str) -> int:
    if not value.strip().isdigit():
        raise InvalidSearch(name, "expected a non-negative integer")
    return int(value)


def _instant(name: str, value: str) -> datetime:
    text = value.strip().replace(" ", "+")
    bounds = date_range(text)
    if bounds is None:
        raise InvalidSearch(name, "expected a FHIR instant or date")
    return _EPOCH + timedelta(microseconds=bounds[0])


def _instant_or_now(value: Any, clock: Callable[[], datetime]) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return clock()


def _safe(name: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in name)[:64]
