"""Trusted constructors (:mod:`shared.mapping._construct`) of the canonical models the HL7 readers build."""

from __future__ import annotations

from shared.canonical.model import (
    Address,
    Coding,
    Concept,
    ContactPoint,
    HumanName,
    Identifier,
    Location,
    Organization,
    Period,
    Practitioner,
)
from shared.mapping._construct import builder

__all__ = [
    "new_address",
    "new_coding",
    "new_concept",
    "new_contact_point",
    "new_human_name",
    "new_identifier",
    "new_location",
    "new_organization",
    "new_period",
    "new_practitioner",
]

# Trusted constructors (shared.mapping._construct): every reader below builds its models only from
# non-empty stripped strings, tuples of them, models, aware times and literals the rules compiler checked.
new_identifier = builder(Identifier)
new_human_name = builder(HumanName)
new_address = builder(Address)
new_contact_point = builder(ContactPoint)
new_location = builder(Location)
new_practitioner = builder(Practitioner)
new_organization = builder(Organization)
new_coding = builder(Coding)
new_concept = builder(Concept)  # callers guarantee a coding or a text (Concept's own rule)
new_period = builder(Period)
