"""FHIR R4 search: the parameter definitions (as data), value parsing, index extraction and matching.

Adapter-neutral: :func:`parse_search`, :func:`extract_index` and :func:`matches` (the reference semantics
the SQLite adapter's SQL reproduces); :data:`SEARCH_PARAMETERS` is read from ``search_parameters.json`` and
validated at import. Value semantics per type, result parameters and unknown-parameter handling:
``docs/fhir-search.md``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from shared.fhirstore.errors import InvalidSearch, UnsupportedResourceType

DEFAULT_COUNT = 20
MAX_COUNT = 500

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

#: Range bounds standing for "unbounded" (microseconds since the epoch, fit in SQLite's 64-bit integers).
NEG_INF = -(2**62)
POS_INF = 2**62

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class ParamType(StrEnum):
    TOKEN = "token"  # noqa: S105 - a FHIR parameter type, not a secret
    DATE = "date"
    REFERENCE = "reference"
    STRING = "string"
    URI = "uri"


@dataclass(frozen=True, slots=True)
class SearchParamDef:
    """A search parameter: ``paths`` are FHIRPath-lite expressions relative to the resource.

    ``targets`` restricts a reference parameter to those target types (empty = any type).
    """

    name: str
    type: ParamType
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()
    documentation: str = ""


class SearchParameterTableError(ValueError):
    """``search_parameters.json`` is malformed; the message names the entry."""


#: The parameter table (data, read and validated once at import).
SEARCH_PARAMETERS_FILE = "search_parameters.json"

_ENTRY_KEYS = frozenset({"name", "type", "paths", "targets", "documentation"})
_NAME_RE = re.compile(r"^_?[a-z][A-Za-z0-9-]*$")
_PATH_RE = re.compile(r"^[a-z][A-Za-z0-9]*(\[x\])?(\.[a-z][A-Za-z0-9]*(\[x\])?)*$")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]+$")
#: Evaluated on the stored id / lastUpdated by the code, so the table must define them for every type.
_REQUIRED_COMMON = ("_id", "_lastUpdated")


def _str_list(where: str, key: str, value: Any, pattern: re.Pattern[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SearchParameterTableError(f"{where}: '{key}' must be a non-empty list")
    for item in value:
        if not isinstance(item, str) or not pattern.match(item):
            raise SearchParameterTableError(f"{where}: '{key}' has an invalid item {str(item)[:64]!r}")
    if len(set(value)) != len(value):
        raise SearchParameterTableError(f"{where}: '{key}' repeats an item")
    return tuple(value)


def _param_def(where: str, raw: Any, types: Sequence[str]) -> SearchParamDef:
    if not isinstance(raw, dict):
        raise SearchParameterTableError(f"{where}: an entry must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SearchParameterTableError(f"{where}: 'name' must be a search parameter name")
    where = f"{where} ({name})"
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise SearchParameterTableError(f"{where}: unknown keys {unknown}")
    try:
        type_ = ParamType(str(raw.get("type")))
    except ValueError:
        raise SearchParameterTableError(
            f"{where}: 'type' must be one of {sorted(str(t) for t in ParamType)}"
        ) from None
    paths = _str_list(where, "paths", raw.get("paths"), _PATH_RE)
    targets: tuple[str, ...] = ()
    if "targets" in raw:
        if type_ is not ParamType.REFERENCE:
            raise SearchParameterTableError(f"{where}: 'targets' is only for reference parameters")
        targets = _str_list(where, "targets", raw["targets"], _TYPE_RE)
        stray = [t for t in targets if t not in types]
        if stray:
            raise SearchParameterTableError(f"{where}: targets {stray} are not supported types")
    documentation = raw.get("documentation")
    if not isinstance(documentation, str) or not documentation.strip():
        raise SearchParameterTableError(f"{where}: 'documentation' must be a non-empty string")
    return SearchParamDef(name, type_, paths, targets, documentation)


def _param_defs(where: str, raw: Any, types: Sequence[str]) -> tuple[SearchParamDef, ...]:
    if not isinstance(raw, list) or not raw:
        raise SearchParameterTableError(f"{where}: must be a non-empty list of parameters")
    return tuple(_param_def(f"{where}[{i}]", item, types) for i, item in enumerate(raw))


def load_search_parameters(
    table: Any, source: str = SEARCH_PARAMETERS_FILE
) -> tuple[tuple[SearchParamDef, ...], dict[str, dict[str, SearchParamDef]]]:
    """Validate the parsed table: (common parameters, type -> name -> definition with common included).

    Raises :class:`SearchParameterTableError` naming the first bad entry.
    """
    if not isinstance(table, dict) or set(table) - {"_comment"} != {"common", "resources"}:
        raise SearchParameterTableError(f"{source}: expected an object with 'common' and 'resources'")
    per_type = table["resources"]
    if not isinstance(per_type, dict) or not per_type:
        raise SearchParameterTableError(f"{source}: 'resources' must be a non-empty object")
    types = list(per_type)
    for rtype in types:
        if not _TYPE_RE.match(rtype):
            raise SearchParameterTableError(f"{source}: resources: {rtype[:64]!r} is not a resource type")
    common = _param_defs(f"{source}: common", table["common"], types)
    missing = [name for name in _REQUIRED_COMMON if name not in {d.name for d in common}]
    if missing:
        raise SearchParameterTableError(f"{source}: common: {missing} must be defined")
    by_type: dict[str, dict[str, SearchParamDef]] = {}
    for rtype in types:
        where = f"{source}: resources.{rtype}"
        defs: dict[str, SearchParamDef] = {}
        for i, definition in enumerate((*common, *_param_defs(where, per_type[rtype], types))):
            if definition.name in defs:
                entry = f"[{i - len(common)}]" if i >= len(common) else ""
                raise SearchParameterTableError(f"{where}{entry} ({definition.name}): name defined twice")
            defs[definition.name] = definition
        by_type[rtype] = defs
    return common, by_type


def _read_table() -> Any:
    text = resources.files("shared.fhirstore").joinpath(SEARCH_PARAMETERS_FILE).read_text("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SearchParameterTableError(f"{SEARCH_PARAMETERS_FILE}: not JSON (line {exc.lineno})") from None


_COMMON, _BY_TYPE = load_search_parameters(_read_table())

#: Types the repositories accept, in the table's order. The first nine are the API's clinical resources;
#: the rest are supporting resources (targets of references) stored and searched the same way.
SUPPORTED_TYPES: tuple[str, ...] = tuple(_BY_TYPE)

#: Parameters every type has. ``_id`` and ``_lastUpdated`` are evaluated on the stored id/lastUpdated.
COMMON_PARAMETERS: tuple[SearchParamDef, ...] = _COMMON

#: type -> parameter name -> definition (common parameters included).
SEARCH_PARAMETERS: Mapping[str, Mapping[str, SearchParamDef]] = _BY_TYPE

#: Parameters that shape results rather than select resources.
RESULT_PARAMETERS = frozenset({"_count", "_offset", "_sort", "_include", "_revinclude", "_total", "_summary"})
#: Accepted and left to the HTTP layer (presentation).
PRESENTATION_PARAMETERS = frozenset({"_elements", "_format", "_pretty"})

_DATE_PREFIXES = frozenset({"eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap"})
_MODIFIERS: Mapping[ParamType, frozenset[str]] = {
    ParamType.TOKEN: frozenset({"not", "missing"}),
    ParamType.DATE: frozenset({"missing"}),
    ParamType.REFERENCE: frozenset({"missing"}),  # plus a target type name
    ParamType.STRING: frozenset({"exact", "contains", "missing"}),
    ParamType.URI: frozenset({"missing"}),
}
_SORTABLE = frozenset({ParamType.DATE, ParamType.STRING, ParamType.TOKEN})


def check_type(resource_type: str) -> str:
    """``resource_type`` if supported, else :class:`UnsupportedResourceType`."""
    if resource_type not in SEARCH_PARAMETERS:
        raise UnsupportedResourceType(resource_type)
    return resource_type


def parameters_for(resource_type: str) -> Mapping[str, SearchParamDef]:
    return SEARCH_PARAMETERS[check_type(resource_type)]


# --------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``system`` None = any system (plain ``code``); ``""`` = no system (``|code``).
    ``code`` None = any code (``system|``)."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: str
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    type: str | None
    id: str


@dataclass(frozen=True, slots=True)
class StringValue:
    text: str
    norm: str


Value = TokenValue | DateValue | ReferenceValue | StringValue | bool


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


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` not preceded by a backslash escape; escapes are kept for :func:`unescape`."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """Undo FHIR search escaping (``\\,`` ``\\|`` ``\\$`` ``\\\\``)."""
    return re.sub(r"\\(.)", r"\1", text)


def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form used by string search (NFKD, marks dropped, casefolded)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch of a timezone-aware datetime (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _micros(moment)


def date_range(text: str) -> tuple[int, int] | None:
    """The half-open range ``[lo, hi)`` (epoch microseconds) a FHIR date/dateTime/instant denotes.

    Precision sets the width (year, month, day, minute, second, fraction digits). None if unparseable.
    """
    value = text.strip()
    # An unencoded '+' in a query string arrives as a space: "2020-01-01T10:00:00 01:00".
    if len(value) > 6 and value[-6] == " " and value[-3] == ":":
        value = value[:-6] + "+" + value[-5:]
    match = _DATE_RE.match(value)
    if not match:
        return None
    g = match.groupdict()
    try:
        tz: timezone = UTC
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
            if hours > 14 or minutes > 59:
                return None
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        year = int(g["y"])
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=tz)
            return _bounded(start, lambda: datetime(year + 1, 1, 1, tzinfo=tz))
        month = int(g["m"])
        if g["d"] is None:
            start = datetime(year, month, 1, tzinfo=tz)
            nxt = (year + 1, 1) if month == 12 else (year, month + 1)
            return _bounded(start, lambda: datetime(nxt[0], nxt[1], 1, tzinfo=tz))
        day = int(g["d"])
        if g["H"] is None:
            start = datetime(year, month, day, tzinfo=tz)
            return _bounded(start, lambda: start + timedelta(days=1))
        start = datetime(year, month, day, int(g["H"]), int(g["M"]), int(g["S"] or 0), tzinfo=tz)
        if g["S"] is None:
            width = timedelta(minutes=1)
        elif g["f"] is None:
            width = timedelta(seconds=1)
        else:
            digits = g["f"][:6]
            start = start.replace(microsecond=int(digits.ljust(6, "0")))
            width = timedelta(microseconds=10 ** (6 - len(digits)))
        return _bounded(start, lambda: start + width)
    except (ValueError, OverflowError):
        return None


def _bounded(start: datetime, end: Any) -> tuple[int, int]:
    try:
        hi = _micros(end())
    except (ValueError, OverflowError):
        hi = POS_INF
    return _micros(start), hi


def date_predicate(prefix: str, p_lo: int, p_hi: int, r_lo: int, r_hi: int) -> bool:
    """Does resource range R match search range P under ``prefix``? (``ap`` expects a widened P.)"""
    within = r_lo >= p_lo and r_hi <= p_hi
    if prefix == "eq":
        return within
    if prefix == "ne":
        return not within
    if prefix == "gt":
        return r_hi > p_hi
    if prefix == "lt":
        return r_lo < p_lo
    if prefix == "ge":
        return r_hi > p_hi or within
    if prefix == "le":
        return r_lo < p_lo or within
    if prefix == "sa":
        return r_lo >= p_hi
    if prefix == "eb":
        return r_hi <= p_lo
    if prefix == "ap":
        return r_lo < p_hi and r_hi > p_lo
    raise ValueError(prefix)


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


_REF_RE = re.compile(r"^(?:.*/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def parse_reference(text: str) -> tuple[str, str] | None:
    """``(type, id)`` of a literal reference (relative, absolute or version-specific); None otherwise
    (contained ``#x``, ``urn:`` references, logical references)."""
    if text.startswith(("#", "urn:")):
        return None
    match = _REF_RE.match(text)
    if not match:
        return None
    return match["type"], match["id"]


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


# ------------------------------------------------------------------------------------------- parsing


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


# ---------------------------------------------------------------------------------------- extraction


@dataclass(slots=True)
class IndexRows:
    """Index rows of one resource; each tuple starts with the parameter name."""

    tokens: list[tuple[str, str | None, str]] = field(default_factory=list)
    strings: list[tuple[str, str, str]] = field(default_factory=list)  # (param, normalised, exact)
    dates: list[tuple[str, int, int]] = field(default_factory=list)
    references: list[tuple[str, str, str]] = field(default_factory=list)


def _walk(node: Any, segments: Sequence[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, segments)
        return
    if not segments:
        yield node
        return
    if not isinstance(node, dict):
        return
    head, rest = segments[0], segments[1:]
    if head.endswith("[x]"):
        stem = head[:-3]
        for key, value in node.items():
            if key.startswith(stem) and len(key) > len(stem) and key[len(stem)].isupper():
                yield from _walk(value, rest)
    elif head in node:
        yield from _walk(node[head], rest)


def evaluate_path(resource: Mapping[str, Any], path: str) -> Iterator[Any]:
    """Values at a FHIRPath-lite ``path`` (dotted names, ``x[x]`` choice, arrays flattened)."""
    yield from _walk(resource, path.split("."))


def _tokens(node: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(node, bool):
        yield None, "true" if node else "false"
    elif isinstance(node, str):
        yield None, node
    elif isinstance(node, dict):
        if "coding" in node:
            for coding in node["coding"] if isinstance(node["coding"], list) else ():
                yield from _tokens(coding)
        elif isinstance(node.get("code"), str):
            yield _opt_str(node.get("system")), node["code"]
        elif isinstance(node.get("value"), str):
            yield _opt_str(node.get("system")), node["value"]


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for part in (*_NAME_PARTS, *_ADDRESS_PARTS):
            value = node.get(part)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield from (item for item in value if isinstance(item, str))


def _dates(node: Any) -> Iterator[tuple[int, int]]:
    if isinstance(node, str):
        bounds = date_range(node)
        if bounds is not None:
            yield bounds
    elif isinstance(node, dict) and ("start" in node or "end" in node):
        start = date_range(node["start"]) if isinstance(node.get("start"), str) else None
        end = date_range(node["end"]) if isinstance(node.get("end"), str) else None
        if start is None and end is None:
            return
        if start is not None and end is not None:
            # An end before the start breaks FHIR invariant per-1; index the span of both bounds so a
            # range is never empty (the SQL relies on lo < hi).
            yield min(start[0], end[0]), max(start[1], end[1])
            return
        yield (start[0] if start else NEG_INF), (end[1] if end else POS_INF)


def _references(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict) and isinstance(node.get("reference"), str):
        parsed = parse_reference(node["reference"])
        if parsed is not None:
            yield parsed


def extract_index(resource: Mapping[str, Any]) -> IndexRows:
    """Index rows for every search parameter of the resource's type except ``_id``/``_lastUpdated``
    (evaluated on stored columns). Values that cannot be interpreted are skipped, never an error."""
    rows = IndexRows()
    defs = SEARCH_PARAMETERS.get(str(resource.get("resourceType")), {})
    for definition in defs.values():
        if definition.name in ("_id", "_lastUpdated"):
            continue
        name = definition.name
        for path in definition.paths:
            for node in evaluate_path(resource, path):
                if definition.type is ParamType.TOKEN or definition.type is ParamType.URI:
                    rows.tokens.extend((name, system, code) for system, code in _tokens(node))
                elif definition.type is ParamType.STRING:
                    rows.strings.extend((name, normalize_string(text), text) for text in _strings(node))
                elif definition.type is ParamType.DATE:
                    rows.dates.extend((name, lo, hi) for lo, hi in _dates(node))
                else:
                    rows.references.extend(
                        (name, rtype, rid)
                        for rtype, rid in _references(node)
                        if not definition.targets or rtype in definition.targets
                    )
    # Duplicates (the same code twice, a path listed twice) add nothing: keep rows unique.
    rows.tokens = list(dict.fromkeys(rows.tokens))
    rows.strings = list(dict.fromkeys(rows.strings))
    rows.dates = list(dict.fromkeys(rows.dates))
    rows.references = list(dict.fromkeys(rows.references))
    return rows


# ----------------------------------------------------------------------------------------- matching


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


# ------------------------------------------------------------------------------------ capabilities

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
