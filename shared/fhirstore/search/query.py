"""Request parameters -> a validated :class:`SearchQuery` (criteria, paging, sort, includes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from shared.fhirstore.errors import InvalidSearch
from shared.fhirstore.search.parameters import (
    PRESENTATION_PARAMETERS,
    SEARCH_PARAMETERS,
    ParamType,
    SearchParamDef,
    parameters_for,
)
from shared.fhirstore.search.values import (
    ID_PATTERN,
    DateValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    Value,
    date_range,
    normalize_string,
    parse_reference,
    split_unescaped,
    to_micros,
    unescape,
)

DEFAULT_COUNT = 20
MAX_COUNT = 500


_DATE_PREFIXES = frozenset({"eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap"})
_MODIFIERS: Mapping[ParamType, frozenset[str]] = {
    ParamType.TOKEN: frozenset({"not", "missing"}),
    ParamType.DATE: frozenset({"missing"}),
    ParamType.REFERENCE: frozenset({"missing"}),  # plus a target type name
    ParamType.STRING: frozenset({"exact", "contains", "missing"}),
    ParamType.URI: frozenset({"missing"}),
}
_SORTABLE = frozenset({ParamType.DATE, ParamType.STRING, ParamType.TOKEN})


@dataclass(frozen=True, slots=True)
class Criterion:
    """One occurrence of a parameter: its values are OR'd. ``values`` holds one bool for ``:missing``."""

    param: SearchParamDef
    modifier: str | None
    values: tuple[Value, ...]
    raw_name: str
    raw_value: str


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str
    descending: bool
    type: ParamType | None  # None for _lastUpdated / _id (stored columns)


@dataclass(frozen=True, slots=True)
class Include:
    """``_include`` (``reverse=False``): resources referenced by the matches through ``param`` of
    ``source_type`` (= the searched type). ``_revinclude``: resources of ``source_type`` referring to the
    matches through ``param``. ``param`` None is ``*`` (every reference parameter)."""

    source_type: str
    param: str | None
    target_type: str | None
    reverse: bool


@dataclass(frozen=True, slots=True)
class SearchQuery:
    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    total: bool = True
    ignored: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = field(default=())

    def reference_params(self, source_type: str, include: Include) -> list[SearchParamDef]:
        defs = parameters_for(source_type)
        if include.param is None:
            return [d for d in defs.values() if d.type is ParamType.REFERENCE]
        return [defs[include.param]]


def _parse_date(name: str, raw: str, now: datetime) -> DateValue:
    prefix = "eq"
    text = raw
    if len(raw) > 2 and raw[:2] in _DATE_PREFIXES:
        prefix, text = raw[:2], raw[2:]
    bounds = date_range(text)
    if bounds is None:
        raise InvalidSearch(name, "not a valid FHIR date/dateTime (expected YYYY[-MM[-DD[Thh:mm[:ss]...]]])")
    lo, hi = bounds
    if prefix == "ap":
        now_us = to_micros(now)
        lo -= abs(now_us - lo) // 10
        hi += abs(now_us - hi) // 10
    return DateValue(prefix, lo, hi)


def _parse_reference_value(definition: SearchParamDef, modifier: str | None, raw: str) -> ReferenceValue:
    text = unescape(raw)
    parsed = parse_reference(text) if "/" in text else None
    if parsed is not None:
        rtype, rid = parsed
        if modifier and modifier != rtype:
            raise InvalidSearch(definition.name, "reference type conflicts with the type modifier")
        return ReferenceValue(rtype, rid)
    if not ID_PATTERN.match(text):
        raise InvalidSearch(definition.name, "expected Type/id, an id or an absolute reference URL")
    if modifier:
        return ReferenceValue(modifier, text)
    if len(definition.targets) == 1:
        return ReferenceValue(definition.targets[0], text)
    return ReferenceValue(None, text)


