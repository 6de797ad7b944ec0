"""Loader for the generated HL7 v2 message structure definitions (``structures_v*.json``).

The JSON files are produced by ``tools/gen_hl7_structures.py`` from hl7apy's definitions and checked in;
nothing here imports hl7apy. One file per HL7 version holds, for the supported trigger events only:

* the trigger -> message structure mapping (HL7 table 0354),
* each message structure as a tree of :class:`SegmentRef` and :class:`GroupRef` nodes with cardinalities,
* field definitions (:class:`FieldDef`) for the segments the validator checks field by field,
* the values of the few HL7 tables the validator checks (:class:`Hl7Table`),
* each composite data type's component types and the primitive types (for arity checks).

:func:`structures_for` picks the definitions for a message's MSH-12: the file for that exact version if
there is one, otherwise the newest generated version not newer than it (``2.8.2`` -> ``2.8``,
``2.7.1`` -> ``2.7``), otherwise the oldest (``2.1``/``2.2`` -> ``2.3``). :func:`resolve_structure` also
falls back across versions when the chosen file lacks the event (ORM^O01 is not defined from v2.7 on,
so it is validated against the newest version that defines it).

Everything is loaded lazily and cached; the returned objects are immutable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "SUPPORTED_EVENTS",
    "FieldDef",
    "GroupRef",
    "Hl7Table",
    "Node",
    "SegmentRef",
    "StructureSet",
    "available_versions",
    "load_structures",
    "parse_version",
    "resolve_structure",
    "structures_for",
]

_FILE_RE: Final = re.compile(r"structures_v(?P<v>[0-9]+(?:_[0-9]+)*)\.json")

#: Message type^trigger pairs the TIE accepts (ACK is accepted with any trigger).
SUPPORTED_EVENTS: Final = frozenset(
    {
        "ADT^A01",
        "ADT^A02",
        "ADT^A03",
        "ADT^A04",
        "ADT^A05",
        "ADT^A08",
        "ADT^A11",
        "ADT^A12",
        "ADT^A13",
        "ADT^A28",
        "ADT^A31",
        "ADT^A40",
        "ORU^R01",
        "ORM^O01",
    }
)


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A segment slot in a structure. ``max`` is ``None`` when unbounded."""

    name: str
    min: int
    max: int | None

    @property
    def required(self) -> bool:
        return self.min >= 1


@dataclass(frozen=True, slots=True)
class GroupRef:
    """A segment group: ``sequence`` (children in order) or ``choice`` (exactly one child)."""

    name: str
    kind: Literal["sequence", "choice"]
    min: int
    max: int | None
    children: tuple[Node, ...]

    @property
    def required(self) -> bool:
        return self.min >= 1


