"""The registry of ingest channels and their bus-side processors (one place, no import side effects)."""

from __future__ import annotations

from collections.abc import Mapping

from shared.ingest.hl7v2 import CHANNEL as HL7V2_CHANNEL
from shared.ingest.hl7v2 import process_hl7v2
from shared.ingest.ingest import Processor, raw_processor

PROCESSORS: Mapping[str, Processor] = {
    "raw": raw_processor,
    HL7V2_CHANNEL: process_hl7v2,
}

#: Channels that ``POST /api/messages`` accepts. HL7 v2 has its own edges (``/api/hl7v2``, MLLP) because it
#: needs parsing, validation and an ACK before anything is published.
GENERIC_HTTP_CHANNELS: frozenset[str] = frozenset({"raw"})
