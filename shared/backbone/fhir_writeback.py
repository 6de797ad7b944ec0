"""Write-back to a FHIR server through the repository port (:class:`~shared.fhirstore.ports.FhirRepository`).

The event becomes FHIR R4 entries with :func:`shared.mapping.fhir_out.to_entries` (deterministic ids,
conditional requests), applied as **reads, then at most one transaction**:

1. **Reads.** Each conditional create (``POST`` with ``ifNoneExist``: the context Patient, Practitioners,
   Organizations, Locations - reference data is created once, never overwritten by an event) is searched
   for; a match gives the real id, which replaces the entry's ``urn:uuid`` in every reference. Each
   update target (``PUT Type/id``, conditional ``PUT Type?criteria``) is read.
2. **One transaction Bundle** with what is left to write: the creates that found no match (their
   ``ifNoneExist`` is evaluated again inside the transaction, so a concurrent creator is found, not
   duplicated) and the updates whose content differs from the stored resource (``meta`` version /
   lastUpdated aside), each carrying ``ifMatch`` with the version read - a concurrent writer makes the
   transaction fail with 412 (retried) instead of being overwritten. Unchanged updates are **dropped**:
   re-applying an event writes nothing; nothing to write, no transaction.

Dropping unchanged updates is the second line of defence behind the idempotency guard: if the process
dies after the FHIR write but before the guard stores ``COMPLETED``, the redelivery re-runs the effect,
finds every resource already in the state the event describes, and writes nothing. So "exactly one
effect" holds for the FHIR store even in the crash window the guard alone cannot close.

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
from shared.fhirstore.ports import FhirRepository, StoredResource
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
        found = 0
        posts = [e for e in entries if e["request"]["method"] == "POST"]
        puts = [e for e in entries if e["request"]["method"] == "PUT"]
        # Reads first (no write transaction): which conditional creates already match, and the current
        # version of every update target. References to what exists are resolved to its real id.
        creates: list[JsonDict] = []
        for entry in posts:
            resource_type = str(entry["request"]["url"])
            query = entry["request"].get("ifNoneExist")
            existing = self._match(resource_type, query) if query else None
            if existing is None:
                creates.append(entry)
            else:
                resolved[entry["fullUrl"]] = f"{resource_type}/{existing}"
                found += 1
        targets: list[tuple[JsonDict, StoredResource | None]] = []
        for entry in puts:
            url = str(entry["request"]["url"])
            if "?" in url:
                resource_type, resource_id = url.partition("?")[0], None
            else:
                resource_type, _, resource_id = url.partition("/")
            current = self._current(resource_type, url, resource_id)
            if current is not None:
                resolved[entry["fullUrl"]] = f"{resource_type}/{current.id}"
            targets.append((entry, current))

        # One transaction for every write: the creates still missing (ifNoneExist is checked again inside
        # it, so a concurrent creator is found, not duplicated) and the updates that change something.
        writes: list[JsonDict] = []
        for entry in creates:
            body = rewrite_references(entry["resource"], lambda ref: resolved.get(ref, ref))
            writes.append({"fullUrl": entry["fullUrl"], "resource": body, "request": dict(entry["request"])})
        unchanged = 0
        for entry, current in targets:
            body = rewrite_references(entry["resource"], lambda ref: resolved.get(ref, ref))
            request: JsonDict = {"method": "PUT", "url": entry["request"]["url"]}
            if current is not None:
                if _comparable(dict(body, id=current.id)) == _comparable(current.resource):
                    unchanged += 1
                    continue
                request["ifMatch"] = current.etag
            writes.append({"fullUrl": entry["fullUrl"], "resource": body, "request": request})
        in_bundle = {w["fullUrl"] for w in writes}
        for write in writes:
            if any(r.startswith("urn:") and r not in in_bundle for r in iter_references(write["resource"])):
                raise WriteBackUnmappable(self.name, "an update references an entry that is not in the event")

        created = updated = 0
        locations: list[str] = []
        if writes:
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": writes}
            response = self._call(lambda: self.repository.transaction(bundle))
            for write, item in zip(writes, response.get("entry", []), strict=False):
                answer = item.get("response", {})
                if str(answer.get("status", "")).startswith("201"):
                    created += 1
                elif write["request"]["method"] == "POST":
                    found += 1
                    continue
                else:
                    updated += 1
                if write["request"]["method"] == "PUT" and answer.get("location"):
                    locations.append(str(answer["location"]))
        parts = [f"{n} {what}" for n, what in ((created, "created"), (updated, "updated")) if n]
        parts += [f"{n} {what}" for n, what in ((found, "found"), (unchanged, "unchanged")) if n]
        summary = ", ".join(parts) or "nothing to write"
        if locations:
            summary = f"{summary}: {' '.join(locations[:8])}"
        return DownstreamResponse(
            status="201" if created else "200",
            summary=summary,
            details={"created": created, "updated": updated, "found": found, "unchanged": unchanged},
        )

    def _match(self, resource_type: str, query: str) -> str | None:
        """The id of the one resource matching a conditional create's criteria (``None``: no match)."""
        params = parse_qsl(query, keep_blank_values=True)
        page = self._call(lambda: self.repository.search(resource_type, params, count=2))
        if len(page.resources) > 1:
            raise DownstreamRejected(self.name, "conditional create matches several", response="412")
        return str(page.resources[0]["id"]) if page.resources else None

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