Node = SegmentRef | GroupRef


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One field of a segment as defined by the standard for this version."""

    seq: int
    name: str
    datatype: str | None
    required: bool
    repeating: bool
    table: str | None


@dataclass(frozen=True, slots=True)
class Hl7Table:
    """Values of one HL7 table (only the few tables the validator checks are exported)."""

    table_id: str
    name: str
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class StructureSet:
    """All definitions generated for one HL7 version."""

    version: str
    events: Mapping[str, str]
    structures: Mapping[str, GroupRef]
    segments: Mapping[str, tuple[FieldDef, ...]]
    tables: Mapping[str, Hl7Table]
    #: Composite data type -> its component types (``"CE"`` -> ``("ST", "ST", "ID", ...)``).
    datatypes: Mapping[str, tuple[str, ...]] = dataclass_field(default_factory=lambda: MappingProxyType({}))
    primitive_datatypes: frozenset[str] = frozenset()

    def field(self, segment: str, seq: int) -> FieldDef | None:
        fields = self.segments.get(segment)
        if fields is None or seq < 1 or seq > len(fields):
            return None
        found = fields[seq - 1]
        return found if found.seq == seq else next((f for f in fields if f.seq == seq), None)


@lru_cache(maxsize=256)
def parse_version(text: str) -> tuple[int, ...] | None:
    """``"2.5.1"`` -> ``(2, 5, 1)``; ``None`` when the text is not dotted decimal numbers."""
    text = text.strip()
    if not re.fullmatch(r"[0-9]+(?:\.[0-9]+)*", text):
        return None
    return tuple(int(p) for p in text.split("."))


@cache
def available_versions() -> tuple[str, ...]:
    """HL7 versions with a generated structure file, oldest first."""
    found: list[tuple[tuple[int, ...], str]] = []
    for entry in resources.files(__package__).iterdir():
        m = _FILE_RE.fullmatch(entry.name)
        if m:
            version = m.group("v").replace("_", ".")
            parsed = parse_version(version)
            if parsed is not None:
                found.append((parsed, version))
    return tuple(v for _, v in sorted(found))


def _node(raw: Mapping[str, Any]) -> Node:
    if "segment" in raw:
        return SegmentRef(str(raw["segment"]), int(raw["min"]), _opt_int(raw["max"]))
    kind = raw["kind"]
    if kind not in ("sequence", "choice"):
        raise ValueError("structure group kind must be 'sequence' or 'choice'")
    return GroupRef(
        str(raw["group"]),
        kind,
        int(raw["min"]),
        _opt_int(raw["max"]),
        tuple(_node(c) for c in raw["children"]),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@cache
def load_structures(version: str) -> StructureSet:
    """Definitions from the file for exactly ``version`` (raises :class:`KeyError` if there is none)."""
    if version not in available_versions():
        raise KeyError(f"no structure definitions generated for HL7 version {version}")
    name = "structures_v" + version.replace(".", "_") + ".json"
    document = json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))
    structures = {
        sid: GroupRef(sid, raw["kind"], 1, 1, tuple(_node(c) for c in raw["children"]))
        for sid, raw in document["structures"].items()
    }
    segments = {
        seg: tuple(
            FieldDef(
                int(f["seq"]),
                str(f["name"]),
                f["type"],
                bool(f["required"]),
                bool(f["repeating"]),
                f["table"],
            )
            for f in fields
        )
        for seg, fields in document["segments"].items()
    }
    tables = {
        table_id: Hl7Table(table_id, str(raw["name"]), frozenset(str(v) for v in raw["values"]))
        for table_id, raw in document.get("tables", {}).items()
    }
    datatypes = {
        name: tuple(str(components).split("^")) for name, components in document.get("datatypes", {}).items()
    }
    return StructureSet(
        version=str(document["hl7_version"]),
        events=MappingProxyType(dict(document["events"])),
        structures=MappingProxyType(structures),
        segments=MappingProxyType(segments),
        tables=MappingProxyType(tables),
        datatypes=MappingProxyType(datatypes),
        primitive_datatypes=frozenset(str(t) for t in document.get("primitive_datatypes", ())),
    )


def _candidates(message_version: str) -> list[str]:
    """Generated versions in preference order for a message's MSH-12."""
    return list(_candidates_cached(message_version))


@lru_cache(maxsize=256)
def _candidates_cached(message_version: str) -> tuple[str, ...]:
    versions = list(available_versions())
    wanted = parse_version(message_version)
    if wanted is None:
        return tuple(reversed(versions))
    if message_version.strip() in versions:
        exact = message_version.strip()
        older = [v for v in reversed(versions) if v != exact and (parse_version(v) or ()) < wanted]
        newer = [v for v in versions if (parse_version(v) or ()) > wanted]
        return (exact, *older, *newer)
    older = [v for v in reversed(versions) if (parse_version(v) or ()) <= wanted]
    newer = [v for v in versions if (parse_version(v) or ()) > wanted]
    return (*older, *newer)


def structures_for(message_version: str) -> StructureSet:
    """The best-matching definitions for a message version (see module docstring)."""
    return load_structures(_candidates(message_version)[0])


def resolve_structure(
    message_type: str, trigger: str | None, message_version: str
) -> tuple[StructureSet, str] | None:
    """``(definitions, structure id)`` for a message, or ``None`` when the type/trigger is not supported.

    ``ACK`` resolves for any trigger. Other types need ``TYPE^TRIGGER`` in :data:`SUPPORTED_EVENTS`.
    """
    key = "ACK" if message_type == "ACK" else f"{message_type}^{trigger or ''}"
    if key != "ACK" and key not in SUPPORTED_EVENTS:
        return None
    for version in _candidates(message_version):
        definitions = load_structures(version)
        structure_id = definitions.events.get(key)
        if structure_id is not None and structure_id in definitions.structures:
            return definitions, structure_id
    return None
