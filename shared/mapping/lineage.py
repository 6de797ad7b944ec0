"""Field-level lineage: which source field became which target element, by which rule and table.

Paths
-----
* HL7 v2 sources use HL7 notation: ``PID-5[1].2``, ``OBX(2)-5``, ``MSH-7``.
* Canonical paths use attribute notation: ``patient.names[0].given[0]``, ``reports[0].results[1].value``.
* FHIR targets are ``<ResourceType>.<element path>`` with 0-based indexes (``Patient.name[0].given[0]``);
  ``resource`` names the Bundle entry (its ``fullUrl``) when a Bundle holds several of a type.

A mapping step records entries with :class:`LineageRecorder`; :func:`compose` joins an HL7->canonical
list with a canonical->FHIR list on the canonical path to give end-to-end HL7 -> FHIR lineage.
Constants and derived values (``meta.profile``, deterministic ids, identifier systems) are recorded too,
with ``source`` ``None`` and the rule saying why, so "every populated element has lineage" is checkable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LineageEntry:
    source: str | None
    target: str
    rule: str
    table: str | None = None
    table_version: str | None = None
    resource: str | None = None


@dataclass(frozen=True, slots=True)
class Mapped(Generic[T]):
    value: T
    lineage: tuple[LineageEntry, ...] = ()


@dataclass
class LineageRecorder:
    """Collects entries; disabled recorders cost one attribute check per call (the hot path)."""

    enabled: bool = True
    entries: list[LineageEntry] = field(default_factory=list)
    _target_prefix: str = ""
    _resource: str | None = None

    def add(
        self,
        source: str | None,
        target: str,
        rule: str,
        *,
        table: str | None = None,
        table_version: str | None = None,
    ) -> None:
        if self.enabled:
            full = f"{self._target_prefix}{target}" if self._target_prefix else target
            self.entries.append(LineageEntry(source, full, rule, table, table_version, self._resource))

    @contextmanager
    def scope(self, target_prefix: str, *, resource: str | None = None) -> Iterator[LineageRecorder]:
        """Prefix every target recorded inside the block (e.g. ``"patient."`` or ``"Patient."``)."""
        saved = (self._target_prefix, self._resource)
        self._target_prefix = f"{self._target_prefix}{target_prefix}"
        if resource is not None:
            self._resource = resource
        try:
            yield self
        finally:
            self._target_prefix, self._resource = saved

    def freeze(self) -> tuple[LineageEntry, ...]:
        return tuple(self.entries)


def _covers(ancestor: str, path: str) -> bool:
    """True when ``ancestor`` is ``path`` or an ancestor element of it."""
    return path == ancestor or path.startswith(ancestor + ".") or path.startswith(ancestor + "[")


def compose(first: Sequence[LineageEntry], second: Sequence[LineageEntry]) -> list[LineageEntry]:
    """Join source->canonical (``first``) with canonical->target (``second``) on the canonical path.

    A canonical path in ``second`` matches entries of ``first`` whose target is the same path, an
    ancestor of it (a whole name mapped from one field) or a descendant (a FHIR element built from
    several canonical parts). Entries of ``second`` with no canonical source (constants) pass through.
    """
    composed: list[LineageEntry] = []
    for entry in second:
        if entry.source is None:
            composed.append(entry)
            continue
        matched = False
        for origin in first:
            if _covers(origin.target, entry.source) or _covers(entry.source, origin.target):
                composed.append(
                    LineageEntry(
                        origin.source,
                        entry.target,
                        f"{origin.rule} > {entry.rule}",
                        entry.table or origin.table,
                        entry.table_version or origin.table_version,
                        entry.resource,
                    )
                )
                matched = True
        if not matched:
            composed.append(entry)
    return composed


def uncovered(
    paths: Iterable[str], entries: Sequence[LineageEntry], *, resource: str | None = None
) -> list[str]:
    """The ``paths`` not covered by any entry's target (exactly or by an ancestor element)."""
    targets = [e.target for e in entries if resource is None or e.resource == resource]
    return [p for p in paths if not any(_covers(t, p) for t in targets)]


def leaf_paths(resource: object, prefix: str) -> list[str]:
    """Every populated leaf element of a FHIR JSON resource, as ``Type.a[0].b`` paths."""
    out: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "resourceType":
                    continue
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif node is not None:
            out.append(path)

    walk(resource, prefix)
    return out
