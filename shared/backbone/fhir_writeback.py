"""Write-back to a FHIR server through the repository port (:class:`~shared.fhirstore.ports.FhirRepository`).

The event becomes FHIR R4 entries with :func:`shared.mapping.fhir_out.to_entries` (deterministic ids,
conditional requests), applied in two steps:

1. **Conditional creates** (``POST`` with ``ifNoneExist``: the context Patient, Practitioners,
   Organizations, Locations) one by one through ``create(..., if_none_exist=...)`` in dependency order;
   each answers the real id (created, or found), which replaces the entry's ``urn:uuid`` in every
   reference. Reference data is created once and never overwritten by an event.
2. **Updates** (``PUT Type/id`` and conditional ``PUT Type?criteria``) in one ``transaction`` Bundle: for
   each, the current version is read first; an update whose content equals the stored resource (``meta``
   version/lastUpdated aside) is **dropped** - re-applying an event changes nothing - and the others
   carry ``ifMatch`` with the version read, so a concurrent writer makes the transaction fail with 412
   (retried) instead of being overwritten silently.

Step 2 is the second line of defence behind the idempotency guard: if the process dies after the FHIR
write but before the guard stores ``COMPLETED``, the redelivery re-runs the effect, finds every resource
already in the state the event describes, and writes nothing. So "exactly one effect" holds for the FHIR
store even in the crash window the guard alone cannot close.

**Echoes**: when the target is the platform's own repository (``origin_store=True``: the embedded
default, where the FHIR API writes too), an event that came *from* a FHIR write is not written again - its
effect is already in the store - but its key is still completed, so the HL7 v2 version of the same event
that arrives later is answered as a duplicate instead of creating a second Encounter.

Errors (see :mod:`shared.backbone.errors`): ``StoreUnavailable`` / ``Throttled`` / ``UpstreamError``
(401/403: credentials - park until fixed rather than dead-letter everything) -> unavailable;
``VersionConflict`` / ``ResourceConflict`` (also inside a failed transaction) -> retry; other FHIR errors
(invalid resource, multiple matches...) -> rejected; a mapping failure -> unmappable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from shared.backbone.errors import (
    DownstreamRejected,
    DownstreamRetry,
    DownstreamUnavailable,
    WriteBackUnmappable,
)
from shared.backbone.writeback import DownstreamResponse
from shared.canonical.model import ClinicalEvent
from shared.fhir.json import dumps as fhir_dumps
from shared.fhirstore.bundle import iter_references, rewrite_references
from shared.fhirstore.errors import (
    FhirStoreError,
    ResourceConflict,
    ResourceGone,
    ResourceNotFound,
    StoreUnavailable,
    Throttled,
    TransactionFailed,
    UpstreamError,
    VersionConflict,
)
from shared.fhirstore.ports import FhirRepository, StoredResource, WriteResult
from shared.mapping.fhir_out import FhirOutError, to_entries

T = TypeVar("T")
JsonDict = dict[str, Any]
_VOLATILE_META = ("versionId", "lastUpdated")


def _code(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else type(exc).__name__


def _plain(node: Any) -> Any:
    """JSON data the repository can store (decimals become JSON numbers)."""
    return json.loads(fhir_dumps(node))


def _comparable(resource: JsonDict) -> JsonDict:
    """``resource`` without server-managed meta (version, last updated)."""
    body = dict(resource)
    meta = {k: v for k, v in (body.get("meta") or {}).items() if k not in _VOLATILE_META}
    if meta:
        body["meta"] = meta
    else:
        body.pop("meta", None)
    return body


class FhirDownstream:
    """:class:`~shared.backbone.writeback.Downstream` over a FHIR repository (embedded or REST)."""

    def __init__(self, repository: FhirRepository, *, name: str = "fhir", origin_store: bool = False) -> None:
        self.repository = repository
        self.name = name
        self.origin_store = origin_store

    def skip_reason(self, event: ClinicalEvent) -> str | None:
        return None

    def close(self) -> None:
        self.repository.close()

    # -- the write -----------------------------------------------------------------------------------

    def apply(self, event: ClinicalEvent) -> DownstreamResponse:
        if self.origin_store and event.provenance.source_format == "fhir":
            # The event came from a write to this very store (the FHIR API): its effect is already there.
            # Completing the key without writing makes the HL7 v2 version of the same event a duplicate.
            return DownstreamResponse("200", "written through the FHIR API: already in this store")
        try:
            entries = _plain(to_entries(event).value)
        except FhirOutError as exc:
            raise WriteBackUnmappable(self.name, f"event cannot be mapped to FHIR ({exc.code})") from None
        resolved: dict[str, str] = {}
        created = found = 0
        posts = [e for e in entries if e["request"]["method"] == "POST"]
        puts = [e for e in entries if e["request"]["method"] == "PUT"]
        for entry in self._dependency_order(posts):
            body = rewrite_references(entry["resource"], lambda ref: resolved.get(ref, ref))
            query = entry["request"].get("ifNoneExist")
            result = self._create(body, query)
            resolved[entry["fullUrl"]] = f"{result.resource_type}/{result.id}"
            created += int(result.created)
            found += int(not result.created)

        # Identities of the updates first (a conditional PUT's match, an existing id), so that references
        # between updates resolve whether or not an entry turns out to be unchanged and is dropped.
        targets: list[tuple[JsonDict, str, StoredResource | None]] = []
        for entry in puts:
            url = str(entry["request"]["url"])
            if "?" in url:
                resource_type, resource_id = url.partition("?")[0], None
            else:
                resource_type, _, resource_id = url.partition("/")
            current = self._current(resource_type, url, resource_id)
            if current is not None:
                resolved[entry["fullUrl"]] = f"{resource_type}/{current.id}"
            targets.append((entry, resource_type, current))

        updates: list[JsonDict] = []
        unchanged = 0
        for entry, _resource_type, current in targets:
            body = rewrite_references(entry["resource"], lambda ref: resolved.get(ref, ref))
            request: JsonDict = {"method": "PUT", "url": entry["request"]["url"]}
            if current is not None:
                if _comparable(dict(body, id=current.id)) == _comparable(current.resource):
                    unchanged += 1
                    continue
                request["ifMatch"] = current.etag
            updates.append({"fullUrl": entry["fullUrl"], "resource": body, "request": request})
        in_bundle = {u["fullUrl"] for u in updates}
        for update in updates:
            if any(r.startswith("urn:") and r not in in_bundle for r in iter_references(update["resource"])):
                raise WriteBackUnmappable(self.name, "an update references an entry that is not in the event")

        updated = 0
        locations: list[str] = []
        status = "200" if not created else "201"
        if updates:
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": updates}
            response = self._call(lambda: self.repository.transaction(bundle))
            for item in response.get("entry", []):
                answer = item.get("response", {})
                if str(answer.get("status", "")).startswith("201"):
                    created += 1
                    status = "201"
                else:
                    updated += 1
                if answer.get("location"):
                    locations.append(str(answer["location"]))
        parts = [f"{n} {what}" for n, what in ((created, "created"), (updated, "updated")) if n]
        parts += [f"{n} {what}" for n, what in ((found, "found"), (unchanged, "unchanged")) if n]
        summary = ", ".join(parts) or "nothing to write"
        if locations:
            summary = f"{summary}: {' '.join(locations[:8])}"
        return DownstreamResponse(
            status=status if (created or updated) else "200",
            summary=summary,
            details={"created": created, "updated": updated, "found": found, "unchanged": unchanged},
        )

    def _create(self, body: JsonDict, query: str | None) -> WriteResult:
        return self._call(lambda: self.repository.create(body, if_none_exist=query))

    def _current(self, resource_type: str, url: str, resource_id: str | None) -> StoredResource | None:
        if resource_id is None:
            params = parse_qsl(url.partition("?")[2], keep_blank_values=True)
            page = self._call(lambda: self.repository.search(resource_type, params, count=2))
            if not page.resources:
                return None
            if len(page.resources) > 1:
                raise DownstreamRejected(
                    self.name, "conditional update matches several resources", response="412"
                )
            match = page.resources[0]
            return self._read(resource_type, str(match["id"]))
        return self._read(resource_type, resource_id)

    def _read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        try:
            return self._call(lambda: self.repository.read(resource_type, resource_id))
        except DownstreamRejected as exc:
            if exc.response in ("404", "410"):
                return None  # absent, or deleted: the update re-creates it
            raise

    @staticmethod
    def _dependency_order(entries: list[JsonDict]) -> list[JsonDict]:
        pending = {e["fullUrl"]: e for e in entries}
        ordered: list[JsonDict] = []
        while pending:
            ready = [
                e
                for url, e in pending.items()
                if not any(ref in pending and ref != url for ref in iter_references(e["resource"]))
            ]
            if not ready:
                raise WriteBackUnmappable("fhir", "conditional creates reference each other in a cycle")
            for entry in ready:
                ordered.append(entry)
                del pending[entry["fullUrl"]]
        return ordered

    # -- error taxonomy --------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except FhirStoreError as exc:
            raise self._classify(exc) from None

    def _classify(self, exc: FhirStoreError) -> Exception:
        status = str(exc.http_status)
        cause = exc.cause if isinstance(exc, TransactionFailed) else exc
        if isinstance(cause, StoreUnavailable | Throttled | UpstreamError):
            return DownstreamUnavailable(self.name, _code(cause), response=str(cause.http_status))
        if isinstance(cause, VersionConflict | ResourceConflict):
            return DownstreamRetry(self.name, f"{_code(cause)}: a concurrent write", response=status)
        if isinstance(cause, ResourceNotFound | ResourceGone):
            return DownstreamRejected(self.name, _code(cause), response=str(cause.http_status))
        return DownstreamRejected(self.name, _code(cause), response=status)
