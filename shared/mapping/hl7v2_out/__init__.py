"""Canonical clinical event -> HL7 v2 (ADT^A08, ORU^R01) for write-back to systems that only speak v2.

Each rule is the inverse of :mod:`shared.mapping.hl7v2_in` (same ``rules.json``, concept maps read
backwards), so what a downstream receives reads back as what was sent; a code with no v2 equivalent raises
:class:`UnmappableCode`, never a default. API and the rules field by field: ``docs/mapping-hl7v2-out.md``.
"""

from __future__ import annotations

from shared.mapping.hl7v2_out.errors import Hl7OutError, UnmappableCode
from shared.mapping.hl7v2_out.header import Header
from shared.mapping.hl7v2_out.messages import (
    adt_a08,
    adt_a31,
    oru_r01,
    to_adt,
    to_adt_a08,
    to_adt_a31,
    to_adt_a40,
    to_oru_r01,
)

__all__ = [
    "Header",
    "Hl7OutError",
    "UnmappableCode",
    "adt_a08",
    "adt_a31",
    "oru_r01",
    "to_adt",
    "to_adt_a08",
    "to_adt_a31",
    "to_adt_a40",
    "to_oru_r01",
]