def _parse_token(name: str, raw: str) -> TokenValue:
    parts = split_unescaped(raw, "|")
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0]))
    if len(parts) != 2:
        raise InvalidSearch(name, "a token has at most one unescaped '|'")
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise InvalidSearch(name, "empty token")
    return TokenValue(system, code or None)


def parse_query_string(query: str) -> list[tuple[str, str]]:
    """Parameters of a conditional URL / ``If-None-Exist`` value (``[Type?]a=1&b=2``, encoded or not)."""
    text = query.strip()
    if "?" in text:
        text = text.split("?", 1)[1]
    return parse_qsl(text, keep_blank_values=True)


def _parse_int(name: str, raw: str, *, minimum: int = 0) -> int:
    if not raw.strip().isdigit():
        raise InvalidSearch(name, "expected a non-negative integer")
    value = int(raw)
    if value < minimum:
        raise InvalidSearch(name, f"must be at least {minimum}")
    return value


def _parse_sort(resource_type: str, raw: str) -> tuple[SortKey, ...]:
    defs = parameters_for(resource_type)
    keys: list[SortKey] = []
    for item in raw.split(","):
        name = item.strip()
        descending = name.startswith("-")
        name = name.lstrip("-")
        if name in ("_lastUpdated", "_id"):
            keys.append(SortKey(name, descending, None))
            continue
        definition = defs.get(name)
        if definition is None or definition.type not in _SORTABLE:
            raise InvalidSearch("_sort", "sorting is supported on _lastUpdated, _id, date, string and token")
        keys.append(SortKey(name, descending, definition.type))
    return tuple(keys)


def _parse_include(resource_type: str, raw: str, *, reverse: bool) -> Include:
    name = "_revinclude" if reverse else "_include"
    if raw.strip() == "*":
        return Include(resource_type, None, None, reverse)
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise InvalidSearch(name, "expected SourceType:parameter[:TargetType]")
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in SEARCH_PARAMETERS:
        raise InvalidSearch(name, "unsupported source type")
    if not reverse and source != resource_type:
        raise InvalidSearch(name, "the source type must be the searched type")
    if target is not None and target not in SEARCH_PARAMETERS:
        raise InvalidSearch(name, "unsupported target type")
    if param == "*":
        return Include(source, None, target, reverse)
    definition = SEARCH_PARAMETERS[source].get(param)
    if definition is None or definition.type is not ParamType.REFERENCE:
        raise InvalidSearch(name, "not a reference parameter of the source type")
    return Include(source, param, target, reverse)


