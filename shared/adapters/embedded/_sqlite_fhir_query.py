"""Search criteria compiled to SQL over the index tables of the embedded FHIR store
(:mod:`shared.adapters.embedded.sqlite_fhir`; semantics: :mod:`shared.fhirstore.search`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.fhirstore.search import (
    Criterion,
    DateValue,
    ParamType,
    ReferenceValue,
    SearchQuery,
    StringValue,
    TokenValue,
)

_TABLE_FOR = {
    ParamType.TOKEN: "fhir_idx_token",
    ParamType.URI: "fhir_idx_token",
    ParamType.STRING: "fhir_idx_string",
    ParamType.DATE: "fhir_idx_date",
    ParamType.REFERENCE: "fhir_idx_ref",
}
_LAST_UPDATED_WIDTH = 1000  # lastUpdated has millisecond precision: [t, t + 1 ms)
_STRING_UPPER = "\U0010ffff"


def _date_sql(prefix: str, lo_col: str, hi_col: str, lo: int, hi: int) -> tuple[str, list[Any]]:
    """SQL for :func:`shared.fhirstore.search.date_predicate` (resource range in the two columns)."""
    within = f"({lo_col} >= ? AND {hi_col} <= ?)"
    if prefix == "eq":
        # "lo < P.hi" is implied (a range is never empty) and bounds the index range scan.
        return f"({lo_col} >= ? AND {lo_col} < ? AND {hi_col} <= ?)", [lo, hi, hi]
    if prefix == "ne":
        return f"NOT {within}", [lo, hi]
    if prefix == "gt":
        return f"{hi_col} > ?", [hi]
    if prefix == "lt":
        return f"{lo_col} < ?", [lo]
    if prefix == "ge":
        return f"({hi_col} > ? OR {within})", [hi, lo, hi]
    if prefix == "le":
        return f"({lo_col} < ? OR {within})", [lo, lo, hi]
    if prefix == "sa":
        return f"{lo_col} >= ?", [hi]
    if prefix == "eb":
        return f"({hi_col} <= ? AND {lo_col} < ?)", [lo, lo]
    if prefix == "ap":
        return f"({lo_col} < ? AND {hi_col} > ?)", [hi, lo]
    raise ValueError(prefix)


def _value_sql(criterion: Criterion) -> tuple[str, list[Any]]:
    """OR of the criterion's values against one index row."""
    parts: list[str] = []
    args: list[Any] = []
    for value in criterion.values:
        if isinstance(value, TokenValue):
            clause: list[str] = []
            if value.code is not None:
                clause.append("code = ?")
                args.append(value.code)
            if value.system == "":
                clause.append("system IS NULL")
            elif value.system is not None:
                clause.append("system = ?")
                args.append(value.system)
            parts.append("(" + " AND ".join(clause) + ")")
        elif isinstance(value, StringValue):
            if criterion.modifier == "exact":
                parts.append("exact = ?")
                args.append(value.text)
            elif criterion.modifier == "contains":
                parts.append("instr(norm, ?) > 0")
                args.append(value.norm)
            else:
                parts.append("(norm >= ? AND norm < ?)")
                args.extend((value.norm, value.norm + _STRING_UPPER))
        elif isinstance(value, DateValue):
            sql, date_args = _date_sql(value.prefix, "lo", "hi", value.lo, value.hi)
            parts.append(sql)
            args.extend(date_args)
        elif isinstance(value, ReferenceValue):
            if value.type is None:
                parts.append("tid = ?")
                args.append(value.id)
            else:
                parts.append("(tid = ? AND ttype = ?)")
                args.extend((value.id, value.type))
    return "(" + " OR ".join(parts) + ")", args


