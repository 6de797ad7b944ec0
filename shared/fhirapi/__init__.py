"""The FHIR R4 HTTP API core (framework-free): :class:`FhirApi` and its request/response types.

Modules: :mod:`.service` (interactions and their HTTP semantics), :mod:`.http` (headers, media types,
``Prefer``, bodies), :mod:`.clinical_events` (the write path to canonical clinical events and its
policy), :mod:`.capability` (CapabilityStatement), :mod:`.minimise` (``_elements`` and the per-client
data-minimisation policy point), :mod:`.errors`. The Azure Functions adapters are ``functions/fhir.py``.
"""

from __future__ import annotations

from datetime import timedelta

from shared.fhirapi.http import FhirRequest, FhirResponse, Headers
from shared.fhirapi.service import FhirApi, FhirApiConfig
from shared.journal import PUBLISHED, Journal
from shared.messaging.ports import MessageBus
from shared.outbox import CommittedBatch, CommittedBatchRelay, CommittedOutbox

__all__ = [
    "FhirApi",
    "FhirApiConfig",
    "FhirRequest",
    "FhirResponse",
    "Headers",
    "event_relay",
]


def event_relay(
    repository: CommittedOutbox, bus: MessageBus, journal: Journal, *, grace: timedelta = timedelta(seconds=2)
) -> CommittedBatchRelay:
    """The relay for clinical events the FHIR store committed with a write whose publish did not happen
    (process crash, bus outage); it journals ``published`` under each event's correlation ID. Whether the
    store has such events is the composition root's call (:func:`shared.wiring.build_fhir_event_relay`)."""

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

    return CommittedBatchRelay(repository, bus, grace=grace, on_published=journaled)
