"""FHIR read interactions (capabilities, read, vread, search, history) of
:class:`~shared.fhirapi.service.FhirApi`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlencode

from shared.audit.fhir_access import Audited
from shared.fhirapi._core import (
    _NO_STORE,
    _PRESENTATION,
    _SUMMARY_HONOURED,
    MAX_OFFSET,
    FhirApiCore,
    _instant,
    _non_negative,
    _not_modified,
    _outcome,
    _safe,
    _touch,
)
from shared.fhirapi.capability import capability_statement
from shared.fhirapi.errors import BadRequest
from shared.fhirapi.http import (
    FORM,
    FhirRequest,
    FhirResponse,
    Preferences,
    check_body_media_type,
    decode_form,
    http_date,
)
from shared.fhirapi.minimise import parse_elements
from shared.fhirstore import bundle as bundle_ops
from shared.fhirstore.errors import InvalidSearch
from shared.fhirstore.ports import METHOD_CREATE, JsonDict, SearchResult, StoredResource, format_instant
from shared.fhirstore.search import DEFAULT_COUNT, MAX_COUNT


class ReadInteractions(FhirApiCore):
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
