"""FHIR repository over HTTP: an Azure Health Data Services FHIR service (or any FHIR R4 server).

Implements :class:`~shared.fhirstore.ports.FhirRepository` with the embedded store's contract, validating
parameters and bundles locally with the same code. HTTP, auth, retries, error mapping, client
certificates, bundle splitting and paging: ``docs/ahds-fhir-adapter.md``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from azure.core.credentials import TokenCredential
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from shared.credentials.ports import TlsSource
from shared.fhirstore import bundle as bundle_ops
from shared.fhirstore.errors import (
    BundleTooLarge,
    FhirStoreError,
    InvalidResource,
    InvalidSearch,
    MultipleMatches,
    ResourceConflict,
    ResourceGone,
    ResourceNotFound,
    StoreUnavailable,
    Throttled,
    TransactionFailed,
    TransactionPartiallyApplied,
    UnsupportedInteraction,
    UnsupportedResourceType,
    UpstreamError,
    VersionConflict,
)
from shared.fhirstore.ports import (
    METHOD_DELETE,
    METHOD_UPDATE,
    JsonDict,
    SearchResult,
    StoredResource,
    WriteResult,
    format_instant,
    parse_etag,
    weak_etag,
)
from shared.fhirstore.search import (
    ID_PATTERN,
    capabilities,
    check_type,
    parse_query_string,
    parse_reference,
    parse_search,
)

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
#: Refresh a cached token this many seconds before it expires.
TOKEN_REFRESH_MARGIN = 300
#: Longest GET URL before a search is sent as ``POST {type}/_search`` (form-encoded).
MAX_GET_URL = 3000

_RETRY_ALWAYS = frozenset({429, 503})
_RETRY_IF_SAFE = frozenset({500, 502, 504})
_ENTRY_INDEX = re.compile(r"Bundle\.entry\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> JsonDict:
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise UpstreamError(f"FHIR service returned a non-JSON body (status {self.status})") from None
        if not isinstance(value, dict):
            raise UpstreamError(f"FHIR service returned a non-object JSON body (status {self.status})")
        return value


@dataclass(frozen=True, slots=True)
class _Context:
    """What a request was, for error mapping."""

    resource_type: str = ""
    resource_id: str = ""
    version_id: str | None = None
    search: bool = False
    conditional: bool = False
    if_match: str | None = None
    bundle_entries: int = 0


class _TokenCache:
    def __init__(
        self, credential: TokenCredential | None, provider: Callable[[], str] | None, scope: str
    ) -> None:
        self._credential = credential
        self._provider = provider
        self._scope = scope
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_on = 0.0

    @property
    def enabled(self) -> bool:
        return self._credential is not None or self._provider is not None

    def get(self) -> str | None:
        if self._provider is not None:
            return self._provider()
        if self._credential is None:
            return None
        with self._lock:
            if self._token is None or self._expires_on - time.time() < TOKEN_REFRESH_MARGIN:
                access = self._credential.get_token(self._scope)
                self._token, self._expires_on = access.token, float(access.expires_on)
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None


def _retry_after(response: _Response) -> float | None:
    millis = response.headers.get("x-ms-retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _outcome(response: _Response) -> tuple[str | None, str | None, str]:
    """(issue code, first expression, diagnostics) of an OperationOutcome body, if any. Diagnostics are
    only inspected, never put into exception text."""
    try:
        body = json.loads(response.body) if response.body else {}
    except ValueError:
        return None, None, ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None, None, ""
    issues = body.get("issue") or []
    issue = issues[0] if isinstance(issues, list) and issues and isinstance(issues[0], dict) else {}
    expressions = issue.get("expression") or issue.get("location") or []
    expression = expressions[0] if isinstance(expressions, list) and expressions else None
    code = issue.get("code")
    return (
        code if isinstance(code, str) else None,
        expression if isinstance(expression, str) and len(expression) <= 200 else None,
        str(issue.get("diagnostics") or ""),
    )


def _parse_instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class AhdsFhirRepository:
    """:class:`~shared.fhirstore.ports.FhirRepository` over a FHIR R4 REST API (see the module docs)."""

    def __init__(
        self,
        base_url: str,
        *,
        credential: TokenCredential | None = None,
        token_provider: Callable[[], str] | None = None,
        scope: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_retry_after: float = 60.0,
        max_bundle_entries: int = 500,
        split_transactions: bool = False,
        pool_maxsize: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        tls: TlsSource | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must be an absolute http(s) URL")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._tokens = _TokenCache(credential, token_provider, scope or f"{self.base_url}/.default")
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._pool_maxsize = pool_maxsize
        self._tls = tls
        self._tls_context: ssl.SSLContext | None = None
        self._pool_lock = threading.Lock()
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=pool_maxsize, block=False, retries=False)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_retry_after = max_retry_after
        self._max_bundle_entries = max_bundle_entries
        self._split_transactions = split_transactions
        self._sleep = sleep

    # -- HTTP -------------------------------------------------------------------------------------

    def _url(self, path: str, params: Sequence[tuple[str, str]] = ()) -> str:
        url = f"{self.base_url}/{path}" if path else self.base_url
        return f"{url}?{urlencode(list(params))}" if params else url

    def _current_pool(self, method: str) -> urllib3.PoolManager:
        """The pool for the next request: rebuilt when the TLS source hands out a new (rotated) context;
        the credential use is recorded here, once per logical request."""
        if self._tls is None:
            return self._pool
        context = self._tls.context()
        with self._pool_lock:
            if context is not self._tls_context:
                old, self._tls_context = self._pool, context
                self._pool = urllib3.PoolManager(
                    num_pools=4, maxsize=self._pool_maxsize, block=False, retries=False, ssl_context=context
                )
                old.clear()
            pool = self._pool
        self._tls.record_use(f"fhir-{method.lower()}")
        return pool

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self._backoff_max, self._backoff_base * (2**attempt)))

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        safe: bool,
        context: _Context,
        form: bool = False,
    ) -> _Response:
        """One logical request with retries; returns a 2xx/3xx/4xx response or raises for 429/5xx."""
        if not url.startswith(self._origin + "/") and url != self._origin:
            raise UpstreamError("refusing to follow a link outside the FHIR service origin")
        payload: bytes | None = None
        request_headers = {"Accept": FHIR_JSON}
        if body is not None:
            if form:
                payload = urlencode(body).encode()
                request_headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
                request_headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        request_headers.update(headers or {})
        attempt = 0
        refreshed = False
        pool = self._current_pool(method)
        while True:
            token = self._tokens.get()
            if token:
                request_headers["Authorization"] = f"Bearer {token}"
            try:
                raw = pool.request(
                    method,
                    url,
                    body=payload,
                    headers=request_headers,
                    timeout=self._timeout,
                    retries=False,
                    redirect=False,
                    preload_content=True,
                )
            except (NewConnectionError, ConnectTimeoutError, NameResolutionError) as exc:
                # Not sent: always safe to retry.
                self._wait_or_raise(
                    attempt, None, StoreUnavailable(f"FHIR service unreachable ({type(exc).__name__})")
                )
                attempt += 1
                continue
            except (ReadTimeoutError, ProtocolError, Urllib3HTTPError) as exc:
                error = StoreUnavailable(f"FHIR service did not answer ({type(exc).__name__})")
                if not safe:
                    raise error from None
                self._wait_or_raise(attempt, None, error)
                attempt += 1
                continue
            response = _Response(raw.status, {k.lower(): v for k, v in raw.headers.items()}, raw.data or b"")
            if response.status == 401 and self._tokens.enabled and not refreshed:
                self._tokens.invalidate()
                refreshed = True
                continue
            if response.status in _RETRY_ALWAYS or (response.status in _RETRY_IF_SAFE and safe):
                retry_after = _retry_after(response)
                log.warning(
                    "FHIR service answered %s to %s (attempt %s)", response.status, method, attempt + 1
                )
                self._wait_or_raise(attempt, retry_after, self._error(response, context))
                attempt += 1
                continue
            return response

    def _wait_or_raise(self, attempt: int, retry_after: float | None, error: FhirStoreError) -> None:
        if retry_after is not None:
            if isinstance(error, Throttled) and error.retry_after is None:
                error.retry_after = retry_after
            if retry_after > self._max_retry_after:
                raise error
            delay = retry_after + random.uniform(0, retry_after * 0.1)
        else:
            delay = self._backoff(attempt)
        if attempt >= self._max_retries:
            raise error
        self._sleep(delay)

    def _error(self, response: _Response, context: _Context) -> FhirStoreError:
        error = self._map_error(response, context)
        if error.expression is None:
            # Keep the upstream element path (e.g. Bundle.entry[3]): a path, never a value.
            error.expression = _outcome(response)[1]
        return error

    def _map_error(self, response: _Response, context: _Context) -> FhirStoreError:
        status = response.status
        code, expression, diagnostics = _outcome(response)
        rtype, rid = context.resource_type or "resource", context.resource_id or "(unknown)"
        if status == 429:
            return Throttled("FHIR service throttled the request (429)", retry_after=_retry_after(response))
        if status >= 500:
            return StoreUnavailable(f"FHIR service error ({status})")
        if status == 400:
            if context.search:
                return InvalidSearch(expression or "(search)", "rejected by the FHIR service")
            return InvalidResource("rejected by the FHIR service (400)", expression=expression)
        if status in (401, 403):
            return UpstreamError(f"FHIR service refused the credentials ({status})")
        if status == 404:
            if code == "not-supported" and context.resource_type:
                return UnsupportedResourceType(context.resource_type)
            return ResourceNotFound(rtype, rid, context.version_id)
        if status == 405:
            return UnsupportedInteraction("interaction not supported by the FHIR service (405)")
        if status == 409:
            return ResourceConflict(f"{rtype}/{rid}: conflict reported by the FHIR service (409)")
        if status == 410:
            version = parse_etag(response.headers.get("etag", "")) or "(unknown)"
            return ResourceGone(rtype, rid, version)
        if status == 412:
            if code == "multiple-matches" or "multiple" in diagnostics.lower():
                return MultipleMatches(rtype)
            if context.if_match is None and context.conditional:
                return MultipleMatches(rtype)
            return VersionConflict(rtype, rid, parse_etag(context.if_match or ""), None)
        if status == 413:
            return BundleTooLarge(
                context.bundle_entries, self._max_bundle_entries, "rejected by the FHIR service"
            )
        if status == 422:
            return InvalidResource(
                "rejected by the FHIR service (422)", expression=expression, http_status=422
            )
        return UpstreamError(f"unexpected FHIR service status {status}")

    def _check(self, response: _Response, context: _Context) -> _Response:
        if response.status >= 400:
            raise self._error(response, context)
        return response

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _stored(
        resource: JsonDict, headers: dict[str, str], *, method: str = METHOD_UPDATE
    ) -> StoredResource:
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        version = str((meta or {}).get("versionId") or parse_etag(headers.get("etag", "")) or "")
        modified = _parse_instant((meta or {}).get("lastUpdated")) or _parse_instant(
            headers.get("last-modified")
        )
        return StoredResource(
            resource=resource,
            version_id=version,
            last_modified=modified or datetime.now(UTC),
            deleted=False,
            method=method,
        )

    def _write_result(self, response: _Response, context: _Context) -> WriteResult:
        body = response.json()
        if not body:
            # The service ignored Prefer: return=representation: read what it wrote.
            location = response.headers.get("location", "")
            parsed = parse_reference(location.split("/_history/")[0]) if location else None
            if parsed is None:
                raise UpstreamError("FHIR service returned neither a resource nor a Location")
            body = self.read(*parsed).resource
        stored = self._stored(body, response.headers)
        return WriteResult(body, response.status == 201, stored.version_id, stored.last_modified)

    # -- port -------------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        check_type(resource_type)
        if not ID_PATTERN.match(resource_id):
            raise ResourceNotFound(resource_type, "(invalid id)")
        context = _Context(resource_type, resource_id)
        response = self._send("GET", self._url(f"{resource_type}/{resource_id}"), safe=True, context=context)
        return self._stored(self._check(response, context).json(), response.headers)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        check_type(resource_type)
        if not ID_PATTERN.match(resource_id) or not ID_PATTERN.match(version_id):
            raise ResourceNotFound(resource_type, "(invalid id)")
        context = _Context(resource_type, resource_id, version_id)
        url = self._url(f"{resource_type}/{resource_id}/_history/{version_id}")
        response = self._send("GET", url, safe=True, context=context)
        return self._stored(self._check(response, context).json(), response.headers)

    def create(self, resource: JsonDict, *, if_none_exist: str | None = None) -> WriteResult:
        rtype = bundle_ops.check_resource(resource)
        headers = {"Prefer": "return=representation"}
        if if_none_exist is not None:
            params = parse_query_string(if_none_exist)
            if not parse_search(rtype, params, strict=True).criteria:
                raise InvalidSearch("If-None-Exist", "no search criteria")
            headers["If-None-Exist"] = urlencode(params)
        body = {k: v for k, v in resource.items() if k != "id"}
        context = _Context(rtype, conditional=if_none_exist is not None)
        response = self._send(
            "POST",
            self._url(rtype),
            body=body,
            headers=headers,
            safe=if_none_exist is not None,
            context=context,
        )
        return self._write_result(self._check(response, context), context)

    def update(
        self, resource_type: str, resource_id: str, resource: JsonDict, *, if_match: str | None = None
    ) -> WriteResult:
        bundle_ops.check_resource(resource, resource_type, resource_id)
        headers = {"Prefer": "return=representation"}
        if if_match is not None:
            headers["If-Match"] = weak_etag(parse_etag(if_match))
        context = _Context(resource_type, resource_id, if_match=if_match)
        url = self._url(f"{resource_type}/{resource_id}")
        response = self._send("PUT", url, body=resource, headers=headers, safe=True, context=context)
        return self._write_result(self._check(response, context), context)

    def conditional_update(
        self, resource_type: str, query: str, resource: JsonDict, *, if_match: str | None = None
    ) -> WriteResult:
        bundle_ops.check_resource(resource, resource_type)
        params = parse_query_string(query)
        if not parse_search(resource_type, params, strict=True).criteria:
            raise InvalidSearch("conditional update", "no search criteria")
        headers = {"Prefer": "return=representation"}
        if if_match is not None:
            headers["If-Match"] = weak_etag(parse_etag(if_match))
        context = _Context(resource_type, conditional=True, if_match=if_match)
        url = self._url(resource_type, params)
        response = self._send("PUT", url, body=resource, headers=headers, safe=True, context=context)
        return self._write_result(self._check(response, context), context)

    def delete(self, resource_type: str, resource_id: str) -> None:
        check_type(resource_type)
        if not ID_PATTERN.match(resource_id):
            return
        context = _Context(resource_type, resource_id)
        response = self._send(
            "DELETE", self._url(f"{resource_type}/{resource_id}"), safe=True, context=context
        )
        if response.status in (404, 410):
            return  # deleting what is absent is a no-op (port contract)
        self._check(response, context)

    def history(
        self,
        resource_type: str,
        resource_id: str | None = None,
        *,
        count: int | None = None,
        since: datetime | None = None,
    ) -> list[StoredResource]:
        check_type(resource_type)
        if resource_id is not None and not ID_PATTERN.match(resource_id):
            raise ResourceNotFound(resource_type, "(invalid id)")
        params: list[tuple[str, str]] = []
        if count is not None:
            params.append(("_count", str(max(min(count, 1000), 1))))
        if since is not None:
            moment = since if since.tzinfo else since.replace(tzinfo=UTC)
            params.append(("_since", moment.astimezone(UTC).isoformat().replace("+00:00", "Z")))
        path = f"{resource_type}/{resource_id}/_history" if resource_id else f"{resource_type}/_history"
        context = _Context(resource_type, resource_id or "")
        url: str | None = self._url(path, params)
        versions: list[StoredResource] = []
        while url and (count is None or len(versions) < count):
            page = self._check(self._send("GET", url, safe=True, context=context), context).json()
            for entry in page.get("entry") or []:
                versions.append(self._history_entry(resource_type, entry))
            url = self._next_link(page)
        if count is not None:
            versions = versions[: max(count, 0)]
        return versions

    def _history_entry(self, resource_type: str, entry: JsonDict) -> StoredResource:
        request = entry.get("request") or {}
        response = entry.get("response") or {}
        method = str(request.get("method") or METHOD_UPDATE)
        resource = entry.get("resource")
        version = parse_etag(str(response.get("etag") or ""))
        modified = _parse_instant(response.get("lastModified"))
        if method == METHOD_DELETE or not isinstance(resource, dict):
            url = str(request.get("url") or entry.get("fullUrl") or "")
            parsed = parse_reference(url.split("?")[0])
            rid = parsed[1] if parsed else str((resource or {}).get("id", ""))
            stub: JsonDict = {"resourceType": resource_type, "id": rid, "meta": {"versionId": version}}
            if modified:
                stub["meta"]["lastUpdated"] = format_instant(modified)
            return StoredResource(
                stub, version, modified or datetime.now(UTC), deleted=True, method=METHOD_DELETE
            )
        stored = self._stored(resource, {"etag": str(response.get("etag") or "")}, method=method)
        return stored

    def _next_link(self, bundle: JsonDict) -> str | None:
        for link in bundle.get("link") or []:
            if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                return str(link["url"])
        return None

    def search(
        self,
        resource_type: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        count: int | None = None,
        offset: int | None = None,
        sort: Sequence[str] | None = None,
        include: Sequence[str] | None = None,
        strict: bool = True,
    ) -> SearchResult:
        query = parse_search(
            resource_type, params, strict=strict, count=count, offset=offset, sort=sort, include=include
        )
        upstream = [(k, v) for k, v in query.params if k != "_total"]
        context = _Context(resource_type, search=True)
        if query.count == 0:
            page = self._search_page(resource_type, [*upstream, ("_summary", "count")], context)
            total = page.get("total")
            return SearchResult(
                total=int(total) if isinstance(total, int) else None,
                resources=[],
                count=0,
                offset=query.offset,
                params=list(query.params),
                ignored=list(query.ignored),
            )
        page_size = min(query.offset + query.count, 1000) if query.offset else query.count
        upstream.append(("_count", str(page_size)))
        if query.total:
            upstream.append(("_total", "accurate"))
        page = self._search_page(resource_type, upstream, context)
        total_value = page.get("total")
        total = int(total_value) if query.total and isinstance(total_value, int) else None
        matches: list[JsonDict] = []
        included: dict[tuple[str, str], JsonDict] = {}
        seen = 0
        while True:
            kept_any = False
            page_included: list[JsonDict] = []
            for entry in page.get("entry") or []:
                resource = entry.get("resource")
                if not isinstance(resource, dict):
                    continue
                mode = (entry.get("search") or {}).get("mode")
                if mode == "outcome":
                    continue
                if mode == "include" or (mode is None and resource.get("resourceType") != resource_type):
                    page_included.append(resource)
                    continue
                if seen >= query.offset and len(matches) < query.count:
                    matches.append(resource)
                    kept_any = True
                seen += 1
            if kept_any:
                for resource in page_included:
                    included.setdefault(
                        (str(resource.get("resourceType")), str(resource.get("id"))), resource
                    )
            next_url = self._next_link(page)
            if len(matches) >= query.count or not next_url:
                break
            page = self._check(self._send("GET", next_url, safe=True, context=context), context).json()
        match_keys = {(resource_type, str(r.get("id"))) for r in matches}
        return SearchResult(
            total=total,
            resources=matches,
            included=[r for key, r in included.items() if key not in match_keys],
            count=query.count,
            offset=query.offset,
            params=list(query.params),
            ignored=list(query.ignored),
        )

    def _search_page(self, resource_type: str, params: list[tuple[str, str]], context: _Context) -> JsonDict:
        url = self._url(resource_type, params)
        if len(url) <= MAX_GET_URL:
            response = self._send("GET", url, safe=True, context=context)
        else:
            response = self._send(
                "POST",
                self._url(f"{resource_type}/_search"),
                body=params,
                form=True,
                safe=True,
                context=context,
            )
        return self._check(response, context).json()

    # -- bundles ----------------------------------------------------------------------------------

    def _post_bundle(self, bundle: JsonDict, entries: int) -> JsonDict:
        context = _Context(bundle_entries=entries)
        response = self._send("POST", self.base_url, body=bundle, safe=False, context=context)
        return self._check(response, context).json()

    def transaction(self, bundle: JsonDict) -> JsonDict:
        entries = bundle_ops.parse_transaction(bundle, max_entries=None)
        if len(entries) > self._max_bundle_entries and not self._split_transactions:
            raise BundleTooLarge(
                len(entries),
                self._max_bundle_entries,
                "a transaction cannot be split without losing atomicity",
            )
        if len(entries) <= self._max_bundle_entries:
            return self._one_transaction(bundle, len(entries), list(range(len(entries))))
        return self._split_transaction(bundle, entries)

    def _one_transaction(self, bundle: JsonDict, entries: int, indexes: list[int]) -> JsonDict:
        try:
            return self._post_bundle(bundle, entries)
        except (StoreUnavailable, Throttled, BundleTooLarge, UpstreamError):
            raise
        except FhirStoreError as exc:
            match = _ENTRY_INDEX.search(exc.expression or "")
            local = int(match[1]) if match else -1
            raise TransactionFailed(indexes[local] if 0 <= local < len(indexes) else -1, exc) from None

    def _split_transaction(self, bundle: JsonDict, entries: list[bundle_ops.BundleEntry]) -> JsonDict:
        raw = bundle.get("entry") or []
        deps = bundle_ops.entry_dependencies(entries)
        order = _topological(deps, len(entries))
        if order is None:
            raise BundleTooLarge(len(entries), self._max_bundle_entries, "circular fullUrl references")
        size = self._max_bundle_entries
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        mapping: dict[str, str] = {}
        responses: dict[int, JsonDict] = {}
        committed: list[int] = []

        def resolve(reference: str) -> str:
            return mapping.get(reference, reference)

        for chunk in chunks:
            chunk_entries = []
            for index in chunk:
                entry = dict(raw[index])
                if "resource" in entry:
                    entry["resource"] = bundle_ops.rewrite_references(entry["resource"], resolve)
                chunk_entries.append(entry)
            try:
                result = self._one_transaction(
                    {"resourceType": "Bundle", "type": "transaction", "entry": chunk_entries},
                    len(chunk),
                    chunk,
                )
            except FhirStoreError as exc:
                if not committed:
                    raise
                raise TransactionPartiallyApplied(sorted(committed), exc) from None
            for index, response_entry in zip(chunk, result.get("entry") or [], strict=False):
                responses[index] = response_entry
                full_url = entries[index].full_url
                location = str((response_entry.get("response") or {}).get("location") or "")
                parsed = parse_reference(location.split("/_history/")[0]) if location else None
                if full_url and parsed:
                    mapping[full_url] = f"{parsed[0]}/{parsed[1]}"
            committed.extend(chunk)
        return {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [responses.get(index, {}) for index in range(len(entries))],
        }

    def batch(self, bundle: JsonDict) -> JsonDict:
        raw_entries = bundle_ops.bundle_entries(bundle, "batch")
        responses: dict[int, JsonDict] = {}
        valid: list[int] = []
        for index, raw in enumerate(raw_entries):
            try:
                bundle_ops.parse_entry(index, raw)
                valid.append(index)
            except FhirStoreError as exc:
                responses[index] = bundle_ops.error_response(exc)
        size = self._max_bundle_entries
        chunks = [valid[i : i + size] for i in range(0, len(valid), size)]
        for position, chunk in enumerate(chunks):
            sub = {"resourceType": "Bundle", "type": "batch", "entry": [raw_entries[i] for i in chunk]}
            try:
                result = self._post_bundle(sub, len(chunk))
            except FhirStoreError as exc:
                if position == 0 and len(chunks) == 1 and not responses:
                    raise
                for index in chunk:
                    responses[index] = bundle_ops.error_response(exc)
                continue
            for index, entry in zip(chunk, result.get("entry") or [], strict=False):
                responses[index] = entry
        return {
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [responses.get(index, {}) for index in range(len(raw_entries))],
        }

    def capabilities(self) -> JsonDict:
        return capabilities(max_transaction_entries=self._max_bundle_entries)

    def close(self) -> None:
        self._pool.clear()


def _topological(deps: dict[int, set[int]], count: int) -> list[int] | None:
    """Indexes ordered so each comes after its dependencies (request order otherwise); None on a cycle."""
    remaining = {index: set(deps.get(index, set())) for index in range(count)}
    order: list[int] = []
    done: set[int] = set()
    while remaining:
        ready = [index for index, needs in sorted(remaining.items()) if needs <= done]
        if not ready:
            return None
        for index in ready:
            order.append(index)
            done.add(index)
            del remaining[index]
    return order
