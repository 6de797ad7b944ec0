"""Index rows of a resource: the values of each of its type's search parameters, read along the
parameter's FHIRPath-lite paths (what the SQLite adapter stores)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.fhirstore.search.parameters import SEARCH_PARAMETERS, ParamType
from shared.fhirstore.search.values import NEG_INF, POS_INF, date_range, normalize_string, parse_reference


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
