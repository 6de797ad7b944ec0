"""The ingestor MESH inbound feeds: the same pipeline as HTTP and MLLP."""

from __future__ import annotations

from shared.ingest.channels import PROCESSORS
from shared.ingest.hl7v2 import CHANNEL as HL7V2_CHANNEL
from shared.ingest.hl7v2 import Hl7Ingest
from shared.ingest.ingest import accept
from shared.journal import Journal
from shared.mesh.inbound import SOURCE, IngestOutcome
from shared.mesh.ports import MeshMessage
from shared.messaging.ports import MessageBus
from shared.storage.ports import RecordStore


class PipelineIngestor:
    """HL7 v2 through :class:`~shared.ingest.hl7v2.Hl7Ingest` (AA/CA = accepted, AE/AR/CR = refused,
    could-not-store = unavailable); other registered channels straight to the ingest topic."""

    def __init__(self, bus: MessageBus, records: RecordStore) -> None:
        self._bus = bus
        self._records = records
        self._hl7 = Hl7Ingest(bus, records)

    def __call__(self, channel: str, message: MeshMessage, correlation_id: str) -> tuple[IngestOutcome, str]:
        if channel == HL7V2_CHANNEL:
            result = self._hl7.handle(message.body, source=SOURCE, correlation_id=correlation_id)
            if result.outcome == "unavailable":
                return "unavailable", result.code or ""
            if result.outcome == "accepted":
                return "accepted", result.code or "AA"
            return "refused", result.code or result.outcome
        if channel not in PROCESSORS:
            return "refused", "unknown-channel"
        accept(
            self._bus,
            Journal(self._records),
            body=message.body,
            channel=channel,
            correlation_id=correlation_id,
            content_type=message.content_type,
            source=SOURCE,
            message_id=f"mesh-{correlation_id}",
        )
        return "accepted", "published"
