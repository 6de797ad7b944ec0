"""FHIR batch and transaction Bundles (``POST [base]``) of :class:`~shared.fhirapi.service.FhirApi`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from shared.audit.fhir_access import Audited
from shared.canonical.model import ClinicalEvent
from shared.errors import TransientError
from shared.fhir.validation import FhirValidationError, errors_only
from shared.fhir.validation import validate_bundle as _validate_bundle
from shared.fhir.validation import validate_resource as _validate_resource
from shared.fhirapi._core import _instant_or_now, _known, _outcome, _outcome_of, _rebase, _status
from shared.fhirapi._writes import WriteInteractions
from shared.fhirapi.clinical_events import EVENT_TYPES, CommittedWrite, Interaction
from shared.fhirapi.errors import BadRequest, FhirApiError
from shared.fhirapi.http import FhirRequest, FhirResponse, Preferences, is_entity_tag
from shared.fhirstore import bundle as bundle_ops
from shared.fhirstore.errors import (
    BundleTooLarge,
    FhirStoreError,
    InvalidBundle,
    TransactionFailed,
    UnsupportedInteraction,
    UnsupportedResourceType,
)
from shared.fhirstore.ports import BatchEntryOutcome, CommitEvents, FhirReader, JsonDict, WriteResult
from shared.fhirstore.search import parse_query_string
from shared.outbox import OutboxMessage


class BundleInteractions(WriteInteractions):
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
