"""HL7 v2 message -> canonical :class:`~shared.canonical.model.ClinicalEvent`, with field-level lineage.

``map_message`` / ``map_bytes`` apply the versioned rules in ``rules.json`` so that every Trust feed lands
in one canonical model, with HL7 table 0357 errors that never quote patient data. The mapping spec (rules,
events, Patient / Encounter / Results / Orders field by field, what is not mapped, the speed paths) is in
``docs/mapping-hl7v2-in.md``.
"""

from __future__ import annotations

from shared.mapping.hl7v2_in.mapper import map_bytes, map_message
from shared.mapping.hl7v2_in.rules import RULES

RULES_VERSION = RULES.version

__all__ = ["RULES_VERSION", "map_bytes", "map_message"]
