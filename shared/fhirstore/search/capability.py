"""What the repositories support, shaped for the HTTP layer's CapabilityStatement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.fhirstore.search.parameters import SEARCH_PARAMETERS, SUPPORTED_TYPES, ParamType
from shared.fhirstore.search.query import DEFAULT_COUNT, MAX_COUNT

_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)


def capabilities(
    types: Sequence[str] = SUPPORTED_TYPES, *, max_transaction_entries: int = 500
) -> dict[str, Any]:
    """What the repositories support, shaped so the HTTP layer can build the CapabilityStatement.

    ``rest`` is the content of ``CapabilityStatement.rest[0]`` (mode server; resources with interactions,
    versioning, conditional support, search includes and parameters; system interactions). ``limits``
    holds paging and bundle limits (not CapabilityStatement elements).
    """
    resources: list[dict[str, Any]] = []
    for rtype in types:
        defs = SEARCH_PARAMETERS[rtype]
        refs = [d for d in defs.values() if d.type is ParamType.REFERENCE]
        resources.append(
            {
                "type": rtype,
                "interaction": [{"code": code} for code in _INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "not-supported",
                "conditionalUpdate": True,
                "conditionalDelete": "not-supported",
                "searchInclude": ["*", *(f"{rtype}:{d.name}" for d in refs)],
                "searchRevInclude": sorted(
                    f"{other}:{d.name}"
                    for other in types
                    for d in SEARCH_PARAMETERS[other].values()
                    if d.type is ParamType.REFERENCE and (not d.targets or rtype in d.targets)
                ),
                "searchParam": [
                    {"name": d.name, "type": str(d.type), "documentation": d.documentation}
                    for d in defs.values()
                ],
            }
        )
    return {
        "rest": {
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "searchParam": [
                {"name": "_count", "type": "number", "documentation": f"Page size (max {MAX_COUNT})"},
                {"name": "_offset", "type": "number", "documentation": "Index of the first match returned"},
                {"name": "_sort", "type": "string", "documentation": "_lastUpdated, _id, date/string/token"},
                {"name": "_total", "type": "token", "documentation": "none | estimate | accurate"},
            ],
        },
        "limits": {
            "defaultCount": DEFAULT_COUNT,
            "maxCount": MAX_COUNT,
            "maxTransactionEntries": max_transaction_entries,
            "sortable": ["_lastUpdated", "_id", "date", "string", "token"],
        },
    }
