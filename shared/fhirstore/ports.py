"""The FHIR repository port: versioned FHIR R4 resources with search, conditional writes and bundles.

The HTTP API functions call this port; the embedded SQLite store and the AHDS adapter implement it with
one observable contract. The contract, and events committed with the write
(:class:`EventCommittingRepository`): ``docs/fhir-repository-port.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from shared.outbox.committed import CommittedBatch, CommittedOutbox
from shared.outbox.model import OutboxMessage

JsonDict = dict[str, Any]
R = TypeVar("R")

#: Interactions recorded in history entries (``Bundle.entry.request.method`` of a history Bundle).
METHOD_CREATE = "POST"
METHOD_UPDATE = "PUT"
METHOD_DELETE = "DELETE"


def format_instant(moment: datetime) -> str:
    """A FHIR ``instant`` in UTC with millisecond precision: ``2024-05-01T09:30:00.123Z``."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def weak_etag(version_id: str) -> str:
    """The FHIR ETag for a version: ``W/"<versionId>"``."""
    return f'W/"{version_id}"'


def parse_etag(value: str) -> str:
    """The version id in an ``If-Match`` / ETag value: ``W/"3"``, ``"3"`` and ``3`` all give ``"3"``."""
    text = value.strip()
    if text[:2] in ("W/", "w/"):
        text = text[2:]
    return text.strip().strip('"')


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored."""

    #: The resource with ``id``, ``meta.versionId`` and ``meta.lastUpdated`` set (a stub if deleted).
    resource: JsonDict
    version_id: str
    last_modified: datetime
    deleted: bool = False
    #: The interaction that produced this version: ``POST`` (create), ``PUT`` (update) or ``DELETE``.
    method: str = METHOD_UPDATE

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def etag(self) -> str:
        return weak_etag(self.version_id)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of create / update / conditional update.

    ``created`` is True when a new resource came into existence (HTTP 201) and False when an existing
    one was updated or - for a conditional create - found (HTTP 200).
    """

    resource: JsonDict
    created: bool
    version_id: str
    last_modified: datetime

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def etag(self) -> str:
        return weak_etag(self.version_id)

    @property
    def location(self) -> str:
        """Relative version-specific location: ``Patient/<id>/_history/<versionId>``."""
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of search results.

    ``total`` counts all matches (None when ``_total=none`` was asked for); ``resources`` is the page
    (search mode ``match``) and ``included`` the resources pulled in by ``_include``/``_revinclude``
    (search mode ``include``, never duplicating a match). ``count``/``offset`` are the page size and
    start actually used (``_count`` above the maximum is clipped), ``params`` the applied parameters in a
    canonical order (for the Bundle's ``self``/``next`` links) and ``ignored`` the names of parameters
    skipped in lenient mode (for an OperationOutcome warning).
    """

    total: int | None
    resources: list[JsonDict]
    included: list[JsonDict] = field(default_factory=list)
    count: int = 0
    offset: int = 0
    params: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def has_next(self) -> bool:
        """True when a further page exists (only known when the total was computed)."""
        return self.total is not None and self.offset + len(self.resources) < self.total


@runtime_checkable
class FhirRepository(Protocol):
    """Versioned FHIR resources (see the module docs for the contract). Implementations are thread-safe."""

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        """Current version; :class:`ResourceNotFound` (404) or :class:`ResourceGone` (410)."""
        ...

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        """A specific version; :class:`ResourceGone` if that version is a deletion."""
        ...

    def create(self, resource: JsonDict, *, if_none_exist: str | None = None) -> WriteResult: ...

    def update(
        self, resource_type: str, resource_id: str, resource: JsonDict, *, if_match: str | None = None
    ) -> WriteResult:
        """Replace (or create with this id). The body's ``resourceType``/``id`` must match the URL."""
        ...

    def conditional_update(
        self, resource_type: str, query: str, resource: JsonDict, *, if_match: str | None = None
    ) -> WriteResult:
        """Update the one resource matching ``query``; create when none matches.

        0 matches: create (with the body's id if it has one, unless that id already exists ->
        :class:`ResourceConflict`); 1 match: update it (a body id that differs is :class:`InvalidResource`);
        more: :class:`MultipleMatches`.
        """
        ...

    def delete(self, resource_type: str, resource_id: str) -> None: ...

    def history(
        self,
        resource_type: str,
        resource_id: str | None = None,
        *,
        count: int | None = None,
        since: datetime | None = None,
    ) -> list[StoredResource]:
        """Versions newest first: of one resource, or of every resource of the type when ``resource_id``
        is None. ``since``: versions last updated at or after it; ``count``: at most that many."""
        ...

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
        """Search (see :mod:`shared.fhirstore.search`). ``params`` may also carry ``_count``,
        ``_offset``, ``_sort``, ``_include``, ``_revinclude`` and ``_total``; the keyword arguments, when
        given, override them. ``strict=False`` ignores unknown parameters (listed in ``ignored``)."""
        ...

    def transaction(self, bundle: JsonDict) -> JsonDict:
        """Apply a ``transaction`` Bundle atomically; returns the ``transaction-response`` Bundle."""
        ...

    def batch(self, bundle: JsonDict) -> JsonDict:
        """Apply a ``batch`` Bundle entry by entry; returns the ``batch-response`` Bundle."""
        ...

    def capabilities(self) -> JsonDict:
        """What this repository supports, for generating the CapabilityStatement (see
        :func:`shared.fhirstore.search.capabilities`)."""
        ...

    def close(self) -> None: ...


class FhirReader(Protocol):
    """The read side of :class:`FhirRepository` (a repository is one; so is the view
    :class:`CommitEvents` builders get inside a write's transaction)."""

    def read(self, resource_type: str, resource_id: str) -> StoredResource: ...

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource: ...

    def history(
        self,
        resource_type: str,
        resource_id: str | None = None,
        *,
        count: int | None = None,
        since: datetime | None = None,
    ) -> list[StoredResource]: ...

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
    ) -> SearchResult: ...


