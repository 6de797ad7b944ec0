"""Terminology: code system URIs, concept maps and value sets as versioned data, unmapped-code policy.

Mapping rules and code tables are data (``data/conceptmaps/*.json``, ``data/valuesets/*.json``,
``data/field_policies.json``), never if/elif chains. Every file carries a semver ``version``; every
mapping outcome carries the map id and version for lineage. An unmapped code is never silently replaced
by a default: it raises, becomes an explicit data-absent reason, or is kept as the source code.

* :mod:`~shared.terminology.systems` - URIs (``SNOMED_CT``, ``NHS_NUMBER``, ``v2_table_system("0001")``, ...)
* :mod:`~shared.terminology.conceptmaps` - ``load_concept_map(id)``, ``translate(code, system, ...)``
  with FHIR ``$translate`` semantics (``result``, ``message``, ``matches``)
* :mod:`~shared.terminology.valuesets` - ``load_value_set(id)``, ``lookup(value_set_id, system, code)``
* :mod:`~shared.terminology.policy` - ``map_code(map_id, code, policy=Unmapped.X, field=...)`` and
  ``map_field(field, code)`` -> ``MappedCode | KeptSource | MappedAbsent``
* :mod:`~shared.terminology.v2tables` - the codes of the HL7 v2 tables (``is_table_code("0069", "MED")``):
  a code is labelled ``v2-NNNN`` only when it is one
* :mod:`~shared.terminology.local_systems` - senders' own codes: the sending facility's local code system
  per HL7 table (configured URI, else ``urn:tie:codesystem:<facility>:<table>``), counted per field

Pure Python, no I/O beyond reading the package's own data files (once per process).
"""

from __future__ import annotations

from shared.terminology import conceptmaps, local_systems, policy, ucum, v2tables, valuesets
from shared.terminology.coding import Coding, Equivalence
from shared.terminology.conceptmaps import (
    ConceptMap,
    Match,
    TranslateResult,
    all_concept_maps,
    concept_map_ids,
    load_concept_map,
    translate,
)
from shared.terminology.errors import (
    AmbiguousMapping,
    InvalidTerminologyData,
    TerminologyError,
    UnknownConceptMap,
    UnknownFieldPolicy,
    UnknownValueSet,
    UnmappedCode,
)
from shared.terminology.policy import (
    FieldPolicy,
    KeptSource,
    MapOutcome,
    MappedAbsent,
    MappedCode,
    Unmapped,
    field_policies,
    field_policy,
    map_code,
    map_field,
)
from shared.terminology.systems import v2_table_system
from shared.terminology.valuesets import ValueSet, all_value_sets, load_value_set, lookup, value_set_ids

__all__ = [
    "AmbiguousMapping",
    "Coding",
    "ConceptMap",
    "Equivalence",
    "FieldPolicy",
    "InvalidTerminologyData",
    "KeptSource",
    "MapOutcome",
    "MappedAbsent",
    "MappedCode",
    "Match",
    "TerminologyError",
    "TranslateResult",
    "UnknownConceptMap",
    "UnknownFieldPolicy",
    "UnknownValueSet",
    "Unmapped",
    "UnmappedCode",
    "ValueSet",
    "all_concept_maps",
    "all_value_sets",
    "clear_caches",
    "concept_map_ids",
    "field_policies",
    "field_policy",
    "load_concept_map",
    "load_value_set",
    "local_systems",
    "lookup",
    "map_code",
    "map_field",
    "translate",
    "v2_table_system",
    "v2tables",
    "value_set_ids",
]


def clear_caches() -> None:
    """Forget every loaded data file (tests only: the shipped files never change at run time)."""
    conceptmaps.clear_caches()
    valuesets.clear_caches()
    policy.clear_caches()
    ucum.ucum_table.cache_clear()
    v2tables.clear_caches()
