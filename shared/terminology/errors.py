"""Exceptions for the terminology package.

Messages name the concept map / value set id, the field and (short, truncated) terminology codes. Codes are
terminology, not patient data, but callers must never pass free text or identifiers in as a "code".
"""

from __future__ import annotations

from shared.errors import PermanentError


class TerminologyError(Exception):
    """Marker mixin for every terminology error."""


class UnknownConceptMap(TerminologyError, PermanentError):
    """No concept map with that id ships with the package."""

    code = "unknown-concept-map"


class UnknownValueSet(TerminologyError, PermanentError):
    """No value set with that id ships with the package."""

    code = "unknown-value-set"


class InvalidTerminologyData(TerminologyError, PermanentError):
    """A shipped concept map / value set / field-policy file breaks the format rules (a build defect)."""

    code = "invalid-terminology-data"


class UnmappedCode(TerminologyError, PermanentError):
    """A code has no usable mapping and the field's policy is ``Unmapped.RAISE``.

    ``field`` is the canonical/FHIR element being populated, ``concept_map_id`` the map that was consulted.
    """

    code = "unmapped-code"

    def __init__(self, message: str, *, field: str, concept_map_id: str) -> None:
        super().__init__(message)
        self.field = field
        self.concept_map_id = concept_map_id


class AmbiguousMapping(TerminologyError, PermanentError):
    """A code maps to more than one usable target in the requested target system (the map needs fixing,
    or the caller must say which target system it wants)."""

    code = "ambiguous-mapping"

    def __init__(self, message: str, *, field: str, concept_map_id: str) -> None:
        super().__init__(message)
        self.field = field
        self.concept_map_id = concept_map_id


def short_code(code: str, limit: int = 20) -> str:
    """``repr`` of a code cut to ``limit`` characters, for exception text (never a whole field value)."""
    return repr(code if len(code) <= limit else code[:limit] + "...")


class UnknownFieldPolicy(TerminologyError, PermanentError):
    """No unmapped-code policy is declared for that field in ``data/field_policies.json``."""

    code = "unknown-field-policy"
