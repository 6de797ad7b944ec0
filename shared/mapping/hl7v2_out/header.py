"""The message header every HL7 v2 writer takes: who sends to whom, and how (MSH)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["Header"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """MSH-3/4 (sender), MSH-5/6 (receiver), MSH-10 (``control_id``; ``None``: derived from the event),
    MSH-12 (``version``), MSH-7 (``now``, timezone-aware; ``None``: the current time) and MSH-11
    (``processing_id``). Checked when a message is written (raising ``Hl7OutError``)."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str | None = None
    version: str = "2.5.1"
    now: datetime | None = None
    processing_id: str = "P"
