"""Canonical clinical event -> FHIR R4 (UK Core) transaction Bundle.

Output is dicts and lists in FHIR JSON shape, built directly (no fhir.resources models on this path);
decimals are :class:`~decimal.Decimal` so their precision survives - write them with :func:`serialize`
(:func:`shared.fhir.json.dumps`). Every resource carries its UK Core ``meta.profile``.

Read-only shared parts (speed, lineage off): a reference-data resource (Practitioner, Organization,
Location), the Patient / Encounter resource of a canonical object seen before (the HL7 mapper hands back
the same object for a repeated PID / PV1) and a recurring CodeableConcept are built once and shared
between bundles as :class:`~shared.mapping.fhir_out._frozen.FrozenDict` / ``FrozenList`` - ``dict`` /
``list`` subclasses whose mutating methods raise ``TypeError``, so one caller's change can never leak into
another bundle. Treat a bundle as read-only, or copy it first (``copy.deepcopy`` or
``json.loads(serialize(bundle))`` give plain containers). The bundle, its ``entry`` list, entries and
requests are always the caller's own. ``tests/unit/mapping/fhir_out/test_fhirout_caches.py`` proves a
bundle served from the caches equals a fresh build (fabricated, bench and corpus events).

Entries and references (replaying a message never creates a second resource)
----------------------------------------------------------------------------
===================================  ==============================================  ===================
resource                             request                                         referenced as
===================================  ==============================================  ===================
Patient (context: A01, ORU, ...)     POST Patient, ifNoneExist identifier=<key>      ``urn:uuid:<id>``
Patient (record: A08, A28, A31,      PUT Patient?identifier=<key> (conditional       ``urn:uuid:<id>``
A40)                                 update: create, or replace the one match)
Practitioner, Organization,          POST <Type>, ifNoneExist identifier=<key>       ``urn:uuid:<id>``
Location                             (reference data: created once, never
                                     overwritten by an event)
Encounter, Observation,              PUT <Type>/<deterministic id>                   ``<Type>/<id>``
DiagnosticReport, ServiceRequest,
Specimen, AllergyIntolerance, Condition,
DocumentReference, Medication-
Request/-Statement
===================================  ==============================================  ===================

The patient key is the NHS number (``https://fhir.nhs.uk/Id/nhs-number|<nhs>``), else the first local
identifier. Every ``fullUrl`` is ``urn:uuid:<deterministic id>`` (:mod:`shared.fhir.ids`); for
conditional entries the server assigns or finds the real id and rewrites the ``urn:uuid`` references
(transaction reference rewriting); PUT targets are referenced by the id they are stored under, the
pattern FHIR servers and the Microsoft FHIR-Converter use. Ids: Encounter = the visit number (the
identifier :func:`shared.canonical.identity.encounter_identifier` picks); DiagnosticReport = filler
order number (else placer, else first identifier) + report code; Observation = report id + OBX
sequence + code; Specimen = its first identifier (SPM-2), else report id + sequence (referenced from
``DiagnosticReport.specimen``, and from ``Observation.specimen`` when the report has exactly one);
ServiceRequest = placer (else filler) order number, referrals their UBRN;
AllergyIntolerance / Condition = their identifier, else patient key + code (+ onset); the others their
first business identifier (a :class:`FhirOutError` when there is none).

Event semantics
---------------
* A11 / A13 (cancel admission / discharge) PUT the *same* Encounter with status ``cancelled`` /
  ``in-progress`` (A13 drops ``period.end`` and the discharge disposition: the stay is open again).
* A40 (merge): ``Patient.link`` from the canonical MergeLinks, plus ``replaces`` for any merged-away
  identifier (MRG-1) the links do not name; the retired record is referred to by identifier here. The
  FHIR write-back retires it (:func:`~shared.mapping.fhir_out.merge.retire`) and re-points its records
  (``docs/adr/0002-patient-merge.md``).
* The resources are *partial* for HL7 v2 events (a message changes only what it carries):
  :mod:`shared.mapping.fhir_out.merge` merges a Patient / Encounter into the stored one, honouring the
  canonical ``cleared`` / ``defaulted`` (``docs/update-semantics.md``). Other resources are whole.
* Events that are not about the encounter (a result with a PV1) refer to it by identifier only.
* Observation values: Quantity / CodeableConcept / string / dateTime / Range; an attachment result
  (OBX ED/RP) goes to ``DiagnosticReport.presentedForm`` (R4 Observation has no valueAttachment);
  report-level comments (NTE after OBR) go to the R5 ``DiagnosticReport.note`` cross-version
  extension (R4 has no element for them and they are not a ``conclusion``);
  a :class:`~shared.canonical.model.DataAbsent` becomes ``Observation.dataAbsentReason``; elsewhere the
  ``data-absent-reason`` extension (with the unmapped source coding, when there was one).
* ``meta.security`` v3-Confidentiality (U/R/V as PDS) on the Patient, and on every resource of a
  restricted (R/V) patient so access control applies to the clinical data too.

Lineage (``lineage=True``): canonical path -> FHIR path (``Patient.name[0].given[0]``) with the entry's
``fullUrl`` as ``resource``; ids, profiles, systems, fullUrls and requests are recorded too (constants
with ``source=None``; ids/fullUrls with the canonical identifier they derive from).
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
