"""The FHIR R4 REST API core: one method per interaction, :class:`FhirRequest` in, :class:`FhirResponse` out.

No web framework here: ``functions/fhir.py`` builds the request and write the response back. Semantics
(FHIR R4 http.html), in the order a request is checked:

1. **Gateway** - with ``require_gateway_header`` a request without the header API Management injects is
   refused (403 ``forbidden``).
2. **Format** - we answer ``application/fhir+json`` (``application/json`` when the client accepts only
   that); ``_format``/``Accept`` asking only for XML/Turtle -> 406. Bodies must be ``application/fhir+json``
   or ``application/json`` (415 otherwise; ``POST _search`` also takes a form), at most ``max_body_bytes``
   (413), UTF-8 JSON objects (400 ``structure``).
3. **URL vs body** - ``resourceType`` must be the URL's type and an update's body must carry the URL's id
   (400, ``expression`` = ``resourceType`` / ``<Type>.id``).
4. **Validation** of every written resource (:func:`shared.fhir.validation.validate_resource`: fhir.resources
   R4B structure + value-set, NHS-number, UK Core and invariant checks) -> 422 listing every issue with its
   element path in ``expression``. ``meta.profile`` naming the UK Core profile is *not* required of
   clients (``require_profile=False``): a standard FHIR client, or a resource from PDS, does not claim it;
   everything the UK Core profile would check that we can check is checked regardless. The engine's own
   outbound resources do carry it (the mapper adds it).
5. **Clinical event dry run** (:class:`~shared.fhirapi.clinical_events.ClinicalEvents`) -> 422 when the
   write could not become a canonical event. Then the repository call - on the embedded store the
   committed version's events are recorded in its outbox inside the same transaction - then the events
   are published (see :mod:`shared.fhirapi.clinical_events`).

Status codes: read/vread/search/history 200 (304 for a conditional read that matched); create 201
(conditional create that found a match: 200, nothing written); update 200, or 201 when it created;
delete 204 (also for an absent resource); errors as the repository says (404 unknown id, 410 deleted,
409 conflict, 412 ``If-Match`` naming another version or several conditional matches, 400 bad search or
an ``If-Match`` / ``ifMatch`` that is not an entity tag ``W/"<versionId>"``). Every error body
is an OperationOutcome with an issue code and a diagnostics text without patient data.

Headers: ``ETag: W/"<versionId>"``, ``Last-Modified`` (HTTP date) and ``Location``
(``[base]/<Type>/<id>/_history/<versionId>``) on writes; ``ETag``/``Last-Modified`` on reads.
``Prefer: return=minimal`` (no body), ``representation`` (the resource; default) or ``OperationOutcome``
(an outcome, with any validation warnings); ``Prefer: handling=strict`` makes unknown search/history
parameters a 400, ``lenient`` (the default) ignores them and lists their names in an ``outcome`` entry.
Searches page with ``_count`` (default 20, max 500) and ``_offset``; the Bundle has ``self``, ``first``,
``previous``, ``next`` and (when the total is known) ``last`` links.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from shared.audit.fhir_access import Audited, FhirAccessAuditor
from shared.canonical.model import ClinicalEvent
from shared.errors import TransientError
from shared.fhir.validation import FhirValidationError, ValidationIssue, errors_only, to_operation_outcome
from shared.fhir.validation import validate_bundle as _validate_bundle
from shared.fhir.validation import validate_resource as _validate_resource
from shared.fhirapi.capability import capability_statement
from shared.fhirapi.clinical_events import (
    DELETABLE_TYPES,
    EVENT_TYPES,
    ClinicalEvents,
    CommittedWrite,
    Interaction,
)
from shared.fhirapi.errors import BadRequest, FhirApiError, GatewayRequired, MethodNotAllowed
from shared.fhirapi.http import (
    FORM,
    FhirRequest,
    FhirResponse,
    Preferences,
    check_body_media_type,
    decode_form,
    decode_json_object,
    http_date,
    is_entity_tag,
    parse_http_date,
    parse_prefer,
    response_media_type,
)
from shared.fhirapi.http import base_url as derive_base
from shared.fhirapi.http import if_match as checked_if_match
from shared.fhirapi.minimise import CLIENT_HEADER, ElementsPolicy, NoPolicy, combine, parse_elements, subset
from shared.fhirstore import bundle as bundle_ops
from shared.fhirstore.errors import (
    BundleTooLarge,
    FhirStoreError,
    InvalidBundle,
    InvalidSearch,
    ResourceGone,
    ResourceNotFound,
    Throttled,
    TransactionFailed,
    UnsupportedInteraction,
    UnsupportedResourceType,
)
from shared.fhirstore.ports import (
    METHOD_CREATE,
    BatchEntryOutcome,
    CommitEvents,
    EventCommittingRepository,
    FhirReader,
    FhirRepository,
    JsonDict,
    SearchResult,
    StoredResource,
    WriteResult,
    format_instant,
    parse_etag,
)
from shared.fhirstore.search import (
    DEFAULT_COUNT,
    ID_PATTERN,
    MAX_COUNT,
    SUPPORTED_TYPES,
    date_range,
    parse_query_string,
    parse_search,
)
from shared.journal import Journal
from shared.messaging.ports import MessageBus
from shared.outbox import Outbox, OutboxMessage
from shared.storage.ports import RecordStore

R = TypeVar("R")

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


class FhirApi:
    """The FHIR API over a :class:`FhirRepository`; publishes clinical events on ``bus``, journals and
    parks unpublished events through ``records`` (journal table, outbox)."""

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

    # ================================================================================== reads
    def metadata(self, request: FhirRequest) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            capabilities = self.repository.capabilities()
            statement = capability_statement(
                capabilities,
                base=self._base(request),
                resource_types=self.config.resource_types,
                deletable=self.config.deletable_types,
                max_bundle_entries=self._max_bundle_entries(capabilities),
            )
            return FhirResponse(200, statement)

        return self.handle(request, act)

    def read(self, request: FhirRequest, resource_type: str, resource_id: str) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            stored = self.repository.read(self._type(resource_type), resource_id)
            return self._read_response(request, stored)

        return self.handle(request, act, Audited("read", "R", resource_type, resource_id))

    def vread(
        self, request: FhirRequest, resource_type: str, resource_id: str, version_id: str
    ) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            stored = self.repository.vread(self._type(resource_type), resource_id, version_id)
            return self._read_response(request, stored)

        return self.handle(request, act, Audited("vread", "R", resource_type, resource_id, version_id))

    def _read_response(self, request: FhirRequest, stored: StoredResource) -> FhirResponse:
        _touch(stored.resource)
        headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.last_modified)}
        if _not_modified(request, stored):
            return FhirResponse(304, None, headers)
        requested = parse_elements(
            [v for k, v in request.query_params() if k == "_elements"], stored.resource_type
        )
        return FhirResponse(200, self._shown(request, stored.resource, requested), headers)

    # ================================================================================== search
    def search(self, request: FhirRequest, resource_type: str, *, post: bool = False) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            rtype = self._type(resource_type)
            params = list(request.query_params())
            if post:
                kind = check_body_media_type(request.header("Content-Type"), allow_form=True)
                if kind != FORM:
                    raise BadRequest("POST _search takes application/x-www-form-urlencoded parameters")
                params += decode_form(request.body, limit=self.config.max_body_bytes)
            return self._search(request, rtype, params, prefs)

        return self.handle(request, act, Audited("search-type", "E", resource_type, search=True, post=post))

    def _search(
        self, request: FhirRequest, rtype: str, params: list[tuple[str, str]], prefs: Preferences
    ) -> FhirResponse:
        strict = prefs.handling == "strict"
        warnings: list[str] = []
        summary = [v for k, v in params if k == "_summary" and v]
        extra: list[tuple[str, str]] = []
        for value in summary:
            if value not in _SUMMARY_HONOURED:
                if strict:
                    raise InvalidSearch("_summary", "only count and false are supported")
                warnings.append("_summary")
            elif value == "count":
                extra = [("_summary", "count")]
        elements_raw = [v for k, v in params if k == "_elements" and v]
        requested = parse_elements(elements_raw, rtype)
        if elements_raw:
            extra.append(("_elements", ",".join(elements_raw)))
        for name, value in params:
            if name == "_offset" and value.strip().isdigit() and int(value) > MAX_OFFSET:
                raise InvalidSearch("_offset", f"must be at most {MAX_OFFSET}")
        store_params = [(k, v) for k, v in params if k not in _NO_STORE and k != "_summary"]
        store_params += [("_summary", "count")] if ("_summary", "count") in extra else []
        result = self.repository.search(rtype, store_params, strict=strict)
        ignored = sorted({*result.ignored, *warnings})
        bundle = self._searchset(request, rtype, result, extra, requested, ignored)
        return FhirResponse(200, bundle)

    def _searchset(
        self,
        request: FhirRequest,
        rtype: str,
        result: SearchResult,
        extra: list[tuple[str, str]],
        requested: frozenset[str] | None,
        ignored: Sequence[str],
    ) -> JsonDict:
        base = self._base(request)
        applied = [(k, v) for k, v in result.params if k not in ("_count", "_offset")] + extra

        def link(relation: str, offset: int) -> JsonDict:
            query = urlencode([*applied, ("_count", str(result.count)), ("_offset", str(offset))])
            return {"relation": relation, "url": f"{base}/{rtype}?{query}"}

        links = [link("self", result.offset)]
        if result.count > 0:
            links.append(link("first", 0))
            if result.offset > 0:
                links.append(link("previous", max(0, result.offset - result.count)))
            more = result.has_next or (result.total is None and len(result.resources) == result.count)
            if result.resources and more:
                links.append(link("next", result.offset + len(result.resources)))
            if result.total is not None and result.total > 0:
                links.append(link("last", ((result.total - 1) // result.count) * result.count))
        entries: list[JsonDict] = [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": self._shown(request, r, requested),
                "search": {"mode": "match"},
            }
            for r in result.resources
        ]
        entries += [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": self._shown(request, r),
                "search": {"mode": "include"},
            }
            for r in result.included
        ]
        if ignored:
            entries.append(
                {
                    "resource": _outcome(
                        "warning",
                        "not-supported",
                        "search parameters ignored (Prefer: handling=lenient): " + ", ".join(ignored),
                    ),
                    "search": {"mode": "outcome"},
                }
            )
        bundle: JsonDict = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": format_instant(self._clock())},
            "type": "searchset",
        }
        if result.total is not None:
            bundle["total"] = result.total
        bundle["link"] = links
        if entries:
            bundle["entry"] = entries
        return bundle

    # ================================================================================== history
    def history(
        self, request: FhirRequest, resource_type: str, resource_id: str | None = None
    ) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            rtype = self._type(resource_type)
            count, offset, since = DEFAULT_COUNT, 0, None
            ignored: list[str] = []
            for name, value in request.query_params():
                if name in _PRESENTATION or value == "":
                    continue
                if name == "_count":
                    count = min(_non_negative("_count", value), MAX_COUNT)
                elif name == "_offset":
                    offset = _non_negative("_offset", value)
                    if offset > MAX_OFFSET:
                        raise InvalidSearch("_offset", f"must be at most {MAX_OFFSET}")
                elif name == "_since":
                    since = _instant("_since", value)
                elif prefs.handling == "strict":
                    raise InvalidSearch(_safe(name), "not supported for history")
                else:
                    ignored.append(_safe(name))
            versions = self.repository.history(rtype, resource_id, count=offset + count + 1, since=since)
            page = versions[offset : offset + count]
            more = len(versions) > offset + count
            return FhirResponse(
                200, self._history_bundle(request, rtype, resource_id, page, count, offset, since, more)
            )

        return self.handle(request, act, Audited("history", "R", resource_type, resource_id, search=True))

    def _history_bundle(
        self,
        request: FhirRequest,
        rtype: str,
        resource_id: str | None,
        versions: Sequence[StoredResource],
        count: int,
        offset: int,
        since: datetime | None,
        more: bool,
    ) -> JsonDict:
        base = self._base(request)
        path = f"{base}/{rtype}/{resource_id}/_history" if resource_id else f"{base}/{rtype}/_history"
        fixed = [("_since", format_instant(since))] if since is not None else []

        def link(relation: str, at: int) -> JsonDict:
            return {
                "relation": relation,
                "url": f"{path}?{urlencode([*fixed, ('_count', str(count)), ('_offset', str(at))])}",
            }

        links = [link("self", offset)]
        if offset > 0 and count > 0:
            links.append(link("previous", max(0, offset - count)))
        if more and count > 0:
            links.append(link("next", offset + count))
        entries: list[JsonDict] = []
        for stored in versions:
            entry: JsonDict = {"fullUrl": f"{base}/{stored.resource_type}/{stored.id}"}
            if not stored.deleted:
                entry["resource"] = self._shown(request, stored.resource)
            status = 204 if stored.deleted else (201 if stored.method == METHOD_CREATE else 200)
            entry["request"] = {
                "method": stored.method,
                "url": f"{stored.resource_type}/{stored.id}"
                if stored.method != METHOD_CREATE
                else stored.resource_type,
            }
            entry["response"] = {
                "status": bundle_ops.status_line(status),
                "etag": stored.etag,
                "lastModified": format_instant(stored.last_modified),
            }
            entries.append(entry)
        bundle: JsonDict = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": format_instant(self._clock())},
            "type": "history",
            "link": links,
        }
        if entries:
            bundle["entry"] = entries
        return bundle

    # ================================================================================== writes
    def _validate(self, resource: JsonDict) -> list[ValidationIssue]:
        issues = _validate_resource(resource, structural=True, require_profile=self.config.require_profile)
        if errors_only(issues):
            raise FhirValidationError(issues)
        return issues

    def _resource_body(self, request: FhirRequest, rtype: str, resource_id: str | None = None) -> JsonDict:
        resource = self._body(request)
        body_type = resource.get("resourceType")
        if not isinstance(body_type, str) or not body_type:
            raise BadRequest("resourceType is missing", expression="resourceType")
        if body_type != rtype:
            raise BadRequest("resourceType does not match the request URL", expression="resourceType")
        if resource_id is not None:
            if not ID_PATTERN.match(resource_id):
                raise BadRequest("the URL id is not a valid FHIR id", expression=f"{rtype}.id")
            body_id = resource.get("id")
            if body_id is None:
                raise BadRequest("an update body must carry the resource id", expression=f"{rtype}.id")
            if body_id != resource_id:
                raise BadRequest("the body id does not match the request URL", expression=f"{rtype}.id")
        return resource

    def create(self, request: FhirRequest, resource_type: str) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            rtype = self._type(resource_type)
            resource = self._resource_body(request, rtype)
            warnings = self._validate(resource)
            if_none_exist = request.header("If-None-Exist")
            if if_none_exist is not None:
                criteria = parse_search(rtype, parse_query_string(if_none_exist), strict=True)
                if not criteria.criteria:
                    raise InvalidSearch("If-None-Exist", "no search criteria")
            self.events.check(resource, "create")

            def writes(reader: FhirReader, result: WriteResult) -> list[CommittedWrite]:
                return [self._committed(request, result, "create", None)] if result.created else []

            result = self._commit(
                request,
                lambda repo, events: repo.create(resource, if_none_exist=if_none_exist, events=events),
                lambda: self.repository.create(resource, if_none_exist=if_none_exist),
                writes,
            )
            return self._write_response(request, result, prefs, warnings)

        return self.handle(request, act, Audited("create", "C", resource_type))

    def update(self, request: FhirRequest, resource_type: str, resource_id: str) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            rtype = self._type(resource_type)
            resource = self._resource_body(request, rtype, resource_id)
            warnings = self._validate(resource)
            if rtype in EVENT_TYPES:
                current = self._current(rtype, resource_id)
                self.events.check(resource, "update" if current else "create", previous=current)
            if_match = checked_if_match(request.header("If-Match"))
            result = self._commit(
                request,
                lambda repo, events: repo.update(
                    rtype, resource_id, resource, if_match=if_match, events=events
                ),
                lambda: self.repository.update(rtype, resource_id, resource, if_match=if_match),
                lambda reader, result: self._put_writes(request, result, reader),
            )
            return self._write_response(request, result, prefs, warnings)

        return self.handle(request, act, Audited("update", "U", resource_type, resource_id))

    def conditional_update(self, request: FhirRequest, resource_type: str) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            rtype = self._type(resource_type)
            query = request.query
            params = [(k, v) for k, v in parse_query_string(query) if k not in _PRESENTATION]
            if not parse_search(rtype, params, strict=True).criteria:
                raise BadRequest("a conditional update needs search criteria in the URL")
            resource = self._resource_body(request, rtype)
            warnings = self._validate(resource)
            criteria = urlencode(params)
            if rtype in EVENT_TYPES:
                matched = self.repository.search(rtype, params, count=2)
                previous = matched.resources[0] if len(matched.resources) == 1 else None
                self.events.check(resource, "update" if previous else "create", previous=previous)
            if_match = checked_if_match(request.header("If-Match"))
            result = self._commit(
                request,
                lambda repo, events: repo.conditional_update(
                    rtype, criteria, resource, if_match=if_match, events=events
                ),
                lambda: self.repository.conditional_update(rtype, criteria, resource, if_match=if_match),
                lambda reader, result: self._put_writes(request, result, reader),
            )
            return self._write_response(request, result, prefs, warnings)

        return self.handle(request, act, Audited("update", "U", resource_type, search=True))

    def delete(self, request: FhirRequest, resource_type: str, resource_id: str) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            rtype = self._type(resource_type)
            if rtype not in self.config.deletable_types:
                raise MethodNotAllowed(
                    f"{rtype} cannot be deleted; retract it by updating its status to entered-in-error",
                    headers={"Allow": "GET, PUT"},
                )
            current = self._current(rtype, resource_id) if rtype in EVENT_TYPES else None
            if current is not None:
                _touch(current)
                self.events.check(current, "delete")
            deleted: list[StoredResource] = []

            def writes(reader: FhirReader, deletion: StoredResource | None) -> list[CommittedWrite]:
                if current is None or deletion is None:
                    return []
                deleted[:] = [deletion]
                return [
                    CommittedWrite(
                        resource=current,
                        interaction="delete",
                        location=f"{rtype}/{resource_id}/_history/{deletion.version_id}",
                        last_modified=deletion.last_modified,
                    )
                ]

            def plain() -> StoredResource | None:
                self.repository.delete(rtype, resource_id)
                return None if current is None else self._deletion(rtype, resource_id, self.repository)

            self._commit(
                request, lambda repo, events: repo.delete(rtype, resource_id, events=events), plain, writes
            )
            headers: dict[str, str] = {}
            if deleted:
                headers["ETag"] = deleted[0].etag
            if prefs.return_ == "OperationOutcome":
                return FhirResponse(200, _outcome("information", "informational", "deleted"), headers)
            return FhirResponse(204, None, headers)

        return self.handle(request, act, Audited("delete", "D", resource_type, resource_id))

    # -- write helpers -------------------------------------------------------------------------
    def _current(self, rtype: str, resource_id: str) -> JsonDict | None:
        if not ID_PATTERN.match(resource_id):
            return None
        try:
            return self.repository.read(rtype, resource_id).resource
        except (ResourceNotFound, ResourceGone):
            return None

    @staticmethod
    def _deletion(rtype: str, resource_id: str, reader: FhirReader) -> StoredResource | None:
        versions = reader.history(rtype, resource_id, count=1)
        return versions[0] if versions and versions[0].deleted else None

    @staticmethod
    def _previous(result: WriteResult, reader: FhirReader) -> JsonDict | None:
        if result.created or not result.version_id.isdigit() or int(result.version_id) <= 1:
            return None
        try:
            return reader.vread(result.resource_type, result.id, str(int(result.version_id) - 1)).resource
        except (ResourceNotFound, ResourceGone):
            return None

    def _committed(
        self, request: FhirRequest, result: WriteResult, interaction: Interaction, previous: JsonDict | None
    ) -> CommittedWrite:
        return CommittedWrite(
            resource=result.resource,
            interaction=interaction,
            location=result.location,
            last_modified=result.last_modified,
            previous=previous,
            full_url=f"{self._base(request)}/{result.resource_type}/{result.id}",
        )

    def _put_writes(
        self, request: FhirRequest, result: WriteResult, reader: FhirReader
    ) -> list[CommittedWrite]:
        interaction: Interaction = "create" if result.created else "update"
        previous = self._previous(result, reader) if result.resource_type in EVENT_TYPES else None
        return [self._committed(request, result, interaction, previous)]

    def _commit(
        self,
        request: FhirRequest,
        with_events: Callable[[EventCommittingRepository, CommitEvents[R]], R],
        plain: Callable[[], R],
        writes_of: Callable[[FhirReader, R], list[CommittedWrite]],
        known_of: Callable[[R], Mapping[str, JsonDict]] | None = None,
    ) -> R:
        """Run one write and get its clinical events out.

        Embedded store: ``with_events`` - the committed writes (``writes_of``, read through the
        transaction) are mapped inside the write's transaction and their messages committed with it, then
        published and settled. Otherwise ``plain`` and publish afterwards (outbox on a bus failure).
        """
        correlation_id = request.correlation_id or uuid.uuid4().hex
        store = self._committing
        if store is None:
            outcome = plain()
            writes = writes_of(self.repository, outcome)
            if writes:
                known = known_of(outcome) if known_of is not None else None
                self.events.publish(writes, correlation_id=correlation_id, known=known)
            return outcome
        captured: list[CommittedWrite] = []
        by_id: dict[str, ClinicalEvent] = {}

        def build(reader: FhirReader, outcome: R) -> list[OutboxMessage]:
            writes = writes_of(reader, outcome)
            known = known_of(outcome) if known_of is not None else None
            mapped = self.events.map_in_transaction(
                writes, correlation_id=correlation_id, reader=reader, known=known
            )
            captured[:] = writes
            by_id.clear()
            by_id.update((m.message.message_id or "", event) for event, m in mapped)
            return [m for _, m in mapped]

        events: CommitEvents[R] = CommitEvents(build)
        outcome = with_events(store, events)
        if captured or events.committed:
            self.events.publish_committed(
                captured, events.committed, by_id, correlation_id=correlation_id, outbox=store
            )
        return outcome

    def _write_response(
        self,
        request: FhirRequest,
        result: WriteResult,
        prefs: Preferences,
        warnings: Sequence[ValidationIssue],
    ) -> FhirResponse:
        _touch(result.resource)
        status = 201 if result.created else 200
        headers = {
            "ETag": result.etag,
            "Last-Modified": http_date(result.last_modified),
            "Location": f"{self._base(request)}/{result.location}",
        }
        if prefs.return_ == "minimal":
            return FhirResponse(status, None, headers)
        if prefs.return_ == "OperationOutcome":
            text = "created" if result.created else "updated or matched an existing resource"
            outcome = (
                to_operation_outcome(warnings) if warnings else _outcome("information", "informational", text)
            )
            return FhirResponse(status, outcome, headers)
        return FhirResponse(status, self._shown(request, result.resource), headers)

    # ================================================================================== bundles
    def bundle(self, request: FhirRequest) -> FhirResponse:
        """``POST [base]``: a transaction (all or nothing) or batch (entry by entry) Bundle."""

        def act(media: str, prefs: Preferences) -> FhirResponse:
            bundle = self._body(request)
            if bundle.get("resourceType") != "Bundle":
                raise BadRequest("POST to the base takes a Bundle", expression="resourceType")
            kind = bundle.get("type")
            if kind in ("transaction", "batch"):
                entries = bundle.get("entry")
                limit = self._max_bundle_entries(self.repository.capabilities())
                if isinstance(entries, list) and len(entries) > limit:
                    raise BundleTooLarge(len(entries), limit)
            if kind == "transaction":
                return self._transaction(request, bundle, prefs)
            if kind == "batch":
                return self._batch(request, bundle, prefs)
            raise BadRequest("Bundle.type must be transaction or batch", expression="Bundle.type")

        return self.handle(request, act, Audited("bundle", "E", None))

    def _max_bundle_entries(self, capabilities: Mapping[str, Any]) -> int:
        """The one entry cap for batch and transaction Bundles: the configured cap, lowered to the
        repository's transaction limit when it has one (a batch is capped the same, so a client that fits
        one fits the other)."""
        limits = capabilities.get("limits")
        store = limits.get("maxTransactionEntries") if isinstance(limits, Mapping) else None
        cap = self.config.max_bundle_entries
        return min(cap, store) if isinstance(store, int) and store > 0 else cap

    def _entry_checks(self, entry: bundle_ops.BundleEntry, known: Mapping[str, JsonDict]) -> JsonDict | None:
        """Checks of one parsed write entry before anything is committed; returns the resource a DELETE
        removes (for its event). Raises FhirStoreError / Unprocessable naming ``Bundle.entry[i]``."""
        rtype = entry.resource_type
        prefix = f"Bundle.entry[{entry.index}].resource"
        if rtype not in self._types:
            raise UnsupportedResourceType(rtype)
        if entry.if_match is not None and not is_entity_tag(entry.if_match):
            raise InvalidBundle(
                'entry.request.ifMatch must be an entity tag such as W/"3"',
                expression=f"Bundle.entry[{entry.index}].request.ifMatch",
            )
        if entry.method == "DELETE":
            if rtype not in self.config.deletable_types:
                raise UnsupportedInteraction(
                    f"{rtype} cannot be deleted; retract it by updating its status to entered-in-error"
                )
            current = self._current(rtype, entry.resource_id or "") if rtype in EVENT_TYPES else None
            if current is not None:
                self.events.check(current, "delete", prefix=prefix)
            return current
        if entry.resource is None or rtype not in EVENT_TYPES:
            return None
        previous: JsonDict | None = None
        if entry.method == "PUT":
            if entry.resource_id is not None:
                previous = self._current(rtype, entry.resource_id)
            else:
                params = parse_query_string(entry.query or "")
                matched = self.repository.search(rtype, params, count=2)
                previous = matched.resources[0] if len(matched.resources) == 1 else None
        interaction: Interaction = "update" if previous is not None else "create"
        self.events.check(entry.resource, interaction, previous=previous, context=known, prefix=prefix)
        return None

    def _transaction(self, request: FhirRequest, bundle: JsonDict, prefs: Preferences) -> FhirResponse:
        issues = _validate_bundle(
            bundle, structural=True, external_references=True, require_profile=self.config.require_profile
        )
        if errors_only(issues):
            raise FhirValidationError(issues)
        entries = bundle_ops.parse_transaction(bundle, max_entries=None)
        known: dict[str, JsonDict] = {}
        for entry in entries:
            if entry.resource is None:
                continue
            if entry.full_url:
                known[entry.full_url] = entry.resource
            if entry.method == "PUT" and entry.resource_id:
                known[f"{entry.resource_type}/{entry.resource_id}"] = entry.resource
        deleted: dict[int, JsonDict] = {}
        for entry in entries:
            if entry.method in ("GET", "HEAD"):
                continue
            try:
                removed = self._entry_checks(entry, known)
            except FhirStoreError as exc:
                raise TransactionFailed(entry.index, exc) from None
            if removed is not None:
                deleted[entry.index] = removed

        def writes(reader: FhirReader, response: JsonDict) -> list[CommittedWrite]:
            answers = response.get("entry") or []
            out: list[CommittedWrite] = []
            for entry in entries:
                answer = answers[entry.index] if entry.index < len(answers) else {}
                write = self._entry_write(request, entry, answer, deleted, reader)
                if write is not None:
                    out.append(write)
            return out

        response = self._commit(
            request,
            lambda repo, events: repo.transaction(bundle, events=events),
            lambda: self.repository.transaction(bundle),
            writes,
            _known,
        )
        return FhirResponse(200, self._bundle_response(request, response, prefs))

    def _batch(self, request: FhirRequest, bundle: JsonDict, prefs: Preferences) -> FhirResponse:
        raw_entries = bundle_ops.bundle_entries(bundle, "batch")
        answers: dict[int, JsonDict] = {}
        accepted: list[bundle_ops.BundleEntry] = []
        deleted: dict[int, JsonDict] = {}
        for index, raw in enumerate(raw_entries):
            try:
                entry = bundle_ops.parse_entry(index, raw)
                if entry.resource is not None and entry.method in ("POST", "PUT"):
                    issues = _validate_resource(
                        entry.resource, structural=True, require_profile=self.config.require_profile
                    )
                    if errors_only(issues):
                        raise FhirValidationError(
                            _rebase(issues, entry.resource_type, f"Bundle.entry[{index}].resource")
                        )
                removed = self._entry_checks(entry, {})
            except (FhirStoreError, FhirApiError, FhirValidationError) as exc:
                if isinstance(exc, TransientError):
                    raise
                answers[index] = {
                    "response": {"status": bundle_ops.status_line(_status(exc)), "outcome": _outcome_of(exc)}
                }
                continue
            if removed is not None:
                deleted[index] = removed
            accepted.append(entry)
        sub = {"resourceType": "Bundle", "type": "batch", "entry": [raw_entries[e.index] for e in accepted]}
        result = self._run_batch(request, sub, accepted, deleted)
        for position, answer in enumerate(result.get("entry") or []):
            answers[accepted[position].index] = answer
        merged = {
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [answers.get(i, {}) for i in range(len(raw_entries))],
        }
        return FhirResponse(200, self._bundle_response(request, merged, prefs))

    def _run_batch(
        self,
        request: FhirRequest,
        sub: JsonDict,
        accepted: Sequence[bundle_ops.BundleEntry],
        deleted: Mapping[int, JsonDict],
    ) -> JsonDict:
        """The repository's batch over the accepted entries (``sub``), with each committed entry's events
        (every entry is its own transaction: on the embedded store its events commit with it)."""
        correlation_id = request.correlation_id or uuid.uuid4().hex
        store = self._committing
        if store is None:
            result = self.repository.batch(sub)
            answers = result.get("entry") or []
            writes = [
                write
                for position, answer in enumerate(answers)
                if (write := self._entry_write(request, accepted[position], answer, deleted, self.repository))
            ]
            if writes:
                self.events.publish(writes, correlation_id=correlation_id, known=_known(result))
            return result
        captured: dict[int, CommittedWrite] = {}
        by_id: dict[str, ClinicalEvent] = {}

        def build(reader: FhirReader, outcome: BatchEntryOutcome) -> list[OutboxMessage]:
            position, answer = outcome
            write = self._entry_write(request, accepted[position], answer, deleted, reader)
            if write is None:
                return []
            mapped = self.events.map_in_transaction(
                [write], correlation_id=correlation_id, reader=reader, known=_known({"entry": [answer]})
            )
            captured[position] = write
            by_id.update((m.message.message_id or "", event) for event, m in mapped)
            return [m for _, m in mapped]

        events: CommitEvents[BatchEntryOutcome] = CommitEvents(build)
        result = store.batch(sub, events=events)
        answers = result.get("entry") or []
        writes = [
            captured[position]
            for position in sorted(captured)
            if str((answers[position].get("response") or {}).get("status") or "").startswith("2")
        ]
        if writes or events.committed:
            self.events.publish_committed(
                writes, events.committed, by_id, correlation_id=correlation_id, outbox=store
            )
        return result

    def _entry_write(
        self,
        request: FhirRequest,
        entry: bundle_ops.BundleEntry,
        answer: JsonDict,
        deleted: Mapping[int, JsonDict],
        reader: FhirReader,
    ) -> CommittedWrite | None:
        """The committed write of one Bundle entry given its answer (None: nothing was written)."""
        outcome = answer.get("response") or {}
        status = str(outcome.get("status") or "")[:3]
        if entry.method == "DELETE":
            removed = deleted.get(entry.index)
            if removed is None or not status.startswith("2"):
                return None
            deletion = self._deletion(entry.resource_type, entry.resource_id or "", reader)
            if deletion is None:
                return None
            return CommittedWrite(
                resource=removed,
                interaction="delete",
                location=f"{entry.resource_type}/{entry.resource_id}/_history/{deletion.version_id}",
                last_modified=deletion.last_modified,
            )
        if entry.method not in ("POST", "PUT") or status not in ("200", "201"):
            return None
        if entry.method == "POST" and status == "200":
            return None  # conditional create matched: nothing was written
        resource = answer.get("resource")
        if not isinstance(resource, dict):
            return None
        meta = resource.get("meta") or {}
        version = str(meta.get("versionId") or "")
        modified = _instant_or_now(meta.get("lastUpdated"), self._clock)
        result = WriteResult(resource, status == "201", version, modified)
        interaction: Interaction = "create" if status == "201" else "update"
        return CommittedWrite(
            resource=resource,
            interaction=interaction,
            location=result.location,
            last_modified=modified,
            previous=self._previous(result, reader) if resource.get("resourceType") in EVENT_TYPES else None,
            full_url=f"{self._base(request)}/{result.resource_type}/{result.id}",
        )

    def _bundle_response(self, request: FhirRequest, response: JsonDict, prefs: Preferences) -> JsonDict:
        for answer in response.get("entry") or []:
            if not isinstance(answer, dict):
                continue
            resource = answer.get("resource")
            if not isinstance(resource, dict):
                continue
            if prefs.return_ == "minimal":
                del answer["resource"]
            elif prefs.return_ == "OperationOutcome":
                del answer["resource"]
                answer.setdefault("response", {}).setdefault(
                    "outcome", _outcome("information", "informational", "processed")
                )
            elif resource.get("resourceType") != "Bundle":
                answer["resource"] = self._shown(request, resource)
        response.setdefault("id", str(uuid.uuid4()))
        return response


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


__all__ = ["FhirApi", "FhirApiConfig", "error_response"]
