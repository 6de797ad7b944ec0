"""Canonical clinical event -> FHIR R4 (UK Core) transaction Bundle.

Output is FHIR JSON dicts (decimals as :class:`~decimal.Decimal`; write with :func:`serialize`) whose
entries are conditional or deterministic-id requests, so replaying a message never creates a second
resource. Entries, references, ids, event semantics and lineage: ``docs/mapping-fhir-out.md``. Every
bundle is the caller's own (nothing in it is shared with another bundle).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from shared.canonical.model import ClinicalEvent
from shared.fhir.json import dumps
from shared.mapping.fhir_out import encounter, orders, patient, records, results
from shared.mapping.fhir_out._build import identifier_query
from shared.mapping.fhir_out._bundle import ENCOUNTER_KINDS, PATIENT_UPSERT_KINDS, Builder
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.lineage import Mapped

__all__ = [
    "ENCOUNTER_KINDS",
    "PATIENT_UPSERT_KINDS",
    "FhirOutError",
    "identifier_query",
    "serialize",
    "to_bundle",
    "to_entries",
    "to_resources",
]


def _build(b: Builder) -> None:
    """Add the event's entries: the Patient first, then the encounter, then the clinical records."""
    ev = b.event
    patient.patient(b)
    b.encounter_context()
    if ev.kind in ENCOUNTER_KINDS:
        encounter.encounter(b)
    for n, r in enumerate(ev.reports):
        results.report(b, r, n)
    for n, o in enumerate(ev.orders):
        orders.service_request(b, o, n)
    for n, ref in enumerate(ev.referrals):
        orders.referral(b, ref, n)
    for n, a in enumerate(ev.allergies):
        records.allergy(b, a, n)
    for n, c in enumerate(ev.conditions):
        records.condition(b, c, n)
    for n, mr in enumerate(ev.medication_requests):
        records.medication_request(b, mr, n)
    for n, ms in enumerate(ev.medication_statements):
        records.medication_statement(b, ms, n)
    for n, d in enumerate(ev.documents):
        records.document(b, d, n)


def to_entries(event: ClinicalEvent, *, lineage: bool = False) -> Mapped[list[dict[str, Any]]]:
    """The transaction entries (``fullUrl``, ``resource``, ``request``) for ``event``."""
    b = Builder(event, lineage=lineage)
    _build(b)
    return Mapped(list(b.entries.values()), tuple(b.sink) if b.sink is not None else ())


def to_bundle(event: ClinicalEvent, *, lineage: bool = False) -> Mapped[dict[str, Any]]:
    """FHIR R4 transaction Bundle for ``event`` (raises :class:`FhirOutError` when it cannot be mapped)."""
    b = Builder(event, lineage=lineage)
    bundle = b.bundle_header()
    _build(b)
    bundle["entry"] = list(b.entries.values())
    return Mapped(bundle, tuple(b.sink) if b.sink is not None else ())


def to_resources(
    event: ClinicalEvent, *, lineage: bool = False, types: Collection[str] | None = None
) -> Mapped[list[dict[str, Any]]]:
    """The resources of :func:`to_entries` (optionally only the given resource types)."""
    mapped = to_entries(event, lineage=lineage)
    selected = [e for e in mapped.value if types is None or e["resource"]["resourceType"] in types]
    keep = {e["fullUrl"] for e in selected}
    lin = tuple(x for x in mapped.lineage if x.resource in keep and not x.target.startswith("Bundle."))
    return Mapped([e["resource"] for e in selected], lin)


def serialize(bundle: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (``ensure_ascii=False``), decimals exact."""
    return dumps(bundle)
