"""Write-back to a FHIR server through the repository port (:class:`~shared.fhirstore.ports.FhirRepository`).

An event becomes reads, then at most one ``ifMatch`` transaction; unchanged updates are dropped, so a
re-applied event writes nothing (the second line of defence behind the idempotency guard). Partial
updates, merges, echoes and error classes: ``docs/fhir-writeback.md``.
"""

from __future__ import annotations

import functools
import hashlib
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
from shared.canonical.model import ClinicalEvent, EventKind, Identifier
from shared.fhir import profiles
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
from shared.fhirstore.ports import FhirRepository, StoredResource, weak_etag
from shared.mapping.fhir_out import FhirOutError, identifier_query, to_entries
from shared.mapping.fhir_out.merge import MERGED_TYPES, merge_update, retire

T = TypeVar("T")
JsonDict = dict[str, Any]
_VOLATILE_META = ("versionId", "lastUpdated")
#: Resource types that refer to a patient, and their search parameter for it: what a merge re-points.
PATIENT_REFERRERS: tuple[tuple[str, str], ...] = (
    ("Encounter", "patient"),
    ("Observation", "patient"),
    ("DiagnosticReport", "patient"),
    ("ServiceRequest", "patient"),
    ("AllergyIntolerance", "patient"),
    ("Condition", "patient"),
    ("MedicationRequest", "patient"),
    ("DocumentReference", "patient"),
)
#: More records than this carrying one merged-away identifier is not a merge this engine guesses at.
_MAX_RETIRED = 5
#: Hops followed from a retired Patient to its survivor (a chain of merges).
_MAX_HOPS = 5


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


def _replaced_by(patient: JsonDict) -> str | None:
    """The id of the record a retired Patient (``active`` false) was replaced by, if it names one."""
    if patient.get("active") is not False:
        return None
    for link in patient.get("link") or []:
        ref = str((link.get("other") or {}).get("reference") or "")
        if link.get("type") == "replaced-by" and ref.startswith("Patient/"):
            return ref.split("/")[1]
    return None


def _patient_key(event: ClinicalEvent) -> Identifier | None:
    """The identifier fhir_out keys the event's Patient on (NHS number, else the first local one)."""
    p = event.patient
    if p.nhs_number is not None:
        return Identifier(system=profiles.NHS_NUMBER_SYSTEM, value=p.nhs_number.value)
    return p.identifiers[0] if p.identifiers else None


def _name_retired(survivor: JsonDict, retiring: list[StoredResource]) -> JsonDict:
    """The survivor's ``replaces`` links that name a retired record by identifier also refer to it."""
    links = []
    for link in survivor.get("link") or []:
        ident = (link.get("other") or {}).get("identifier") or {}
        for old in retiring:
            held = {(i.get("system"), i.get("value")) for i in old.resource.get("identifier") or []}
            if link.get("type") == "replaces" and (ident.get("system"), ident.get("value")) in held:
                link = dict(link, other=dict(link["other"], reference=f"Patient/{old.id}"))
                break
        links.append(link)
    return dict(survivor, link=links) if links else survivor


