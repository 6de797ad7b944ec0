"""Write semantics shared by the adapters, and transaction / batch Bundle processing.

An adapter that applies writes itself (the SQLite store) implements :class:`UnitOfWork` - primitive
operations inside one database transaction - and gets the FHIR semantics from here:
:func:`create_in` (conditional create), :func:`update_in`, :func:`conditional_update_in`,
:func:`run_transaction` and :func:`run_batch`. An adapter that forwards bundles to a FHIR server (the
AHDS adapter) uses the parsing helpers (:func:`parse_entry`, :func:`bundle_entries`,
:func:`entry_dependencies`).

Transaction processing (FHIR R4 http.html#trules), all inside the caller's single database transaction:

1. Every entry is parsed first; a malformed entry fails the transaction (nothing is written).
2. DELETE entries are applied.
3. Identities are resolved against the state after the deletes: each POST gets a new id, or - with
   ``ifNoneExist`` matching exactly one resource - the existing resource (no write, response 200); each
   PUT gets its URL id or, for a conditional URL, the matched id (none: the body id or a new id; more
   than one: 412). Conditional criteria therefore never see the bundle's own creates and updates.
   Two entries resolving to the same resource fail the transaction (409).
4. ``fullUrl`` -> ``Type/id`` map: every ``reference`` in POST/PUT bodies equal to an entry's ``fullUrl``
   (``urn:uuid:``, ``urn:oid:`` or absolute) is rewritten, at any depth (contained resources,
   extensions, nested backbone elements). A ``urn:`` reference to no entry fails the transaction (400).
   A conditional reference (``Patient?identifier=...``) is resolved by search: exactly one match is
   required (none: 400, several: 412). Narrative ``div`` links are not rewritten.
5. POSTs are created, then PUTs applied (``ifMatch`` honoured), then GET/HEAD entries read (read, vread,
   search, instance history), seeing the transaction's writes.
6. The response Bundle lists one entry per request entry, in request order.

Any failure raises :class:`~shared.fhirstore.errors.TransactionFailed` with the entry index; the caller
rolls back. Transient failures propagate unchanged.

Batch: every entry is parsed and executed on its own (processing order DELETE, POST, PUT, GET as for
transactions, each entry in its own database transaction via the ``execute`` callback). A failing
entry gets its status and an OperationOutcome; the others are unaffected. ``urn:uuid`` references are
not rewritten (batch entries must not depend on each other).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from shared.fhirstore.errors import (
    BundleTooLarge,
    FhirStoreError,
    InvalidBundle,
    InvalidResource,
    MultipleMatches,
    ResourceConflict,
    StoreUnavailable,
    Throttled,
    TransactionFailed,
    UnsupportedInteraction,
    UnsupportedResourceType,
)
from shared.fhirstore.ports import (
    METHOD_CREATE,
    METHOD_UPDATE,
    JsonDict,
    SearchResult,
    StoredResource,
    WriteResult,
    format_instant,
)
from shared.fhirstore.search import ID_PATTERN, SEARCH_PARAMETERS, parse_query_string

STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    204: "204 No Content",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    410: "410 Gone",
    412: "412 Precondition Failed",
    413: "413 Content Too Large",
    422: "422 Unprocessable Content",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
}

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def status_line(status: int) -> str:
    return STATUS_TEXT.get(status, str(status))


def check_resource(resource: Any, resource_type: str | None = None, resource_id: str | None = None) -> str:
    """Structural basics of a resource body; returns its type.

    ``resource_type``: the type the URL names (must match). ``resource_id``: the id the URL names (the
    body must carry the same id - FHIR update rules). A body id, when present, must be a valid FHIR id.
    """
    if not isinstance(resource, dict):
        raise InvalidResource("the resource must be a JSON object")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise InvalidResource("resourceType is missing", expression="resourceType")
    if resource_type is not None and rtype != resource_type:
        raise InvalidResource("resourceType does not match the request URL", expression="resourceType")
    if rtype not in SEARCH_PARAMETERS:
        raise UnsupportedResourceType(rtype)
    body_id = resource.get("id")
    if body_id is not None and (not isinstance(body_id, str) or not ID_PATTERN.match(body_id)):
        raise InvalidResource("id is not a valid FHIR id", expression=f"{rtype}.id")
    if resource_id is not None:
        if not ID_PATTERN.match(resource_id):
            raise InvalidResource("the URL id is not a valid FHIR id", expression=f"{rtype}.id")
        if body_id is None:
            raise InvalidResource("an update body must carry the resource id", expression=f"{rtype}.id")
        if body_id != resource_id:
            raise InvalidResource("the body id does not match the request URL", expression=f"{rtype}.id")
    meta = resource.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise InvalidResource("meta must be an object", expression=f"{rtype}.meta")
    return rtype


class UnitOfWork(Protocol):
    """Primitive operations inside one database transaction (see the module docs)."""

    def new_id(self) -> str: ...

    def find(self, resource_type: str, query: str, *, context: str) -> list[str]:
        """Ids of current resources matching the conditional ``query`` (at most 2 are needed).
        ``context`` names the criterion in errors (e.g. ``If-None-Exist``); no criteria -> InvalidSearch."""
        ...

    def current(self, resource_type: str, resource_id: str) -> tuple[str, bool] | None:
        """(current version id, deleted) or None when the resource never existed."""
        ...

    def put(
        self,
        resource_type: str,
        resource_id: str,
        resource: JsonDict,
        *,
        if_match: str | None,
        method: str,
    ) -> WriteResult:
        """Store a new version (create when absent or deleted); enforce ``if_match``."""
        ...

    def delete(self, resource_type: str, resource_id: str) -> None: ...

    def read(self, resource_type: str, resource_id: str) -> StoredResource: ...

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource: ...

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> SearchResult: ...

    def history(self, resource_type: str, resource_id: str) -> list[StoredResource]: ...


def _found(stored: StoredResource) -> WriteResult:
    return WriteResult(stored.resource, False, stored.version_id, stored.last_modified)


def create_in(uow: UnitOfWork, resource: JsonDict, *, if_none_exist: str | None = None) -> WriteResult:
    """FHIR create: server-assigned id (a body id is ignored); conditional with ``if_none_exist``."""
    rtype = check_resource(resource)
    if if_none_exist is not None:
        ids = uow.find(rtype, if_none_exist, context="If-None-Exist")
        if len(ids) > 1:
            raise MultipleMatches(rtype, "conditional create")
        if ids:
            return _found(uow.read(rtype, ids[0]))
    return uow.put(rtype, uow.new_id(), resource, if_match=None, method=METHOD_CREATE)


def update_in(
    uow: UnitOfWork, resource_type: str, resource_id: str, resource: JsonDict, *, if_match: str | None
) -> WriteResult:
    check_resource(resource, resource_type, resource_id)
    return uow.put(resource_type, resource_id, resource, if_match=if_match, method=METHOD_UPDATE)


def resolve_conditional_update(uow: UnitOfWork, resource_type: str, query: str, resource: JsonDict) -> str:
    """The id a conditional update writes to (FHIR R4 rules with the R5 clarification for body ids)."""
    ids = uow.find(resource_type, query, context="conditional update")
    body_id = resource.get("id")
    if len(ids) > 1:
        raise MultipleMatches(resource_type, "conditional update")
    if ids:
        if body_id is not None and body_id != ids[0]:
            raise InvalidResource(
                "the body id differs from the resource matched by the criteria",
                expression=f"{resource_type}.id",
            )
        return ids[0]
    if isinstance(body_id, str):
        current = uow.current(resource_type, body_id)
        if current is not None and not current[1]:
            raise ResourceConflict(
                f"conditional update on {resource_type}: no match but the body id already exists"
            )
        return body_id
    return uow.new_id()


def conditional_update_in(
    uow: UnitOfWork, resource_type: str, query: str, resource: JsonDict, *, if_match: str | None
) -> WriteResult:
    check_resource(resource, resource_type)
    rid = resolve_conditional_update(uow, resource_type, query, resource)
    body = dict(resource, id=rid)
    return uow.put(resource_type, rid, body, if_match=if_match, method=METHOD_UPDATE)


# ------------------------------------------------------------------------------------------ entries


@dataclass(frozen=True, slots=True)
class BundleEntry:
    """A parsed ``Bundle.entry`` request. ``query`` is the conditional/search query (text after ``?``)."""

    index: int
    method: str
    url: str
    resource_type: str
    resource_id: str | None
    version_id: str | None
    query: str | None
    history: bool
    resource: JsonDict | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None

    @property
    def order(self) -> int:
        return _ORDER[self.method]


_URL_RE = re.compile(
    r"^(?P<type>[A-Z][A-Za-z]+)(?:/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/(?P<hist>_history)(?:/(?P<vid>[A-Za-z0-9\-.]{1,64}))?)?)?/?(?:\?(?P<query>.*))?$"
)


def _relative_url(url: str) -> str:
    if "://" not in url:
        return url.lstrip("/")
    path = url.split("://", 1)[1]
    segments = path.split("?", 1)[0].split("/")
    for position, segment in enumerate(segments):
        if segment in SEARCH_PARAMETERS:
            rest = "/".join(segments[position:])
            return rest + ("?" + url.split("?", 1)[1] if "?" in url else "")
    return url


def bundle_entries(bundle: Any, expected_type: str) -> list[Any]:
    """The raw entries of a Bundle of ``expected_type`` (``transaction`` or ``batch``)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidBundle("the body must be a Bundle", expression="Bundle")
    if bundle.get("type") != expected_type:
        raise InvalidBundle(f"Bundle.type must be '{expected_type}'", expression="Bundle.type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidBundle("Bundle.entry must be an array", expression="Bundle.entry")
    return entries


def parse_entry(index: int, raw: Any) -> BundleEntry:
    """Parse and check one entry; raises :class:`InvalidBundle` / :class:`UnsupportedInteraction`."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise InvalidBundle("entry must be an object", expression=where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise InvalidBundle("entry.request is required", expression=f"{where}.request")
    method = request.get("method")
    url = request.get("url")
    if method not in _ORDER:
        raise InvalidBundle(
            "entry.request.method is not a valid HTTP verb", expression=f"{where}.request.method"
        )
    if method == "PATCH":
        raise UnsupportedInteraction("PATCH is not supported")
    if not isinstance(url, str) or not url:
        raise InvalidBundle("entry.request.url is required", expression=f"{where}.request.url")
    match = _URL_RE.match(_relative_url(url))
    if not match:
        raise InvalidBundle(
            "entry.request.url is not a supported FHIR URL", expression=f"{where}.request.url"
        )
    rtype = match["type"]
    if rtype not in SEARCH_PARAMETERS:
        raise UnsupportedResourceType(rtype)
    rid, vid, query, hist = match["id"], match["vid"], match["query"], match["hist"] is not None
    resource = raw.get("resource")
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise InvalidBundle("entry.fullUrl must be a string", expression=f"{where}.fullUrl")

    def optional(name: str) -> str | None:
        value = request.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidBundle(
                f"entry.request.{name} must be a string", expression=f"{where}.request.{name}"
            )
        return value

    if_none_exist, if_match = optional("ifNoneExist"), optional("ifMatch")
    bad_url = InvalidBundle(f"entry.request.url does not fit {method}", expression=f"{where}.request.url")
    if method == "POST":
        if rid is not None or query:
            raise bad_url
        check_resource(resource, rtype)
    elif method == "PUT":
        if hist or (rid is None) == (query is None):
            raise bad_url
        check_resource(resource, rtype, rid)
    elif method == "DELETE":
        if query is not None and rid is None:
            raise UnsupportedInteraction("conditional delete is not supported")
        if rid is None or hist:
            raise bad_url
    elif hist and vid is None and query:
        raise bad_url
    if method != "POST" and if_none_exist is not None:
        raise InvalidBundle("ifNoneExist is only allowed on POST", expression=f"{where}.request.ifNoneExist")
    return BundleEntry(
        index=index,
        method=method,
        url=url,
        resource_type=rtype,
        resource_id=rid,
        version_id=vid,
        query=query,
        history=hist,
        resource=copy.deepcopy(resource) if isinstance(resource, dict) else None,
        full_url=full_url,
        if_none_exist=if_none_exist,
        if_match=if_match,
    )


def processing_order(entries: Iterable[BundleEntry]) -> list[BundleEntry]:
    """DELETE, POST, PUT/PATCH, GET/HEAD; request order within each group."""
    return sorted(entries, key=lambda e: (e.order, e.index))


def iter_references(node: Any) -> Iterable[str]:
    """Every ``reference`` string anywhere in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from iter_references(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_references(item)


def rewrite_references(node: Any, resolve: Callable[[str], str]) -> Any:
    """A copy of ``node`` with every ``reference`` string replaced by ``resolve(reference)``."""
    if isinstance(node, dict):
        return {
            key: resolve(value)
            if key == "reference" and isinstance(value, str)
            else rewrite_references(value, resolve)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [rewrite_references(item, resolve) for item in node]
    return node


def entry_dependencies(entries: list[BundleEntry]) -> dict[int, set[int]]:
    """For each entry index, the indexes of entries whose ``fullUrl`` its resource references."""
    by_url = {e.full_url: e.index for e in entries if e.full_url}
    deps: dict[int, set[int]] = {}
    for entry in entries:
        targets = {by_url[ref] for ref in iter_references(entry.resource) if ref in by_url}
        targets.discard(entry.index)
        deps[entry.index] = targets
    return deps


# ------------------------------------------------------------------------------------------ responses


def write_response(result: WriteResult, *, status: int | None = None) -> JsonDict:
    code = status if status is not None else (201 if result.created else 200)
    return {
        "resource": result.resource,
        "response": {
            "status": status_line(code),
            "location": result.location,
            "etag": result.etag,
            "lastModified": format_instant(result.last_modified),
        },
    }


def read_response(stored: StoredResource) -> JsonDict:
    return {
        "resource": stored.resource,
        "response": {
            "status": status_line(200),
            "etag": stored.etag,
            "lastModified": format_instant(stored.last_modified),
        },
    }


def error_response(exc: FhirStoreError) -> JsonDict:
    return {"response": {"status": status_line(exc.http_status), "outcome": exc.operation_outcome()}}


def searchset(result: SearchResult) -> JsonDict:
    """A minimal ``searchset`` Bundle (no links or fullUrls: those need the HTTP base)."""
    bundle: JsonDict = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    bundle["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in result.resources] + [
        {"resource": r, "search": {"mode": "include"}} for r in result.included
    ]
    return bundle


def history_bundle(versions: list[StoredResource]) -> JsonDict:
    entries = []
    for stored in versions:
        entry: JsonDict = {
            "request": {"method": stored.method, "url": f"{stored.resource_type}/{stored.id}"},
            "response": {
                "status": status_line(
                    204 if stored.deleted else (201 if stored.method == METHOD_CREATE else 200)
                ),
                "etag": stored.etag,
                "lastModified": format_instant(stored.last_modified),
            },
        }
        if not stored.deleted:
            entry["resource"] = stored.resource
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}


def _read_entry(uow: UnitOfWork, entry: BundleEntry) -> JsonDict:
    if entry.resource_id is None:
        params = parse_query_string(entry.query or "")
        return {
            "resource": searchset(uow.search(entry.resource_type, params)),
            "response": {"status": status_line(200)},
        }
    if entry.history and entry.version_id is None:
        return {
            "resource": history_bundle(uow.history(entry.resource_type, entry.resource_id)),
            "response": {"status": status_line(200)},
        }
    if entry.version_id is not None:
        return read_response(uow.vread(entry.resource_type, entry.resource_id, entry.version_id))
    return read_response(uow.read(entry.resource_type, entry.resource_id))


def execute_entry(uow: UnitOfWork, entry: BundleEntry) -> JsonDict:
    """Apply one entry on its own (batch semantics; no reference rewriting)."""
    if entry.method == "DELETE":
        assert entry.resource_id is not None
        uow.delete(entry.resource_type, entry.resource_id)
        return {"response": {"status": status_line(204)}}
    if entry.method == "POST":
        assert entry.resource is not None
        return write_response(create_in(uow, entry.resource, if_none_exist=entry.if_none_exist))
    if entry.method == "PUT":
        assert entry.resource is not None
        if entry.resource_id is not None:
            result = update_in(
                uow, entry.resource_type, entry.resource_id, entry.resource, if_match=entry.if_match
            )
        else:
            result = conditional_update_in(
                uow, entry.resource_type, entry.query or "", entry.resource, if_match=entry.if_match
            )
        return write_response(result)
    return _read_entry(uow, entry)


def _fail(index: int, exc: FhirStoreError) -> TransactionFailed:
    return TransactionFailed(index, exc)


def parse_transaction(bundle: Any, *, max_entries: int | None) -> list[BundleEntry]:
    raw_entries = bundle_entries(bundle, "transaction")
    if max_entries is not None and len(raw_entries) > max_entries:
        raise BundleTooLarge(len(raw_entries), max_entries)
    parsed: list[BundleEntry] = []
    for index, raw in enumerate(raw_entries):
        try:
            parsed.append(parse_entry(index, raw))
        except FhirStoreError as exc:
            raise _fail(index, exc) from None
    full_urls = [e.full_url for e in parsed if e.full_url]
    if len(full_urls) != len(set(full_urls)):
        duplicate = next(e for e in parsed if e.full_url and full_urls.count(e.full_url) > 1)
        index = max(e.index for e in parsed if e.full_url == duplicate.full_url)
        raise _fail(
            index, InvalidBundle("duplicate fullUrl in the bundle", expression=f"Bundle.entry[{index}]")
        )
    return parsed


def run_transaction(uow: UnitOfWork, bundle: Any, *, max_entries: int | None = None) -> JsonDict:
    """Apply a transaction Bundle through ``uow`` (the caller owns the database transaction and rolls
    back when this raises)."""
    entries = parse_transaction(bundle, max_entries=max_entries)
    ordered = processing_order(entries)
    responses: dict[int, JsonDict] = {}
    targets: dict[tuple[str, str], int] = {}
    mapping: dict[str, str] = {}
    found: dict[int, WriteResult] = {}
    ids: dict[int, str] = {}

    def claim(entry: BundleEntry, rid: str) -> None:
        key = (entry.resource_type, rid)
        if key in targets:
            raise _fail(
                entry.index,
                ResourceConflict(f"two transaction entries write {entry.resource_type}/{rid}"),
            )
        targets[key] = entry.index

    current_index = -1
    try:
        # 2. deletes
        for entry in ordered:
            if entry.method == "DELETE":
                current_index = entry.index
                assert entry.resource_id is not None
                claim(entry, entry.resource_id)
                uow.delete(entry.resource_type, entry.resource_id)
                responses[entry.index] = {"response": {"status": status_line(204)}}
        # 3. identities
        for entry in ordered:
            current_index = entry.index
            if entry.method == "POST":
                assert entry.resource is not None
                if entry.if_none_exist is not None:
                    matched = uow.find(entry.resource_type, entry.if_none_exist, context="ifNoneExist")
                    if len(matched) > 1:
                        raise MultipleMatches(entry.resource_type, "conditional create")
                    if matched:
                        found[entry.index] = _found(uow.read(entry.resource_type, matched[0]))
                        ids[entry.index] = matched[0]
                if entry.index not in ids:
                    ids[entry.index] = uow.new_id()
                    claim(entry, ids[entry.index])
            elif entry.method == "PUT":
                assert entry.resource is not None
                if entry.resource_id is not None:
                    ids[entry.index] = entry.resource_id
                else:
                    ids[entry.index] = resolve_conditional_update(
                        uow, entry.resource_type, entry.query or "", entry.resource
                    )
                claim(entry, ids[entry.index])
            else:
                continue
            if entry.full_url:
                mapping[entry.full_url] = f"{entry.resource_type}/{ids[entry.index]}"

        def resolve(reference: str) -> str:
            if reference in mapping:
                return mapping[reference]
            if reference.startswith("urn:"):
                raise InvalidResource(
                    "reference to a fullUrl that is not in the bundle", expression="reference"
                )
            match = re.match(r"^([A-Z][A-Za-z]+)\?(.+)$", reference)
            if match and match[1] in SEARCH_PARAMETERS:
                hits = uow.find(match[1], match[2], context="conditional reference")
                if len(hits) > 1:
                    raise MultipleMatches(match[1], "conditional reference")
                if not hits:
                    raise InvalidResource("conditional reference matched no resource", expression="reference")
                return f"{match[1]}/{hits[0]}"
            return reference

        # 4-5. rewrite references, then creates and updates
        for entry in ordered:
            current_index = entry.index
            if entry.method not in ("POST", "PUT"):
                continue
            if entry.index in found:
                responses[entry.index] = write_response(found[entry.index])
                continue
            assert entry.resource is not None
            rid = ids[entry.index]
            body = rewrite_references(entry.resource, resolve)
            body["id"] = rid
            method = METHOD_CREATE if entry.method == "POST" else METHOD_UPDATE
            result = uow.put(entry.resource_type, rid, body, if_match=entry.if_match, method=method)
            responses[entry.index] = write_response(result)
        # 5. reads
        for entry in ordered:
            current_index = entry.index
            if entry.method in ("GET", "HEAD"):
                responses[entry.index] = _read_entry(uow, entry)
    except TransactionFailed:
        raise
    except (StoreUnavailable, Throttled):
        raise
    except FhirStoreError as exc:
        raise _fail(current_index, exc) from None
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [responses[index] for index in range(len(entries))],
    }


def _entry_runner(entry: BundleEntry) -> Callable[[UnitOfWork], JsonDict]:
    return lambda uow: execute_entry(uow, entry)


def run_batch(bundle: Any, execute: Callable[[Callable[[UnitOfWork], JsonDict], int], JsonDict]) -> JsonDict:
    """Apply a batch Bundle; ``execute(fn, index)`` runs ``fn`` (entry ``index``) in its own database
    transaction."""
    raw_entries = bundle_entries(bundle, "batch")
    responses: dict[int, JsonDict] = {}
    parsed: list[BundleEntry] = []
    for index, raw in enumerate(raw_entries):
        try:
            parsed.append(parse_entry(index, raw))
        except FhirStoreError as exc:
            responses[index] = error_response(exc)
    for entry in processing_order(parsed):
        try:
            responses[entry.index] = execute(_entry_runner(entry), entry.index)
        except FhirStoreError as exc:
            responses[entry.index] = error_response(exc)
    return {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [responses[index] for index in range(len(raw_entries))],
    }
