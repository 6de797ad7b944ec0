"""FHIR R4 helpers shared by the mappers and the FHIR API.

* :mod:`~shared.fhir.ids` - deterministic resource ids (uuid5 in the project namespace)
* :mod:`~shared.fhir.profiles` - UK Core profile URLs and FHIR-side system constants
* :mod:`~shared.fhir.json` - compact UTF-8 JSON with exact decimals
* :mod:`~shared.fhir.validation` - structural (fhir.resources R4B) + UK Core / terminology checks

The validation module imports fhir.resources lazily (first structural check), so importing this package
stays cheap on paths that only build or serialise resources.
"""

from __future__ import annotations

from shared.fhir.ids import FHIR_ID_NAMESPACE, child_id, keyed_id, resource_id, urn
from shared.fhir.profiles import UK_CORE_PROFILES, profile_for
from shared.fhir.validation import (
    FhirValidationError,
    ValidationIssue,
    check_bundle,
    check_resource,
    to_operation_outcome,
    validate_bundle,
    validate_resource,
)

__all__ = [
    "FHIR_ID_NAMESPACE",
    "UK_CORE_PROFILES",
    "FhirValidationError",
    "ValidationIssue",
    "check_bundle",
    "check_resource",
    "child_id",
    "keyed_id",
    "profile_for",
    "resource_id",
    "to_operation_outcome",
    "urn",
    "validate_bundle",
    "validate_resource",
]