class FhirDownstream:
    """:class:`~shared.backbone.writeback.Downstream` over a FHIR repository (embedded or REST)."""

    def __init__(
        self,
        repository: FhirRepository,
        *,
        name: str = "fhir",
        origin_store: bool = False,
        merge_page_size: int = 100,
        merge_max_pages: int = 50,
    ) -> None:
        if merge_page_size < 1 or merge_max_pages < 1:
            raise ValueError("merge paging needs at least one resource per page and one page")
        self.repository = repository
        self.name = name
        self.origin_store = origin_store
        self.merge_page_size = merge_page_size
        self.merge_max_pages = merge_max_pages

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
        # What is sent, for the audit (digest in the record, body in the payload store): the mapped entries
        # before resolution.
        payload = json.dumps(entries, sort_keys=True).encode()
        payload_sha256 = hashlib.sha256(payload).hexdigest()
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
                rid = current.id
                if resource_type == "Patient":
                    rid = self._survivor_id(current.resource)
                resolved[entry["fullUrl"]] = f"{resource_type}/{rid}"
            targets.append((entry, current))
        merging = event.kind is EventKind.PATIENT_MERGE and bool(event.merged_identifiers)
        survivor = next((t for t in targets if t[0]["resource"]["resourceType"] == "Patient"), None)
        retiring: list[StoredResource] = []
        if merging and survivor is not None:
            retiring = self._merged_away(event.merged_identifiers, survivor[1])

        # One transaction for every write: the creates still missing (ifNoneExist is checked again inside
        # it, so a concurrent creator is found, not duplicated) and the updates that change something.
        writes: list[JsonDict] = []
        for entry in creates:
            body = rewrite_references(entry["resource"], lambda ref: resolved.get(ref, ref))
            writes.append({"fullUrl": entry["fullUrl"], "resource": body, "request": dict(entry["request"])})
        unchanged = 0
        partial = event.provenance.source_format == "hl7v2"  # FHIR updates are whole replacements
        for entry, current in targets:
            body = rewrite_references(entry["resource"], lambda ref: resolved.get(ref, ref))
            request: JsonDict = {"method": "PUT", "url": entry["request"]["url"]}
            if current is not None and partial and body["resourceType"] in MERGED_TYPES:
                body = merge_update(event, current.resource, body)
            if survivor is not None and entry is survivor[0] and retiring:
                body = _name_retired(body, retiring)
            if current is not None:
                if _comparable(dict(body, id=current.id)) == _comparable(current.resource):
                    unchanged += 1
                    continue
                request["ifMatch"] = current.etag
            writes.append({"fullUrl": entry["fullUrl"], "resource": body, "request": request})
        if survivor is not None and retiring:
            entry, current = survivor
            reference = f"Patient/{current.id}" if current is not None else str(entry["fullUrl"])
            other: JsonDict = {"reference": reference, "type": "Patient"}
            key = _patient_key(event)
            if key is not None:
                other["identifier"] = {"system": key.system, "value": key.value}
            for old in retiring:
                body = retire(old.resource, other)
                if _comparable(dict(body, id=old.id)) == _comparable(old.resource):
                    unchanged += 1
                    continue
                url = f"Patient/{old.id}"
                writes.append(
                    {
                        "fullUrl": url,
                        "resource": body,
                        "request": {"method": "PUT", "url": url, "ifMatch": old.etag},
                    }
                )
        in_bundle = {w["fullUrl"] for w in writes}
        for write in writes:
            if any(r.startswith("urn:") and r not in in_bundle for r in iter_references(write["resource"])):
                raise WriteBackUnmappable(self.name, "an update references an entry that is not in the event")

        created = updated = 0
        locations: list[str] = []
        survivor_id = survivor[1].id if survivor is not None and survivor[1] is not None else None
        reply: bytes | None = None  # the transaction-response Bundle, for the audit payload store
        if writes:
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": writes}
            response = self._call(lambda: self.repository.transaction(bundle))
            reply = json.dumps(response, sort_keys=True).encode()
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
                    if survivor is not None and write["fullUrl"] == survivor[0]["fullUrl"]:
                        survivor_id = str(answer["location"]).split("/")[1]
        parts = [f"{n} {what}" for n, what in ((created, "created"), (updated, "updated")) if n]
        parts += [f"{n} {what}" for n, what in ((found, "found"), (unchanged, "unchanged")) if n]
        summary = ", ".join(parts) or "nothing to write"
        if locations:
            summary = f"{summary}: {' '.join(locations[:8])}"
        details: dict[str, int] = {
            "created": created,
            "updated": updated,
            "found": found,
            "unchanged": unchanged,
        }
        if merging:
            repointed = 0
            if survivor_id is not None:
                for old in retiring:
                    repointed += self._repoint(old.id, survivor_id)
            details.update(retired=len(retiring), repointed=repointed)
            if retiring:
                summary = f"{summary}; merge: {len(retiring)} retired, {repointed} re-pointed"
            else:
                summary = f"{summary}; merge: merged-away record not found, nothing to retire"
        return DownstreamResponse(
            status="201" if created else "200",
            summary=summary,
            details=details,
            payload_sha256=payload_sha256,
            payload=payload,
            reply=reply,
        )

    # -- merges ----------------------------------------------------------------------------------------

    def _merged_away(
        self, identifiers: tuple[Identifier, ...], survivor: StoredResource | None
    ) -> list[StoredResource]:
        """The stored Patients carrying an identifier of the merged-away record (MRG-1), survivor aside."""
        ids: list[str] = []
        for ident in identifiers:
            params = parse_qsl(identifier_query(ident.system, ident.value), keep_blank_values=True)
            page = self._call(
                functools.partial(self.repository.search, "Patient", params, count=_MAX_RETIRED + 1)
            )
            for res in page.resources:
                rid = str(res["id"])
                if (survivor is None or rid != survivor.id) and rid not in ids:
                    ids.append(rid)
        if len(ids) > _MAX_RETIRED:
            raise DownstreamRejected(
                self.name, "merge names more records than one merge retires", response="412"
            )
        return [r for r in (self._read("Patient", rid) for rid in ids) if r is not None]

    def _repoint(self, retired_id: str, survivor_id: str) -> int:
        """Re-point what refers to the retired Patient to the survivor: searched ``merge_page_size`` at a
        time, each page one transaction (every PUT with ``ifMatch``); after ``merge_max_pages``
        transactions a retry, so one delivery's work stays bounded (the redelivery moves the rest)."""
        old, new = f"Patient/{retired_id}", f"Patient/{survivor_id}"

        def resolve(ref: str) -> str:
            return new if ref == old or ref.endswith(f"/{old}") else ref

        moved = transactions = 0
        for resource_type, param in PATIENT_REFERRERS:
            skipped = 0  # found by the search, but not by a reference this rewrites: paged past
            while True:
                page = self._call(
                    functools.partial(
                        self.repository.search,
                        resource_type,
                        [(param, old)],
                        count=self.merge_page_size,
                        offset=skipped,
                        sort=["_id"],
                    )
                )
                writes: list[JsonDict] = []
                for res in page.resources:
                    body = rewrite_references(res, resolve)
                    if body == res:
                        skipped += 1
                        continue
                    url = f"{resource_type}/{res['id']}"
                    etag = weak_etag(str(res["meta"]["versionId"]))
                    request = {"method": "PUT", "url": url, "ifMatch": etag}
                    writes.append({"fullUrl": url, "resource": _comparable(body), "request": request})
                if writes:
                    if transactions >= self.merge_max_pages:
                        raise DownstreamRetry(self.name, "merge: more to re-point, continued on redelivery")
                    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": writes}
                    self._call(functools.partial(self.repository.transaction, bundle))
                    transactions += 1
                    moved += len(writes)
                if len(page.resources) < self.merge_page_size:
                    break
        return moved

    def _survivor_id(self, patient: JsonDict) -> str:
        """The id to refer to for ``patient``: its own, or - for a retired record (``active`` false) - the
        record it was replaced by (followed for a chain of merges)."""
        current = patient
        for _ in range(_MAX_HOPS):
            target = _replaced_by(current)
            if target is None:
                break
            nxt = self._read("Patient", target)
            if nxt is None:
                break
            current = nxt.resource
        return str(current["id"])

    def _match(self, resource_type: str, query: str) -> str | None:
        """The id of the one resource matching a conditional create's criteria (``None``: no match)."""
        params = parse_qsl(query, keep_blank_values=True)
        page = self._call(lambda: self.repository.search(resource_type, params, count=2))
        if len(page.resources) > 1:
            raise DownstreamRejected(self.name, "conditional create matches several", response="412")
        if not page.resources:
            return None
        if resource_type == "Patient":
            return self._survivor_id(page.resources[0])
        return str(page.resources[0]["id"])

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
