"""Plumbing shared by the clinical resource mappers (:mod:`.results`, :mod:`.orders`, :mod:`.records`).

Common rules: CodeableConcepts become :class:`~shared.canonical.model.Concept` with every coding kept;
elements bound to a required value set (statuses, intents, categories, criticality ...) are checked
against the canonical model's codes and an unknown code is :class:`~shared.mapping.errors.InvalidValue`
(HL7 0357 ``103``), never a default; references to Practitioner/Organization become canonical parties
(resolved from ``contained`` or the caller's ``context`` when supplied, else by logical identifier).
Inline attachment ``data`` is rejected: the API stores bytes first and passes a URL (claim check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from shared.mapping.errors import InvalidValue
from shared.mapping.fhir_in import _read as r
from shared.mapping.lineage import LineageRecorder


def _run(
    mapper: Callable[[r.JsonObj, LineageRecorder, r.Resolver], object],
    resource: r.JsonObj,
    context: Mapping[str, r.JsonObj] | None,
    lineage: bool,
    target: str,
    full_url: str | None,
) -> tuple[object, LineageRecorder]:
    rec = LineageRecorder(enabled=lineage)
    resolver = r.Resolver(resource, context)
    with rec.scope(f"{target}.", resource=full_url):
        value = mapper(resource, rec, resolver)
    return value, rec


def _choice(resource: r.JsonObj, prefix: str, src: str) -> None:
    """A FHIR choice element (``effective[x]``, ``onset[x]``) has at most one type present."""
    present = [k for k in resource if k.startswith(prefix) and resource[k] is not None]
    if len(present) > 1:
        raise InvalidValue(f"{src}.{prefix}[x]", f"more than one {prefix}[x]")
