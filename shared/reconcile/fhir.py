"""The FHIR destination's side: what the engine wrote there, and whether it is still there as written.

:class:`SentRecorder` wraps the FHIR repository the write-back uses: after each committed transaction it
records, per resource written (table ``reconcile``, partition ``sent-<downstream>``, row = the reference),
the version the server assigned, a digest per top-level element of the content as stored, and the
correlation id of the message being written back. Digests only: no values.

:func:`check_destination` reads those resources back (by id, at most ``max_reads`` per run, a
deterministic ``sample_percent`` of them) and compares identities and element digests:

* gone (404 / 410) -> ``missing-at-destination`` (replay);
* an element we wrote that now has another digest, or is absent -> ``content-mismatch`` naming the
  elements (chase downstream). A newer version with the same content (a no-op write) is not a variance.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from shared.errors import TieError
from shared.fhirstore.errors import ResourceGone, ResourceNotFound
from shared.fhirstore.ports import FhirRepository, JsonDict, SearchResult, StoredResource, WriteResult
from shared.observability.correlation import get_correlation_id
from shared.reconcile.model import Action, Category, Interface, Item
from shared.reconcile.scan import item_id
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_RECONCILE
from shared.storage.ports import RecordStore

_log = logging.getLogger("tie.reconcile")

_SKIP_ELEMENTS: Final = frozenset({"resourceType", "id", "meta", "text"})


def element_digests(resource: Mapping[str, Any]) -> dict[str, str]:
    """A short digest per top-level element (``id``, ``meta`` and narrative aside)."""
    return {
        key: hashlib.sha256(
            json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()[:16]
        for key, value in sorted(resource.items())
        if key not in _SKIP_ELEMENTS
    }


def identifier_systems(resource: Mapping[str, Any]) -> list[str]:
    """The identifier systems a resource carries (namespaces, not values)."""
    found = resource.get("identifier")
    if not isinstance(found, list):
        return []
    return sorted({str(i["system"]) for i in found if isinstance(i, dict) and i.get("system")})


def sent_partition(downstream: str) -> str:
    return safe_key(f"sent-{downstream}")


def _version(resource: Mapping[str, Any]) -> str | None:
    meta = resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return str(version) if version is not None else None


class SentRecorder:
    """A :class:`FhirRepository` that records what committed transactions wrote (see module docs).

    Recording never fails the write (it is already committed): a record that cannot be stored is logged
    and the resource is simply not checked."""

    def __init__(
        self,
        inner: FhirRepository,
        records: RecordStore,
        *,
        downstream: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.inner = inner
        self._records = records
        self._partition = sent_partition(downstream)
        self._clock = clock or (lambda: datetime.now(UTC))

    def transaction(self, bundle: JsonDict) -> JsonDict:
        response = self.inner.transaction(bundle)
        self._record(bundle, response)
        return response

    def _record(self, bundle: JsonDict, response: JsonDict) -> None:
        from shared.reconcile.lineage import SOURCES

        at = self._clock().isoformat()
        correlation_id = get_correlation_id()
        lineage = SOURCES.get() or {}
        requests = bundle.get("entry") or []
        for index, entry in enumerate(response.get("entry") or []):
            answer = entry.get("response") or {}
            location = str(answer.get("location") or "")
            parts = location.split("/")
            if len(parts) < 2 or not str(answer.get("status", "")).startswith(("200", "201")):
                continue
            rtype, rid = parts[0], parts[1]
            try:
                resource = entry.get("resource")
                if not isinstance(resource, dict):
                    resource = self.inner.read(rtype, rid).resource
                version = _version(resource) or (parts[3] if len(parts) > 3 else None)
                full_url = requests[index].get("fullUrl") if index < len(requests) else None
                sources = lineage.get(str(full_url)) if full_url else None
                self._records.upsert(
                    TABLE_RECONCILE,
                    self._partition,
                    safe_key(f"{rtype}/{rid}"),
                    {
                        "ref": f"{rtype}/{rid}",
                        "version": version,
                        "elements": element_digests(resource),
                        "systems": identifier_systems(resource),
                        "sources": dict(sources) if sources else None,
                        "correlation_id": correlation_id,
                        "at": at,
                    },
                )
            except (TieError, ResourceNotFound, ResourceGone) as exc:
                _log.warning(
                    "reconcile: sent record not stored", extra={"error_code": getattr(exc, "code", "")}
                )

    # -- delegation ------------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        return self.inner.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        return self.inner.vread(resource_type, resource_id, version_id)

    def create(self, resource: JsonDict, *, if_none_exist: str | None = None) -> WriteResult:
        return self.inner.create(resource, if_none_exist=if_none_exist)

    def update(
        self, resource_type: str, resource_id: str, resource: JsonDict, *, if_match: str | None = None
    ) -> WriteResult:
        return self.inner.update(resource_type, resource_id, resource, if_match=if_match)

    def conditional_update(
        self, resource_type: str, query: str, resource: JsonDict, *, if_match: str | None = None
    ) -> WriteResult:
        return self.inner.conditional_update(resource_type, query, resource, if_match=if_match)

    def delete(self, resource_type: str, resource_id: str) -> None:
        self.inner.delete(resource_type, resource_id)

    def history(
        self,
        resource_type: str,
        resource_id: str | None = None,
        *,
        count: int | None = None,
        since: datetime | None = None,
    ) -> list[StoredResource]:
        return self.inner.history(resource_type, resource_id, count=count, since=since)

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
        return self.inner.search(
            resource_type, params, count=count, offset=offset, sort=sort, include=include, strict=strict
        )

    def batch(self, bundle: JsonDict) -> JsonDict:
        return self.inner.batch(bundle)

    def capabilities(self) -> JsonDict:
        return self.inner.capabilities()

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True, slots=True)
class Sent:
    ref: str
    version: str | None
    elements: Mapping[str, str]
    correlation_id: str | None
    at: datetime
    systems: tuple[str, ...] = ()
    #: Top-level element -> the canonical fields it was mapped from (sampled write-backs only).
    sources: Mapping[str, list[str]] | None = None


def sent_records(
    records: RecordStore, downstream: str, *, since: datetime | None = None, until: datetime | None = None
) -> Iterator[Sent]:
    for rec in records.query(TABLE_RECONCILE, sent_partition(downstream)):
        at = datetime.fromisoformat(str(rec.value["at"]))
        if (since is not None and at < since) or (until is not None and at >= until):
            continue
        corr = rec.value.get("correlation_id")
        yield Sent(
            str(rec.value["ref"]),
            str(rec.value["version"]) if rec.value.get("version") is not None else None,
            dict(rec.value.get("elements") or {}),
            str(corr) if corr else None,
            at,
            tuple(str(x) for x in rec.value.get("systems") or ()),
            rec.value.get("sources") or None,
        )


def _named(element: str, sources: Mapping[str, list[str]] | None) -> str:
    found = (sources or {}).get(element)
    return f"{element} (from {', '.join(found)})" if found else element


def sampled(ref: str, salt: str, percent: float) -> bool:
    if percent >= 100:
        return True
    bucket = int(hashlib.sha256(f"{salt}\x1f{ref}".encode()).hexdigest()[:8], 16) % 10_000
    return bucket < percent * 100


@dataclass(slots=True)
class DestinationResult:
    items: list[Item]
    checked: int
    skipped: int


def check_destination(
    records: RecordStore,
    destination: FhirRepository,
    *,
    downstream: str,
    since: datetime,
    until: datetime,
    now: datetime,
    sample_percent: float = 100.0,
    max_reads: int = 10_000,
    salt: str = "",
) -> DestinationResult:
    """Read back what was written to ``downstream`` in ``[since, until)`` (newest first, bounded)."""
    items: list[Item] = []
    checked = skipped = 0
    sent = sorted(
        sent_records(records, downstream, since=since, until=until), key=lambda s: s.at, reverse=True
    )
    for record in sent:
        if not sampled(record.ref, salt, sample_percent):
            continue
        if checked >= max_reads:
            skipped += 1
            continue
        checked += 1
        rtype, _, rid = record.ref.partition("/")
        iface = Interface("out", downstream, "fhir", rtype)
        age = max(0, int((now - record.at).total_seconds()))
        ids = {"resource": record.ref, "version": record.version or ""}
        try:
            current = destination.read(rtype, rid)
        except (ResourceNotFound, ResourceGone) as exc:
            items.append(
                Item(
                    iface,
                    Category.MISSING,
                    item_id(Category.MISSING, iface, f"{record.ref}\x1f{record.version}"),
                    record.correlation_id,
                    ids,
                    age,
                    Action.REPLAY,
                    f"not at the destination ({exc.code})",
                )
            )
            continue
        found = element_digests(current.resource)
        differing = sorted(k for k, digest in record.elements.items() if found.get(k) != digest)
        if differing:
            ids["destinationVersion"] = _version(current.resource) or ""
            items.append(
                Item(
                    iface,
                    Category.MISMATCH,
                    item_id(
                        Category.MISMATCH, iface, f"{record.ref}\x1f{record.version}\x1f{','.join(differing)}"
                    ),
                    record.correlation_id,
                    ids,
                    age,
                    Action.CHASE_DOWNSTREAM,
                    "elements differ from what was sent: "
                    + ", ".join(_named(d, record.sources) for d in differing),
                )
            )
    return DestinationResult(items, checked, skipped)


def check_unexpected(
    records: RecordStore,
    destination: FhirRepository,
    *,
    downstream: str,
    since: datetime,
    until: datetime,
    now: datetime,
    max_reads: int = 10_000,
) -> list[Item]:
    """Resources changed at the destination in ``[since, until)``, of a type the engine writes there,
    carrying an identifier system the engine writes for that type, that the engine never wrote (by id).
    Only for a destination other writers do not share with the engine (``TIE_WRITEBACK_FHIR_URL``)."""
    ours: set[str] = set()
    systems: dict[str, set[str]] = {}
    for sent in sent_records(records, downstream):
        ours.add(sent.ref)
        systems.setdefault(sent.ref.partition("/")[0], set()).update(sent.systems)
    items: list[Item] = []
    seen: set[str] = set()
    for rtype, wanted in sorted(systems.items()):
        if not wanted:
            continue
        for version in destination.history(rtype, since=since, count=max_reads):
            ref = f"{rtype}/{version.id}"
            if version.deleted or version.last_modified >= until or ref in ours or ref in seen:
                continue
            seen.add(ref)
            carried = set(identifier_systems(version.resource)) & wanted
            if not carried:
                continue
            iface = Interface("out", downstream, "fhir", rtype)
            items.append(
                Item(
                    iface,
                    Category.UNEXPECTED,
                    item_id(Category.UNEXPECTED, iface, ref),
                    None,
                    {"resource": ref, "version": version.version_id, "systems": " ".join(sorted(carried))},
                    max(0, int((now - version.last_modified).total_seconds())),
                    Action.INVESTIGATE,
                    "carries our identifier systems; never written by the engine",
                )
            )
    return items
