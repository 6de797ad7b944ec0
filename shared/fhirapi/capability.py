"""The CapabilityStatement (``GET [base]/metadata``), generated from the repository's capabilities.

The repository says what it can store and search (:meth:`FhirRepository.capabilities`); the API narrows
that to what it serves: the resource types it exposes, ``delete`` only for the types whose deletion is
allowed (:data:`shared.fhirapi.events.DELETABLE_TYPES`), conditional read (``If-None-Match`` /
``If-Modified-Since``) which the HTTP layer implements, and the result parameters it honours on top of
the store's (``_elements``, ``_summary=count``). Nothing is listed that the API does not do.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from typing import Any

from shared.fhir.profiles import profile_for

FHIR_VERSION = "4.0.1"
SOFTWARE_NAME = "Serverless TIE FHIR API"
SOFTWARE_VERSION = "1.0.0"
#: When this statement's content last changed (CapabilityStatement.date).
STATEMENT_DATE = "2026-01-01"

_RESULT_PARAMETERS = (
    {"name": "_elements", "type": "string", "documentation": "Top-level elements to return (SUBSETTED)"},
    {"name": "_summary", "type": "token", "documentation": "count (total only) | false"},
)


_REST_DOCUMENTATION = (
    "Prefer: return=minimal|representation|OperationOutcome and handling=strict|lenient "
    "(default lenient). Deletion is supported only where it is a clinical event "
    "(Encounter: cancel admission) or for reference data; retract other records by "
    "updating their status to entered-in-error."
)


#: FHIR Bulk Data Access IG (v2) operations this server implements (shared/bulkexport, docs/bulk-export.md).
BULK_DATA_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
BULK_EXPORT_DOCUMENTATION = (
    "Bulk Data export (async: Prefer: respond-async; 202 + Content-Location; poll for the manifest; DELETE "
    "to cancel). Parameters: _outputFormat (application/fhir+ndjson), _type, _since (deletions as "
    "'deleted' Bundles), _typeFilter (one simple search per type) and the extension parameter "
    "_pseudonymise=true|false: identifiers and resource ids replaced by keyed references per recipient, "
    "names, telecom, addresses (postcode district kept), narrative and free text removed, birth date "
    "cut to year-month; the rules and their version are named in the manifest. Files need the same "
    "credentials as the API (requiresAccessToken)."
)
SYSTEM_EXPORT = {
    "name": "export",
    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    "documentation": BULK_EXPORT_DOCUMENTATION,
}
PATIENT_EXPORT = {
    "name": "export",
    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
    "documentation": BULK_EXPORT_DOCUMENTATION,
}


def bundle_cap_text(max_entries: int) -> str:
    """How the statement states the Bundle entry cap (``maxEntries=<n>`` is the machine-readable part)."""
    return (
        f"Batch and transaction Bundles: maxEntries={max_entries}; a Bundle with more entries is rejected "
        "with 413 and an OperationOutcome (too-costly) before any entry is processed."
    )


def capability_statement(
    repository_capabilities: dict[str, Any],
    *,
    base: str,
    resource_types: Sequence[str],
    deletable: Collection[str],
    max_bundle_entries: int | None = None,
) -> dict[str, Any]:
    """A CapabilityStatement (kind ``instance``) for the API at ``base``. ``max_bundle_entries``: the
    entry cap of batch and transaction Bundles, stated in ``rest.documentation`` and in the ``batch`` /
    ``transaction`` interactions' documentation as ``maxEntries=<n>``."""
    rest = copy.deepcopy(repository_capabilities["rest"])
    by_type = {entry["type"]: entry for entry in rest.get("resource", [])}
    resources: list[dict[str, Any]] = []
    for rtype in resource_types:
        entry = by_type.get(rtype)
        if entry is None:
            continue
        if rtype not in deletable:
            entry["interaction"] = [i for i in entry["interaction"] if i.get("code") != "delete"]
        entry["conditionalRead"] = "full-support"
        entry["conditionalDelete"] = "not-supported"
        profile = profile_for(rtype)
        if profile is not None:
            entry.setdefault("supportedProfile", [profile])
        if rtype == "Patient":
            entry["operation"] = [dict(PATIENT_EXPORT)]
        resources.append(entry)
    search_params = list(rest.get("searchParam", []))
    known = {p["name"] for p in search_params}
    search_params.extend(p for p in _RESULT_PARAMETERS if p["name"] not in known)
    interactions = [dict(i) for i in rest.get("interaction", [])]
    documentation = _REST_DOCUMENTATION
    if max_bundle_entries is not None:
        cap = bundle_cap_text(max_bundle_entries)
        documentation += " " + cap
        for interaction in interactions:
            if interaction.get("code") in ("batch", "transaction"):
                interaction["documentation"] = cap
    return {
        "resourceType": "CapabilityStatement",
        "id": "tie-fhir-api",
        "url": f"{base}/metadata",
        "version": SOFTWARE_VERSION,
        "name": "TieFhirApi",
        "title": "Trust Integration Engine FHIR R4 API",
        "status": "active",
        "experimental": False,
        "date": STATEMENT_DATE,
        "publisher": "Trust Integration Engine",
        "description": (
            "FHIR R4 (UK Core) API of the Trust Integration Engine. Every write is validated and becomes a "
            "canonical clinical event on the clinical-events topic."
        ),
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {"description": "Trust Integration Engine FHIR API", "url": base},
        "instantiates": [BULK_DATA_CAPABILITY],
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": documentation,
                "security": {
                    "cors": False,
                    "description": (
                        "Through Azure API Management: an Entra ID access token with the operation's app "
                        "role and a subscription key."
                    ),
                },
                "resource": resources,
                "interaction": interactions,
                "searchParam": search_params,
                "operation": [dict(SYSTEM_EXPORT)],
            }
        ],
    }
