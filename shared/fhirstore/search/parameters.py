"""The search-parameter table: ``search_parameters.json`` (in the ``shared.fhirstore`` package), read and
validated once at import, and the lookups on it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

from shared.fhirstore.errors import UnsupportedResourceType


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


def check_type(resource_type: str) -> str:
    """``resource_type`` if supported, else :class:`UnsupportedResourceType`."""
    if resource_type not in SEARCH_PARAMETERS:
        raise UnsupportedResourceType(resource_type)
    return resource_type


def parameters_for(resource_type: str) -> Mapping[str, SearchParamDef]:
    return SEARCH_PARAMETERS[check_type(resource_type)]
