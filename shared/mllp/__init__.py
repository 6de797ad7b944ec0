"""MLLP (Minimal Lower Layer Protocol) transport for HL7 v2: framing, an asyncio server and client.

Pure transport: nothing here parses HL7 beyond reading MSA-1 of an ACK in :func:`classify_ack`. The
server hands complete frames to an injected handler and NAKs framing faults through an injected builder.
"""

from __future__ import annotations

from shared.mllp.client import (
    AckError,
    AckOutcome,
    AckSummary,
    MllpClient,
    classify_ack,
    read_msa,
    send_message,
)
from shared.mllp.errors import (
    MllpAckTimeout,
    MllpConnectionError,
    MllpError,
    MllpPayloadError,
    MllpProtocolError,
)
from shared.mllp.framing import (
    CR,
    DEFAULT_MAX_MESSAGE_BYTES,
    EB,
    SB,
    BrokenFrame,
    DecodeEvent,
    Frame,
    FrameDecoder,
    Garbage,
    Oversize,
    TruncatedFrame,
    frame,
)
from shared.mllp.server import (
    ConnectionInfo,
    MllpServer,
    NakReason,
    Refusal,
    TrustRule,
    fallback_nak,
    generic_nak,
)
from shared.mllp.workers import WorkerPool

__all__ = [
    "CR",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EB",
    "SB",
    "AckError",
    "AckOutcome",
    "AckSummary",
    "BrokenFrame",
    "ConnectionInfo",
    "DecodeEvent",
    "Frame",
    "FrameDecoder",
    "Garbage",
    "MllpAckTimeout",
    "MllpClient",
    "MllpConnectionError",
    "MllpError",
    "MllpPayloadError",
    "MllpProtocolError",
    "MllpServer",
    "NakReason",
    "Oversize",
    "Refusal",
    "TruncatedFrame",
    "TrustRule",
    "WorkerPool",
    "classify_ack",
    "fallback_nak",
    "frame",
    "generic_nak",
    "read_msa",
    "send_message",
]
