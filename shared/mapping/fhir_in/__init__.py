"""FHIR R4 (UK Core) resources -> the canonical model, for inbound FHIR writes.

Public API (each returns :class:`~shared.mapping.lineage.Mapped` = value + lineage)::

    patient_from_fhir(resource)             -> Mapped[Patient]
    encounter_from_fhir(resource)           -> Mapped[Encounter]
    observation_from_fhir(resource)         -> Mapped[Observation]
    report_from_fhir(resource, context=...) -> Mapped[ResultReport]   (DiagnosticReport + its Observations)
    service_request_from_fhir / allergy_from_fhir / condition_from_fhir / medication_request_from_fhir /
    medication_statement_from_fhir / document_reference_from_fhir
    event_from_fhir(resource, *, interaction, patient, context=None, correlation_id=None, previous=None,
                    recorded_at=None, ...) -> Mapped[ClinicalEvent]

Resources are FHIR JSON objects (``dict``); nothing is fetched: referenced resources the mapping needs
(a DiagnosticReport's results, a subject Patient, Locations) come from ``contained`` or from ``context``
(reference or Bundle fullUrl -> resource). Every mapper accepts ``lineage=False`` for the hot path.

Lineage: sources are FHIR paths (``Patient.name[0].given[0]``; a referenced resource's elements are read
through FHIRPath ``resolve()``: ``DiagnosticReport.result[0].resolve().valueQuantity.value``), targets are
canonical paths (``patient.names[0].given[0]``); ``resource`` is the write's fullUrl when given.

Errors: malformed or unsafe input raises a :class:`~shared.mapping.errors.MappingError` subclass naming the
FHIR element (``Patient.identifier[0].value``) and never a value: :class:`MissingRequiredField`,
:class:`InvalidValue` (error_code ``103`` for a code outside its value set), or
:class:`~shared.mapping.fhir_in.events.UnsupportedInteraction`. The FHIR API answers them with a 4xx
OperationOutcome whose ``expression`` is ``field``.
"""

from __future__ import annotations

from shared.mapping.fhir_in.encounter import encounter_from_fhir
from shared.mapping.fhir_in.events import INPATIENT_CLASSES, UnsupportedInteraction, event_from_fhir
from shared.mapping.fhir_in.orders import service_request_from_fhir
from shared.mapping.fhir_in.patient import patient_from_fhir
from shared.mapping.fhir_in.records import (
    allergy_from_fhir,
    condition_from_fhir,
    document_reference_from_fhir,
    medication_request_from_fhir,
    medication_statement_from_fhir,
)
from shared.mapping.fhir_in.results import observation_from_fhir, report_from_fhir

__all__ = [
    "INPATIENT_CLASSES",
    "UnsupportedInteraction",
    "allergy_from_fhir",
    "condition_from_fhir",
    "document_reference_from_fhir",
    "encounter_from_fhir",
    "event_from_fhir",
    "medication_request_from_fhir",
    "medication_statement_from_fhir",
    "observation_from_fhir",
    "patient_from_fhir",
    "report_from_fhir",
    "service_request_from_fhir",
]
