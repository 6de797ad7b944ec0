"""FHIR R4 search: the parameter definitions (as data), value parsing, index extraction and matching.

Adapter-neutral: :func:`parse_search`, :func:`extract_index` and :func:`matches` (the reference semantics
the SQLite adapter's SQL reproduces); :data:`SEARCH_PARAMETERS` is read from ``search_parameters.json`` and
validated at import. Value semantics per type, result parameters and unknown-parameter handling:
``docs/fhir-search.md``. Modules: ``parameters`` (the table), ``values`` (value types and their text
forms), ``query`` (request -> :class:`SearchQuery`), ``index`` (index rows of a resource), ``matching``
(in-memory evaluation), ``capability`` (what the repositories support).
"""

from __future__ import annotations

from shared.fhirstore.search.capability import capabilities
from shared.fhirstore.search.index import IndexRows, evaluate_path, extract_index
from shared.fhirstore.search.matching import matches, reference_matches, string_matches, token_matches
from shared.fhirstore.search.parameters import (
    COMMON_PARAMETERS,
    PRESENTATION_PARAMETERS,
    RESULT_PARAMETERS,
    SEARCH_PARAMETERS,
    SEARCH_PARAMETERS_FILE,
    SUPPORTED_TYPES,
    ParamType,
    SearchParamDef,
    SearchParameterTableError,
    check_type,
    load_search_parameters,
    parameters_for,
)
from shared.fhirstore.search.query import (
    DEFAULT_COUNT,
    MAX_COUNT,
    Criterion,
    Include,
    SearchQuery,
    SortKey,
    parse_query_string,
    parse_search,
)
from shared.fhirstore.search.values import (
    ID_PATTERN,
    NEG_INF,
    POS_INF,
    DateValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    Value,
    date_predicate,
    date_range,
    normalize_string,
    parse_reference,
    split_unescaped,
    to_micros,
    unescape,
)

__all__ = [
    "COMMON_PARAMETERS",
    "DEFAULT_COUNT",
    "ID_PATTERN",
    "MAX_COUNT",
    "NEG_INF",
    "POS_INF",
    "PRESENTATION_PARAMETERS",
    "RESULT_PARAMETERS",
    "SEARCH_PARAMETERS",
    "SEARCH_PARAMETERS_FILE",
    "SUPPORTED_TYPES",
    "Criterion",
    "DateValue",
    "Include",
    "IndexRows",
    "ParamType",
    "ReferenceValue",
    "SearchParamDef",
    "SearchParameterTableError",
    "SearchQuery",
    "SortKey",
    "StringValue",
    "TokenValue",
    "Value",
    "capabilities",
    "check_type",
    "date_predicate",
    "date_range",
    "evaluate_path",
    "extract_index",
    "load_search_parameters",
    "matches",
    "normalize_string",
    "parameters_for",
    "parse_query_string",
    "parse_reference",
    "parse_search",
    "reference_matches",
    "split_unescaped",
    "string_matches",
    "to_micros",
    "token_matches",
    "unescape",
]
