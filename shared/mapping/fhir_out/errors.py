"""Errors raised when a canonical event cannot be written as FHIR safely."""

from __future__ import annotations

from shared.mapping.errors import MappingError

__all__ = ["FhirOutError"]


class FhirOutError(MappingError):
    """The canonical event lacks something the FHIR output needs (e.g. a report with no order number to
    key its DiagnosticReport on). ``field`` is the canonical path (``"reports[0].filler_order_number"``);
    the text never holds a value from the event."""

    code = "fhir-out"