#: What a batch Bundle's events builder gets per entry: (index of the entry in the Bundle, its answer).
BatchEntryOutcome = tuple[int, JsonDict]


@dataclass(eq=False)
class CommitEvents(Generic[R]):
    """Messages to commit in the same transaction as a write (see the module docs).

    ``build(reader, outcome)`` gets the write's outcome - the ``WriteResult``; for ``delete`` the deletion
    version written (``None`` when nothing was deleted); for ``transaction`` the response Bundle; for
    ``batch`` each committed entry's :data:`BatchEntryOutcome` - and returns the messages (may be empty).
    The repository appends each committed batch to ``committed``.
    """

    build: Callable[[FhirReader, R], Sequence[OutboxMessage]]
    committed: list[CommittedBatch] = field(default_factory=list)


@runtime_checkable
class EventCommittingRepository(FhirRepository, CommittedOutbox, Protocol):
    """A :class:`FhirRepository` whose writes also commit outbox messages (``events=``; module docs)."""

    def create(
        self,
        resource: JsonDict,
        *,
        if_none_exist: str | None = None,
        events: CommitEvents[WriteResult] | None = None,
    ) -> WriteResult: ...

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: JsonDict,
        *,
        if_match: str | None = None,
        events: CommitEvents[WriteResult] | None = None,
    ) -> WriteResult: ...

    def conditional_update(
        self,
        resource_type: str,
        query: str,
        resource: JsonDict,
        *,
        if_match: str | None = None,
        events: CommitEvents[WriteResult] | None = None,
    ) -> WriteResult: ...

    def delete(
        self,
        resource_type: str,
        resource_id: str,
        *,
        events: CommitEvents[StoredResource | None] | None = None,
    ) -> None: ...

    def transaction(self, bundle: JsonDict, *, events: CommitEvents[JsonDict] | None = None) -> JsonDict: ...

    def batch(
        self, bundle: JsonDict, *, events: CommitEvents[BatchEntryOutcome] | None = None
    ) -> JsonDict: ...