def _criterion_sql(rtype: str, criterion: Criterion) -> tuple[str, list[Any]]:
    name = criterion.param.name
    if name == "_id":
        ids = [v.code for v in criterion.values if isinstance(v, TokenValue) and not v.system]
        if not ids:
            return "0", []
        return f"r.id IN ({','.join('?' * len(ids))})", list(ids)
    if name == "_lastUpdated":
        parts, args = [], []
        for value in criterion.values:
            if isinstance(value, DateValue):
                sql, date_args = _date_sql(
                    value.prefix,
                    "r.last_updated",
                    f"(r.last_updated + {_LAST_UPDATED_WIDTH})",
                    value.lo,
                    value.hi,
                )
                parts.append(sql)
                args.extend(date_args)
        return "(" + " OR ".join(parts) + ")", args
    table = _TABLE_FOR[criterion.param.type]
    if criterion.modifier == "missing":
        negate = "NOT " if criterion.values[0] is True else ""
        sub = f"SELECT id FROM {table} INDEXED BY {table}_value WHERE rtype = ? AND param = ?"
        return f"r.id {negate}IN ({sub})", [rtype, name]
    value_sql, args = _value_sql(criterion)
    negate = "NOT " if criterion.modifier == "not" else ""
    sub = f"SELECT id FROM {table} INDEXED BY {table}_value WHERE rtype = ? AND param = ? AND {value_sql}"
    sql = f"r.id {negate}IN ({sub})"
    return sql, [rtype, name, *args]


#: Driver preference: exact lookups first, then string prefixes, then bounded (``eq``) date ranges.
_DRIVER_RANK = {
    ParamType.TOKEN: 1,
    ParamType.URI: 1,
    ParamType.REFERENCE: 1,
    ParamType.STRING: 2,
    ParamType.DATE: 3,
}


def _driver(criteria: Sequence[Criterion]) -> Criterion | None:
    """The criterion whose index lookup should drive the query: positive (no ``:not``/``:missing``)."""
    best: tuple[int, Criterion] | None = None
    for criterion in criteria:
        if criterion.modifier in ("not", "missing") or criterion.param.name == "_lastUpdated":
            continue
        if criterion.param.type is ParamType.DATE and not all(
            isinstance(v, DateValue) and v.prefix == "eq" for v in criterion.values
        ):
            continue  # open-ended date ranges usually match most resources: filter, do not drive
        rank = 0 if criterion.param.name == "_id" else _DRIVER_RANK[criterion.param.type]
        if best is None or rank < best[0]:
            best = (rank, criterion)
    return None if best is None else best[1]


def _driver_sql(rtype: str, criterion: Criterion) -> tuple[str, list[Any]]:
    """Distinct ids matching one positive criterion (ignoring deletion, checked by the caller)."""
    if criterion.param.name == "_id":
        sql, args = _criterion_sql(rtype, criterion)
        return f"SELECT id FROM fhir_resource r WHERE r.rtype = ? AND {sql}", [rtype, *args]
    table = _TABLE_FOR[criterion.param.type]
    value_sql, args = _value_sql(criterion)
    return (
        f"SELECT DISTINCT id FROM {table} INDEXED BY {table}_value "
        f"WHERE rtype = ? AND param = ? AND {value_sql}",
        [rtype, criterion.param.name, *args],
    )


def _order_sql(rtype: str, query: SearchQuery) -> tuple[str, list[Any]]:
    parts: list[str] = []
    args: list[Any] = []
    for key in query.sort:
        direction = "DESC" if key.descending else "ASC"
        if key.param == "_lastUpdated":
            parts.append(f"r.last_updated {direction}")
            continue
        if key.param == "_id":
            parts.append(f"r.id {direction}")
            continue
        assert key.type is not None
        table = _TABLE_FOR[key.type]
        column = {ParamType.DATE: "lo", ParamType.STRING: "norm"}.get(key.type, "code")
        aggregate = "MIN"
        if key.descending:
            column = "hi" if key.type is ParamType.DATE else column
            aggregate = "MAX"
        sub = (
            f"(SELECT {aggregate}({column}) FROM {table} s WHERE s.rtype = ? AND s.id = r.id AND s.param = ?)"
        )
        # Resources without a value sort last either way (SQLite puts NULL first in ascending order).
        parts.append(f"{sub} IS NULL, {sub} {direction}")
        args.extend((rtype, key.param, rtype, key.param))
    if not query.sort:
        parts.append("r.last_updated ASC")
    parts.append("r.id ASC")
    return ", ".join(parts), args
