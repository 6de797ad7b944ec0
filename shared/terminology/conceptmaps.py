"""Concept maps as versioned data, and FHIR ``ConceptMap/$translate`` semantics over them.

Code translation is data (``data/conceptmaps/<id>.json``), validated on load so that no map can turn an
unknown code into a silent default. File format, load-time rules and translation semantics:
``docs/terminology-conceptmaps.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from shared.terminology import _data
from shared.terminology.coding import Coding, Equivalence
from shared.terminology.errors import InvalidTerminologyData, UnknownConceptMap, short_code
from shared.terminology.valuesets import DATA_ABSENT_REASON_VS, lookup_code

__all__ = [
    "ConceptMap",
    "Element",
    "Group",
    "Match",
    "Target",
    "TranslateResult",
    "UnmappedRule",
    "all_concept_maps",
    "clear_caches",
    "concept_map_ids",
    "load_concept_map",
    "translate",
]

URL_PREFIX = "urn:tie:conceptmap:"
_STATUSES = {"draft", "active", "retired"}
_EXACT = {Equivalence.EQUAL, Equivalence.EQUIVALENT}
_MAX_OTHER_MAP_DEPTH = 5


@dataclass(frozen=True, slots=True)
class Target:
    """One target of an element. ``code`` is None exactly when ``equivalence`` is ``unmatched``."""

    code: str | None
    display: str | None
    equivalence: Equivalence
    comment: str | None = None
    #: Suggested data-absent-reason when the element is deliberately unmatched (e.g. "not-applicable").
    data_absent_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Element:
    code: str
    display: str | None
    targets: tuple[Target, ...]
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class UnmappedRule:
    """FHIR ``ConceptMap.group.unmapped`` (modes ``provided`` and ``other-map`` only)."""

    mode: str
    url: str | None = None


@dataclass(frozen=True)
class Group:
    source: str
    target: str
    elements: Mapping[str, Element]
    target_value_set: str | None = None
    unmapped: UnmappedRule | None = None
    #: target code -> ((element, target), ...), built at load time for reverse translation.
    reverse_index: Mapping[str, tuple[tuple[Element, Target], ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True)
class Match:
    """One $translate match. ``concept`` is None for an explicit ``unmatched`` entry."""

    equivalence: Equivalence
    concept: Coding | None
    #: Canonical of the map that produced the match: ``<url>|<version>``.
    source: str
    concept_map_id: str
    concept_map_version: str
    comment: str | None = None
    data_absent_reason: str | None = None


@dataclass(frozen=True)
class TranslateResult:
    result: bool
    message: str | None
    matches: tuple[Match, ...]

    @property
    def usable(self) -> tuple[Match, ...]:
        """The matches that assert a mapping (equivalence not ``unmatched``/``disjoint``)."""
        return tuple(m for m in self.matches if m.equivalence.is_match)


def _result(matches: list[Match], nothing: str) -> TranslateResult:
    ok = any(m.equivalence.is_match for m in matches)
    if ok:
        return TranslateResult(True, None, tuple(matches))
    if matches:
        return TranslateResult(False, "the code is explicitly unmatched in the map", tuple(matches))
    return TranslateResult(False, nothing, ())


@dataclass(frozen=True)
class ConceptMap:
    id: str
    url: str
    version: str
    title: str
    status: str
    description: str | None
    source_system: str
    target_system: str
    groups: tuple[Group, ...]
    references: tuple[str, ...] = ()

    @property
    def canonical(self) -> str:
        """``url|version``: what lineage records as the map that was applied."""
        return f"{self.url}|{self.version}"

    def source_codes(self, system: str | None = None) -> frozenset[str]:
        """Every source code listed (mapped or explicitly unmatched), optionally for one source system."""
        return frozenset(c for g in self.groups if system in (None, g.source) for c in g.elements)

    def translate(
        self,
        code: str,
        *,
        system: str | None = None,
        target_system: str | None = None,
        reverse: bool = False,
    ) -> TranslateResult:
        """Translate ``code`` with this map only.

        ``system`` restricts to groups whose source (target, when ``reverse``) is that system;
        ``target_system`` to groups whose target (source, when ``reverse``) is that system.
        """
        return _translate_in(self, code, system, target_system, reverse, depth=0)

    def _match(self, equivalence: Equivalence, concept: Coding | None, target: Target) -> Match:
        return Match(
            equivalence=equivalence,
            concept=concept,
            source=self.canonical,
            concept_map_id=self.id,
            concept_map_version=self.version,
            comment=target.comment,
            data_absent_reason=target.data_absent_reason,
        )


def _translate_in(
    cmap: ConceptMap,
    code: str,
    system: str | None,
    target_system: str | None,
    reverse: bool,
    depth: int,
) -> TranslateResult:
    matches: list[Match] = []
    considered = 0
    for group in cmap.groups:
        from_system, to_system = (group.target, group.source) if reverse else (group.source, group.target)
        if system is not None and system != from_system:
            continue
        if target_system is not None and target_system != to_system:
            continue
        considered += 1
        if reverse:
            for source_element, target in group.reverse_index.get(code, ()):
                source = Coding(system=group.source, code=source_element.code, display=source_element.display)
                matches.append(cmap._match(target.equivalence.reversed(), source, target))
            continue
        element = group.elements.get(code)
        if element is not None:
            for target in element.targets:
                concept = (
                    None
                    if target.code is None
                    else Coding(system=group.target, code=target.code, display=target.display)
                )
                matches.append(cmap._match(target.equivalence, concept, target))
        elif group.unmapped is not None:
            matches.extend(_apply_unmapped(cmap, group, code, depth))
    if considered == 0:
        return TranslateResult(False, f"concept map {cmap.id} has no group for the requested systems", ())
    return _result(matches, f"code {short_code(code)} is not in concept map {cmap.id}")


def _apply_unmapped(cmap: ConceptMap, group: Group, code: str, depth: int) -> list[Match]:
    rule = group.unmapped
    assert rule is not None
    if rule.mode == "provided":
        note = Target(code, None, Equivalence.EQUAL, "unmapped mode 'provided': code passed through")
        return [cmap._match(Equivalence.EQUAL, Coding(system=group.target, code=code), note)]
    # other-map
    if depth >= _MAX_OTHER_MAP_DEPTH:
        raise InvalidTerminologyData(f"conceptmaps/{cmap.id}: 'other-map' chain deeper than {depth}")
    other = _resolve(rule.url or "")
    return list(_translate_in(other, code, group.source, None, False, depth + 1).matches)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _parse(resource_id: str, doc: object) -> ConceptMap:
    where = f"conceptmaps/{resource_id}.json"
    r = _data.Reader(where, doc)
    r.only(
        {
            "resourceType",
            "id",
            "url",
            "version",
            "title",
            "status",
            "description",
            "sourceSystem",
            "targetSystem",
            "references",
            "groups",
        }
    )
    if r.obj.get("resourceType", "ConceptMap") != "ConceptMap":
        raise r.fail("resourceType", "must be 'ConceptMap'")
    if r.string("id") != resource_id:
        raise r.fail("id", "must equal the file name stem")
    source_default = r.string("sourceSystem")
    target_default = r.string("targetSystem")
    groups: list[Group] = []
    pairs: set[tuple[str, str]] = set()
    for g in r.objects("groups"):
        group = _parse_group(g, source_default, target_default)
        if (group.source, group.target) in pairs:
            raise g.fail("source", "duplicates another group's source/target pair")
        pairs.add((group.source, group.target))
        groups.append(group)
    return ConceptMap(
        id=resource_id,
        url=r.opt_string("url") or URL_PREFIX + resource_id,
        version=r.semver("version"),
        title=r.string("title"),
        status=r.choice("status", _STATUSES),
        description=r.opt_string("description"),
        source_system=source_default,
        target_system=target_default,
        groups=tuple(groups),
        references=r.strings("references"),
    )


def _parse_group(g: _data.Reader, source_default: str, target_default: str) -> Group:
    g.only({"source", "target", "targetValueSet", "unmapped", "elements"})
    unmapped: UnmappedRule | None = None
    u = g.opt_object("unmapped")
    if u is not None:
        u.only({"mode", "url", "code", "display"})
        mode = u.string("mode")
        if mode == "fixed":
            raise u.fail("mode", "'fixed' is not allowed: it would map every unknown code to one default")
        if mode not in ("provided", "other-map"):
            raise u.fail("mode", "must be 'provided' or 'other-map'")
        unmapped = UnmappedRule(mode, u.string("url") if mode == "other-map" else None)
    elements: dict[str, Element] = {}
    reverse: dict[str, list[tuple[Element, Target]]] = {}
    for e in g.objects("elements", non_empty=unmapped is None):
        element = _parse_element(e)
        if element.code in elements:
            raise e.fail("code", f"{short_code(element.code)} appears twice in the group")
        elements[element.code] = element
        for target in element.targets:
            if target.code is not None and target.equivalence.is_match:
                reverse.setdefault(target.code, []).append((element, target))
    return Group(
        source=g.opt_string("source") or source_default,
        target=g.opt_string("target") or target_default,
        elements=MappingProxyType(elements),
        target_value_set=g.opt_string("targetValueSet"),
        unmapped=unmapped,
        reverse_index=MappingProxyType({k: tuple(v) for k, v in reverse.items()}),
    )


def _parse_element(e: _data.Reader) -> Element:
    e.only({"code", "display", "comment", "targets"})
    targets: list[Target] = []
    seen: set[str] = set()
    for t in e.objects("targets"):
        t.only({"code", "display", "equivalence", "comment", "dataAbsentReason"})
        equivalence = Equivalence(t.choice("equivalence", {q.value for q in Equivalence}))
        code = t.opt_string("code")
        comment = t.opt_string("comment")
        dar = t.opt_string("dataAbsentReason")
        if equivalence is Equivalence.UNMATCHED and code is not None:
            raise t.fail("code", "must be absent when equivalence is 'unmatched'")
        if equivalence is not Equivalence.UNMATCHED and code is None:
            raise t.fail("code", f"is required when equivalence is {equivalence.value!r}")
        if equivalence not in _EXACT and comment is None:
            raise t.fail("comment", f"is required when equivalence is {equivalence.value!r} (say why)")
        if dar is not None:
            if equivalence is not Equivalence.UNMATCHED:
                raise t.fail("dataAbsentReason", "is only allowed on 'unmatched' targets")
            if not lookup_code(DATA_ABSENT_REASON_VS, dar):
                raise t.fail("dataAbsentReason", f"{short_code(dar)} is not a data-absent-reason code")
        if code is not None:
            if code in seen:
                raise t.fail("code", f"{short_code(code)} is listed twice for the same element")
            seen.add(code)
        targets.append(Target(code, t.opt_string("display"), equivalence, comment, dar))
    return Element(e.string("code"), e.opt_string("display"), tuple(targets), e.opt_string("comment"))


@functools.cache
def _load(resource_id: str) -> ConceptMap:
    return _parse(resource_id, _data.read_json(_data.CONCEPT_MAPS, resource_id))


def load_concept_map(concept_map_id: str) -> ConceptMap:
    """The concept map ``data/conceptmaps/<concept_map_id>.json``, parsed and validated once per process.

    Raises :class:`UnknownConceptMap` when there is no such file and :class:`InvalidTerminologyData` when
    the file breaks the format rules.
    """
    if not _data.exists(_data.CONCEPT_MAPS, concept_map_id):
        raise UnknownConceptMap(f"no concept map with id {short_code(concept_map_id, 60)}")
    return _load(concept_map_id)


@functools.cache
def concept_map_ids() -> tuple[str, ...]:
    """Ids of every shipped concept map, sorted."""
    return _data.list_ids(_data.CONCEPT_MAPS)


def all_concept_maps() -> tuple[ConceptMap, ...]:
    return tuple(load_concept_map(i) for i in concept_map_ids())


def _resolve(id_or_url: str) -> ConceptMap:
    """A map by id, by url, or by ``url|version`` (the version must then match)."""
    url, _, version = id_or_url.partition("|")
    found: ConceptMap | None
    if _data.exists(_data.CONCEPT_MAPS, url):
        found = load_concept_map(url)
    else:
        found = next((m for m in all_concept_maps() if m.url == url), None)
    if found is None:
        raise UnknownConceptMap(f"no concept map with id or url {short_code(id_or_url, 80)}")
    if version and version != found.version:
        raise UnknownConceptMap(f"concept map {found.id} is version {found.version}, not {version[:20]!r}")
    return found


def _maps_for(system: str, target_system: str | None, reverse: bool) -> Iterable[ConceptMap]:
    for cmap in all_concept_maps():
        for group in cmap.groups:
            from_system, to_system = (group.target, group.source) if reverse else (group.source, group.target)
            if from_system == system and target_system in (None, to_system):
                yield cmap
                break


def translate(
    code: str,
    system: str,
    *,
    concept_map_id: str | None = None,
    target_system: str | None = None,
    reverse: bool = False,
) -> TranslateResult:
    """FHIR ``$translate``: ``code`` from ``system`` (the target system when ``reverse``).

    With ``concept_map_id`` only that map is used (id, url or ``url|version``); otherwise every shipped map
    with a group from ``system`` (and to ``target_system``, when given) is consulted and the matches are
    concatenated in map-id order. No applicable map gives ``result=False`` with a message, not an error.
    """
    if concept_map_id is not None:
        return _resolve(concept_map_id).translate(
            code, system=system, target_system=target_system, reverse=reverse
        )
    maps = list(_maps_for(system, target_system, reverse))
    if not maps:
        return TranslateResult(False, "no concept map translates from that system", ())
    matches: list[Match] = []
    for cmap in maps:
        matches.extend(
            cmap.translate(code, system=system, target_system=target_system, reverse=reverse).matches
        )
    return _result(matches, f"code {short_code(code)} is not in any applicable concept map")


def clear_caches() -> None:
    """Forget every loaded map (tests only: the shipped files do not change at run time)."""
    _load.cache_clear()
    concept_map_ids.cache_clear()
