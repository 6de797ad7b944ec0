"""The FHIR R4 HTTP API core (framework-free): :class:`FhirApi` and its request/response types.

Modules: :mod:`.service` (interactions and their HTTP semantics), :mod:`.http` (headers, media types,
``Prefer``, bodies), :mod:`.clinical_events` (the write path to canonical clinical events and its
policy), :mod:`.capability` (CapabilityStatement), :mod:`.minimise` (``_elements`` and the per-client
data-minimisation policy point), :mod:`.errors`. The Azure Functions adapters are ``functions/fhir.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from shared.config.settings import Backend
from shared.fhirapi.http import FhirRequest, FhirResponse, Headers
from shared.fhirapi.service import FhirApi, FhirApiConfig
from shared.journal import PUBLISHED, Journal
from shared.outbox import CommittedBatch, CommittedBatchRelay, CommittedOutbox

if TYPE_CHECKING:
    from shared.wiring import Container

__all__ = [
    "FhirApi",
    "FhirApiConfig",
    "FhirRequest",
    "FhirResponse",
    "Headers",
    "event_relay_for",
]


def event_relay_for(
    container: Container, *, grace: timedelta = timedelta(seconds=2)
) -> CommittedBatchRelay | None:
    """The relay for clinical events the embedded FHIR store committed with a write whose publish did not
    happen (process crash, bus outage); it journals ``published`` under each event's correlation ID.
    None when the FHIR store is remote (AHDS commits no events: see the ADR in ``docs/adr``)."""
    if container.fhir_repository is None and container.settings.fhir_backend is Backend.AZURE:
        return None  # do not open a remote client just to find it has no outbox
    repository = container.fhir
    if not isinstance(repository, CommittedOutbox):
        return None
    journal = Journal(container.records)

    def journaled(batch: CommittedBatch) -> None:
        for item in batch.messages:
            message = item.message
            if message.correlation_id:
                journal.record(
                    message.correlation_id,
                    PUBLISHED,
                    topic=item.topic,
                    message_id=message.message_id,
                    event_kind=message.subject,
                    relayed=True,
                )

    return CommittedBatchRelay(repository, container.bus, grace=grace, on_published=journaled)
