"""In-memory evaluation of a query against one stored resource: the reference semantics the SQLite
adapter's SQL reproduces (the tests compare the two)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.fhirstore.search.index import IndexRows, extract_index
from shared.fhirstore.search.parameters import ParamType
from shared.fhirstore.search.query import Criterion, SearchQuery
from shared.fhirstore.search.values import (
    DateValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    date_predicate,
    date_range,
)


def token_matches(value: TokenValue, system: str | None, code: str) -> bool:
    if value.system is not None and (system or "") != value.system:
        return False
    return value.code is None or value.code == code


def string_matches(modifier: str | None, value: StringValue, norm: str, exact: str) -> bool:
    if modifier == "exact":
        return exact == value.text
    if modifier == "contains":
        return value.norm in norm
    return norm.startswith(value.norm)


def reference_matches(value: ReferenceValue, rtype: str, rid: str) -> bool:
    return rid == value.id and (value.type is None or value.type == rtype)


def matches(resource: Mapping[str, Any], query: SearchQuery, index: IndexRows | None = None) -> bool:
    """In-memory evaluation of ``query``'s criteria against one stored resource (with meta set)."""
    if resource.get("resourceType") != query.resource_type:
        return False
    rows = index if index is not None else extract_index(resource)
    return all(_criterion_matches(resource, rows, criterion) for criterion in query.criteria)


def _criterion_matches(resource: Mapping[str, Any], rows: IndexRows, criterion: Criterion) -> bool:
    name = criterion.param.name
    if name == "_id":
        rid = str(resource["id"])
        return any(isinstance(v, TokenValue) and token_matches(v, None, rid) for v in criterion.values)
    if name == "_lastUpdated":
        bounds = date_range(str(resource.get("meta", {}).get("lastUpdated", "")))
        if bounds is None:
            return False
        lo, hi = bounds
        return any(
            date_predicate(v.prefix, v.lo, v.hi, lo, hi) for v in criterion.values if isinstance(v, DateValue)
        )
    kind = criterion.param.type
    if kind is ParamType.TOKEN or kind is ParamType.URI:
        own_t = [(s, c) for n, s, c in rows.tokens if n == name]
        if criterion.modifier == "missing":
            return (not own_t) is criterion.values[0]
        hit = any(
            token_matches(v, s, c) for v in criterion.values if isinstance(v, TokenValue) for s, c in own_t
        )
        return not hit if criterion.modifier == "not" else hit
    if kind is ParamType.STRING:
        own_s = [(norm, exact) for n, norm, exact in rows.strings if n == name]
        if criterion.modifier == "missing":
            return (not own_s) is criterion.values[0]
        return any(
            string_matches(criterion.modifier, v, norm, exact)
            for v in criterion.values
            if isinstance(v, StringValue)
            for norm, exact in own_s
        )
    if kind is ParamType.DATE:
        own_d = [(lo, hi) for n, lo, hi in rows.dates if n == name]
        if criterion.modifier == "missing":
            return (not own_d) is criterion.values[0]
        return any(
            date_predicate(v.prefix, v.lo, v.hi, lo, hi)
            for v in criterion.values
            if isinstance(v, DateValue)
            for lo, hi in own_d
        )
    own_r = [(t, i) for n, t, i in rows.references if n == name]
    if criterion.modifier == "missing":
        return (not own_r) is criterion.values[0]
    return any(
        reference_matches(v, t, i)
        for v in criterion.values
        if isinstance(v, ReferenceValue)
        for t, i in own_r
    )