def parse_search(
    resource_type: str,
    params: Sequence[tuple[str, str]] = (),
    *,
    strict: bool = True,
    count: int | None = None,
    offset: int | None = None,
    sort: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    now: datetime | None = None,
) -> SearchQuery:
    """Validate and parse search parameters (see the module docs); keyword arguments override the
    corresponding ``_count``/``_offset``/``_sort``/``_include`` entries of ``params``."""
    defs = parameters_for(resource_type)
    moment = now or datetime.now(UTC)
    criteria: list[Criterion] = []
    ignored: list[str] = []
    applied: list[tuple[str, str]] = []
    p_count: int | None = None
    p_offset = 0
    p_sort: tuple[SortKey, ...] = ()
    sort_raw: list[str] = []
    includes: list[Include] = []
    include_raw: list[tuple[str, str]] = []
    total = True
    summary_count = False

    for raw_name, raw_value in params:
        name, _, modifier = raw_name.partition(":")
        if raw_value == "" and name not in ("_summary",):
            continue  # FHIR: parameters with empty values are ignored
        if name == "_count":
            p_count = _parse_int("_count", raw_value)
        elif name == "_offset":
            p_offset = _parse_int("_offset", raw_value)
        elif name == "_sort":
            p_sort = _parse_sort(resource_type, raw_value)
            sort_raw = [raw_value]
        elif name in ("_include", "_revinclude"):
            if modifier:
                raise InvalidSearch(raw_name, "modifiers (e.g. :iterate) are not supported")
            includes.append(_parse_include(resource_type, raw_value, reverse=name == "_revinclude"))
            include_raw.append((name, raw_value))
        elif name == "_total":
            if raw_value not in ("none", "estimate", "accurate"):
                raise InvalidSearch("_total", "expected none, estimate or accurate")
            total = raw_value != "none"
            applied.append((name, raw_value))
        elif name == "_summary":
            summary_count = raw_value == "count"
        elif name in PRESENTATION_PARAMETERS:
            continue
        elif name in defs and "." not in raw_name:
            criteria.append(_parse_criterion(defs[name], modifier or None, raw_name, raw_value, moment))
            applied.append((raw_name, raw_value))
        elif strict:
            raise InvalidSearch(_safe_name(raw_name), f"not supported for {resource_type}")
        else:
            ignored.append(_safe_name(raw_name))

    if sort is not None:
        p_sort = _parse_sort(resource_type, ",".join(sort)) if sort else ()
        sort_raw = [",".join(sort)] if sort else []
    if include is not None:
        includes = [_parse_include(resource_type, item, reverse=False) for item in include]
        include_raw = [("_include", item) for item in include]
    final_count = count if count is not None else p_count
    if final_count is None:
        final_count = DEFAULT_COUNT
    if final_count < 0:
        raise InvalidSearch("_count", "must be at least 0")
    if summary_count:
        final_count = 0
    final_offset = offset if offset is not None else p_offset
    if final_offset < 0:
        raise InvalidSearch("_offset", "must be at least 0")
    applied.extend(("_sort", value) for value in sort_raw)
    applied.extend(include_raw)
    return SearchQuery(
        resource_type=resource_type,
        criteria=tuple(criteria),
        count=min(final_count, MAX_COUNT),
        offset=final_offset,
        sort=p_sort,
        includes=tuple(includes),
        total=total or summary_count,
        ignored=tuple(ignored),
        params=tuple(applied),
    )


def _safe_name(raw_name: str) -> str:
    """Parameter names go into error texts: keep them short and printable."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in raw_name)
    return cleaned[:64]


def _parse_criterion(
    definition: SearchParamDef, modifier: str | None, raw_name: str, raw_value: str, now: datetime
) -> Criterion:
    name = definition.name
    if modifier is not None:
        allowed = _MODIFIERS[definition.type]
        is_type_modifier = definition.type is ParamType.REFERENCE and modifier in SEARCH_PARAMETERS
        if modifier not in allowed and not is_type_modifier:
            raise InvalidSearch(name, f"modifier ':{_safe_name(modifier)}' is not supported")
        if is_type_modifier and definition.targets and modifier not in definition.targets:
            raise InvalidSearch(name, "type modifier is not a target of this parameter")
        if modifier == "missing":
            if raw_value not in ("true", "false"):
                raise InvalidSearch(name, ":missing expects true or false")
            return Criterion(definition, modifier, (raw_value == "true",), raw_name, raw_value)
    if name in ("_id", "_lastUpdated") and modifier is not None:
        raise InvalidSearch(name, "modifiers are not supported on this parameter")
    values: list[Value] = []
    for part in split_unescaped(raw_value, ","):
        if part == "":
            continue
        if definition.type is ParamType.TOKEN:
            values.append(_parse_token(name, part))
        elif definition.type is ParamType.URI:
            values.append(TokenValue(None, unescape(part)))
        elif definition.type is ParamType.DATE:
            values.append(_parse_date(name, unescape(part), now))
        elif definition.type is ParamType.REFERENCE:
            values.append(_parse_reference_value(definition, modifier, part))
        else:
            text = unescape(part)
            values.append(StringValue(text, normalize_string(text)))
    if not values:
        raise InvalidSearch(name, "no value")
    return Criterion(definition, modifier, tuple(values), raw_name, raw_value)
