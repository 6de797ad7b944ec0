"""Per-field policy for codes that a concept map cannot map: raise, data-absent, or keep the source code.

Nothing here ever invents a target code. When a map has no usable target (the code is not listed, or is
listed as ``unmatched``/``disjoint``) the field's :class:`Unmapped` policy decides, explicitly:

* ``RAISE`` - :class:`UnmappedCode` (a :class:`~shared.errors.PermanentError`: the message goes to the
  dead-letter/ACK path). For modifier elements such as ``Observation.status``, where any guess changes the
  clinical meaning.
* ``DATA_ABSENT`` - a :class:`MappedAbsent` with a FHIR data-absent-reason code and the source coding. The
  reason is the one the map suggests for an explicitly unmatched code (e.g. v2-0001 ``N`` ->
  ``not-applicable``), else the caller's ``absent_reason``.
* ``KEEP_SOURCE`` - a :class:`KeptSource`: the original code in its source system and NO target code
  (what HL7 v2-to-FHIR does for extensible bindings such as ``Encounter.class``).

Every outcome carries the map id and version, for lineage. The declarative per-field table lives in
``data/field_policies.json`` (:func:`field_policy`, :func:`map_field`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from shared.terminology import _data
from shared.terminology.coding import Coding, Equivalence
from shared.terminology.conceptmaps import ConceptMap, Match, load_concept_map
from shared.terminology.errors import (
    AmbiguousMapping,
    UnknownConceptMap,
    UnknownFieldPolicy,
    UnmappedCode,
    short_code,
)
from shared.terminology.systems import DATA_ABSENT_REASON
from shared.terminology.valuesets import DATA_ABSENT_REASON_VS, load_value_set, lookup_code

__all__ = [
    "FieldPolicy",
    "KeptSource",
    "MapOutcome",
    "MappedAbsent",
    "MappedCode",
    "Unmapped",
    "field_policies",
    "field_policies_version",
    "field_policy",
    "map_code",
    "map_field",
]

_RANK = {Equivalence.EQUAL: 0, Equivalence.EQUIVALENT: 1}


class Unmapped(StrEnum):
    RAISE = "raise"
    DATA_ABSENT = "data-absent"
    KEEP_SOURCE = "keep-source"


@dataclass(frozen=True)
class MappedCode:
    """A usable mapping: ``target`` replaces (or accompanies) ``source``; ``equivalence`` says how exact."""

    field: str
    source: Coding
    target: Coding
    equivalence: Equivalence
    concept_map_id: str
    concept_map_version: str
    comment: str | None = None

    @property
    def lineage(self) -> str:
        return f"{self.concept_map_id}|{self.concept_map_version}"


@dataclass(frozen=True)
class KeptSource:
    """No target: the source code is carried as it came (in its source system), by policy."""

    field: str
    source: Coding
    concept_map_id: str
    concept_map_version: str
    #: True when the map lists the code as deliberately ``unmatched`` (False: the map does not know it).
    explicitly_unmatched: bool
    comment: str | None = None

    @property
    def lineage(self) -> str:
        return f"{self.concept_map_id}|{self.concept_map_version}"


@dataclass(frozen=True)
class MappedAbsent:
    """No value, with a FHIR data-absent-reason ``reason`` and the source coding that could not be mapped
    (the mappers turn it into a canonical :class:`~shared.canonical.model.DataAbsent`)."""

    field: str
    reason: str
    source: Coding | None
    concept_map_id: str
    concept_map_version: str
    explicitly_unmatched: bool
    comment: str | None = None

    @property
    def reason_coding(self) -> Coding:
        display = load_value_set(DATA_ABSENT_REASON_VS).display(DATA_ABSENT_REASON, self.reason)
        return Coding(system=DATA_ABSENT_REASON, code=self.reason, display=display)

    @property
    def lineage(self) -> str:
        return f"{self.concept_map_id}|{self.concept_map_version}"


MapOutcome = MappedCode | KeptSource | MappedAbsent


def _check_reason(reason: str) -> None:
    if not lookup_code(DATA_ABSENT_REASON_VS, reason):
        raise ValueError(f"{short_code(reason)} is not a data-absent-reason code")


def _source_coding(cmap: ConceptMap, code: str, system: str | None) -> Coding:
    for group in cmap.groups:
        if system in (None, group.source) and (element := group.elements.get(code)) is not None:
            return Coding(system=group.source, code=code, display=element.display)
    return Coding(system=system or cmap.source_system, code=code)


def _choose(cmap: ConceptMap, field: str, code: str, usable: tuple[Match, ...]) -> Match:
    systems = {m.concept.system for m in usable if m.concept is not None}
    if len(systems) > 1:
        raise AmbiguousMapping(
            f"{field}: code {short_code(code)} maps into {len(systems)} code systems in concept map "
            f"{cmap.id}; pass target_system",
            field=field,
            concept_map_id=cmap.id,
        )
    best = min(_RANK.get(m.equivalence, 2) for m in usable)
    top = [m for m in usable if _RANK.get(m.equivalence, 2) == best]
    if len({m.concept for m in top}) > 1:
        raise AmbiguousMapping(
            f"{field}: code {short_code(code)} has {len(top)} equally good targets in concept map {cmap.id}",
            field=field,
            concept_map_id=cmap.id,
        )
    return top[0]


def map_code(
    concept_map_id: str,
    code: str,
    *,
    policy: Unmapped,
    field: str,
    system: str | None = None,
    target_system: str | None = None,
    absent_reason: str = "unknown",
) -> MapOutcome:
    """Map ``code`` with concept map ``concept_map_id`` for ``field``, applying ``policy`` when unmapped.

    ``system`` is the source code system (default: the map's). ``target_system`` picks one target system in
    a map with several (required when the code maps into more than one). ``absent_reason`` is the
    data-absent-reason used by ``DATA_ABSENT`` when the map suggests none for the code. The best usable
    target wins (``equal``/``equivalent`` before approximate ones); two equally good targets raise
    :class:`AmbiguousMapping`. An empty ``code`` is a caller error (``ValueError``): an absent field is
    not an unmapped code.
    """
    if not code or not code.strip():
        raise ValueError(f"{field}: empty code (handle an absent field before mapping)")
    _check_reason(absent_reason)
    cmap = load_concept_map(concept_map_id)
    result = cmap.translate(code, system=system, target_system=target_system)
    source = _source_coding(cmap, code, system)
    usable = result.usable
    if usable:
        chosen = _choose(cmap, field, code, usable)
        assert chosen.concept is not None
        return MappedCode(
            field=field,
            source=source,
            target=chosen.concept,
            equivalence=chosen.equivalence,
            concept_map_id=cmap.id,
            concept_map_version=cmap.version,
            comment=chosen.comment,
        )
    explicit = next((m for m in result.matches if not m.equivalence.is_match), None)
    comment = explicit.comment if explicit else None
    if policy is Unmapped.RAISE:
        how = "is explicitly unmatched" if explicit else "is not listed"
        raise UnmappedCode(
            f"{field}: code {short_code(code)} {how} in concept map {cmap.id} {cmap.version}",
            field=field,
            concept_map_id=cmap.id,
        )
    if policy is Unmapped.DATA_ABSENT:
        reason = (explicit.data_absent_reason if explicit else None) or absent_reason
        return MappedAbsent(field, reason, source, cmap.id, cmap.version, explicit is not None, comment)
    return KeptSource(field, source, cmap.id, cmap.version, explicit is not None, comment)


# --------------------------------------------------------------------------------------------------
# Declarative field policies (data/field_policies.json)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldPolicy:
    field: str
    concept_map_id: str
    unmapped: Unmapped
    absent_reason: str | None = None
    target_system: str | None = None
    #: Where the code comes from in HL7 v2 (documentation: "PID-8", "OBX-11", ...).
    hl7v2: str | None = None
    comment: str | None = None


def _parse_policies(doc: object) -> tuple[str, Mapping[str, FieldPolicy]]:
    r = _data.Reader("field_policies.json", doc)
    r.only({"version", "description", "fields"})
    version = r.semver("version")
    policies: dict[str, FieldPolicy] = {}
    for f in r.objects("fields"):
        f.only({"field", "hl7v2", "conceptMap", "unmapped", "absentReason", "targetSystem", "comment"})
        name = f.string("field")
        if name in policies:
            raise f.fail("field", f"{name!r} is declared twice")
        map_id = f.string("conceptMap")
        try:
            cmap = load_concept_map(map_id)
        except UnknownConceptMap:
            raise f.fail("conceptMap", f"{map_id!r} does not exist") from None
        unmapped = Unmapped(f.choice("unmapped", {u.value for u in Unmapped}))
        reason = f.opt_string("absentReason")
        if (unmapped is Unmapped.DATA_ABSENT) != (reason is not None):
            raise f.fail("absentReason", "is required with 'data-absent' and only allowed with it")
        if reason is not None and not lookup_code(DATA_ABSENT_REASON_VS, reason):
            raise f.fail("absentReason", f"{reason[:30]!r} is not a data-absent-reason code")
        target_system = f.opt_string("targetSystem")
        if target_system is not None and target_system not in {g.target for g in cmap.groups}:
            raise f.fail("targetSystem", f"is not a target of concept map {map_id}")
        policies[name] = FieldPolicy(
            name, map_id, unmapped, reason, target_system, f.opt_string("hl7v2"), f.opt_string("comment")
        )
    return version, MappingProxyType(policies)


@functools.cache
def _policies() -> tuple[str, Mapping[str, FieldPolicy]]:
    return _parse_policies(_data.read_package_json("field_policies"))


def field_policies() -> Mapping[str, FieldPolicy]:
    """Every declared field policy, by field name (loaded and validated once per process)."""
    return _policies()[1]


def field_policies_version() -> str:
    return _policies()[0]


def field_policy(field: str) -> FieldPolicy:
    try:
        return field_policies()[field]
    except KeyError:
        raise UnknownFieldPolicy(f"no unmapped-code policy declared for field {field[:80]!r}") from None


def map_field(field: str, code: str, *, system: str | None = None) -> MapOutcome:
    """:func:`map_code` with the concept map, policy, reason and target system declared for ``field``."""
    p = field_policy(field)
    if p.absent_reason is not None:
        return map_code(
            p.concept_map_id,
            code,
            policy=p.unmapped,
            field=field,
            system=system,
            target_system=p.target_system,
            absent_reason=p.absent_reason,
        )
    return map_code(
        p.concept_map_id, code, policy=p.unmapped, field=field, system=system, target_system=p.target_system
    )


def clear_caches() -> None:
    """Forget the loaded field policies (tests only)."""
    _policies.cache_clear()
