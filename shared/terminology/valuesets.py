"""Value sets as versioned data, and membership checks for our own validator.

File format (``data/valuesets/<id>.json``, FHIR-ValueSet-like, enumerated concepts only)::

    {
      "resourceType": "ValueSet", "id": "administrative-gender",
      "url": "http://hl7.org/fhir/ValueSet/administrative-gender",   # the value set it mirrors
      "version": "1.0.0",                  # semver of THIS file
      "sourceVersion": "FHIR R4 (4.0.1)",  # the publication the codes were taken from
      "title": "...", "status": "active", "description": "...",
      "compose": {"include": [{"system": "<URI>", "concept": [{"code": "male", "display": "Male"}]}]}
    }

Only extensional (enumerated) value sets are supported: membership is a dictionary lookup, with no
terminology server. Intensional sets (SNOMED CT refsets, "all of LOINC") are out of scope here; check
those against a terminology service.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from shared.terminology import _data
from shared.terminology.coding import Coding
from shared.terminology.errors import UnknownValueSet, short_code

__all__ = [
    "DATA_ABSENT_REASON_VS",
    "ValueSet",
    "all_value_sets",
    "clear_caches",
    "load_value_set",
    "lookup",
    "lookup_code",
    "value_set_ids",
]

#: Id of the data-absent-reason value set (used to validate reasons everywhere in this package).
DATA_ABSENT_REASON_VS = "data-absent-reason"
_STATUSES = {"draft", "active", "retired"}


@dataclass(frozen=True)
class ValueSet:
    id: str
    url: str
    version: str
    source_version: str | None
    title: str
    status: str
    description: str | None
    #: system -> code -> display (display may be None)
    concepts: Mapping[str, Mapping[str, str | None]]

    @property
    def canonical(self) -> str:
        return f"{self.url}|{self.version}"

    @property
    def systems(self) -> frozenset[str]:
        return frozenset(self.concepts)

    def contains(self, system: str, code: str) -> bool:
        """Exact (case-sensitive) membership of ``system``/``code``."""
        return code in self.concepts.get(system, {})

    def display(self, system: str, code: str) -> str | None:
        return self.concepts.get(system, {}).get(code)

    def codings(self) -> tuple[Coding, ...]:
        return tuple(
            Coding(system=s, code=c, display=d)
            for s, codes in self.concepts.items()
            for c, d in codes.items()
        )


def _parse(resource_id: str, doc: object) -> ValueSet:
    r = _data.Reader(f"valuesets/{resource_id}.json", doc)
    r.only(
        {"resourceType", "id", "url", "version", "sourceVersion", "title", "status", "description", "compose"}
    )
    if r.obj.get("resourceType", "ValueSet") != "ValueSet":
        raise r.fail("resourceType", "must be 'ValueSet'")
    if r.string("id") != resource_id:
        raise r.fail("id", "must equal the file name stem")
    compose = r.opt_object("compose")
    if compose is None:
        raise r.fail("compose", "is required")
    compose.only({"include"})
    concepts: dict[str, dict[str, str | None]] = {}
    for inc in compose.objects("include"):
        inc.only({"system", "concept"})
        system = inc.string("system")
        codes = concepts.setdefault(system, {})
        for c in inc.objects("concept"):
            c.only({"code", "display"})
            code = c.string("code")
            if code in codes:
                raise c.fail("code", f"{short_code(code)} is listed twice for {system}")
            codes[code] = c.opt_string("display")
    return ValueSet(
        id=resource_id,
        url=r.string("url"),
        version=r.semver("version"),
        source_version=r.opt_string("sourceVersion"),
        title=r.string("title"),
        status=r.choice("status", _STATUSES),
        description=r.opt_string("description"),
        concepts=MappingProxyType({s: MappingProxyType(c) for s, c in concepts.items()}),
    )


@functools.cache
def _load(resource_id: str) -> ValueSet:
    return _parse(resource_id, _data.read_json(_data.VALUE_SETS, resource_id))


def load_value_set(value_set_id: str) -> ValueSet:
    """The value set ``data/valuesets/<value_set_id>.json``, parsed and validated once per process."""
    if not _data.exists(_data.VALUE_SETS, value_set_id):
        raise UnknownValueSet(f"no value set with id {short_code(value_set_id, 60)}")
    return _load(value_set_id)


@functools.cache
def value_set_ids() -> tuple[str, ...]:
    return _data.list_ids(_data.VALUE_SETS)


def all_value_sets() -> tuple[ValueSet, ...]:
    return tuple(load_value_set(i) for i in value_set_ids())


def lookup(value_set_id: str, system: str, code: str) -> bool:
    """True when ``system``/``code`` is a member of the value set ``value_set_id``.

    Raises :class:`UnknownValueSet` for an unknown id (a programming error, not a "no").
    """
    return load_value_set(value_set_id).contains(system, code)


def lookup_code(value_set_id: str, code: str) -> bool:
    """Membership by code alone, for value sets drawn from a single code system (raises ``ValueError``
    when the value set spans several systems, where a bare code would be ambiguous)."""
    vs = load_value_set(value_set_id)
    if len(vs.concepts) != 1:
        raise ValueError(f"value set {value_set_id} spans {len(vs.concepts)} systems; pass the system")
    (codes,) = vs.concepts.values()
    return code in codes


def clear_caches() -> None:
    """Forget every loaded value set (tests only)."""
    _load.cache_clear()
    value_set_ids.cache_clear()
