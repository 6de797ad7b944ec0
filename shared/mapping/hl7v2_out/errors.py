"""Errors raised when a canonical event cannot be written as HL7 v2 safely.

``field`` is the canonical path of the element that could not be written (``"patient.gender"``,
``"reports[0].results[1].status"``); texts never hold values from the event.
"""

from __future__ import annotations

from shared.mapping.errors import MappingError

__all__ = ["Hl7OutError", "UnmappableCode"]


class Hl7OutError(MappingError):
    """The event lacks something the HL7 v2 message needs, or holds something v2 cannot express."""

    code = "hl7v2-out"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason, field=field)


class UnmappableCode(Hl7OutError):
    """A canonical code has no (or no single) HL7 v2 table code through the reverse concept map: the
    message is not written rather than sent with a guessed code (HL7 0357 ``103``)."""

    code = "hl7v2-out-unmappable-code"
    default_error_code = "103"

    def __init__(self, field: str, concept_map_id: str | None, reason: str) -> None:
        where = f" (concept map {concept_map_id})" if concept_map_id else ""
        super().__init__(field, f"{reason}{where}")
        self.concept_map_id = concept_map_id
