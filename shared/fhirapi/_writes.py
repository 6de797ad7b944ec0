"""FHIR write interactions (create, update, conditional update, delete) of
:class:`~shared.fhirapi.service.FhirApi` and the commit of a write with its clinical events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import urlencode

from shared.audit.fhir_access import Audited
from shared.canonical.model import ClinicalEvent
from shared.fhir.validation import FhirValidationError, ValidationIssue, errors_only, to_operation_outcome
from shared.fhir.validation import validate_resource as _validate_resource
from shared.fhirapi._core import _PRESENTATION, FhirApiCore, _outcome, _touch
from shared.fhirapi.clinical_events import EVENT_TYPES, CommittedWrite, Interaction
from shared.fhirapi.errors import BadRequest, MethodNotAllowed
from shared.fhirapi.http import FhirRequest, FhirResponse, Preferences, http_date
from shared.fhirapi.http import if_match as checked_if_match
from shared.fhirstore.errors import InvalidSearch, ResourceGone, ResourceNotFound
from shared.fhirstore.ports import (
    CommitEvents,
    EventCommittingRepository,
    FhirReader,
    JsonDict,
    StoredResource,
    WriteResult,
)
from shared.fhirstore.search import ID_PATTERN, parse_query_string, parse_search
from shared.outbox import OutboxMessage

R = TypeVar("R")


class WriteInteractions(FhirApiCore):
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
