"""HL7 v2 message structure definitions (generated data) and their loader."""

from __future__ import annotations

from shared.hl7v2.structures.structures import (
    SUPPORTED_EVENTS,
    FieldDef,
    GroupRef,
    Hl7Table,
    Node,
    SegmentRef,
    StructureSet,
    available_versions,
    load_structures,
    parse_version,
    resolve_structure,
    structures_for,
)

__all__ = [
    "SUPPORTED_EVENTS",
    "FieldDef",
    "GroupRef",
    "Hl7Table",
    "Node",
    "SegmentRef",
    "StructureSet",
    "available_versions",
    "load_structures",
    "parse_version",
    "resolve_structure",
    "structures_for",
]
