"""The FHIR write path: every clinical write becomes a canonical clinical event on ``clinical-events``.

Policy (why it is this way):

* **Map before committing.** A clinical write (Patient, Encounter, Observation, DiagnosticReport,
  ServiceRequest, AllergyIntolerance, Condition, MedicationRequest, DocumentReference) is mapped with
  :func:`shared.mapping.fhir_in.event_from_fhir` *before* the repository is called (:meth:`check`). If it
  cannot become an event - no filler order number on a result, no visit number on an encounter, a subject
  Patient the store does not hold - the write is refused with 422 and an OperationOutcome whose
  ``expression`` names the element. Accepting it would store a record that downstream systems never hear
  about, which is the silent divergence an integration engine exists to prevent. Reference data
  (Organization, Practitioner, Location) is stored without an event.
* **Publish after committing.** The committed version (server id, ``meta.versionId``/``lastUpdated``) is
  mapped again - so the event carries the stored identity and time - and published to ``clinical-events``
  with the same clinical-event keys as the HL7 path (:mod:`shared.canonical.identity`), in request order,
  in as few bus batches as fit (a transaction's events usually go in one). Each write and each event is
  journaled under the request's correlation ID.
* **Recorded with the write** (the embedded store, :class:`~shared.fhirstore.ports.
  EventCommittingRepository`): the committed version is mapped *inside* the store's write transaction
  (:meth:`ClinicalEvents.map_in_transaction`, reading through the transaction) and the messages are
  inserted into the store's outbox table in that transaction - the write and its events commit together
  or not at all. After the commit they are published and the batch settled
  (:meth:`ClinicalEvents.publish_committed`); a crash or bus outage in between leaves the batch for the
  relay (:func:`shared.wiring.build_fhir_event_relay`, run by the ``outbox_relay`` timer). A write whose
  committed version cannot be mapped (a race with the dry run, or a defect) is rolled back: 422.
* **A publish that fails does not fail the write** (it is committed and visible; answering 5xx would make
  a client retry a create and duplicate it). With the embedded store the events are already committed in
  its outbox. With a remote FHIR server (AHDS: no shared transaction) the messages are handed to the
  record-store outbox (:class:`shared.outbox.Outbox`, owner record in the ``outbox`` table, partition
  ``fhir-api``); there a process crash between the remote commit and the hand-over still loses the event
  (``docs/adr/0001-fhir-api-transactional-events.md``). Message ids are deterministic, so a late duplicate
  is dropped by the bus.
* **Deletes**: only Encounter deletion is a clinical event (cancel admission); deleting other clinical
  records is refused by the API (405: retract by updating the status to ``entered-in-error``, which keeps
  what was retracted). Reference data may be deleted (no event).

References the mapping needs (the subject Patient, a report's results, locations, performers) are read
from the repository - nothing else is fetched. A subject given only by identifier (NHS number) is
resolved by searching Patient; it must match exactly one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from shared.backbone import clinical
from shared.backbone.errors import ContractViolation
from shared.canonical.model import ClinicalDateTime, ClinicalEvent, Patient
from shared.errors import TieError, TransientError
from shared.fhirapi.errors import Unprocessable
from shared.fhirstore.bundle import iter_references
from shared.fhirstore.errors import FhirStoreError, InvalidResource
from shared.fhirstore.ports import FhirReader, FhirRepository, JsonDict
from shared.fhirstore.search import SEARCH_PARAMETERS, parse_reference
from shared.journal import Journal
from shared.mapping.errors import MappingError
from shared.mapping.fhir_in import event_from_fhir, patient_from_fhir
from shared.messaging.ports import MessageBus, OutboundMessage
from shared.outbox import CommittedBatch, CommittedOutbox, Outbox, OutboxMessage, OwnerRef
from shared.outbox.committed import chunks
from shared.storage.names import TABLE_OUTBOX

_log = logging.getLogger("tie.fhirapi")

Interaction = Literal["create", "update", "delete"]

#: Resource types whose writes are clinical events.
EVENT_TYPES = frozenset(
    {
        "Patient",
        "Encounter",
        "Observation",
        "DiagnosticReport",
        "ServiceRequest",
        "AllergyIntolerance",
        "Condition",
        "MedicationRequest",
        "DocumentReference",
    }
)
#: Types the API lets clients delete: Encounter (an event: cancel admission) and reference data.
DELETABLE_TYPES = frozenset({"Encounter", "Organization", "Practitioner", "Location"})
#: Outbox owner partition for events whose direct publish failed.
OUTBOX_OWNER_PARTITION = "fhir-api"
#: At most this many referenced resources are read to map one write (subject, results, locations...).
MAX_CONTEXT_READS = 25
_SUBJECT_KEY = {"AllergyIntolerance": "patient"}


@dataclass(frozen=True, slots=True)
class CommittedWrite:
    """One committed write, as the event mapping needs it.

    ``resource`` is the stored version (for a delete: the last content before deletion); ``previous`` the
    version an update replaced; ``location`` ``Type/id/_history/n`` of the new version.
    """

    resource: JsonDict
    interaction: Interaction
    location: str
    last_modified: datetime
    previous: JsonDict | None = None
    full_url: str | None = None

    @property
    def resource_type(self) -> str:
        return str(self.resource.get("resourceType"))


class CommittedEventUnmappable(InvalidResource):
    """Raised inside the write transaction when a committed version cannot become its clinical event: the
    write is rolled back (422). A store error, so a batch Bundle answers it for the one entry."""

    issue_code = "business-rule"

    def __init__(self, expression: str) -> None:
        super().__init__(
            "cannot be processed as a clinical event; nothing was stored",
            expression=expression,
            http_status=422,
        )


@dataclass(frozen=True, slots=True)
class PublishReport:
    events: tuple[ClinicalEvent, ...] = ()
    published: bool = True
    deferred: bool = False


def element_path(field: str | None, resource_type: str, prefix: str) -> str:
    """A mapping error's field (``Observation.identifier``) re-rooted at ``prefix``
    (``Bundle.entry[2].resource``); ``prefix`` defaults to the resource type itself."""
    if not field:
        return prefix
    if field == resource_type:
        return prefix
    if field.startswith(resource_type + "."):
        return prefix + field[len(resource_type) :]
    return f"{prefix}.{field}"


class ClinicalEvents:
    """Maps FHIR writes to canonical clinical events (before and after committing) and publishes them."""

    def __init__(
        self,
        repository: FhirRepository,
        bus: MessageBus,
        journal: Journal,
        outbox: Outbox,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._repo = repository
        self._bus = bus
        self._journal = journal
        self._outbox = outbox
        self._clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------------------------ context
    def context_for(
        self,
        resources: Iterable[JsonDict],
        known: Mapping[str, JsonDict] | None = None,
        reader: FhirReader | None = None,
    ) -> dict[str, JsonDict]:
        """``reference -> resource`` for the literal references in ``resources`` (and, one level on, in
        what they reference: a Location's ``partOf``), read from ``reader`` (default: the repository);
        ``known`` (a bundle's fullUrl / ``Type/id`` map) is used first and included. Missing or deleted
        targets are left out (the mapping then says what it lacked)."""
        source: FhirReader = reader or self._repo
        context: dict[str, JsonDict] = dict(known or {})
        reads = 0
        frontier = list(resources)
        for _depth in range(3):
            found: list[JsonDict] = []
            for resource in frontier:
                for reference in iter_references(resource):
                    if reference in context or reference.startswith(("#", "urn:")):
                        continue
                    parsed = parse_reference(reference)
                    if parsed is None or parsed[0] not in SEARCH_PARAMETERS:
                        continue
                    key = f"{parsed[0]}/{parsed[1]}"
                    if key in context:
                        context[reference] = context[key]
                        continue
                    if reads >= MAX_CONTEXT_READS:
                        continue
                    reads += 1
                    try:
                        target = source.read(*parsed).resource
                    except FhirStoreError as exc:
                        if isinstance(exc, TransientError):
                            raise
                        continue
                    context[reference] = context[key] = target
                    found.append(target)
            frontier = found
            if not frontier:
                break
        return context

    def _logical_subject(self, resource: JsonDict, reader: FhirReader | None = None) -> Patient | None:
        """The subject Patient of a reference given only by identifier (``{"identifier": {...}}``)."""
        rtype = str(resource.get("resourceType"))
        if rtype == "Patient":
            return None
        ref = resource.get(_SUBJECT_KEY.get(rtype, "subject"))
        if not isinstance(ref, dict) or isinstance(ref.get("reference"), str):
            return None
        ident = ref.get("identifier")
        if not isinstance(ident, dict):
            return None
        system, value = ident.get("system"), ident.get("value")
        if not isinstance(system, str) or not isinstance(value, str) or not system or not value:
            return None
        token = system.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
        token += "|" + value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
        try:
            hits = (reader or self._repo).search("Patient", [("identifier", token)], count=2)
        except FhirStoreError as exc:
            if isinstance(exc, TransientError):
                raise
            return None
        if len(hits.resources) != 1 or (hits.total is not None and hits.total != 1):
            return None
        return patient_from_fhir(hits.resources[0], lineage=False).value

    # ------------------------------------------------------------------------------------ mapping
    def _map(
        self,
        resource: JsonDict,
        interaction: Interaction,
        *,
        context: Mapping[str, JsonDict],
        previous: JsonDict | None,
        recorded_at: datetime | None,
        correlation_id: str | None,
        request_id: str | None = None,
        full_url: str | None = None,
        reader: FhirReader | None = None,
    ) -> ClinicalEvent:
        return event_from_fhir(
            resource,
            interaction=interaction,
            patient=self._logical_subject(resource, reader),
            context=context,
            correlation_id=correlation_id,
            previous=previous,
            recorded_at=ClinicalDateTime(value=recorded_at, precision="millisecond")
            if recorded_at is not None
            else None,
            request_id=request_id,
            received_at=self._clock(),
            full_url=full_url,
            lineage=False,
        ).value

    def check(
        self,
        resource: JsonDict,
        interaction: Interaction,
        *,
        previous: JsonDict | None = None,
        context: Mapping[str, JsonDict] | None = None,
        prefix: str | None = None,
    ) -> None:
        """Dry run before committing: :class:`Unprocessable` (422) when the write cannot become an event.

        The record time is "now" (the store sets the real ``meta.lastUpdated``). ``context`` carries what
        a bundle supplies (fullUrl -> resource); referenced resources are otherwise read from the store.
        """
        rtype = str(resource.get("resourceType"))
        if rtype not in EVENT_TYPES:
            return
        where = prefix or rtype
        full = self.context_for([resource], context)
        try:
            self._map(
                resource,
                interaction,
                context=full,
                previous=previous,
                recorded_at=self._clock(),
                correlation_id=None,
            )
        except MappingError as exc:
            raise Unprocessable(
                f"cannot be processed as a clinical event: {exc.reason}",
                expression=element_path(exc.field, rtype, where),
            ) from None
        except ValueError as exc:  # canonical model validation (pydantic): value-free type name only
            _log.warning("fhir write not mappable", extra={"error_code": type(exc).__name__, "reason": rtype})
            raise Unprocessable(
                "cannot be processed as a clinical event (canonical model rules)", expression=where
            ) from None

    # ------------------------------------------------------------- recorded with the write (embedded)
    def _map_committed(
        self,
        write: CommittedWrite,
        *,
        correlation_id: str,
        known: Mapping[str, JsonDict] | None,
        reader: FhirReader | None,
    ) -> ClinicalEvent:
        return self._map(
            write.resource,
            write.interaction,
            context=self.context_for([write.resource], known, reader),
            previous=write.previous,
            recorded_at=write.last_modified if write.interaction == "delete" else None,
            correlation_id=correlation_id,
            request_id=write.location,
            full_url=write.full_url,
            reader=reader,
        )

    def map_in_transaction(
        self,
        writes: Sequence[CommittedWrite],
        *,
        correlation_id: str,
        reader: FhirReader,
        known: Mapping[str, JsonDict] | None = None,
    ) -> list[tuple[ClinicalEvent, OutboxMessage]]:
        """Inside the write's transaction (``reader`` sees it): each clinical write's event and its bus
        message. Raises :class:`CommittedEventUnmappable` (the caller's transaction rolls back) when one
        cannot be mapped; transient read failures propagate."""
        out: list[tuple[ClinicalEvent, OutboxMessage]] = []
        for write in writes:
            rtype = write.resource_type
            if rtype not in EVENT_TYPES:
                continue
            try:
                event = self._map_committed(write, correlation_id=correlation_id, known=known, reader=reader)
                message = clinical.to_message(event)
            except (MappingError, ValueError, ContractViolation) as exc:
                # The dry run passed, so this is a race (the subject changed in between) or a defect.
                _log.error(
                    "committed fhir write could not be mapped; rolled back",
                    extra={"error_code": getattr(exc, "code", type(exc).__name__), "reason": rtype},
                )
                raise CommittedEventUnmappable(rtype) from None
            out.append((event, OutboxMessage(clinical.TOPIC, message)))
        return out

    def publish_committed(
        self,
        writes: Sequence[CommittedWrite],
        batches: Sequence[CommittedBatch],
        events: Mapping[str, ClinicalEvent],
        *,
        correlation_id: str,
        outbox: CommittedOutbox,
    ) -> PublishReport:
        """After the commit: journal the writes, publish each committed batch (in bus-sized runs) and
        settle it. A bus failure leaves the batch committed for the relay (``publish-deferred``); a
        settling failure only means the relay publishes it again (deduplicated). Never raises for either.
        ``events``: message id -> event, for the journal."""
        for write in writes:
            self._journal_safely(
                correlation_id, "fhir-write", interaction=write.interaction, resource=write.location
            )
        published = True
        mapped: list[ClinicalEvent] = []
        for batch in batches:
            messages = [m.message for m in batch.messages]
            sent = 0
            try:
                for run in chunks(messages, max_bytes=MAX_BATCH_BYTES, max_messages=MAX_BATCH_MESSAGES):
                    self._bus.publish(clinical.TOPIC, run)
                    sent += len(run)
            except TieError as exc:
                published = False
                _log.warning(
                    "clinical events not published yet; committed in the store's outbox for the relay",
                    extra={"error_code": exc.code, "topic": clinical.TOPIC, "count": len(messages) - sent},
                )
            for position, message in enumerate(messages):
                event = events.get(message.message_id or "")
                if event is not None:
                    mapped.append(event)
                if position < sent and event is not None:
                    self._journal_published(correlation_id, event)
                elif position >= sent:
                    self._journal_safely(
                        correlation_id,
                        "publish-deferred",
                        topic=clinical.TOPIC,
                        message_id=message.message_id,
                    )
            if sent < len(messages):
                continue
            try:
                outbox.settle_batch(batch.batch_id)
            except TransientError as exc:
                _log.warning("published batch %s not settled (%s); the relay will", batch.batch_id, exc.code)
        return PublishReport(tuple(mapped), published=published, deferred=not published)

    # ------------------------------------------------------- published after the write (remote store)
    def publish(
        self,
        writes: Sequence[CommittedWrite],
        *,
        correlation_id: str,
        known: Mapping[str, JsonDict] | None = None,
    ) -> PublishReport:
        """Journal the committed writes, map the clinical ones and publish their events (in bus-sized
        batches); what the bus refuses is handed to the outbox. Never raises for a bus or journal failure:
        the writes are committed."""
        events: list[ClinicalEvent] = []
        for write in writes:
            rtype = write.resource_type
            self._journal_safely(
                correlation_id,
                "fhir-write",
                interaction=write.interaction,
                resource=write.location,
            )
            if rtype not in EVENT_TYPES:
                continue
            try:
                event = self._map_committed(write, correlation_id=correlation_id, known=known, reader=None)
            except (MappingError, ValueError) as exc:
                # The dry run passed, so this is a race (the subject changed in between) or a defect.
                _log.error(
                    "committed fhir write could not be mapped; no event",
                    extra={"error_code": getattr(exc, "code", type(exc).__name__), "reason": rtype},
                )
                self._journal_safely(
                    correlation_id,
                    "failed",
                    resource=write.location,
                    error_code=str(getattr(exc, "code", type(exc).__name__)),
                )
                continue
            except TieError as exc:  # reading context failed (store unavailable)
                _log.error(
                    "committed fhir write: context unavailable; no event",
                    extra={"error_code": exc.code, "reason": rtype},
                )
                self._journal_safely(correlation_id, "failed", resource=write.location, error_code=exc.code)
                continue
            events.append(event)
        if not events:
            return PublishReport()
        messages = [clinical.to_message(event) for event in events]
        sent = 0
        for chunk in chunks(messages, max_bytes=MAX_BATCH_BYTES, max_messages=MAX_BATCH_MESSAGES):
            try:
                self._bus.publish(clinical.TOPIC, chunk)
            except TieError as exc:
                _log.warning(
                    "clinical events not published; handed to the outbox",
                    extra={"error_code": exc.code, "topic": clinical.TOPIC, "count": len(messages) - sent},
                )
                deferred = self._defer(messages[sent:], correlation_id)
                for event in events[:sent]:
                    self._journal_published(correlation_id, event)
                return PublishReport(tuple(events), published=False, deferred=deferred)
            sent += len(chunk)
        for event in events:
            self._journal_published(correlation_id, event)
        return PublishReport(tuple(events))

    def _journal_published(self, correlation_id: str, event: ClinicalEvent) -> None:
        self._journal_safely(
            correlation_id,
            "published",
            topic=clinical.TOPIC,
            message_id=event.key.value,
            event_kind=event.kind.value,
        )

    def _defer(self, messages: Sequence[OutboundMessage], correlation_id: str) -> bool:
        owner = OwnerRef(TABLE_OUTBOX, OUTBOX_OWNER_PARTITION, uuid.uuid4().hex)
        state = {"kind": "fhir-api", "correlation_id": correlation_id, "events": len(messages)}
        try:
            record = self._outbox.records.insert(owner.table, owner.partition_key, owner.row_key, state)
            batch = self._outbox.prepare(
                owner, record.etag, [OutboxMessage(clinical.TOPIC, m) for m in messages]
            )
            self._outbox.commit(batch, state)
        except TieError as exc:
            _log.error(
                "clinical events lost: neither published nor stored in the outbox",
                extra={"error_code": exc.code, "message_id": ",".join(m.message_id or "" for m in messages)},
            )
            self._journal_safely(correlation_id, "failed", topic=clinical.TOPIC, error_code=exc.code)
            return False
        for message in messages:
            self._journal_safely(
                correlation_id, "publish-deferred", topic=clinical.TOPIC, message_id=message.message_id
            )
        return True

    def _journal_safely(self, correlation_id: str, stage: str, **attributes: Any) -> None:
        try:
            self._journal.record(correlation_id, stage, **attributes)
        except TieError as exc:
            _log.warning("journal write failed", extra={"error_code": exc.code, "reason": stage})


#: A bus batch stays well under Service Bus's smallest batch limit (256 KB on Standard).
MAX_BATCH_BYTES = 192 * 1024
MAX_BATCH_MESSAGES = 100
