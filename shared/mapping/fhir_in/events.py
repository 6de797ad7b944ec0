"""A FHIR write (create / update / delete of one resource) -> one canonical :class:`ClinicalEvent`.

The FHIR API publishes the same clinical events as the HL7 v2 path, with the same identity keys, so
both sources deduplicate against each other. Event-kind rules per resource type and the identity
inputs: ``docs/mapping-fhir-in-events.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from shared.canonical import identity
from shared.canonical.model import (
    ClinicalDateTime,
    ClinicalEvent,
    Encounter,
    EncounterStatus,
    EventKey,
    EventKind,
    Identifier,
    Patient,
    Provenance,
    SourceSystem,
)
from shared.mapping.errors import InvalidValue, MappingError, MissingRequiredField
from shared.mapping.fhir_in import _read as r
from shared.mapping.fhir_in import clinical
from shared.mapping.fhir_in.encounter import encounter_locations, map_encounter
from shared.mapping.fhir_in.patient import map_patient
from shared.mapping.lineage import LineageRecorder, Mapped
from shared.terminology import systems

__all__ = ["INPATIENT_CLASSES", "Interaction", "UnsupportedInteraction", "event_from_fhir"]

Interaction = Literal["create", "update", "delete"]

#: Encounter.class codes (v3-ActCode) that make an in-progress encounter an admission (A01) rather than
#: a registration (A04): inpatient, inpatient acute, inpatient non-acute.
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
_CANCELLED = frozenset({EncounterStatus.CANCELLED, EncounterStatus.ENTERED_IN_ERROR})
_ACTIVE = frozenset({EncounterStatus.IN_PROGRESS, EncounterStatus.ON_LEAVE})
#: Where a resource type names its patient.
_SUBJECT = {
    "AllergyIntolerance": "patient",
}
DEFAULT_SOURCE = SourceSystem(application="fhir-api")


class UnsupportedInteraction(MappingError):
    """This resource type / interaction has no event mapping (HL7 0357 ``201``, FHIR: not supported)."""

    code = "mapping-unsupported-interaction"
    default_error_code = "201"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason, field=field)


def event_from_fhir(
    resource: r.JsonObj,
    *,
    interaction: Interaction,
    patient: Patient | None,
    context: Mapping[str, r.JsonObj] | None = None,
    correlation_id: str | None = None,
    previous: r.JsonObj | None = None,
    recorded_at: ClinicalDateTime | None = None,
    source: SourceSystem | None = None,
    request_id: str | None = None,
    received_at: datetime | None = None,
    full_url: str | None = None,
    lineage: bool = True,
) -> Mapped[ClinicalEvent]:
    """Map one FHIR write to a ClinicalEvent (rules in the module docstring).

    ``context`` maps references and Bundle fullUrls to resources the caller already holds (the subject
    Patient, a DiagnosticReport's Observations, Locations, Practitioners); nothing is fetched.
    ``previous`` is the stored version an update replaces (it lets an Encounter update be told apart as a
    discharge / transfer / cancellation). ``recorded_at`` overrides ``meta.lastUpdated``.
    """
    if interaction not in ("create", "update", "delete"):
        raise UnsupportedInteraction("interaction", "unknown interaction")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise MissingRequiredField("resourceType")
    rec = LineageRecorder(enabled=lineage)
    resolver = r.Resolver(resource, context)
    recorded = recorded_at or _last_updated(resource, rtype)
    meta_source = None if source is not None else _meta_source(resource, rtype)
    base = _Base(
        source=source or meta_source or DEFAULT_SOURCE,
        source_src=f"{rtype}.meta.source" if meta_source is not None else None,
        recorded_src=f"{rtype}.meta.lastUpdated" if recorded_at is None and recorded is not None else None,
        provenance=Provenance(
            source_format="fhir",
            message_id=request_id,
            message_type=f"{rtype}:{interaction}",
            received_at=ClinicalDateTime(value=received_at) if received_at is not None else None,
            correlation_id=correlation_id,
        ),
        recorded_at=recorded,
    )
    if interaction == "delete" and rtype not in ("Encounter",):
        raise UnsupportedInteraction(rtype, "delete is not an event for this resource type")
    if rtype not in _BUILDERS:
        raise UnsupportedInteraction("resourceType", "no event mapping for this resource type")
    with rec.scope("", resource=full_url):  # every entry names the resource (Bundle entry) it came from
        builder = _BUILDERS[rtype]
        if builder is None:
            event = _patient_event(resource, interaction, rec, resolver, base)
        else:
            subject = patient if patient is not None else _subject(resource, rtype, rec, resolver)
            if patient is not None:
                _check_subject(resource, rtype, patient)
                rec.add(
                    f"{rtype}.{_SUBJECT.get(rtype, 'subject')}",
                    "patient",
                    "the subject, resolved by the caller",
                )
            event = builder(resource, interaction, subject, previous, rec, resolver, base)
    return Mapped(event, rec.freeze())


# -------------------------------------------------------------------------------------------- helpers
class _Base:
    """The envelope parts every event of one write shares, with the FHIR paths they came from (``None``:
    supplied by the caller or a default)."""

    __slots__ = ("provenance", "recorded_at", "recorded_src", "source", "source_src")

    def __init__(
        self,
        *,
        source: SourceSystem,
        source_src: str | None,
        provenance: Provenance,
        recorded_at: ClinicalDateTime | None,
        recorded_src: str | None,
    ) -> None:
        self.source = source
        self.source_src = source_src
        self.provenance = provenance
        self.recorded_at = recorded_at
        self.recorded_src = recorded_src


def _last_updated(resource: r.JsonObj, rtype: str) -> ClinicalDateTime | None:
    meta = r.opt_obj(resource, "meta", rtype)
    if meta is None or meta.get("lastUpdated") is None:
        return None
    return r.date_time(meta["lastUpdated"], f"{rtype}.meta.lastUpdated")


def _meta_source(resource: r.JsonObj, rtype: str) -> SourceSystem | None:
    meta = r.opt_obj(resource, "meta", rtype)
    if meta is None:
        return None
    uri = r.opt_str(meta, "source", f"{rtype}.meta")
    return SourceSystem(application=uri) if uri is not None else None


def _need_recorded(base: _Base, rtype: str) -> ClinicalDateTime:
    if base.recorded_at is None:
        raise MissingRequiredField(f"{rtype}.meta.lastUpdated", "event identity needs the record time")
    return base.recorded_at


def _subject(resource: r.JsonObj, rtype: str, rec: LineageRecorder, resolver: r.Resolver) -> Patient:
    key = _SUBJECT.get(rtype, "subject")
    path = f"{rtype}.{key}"
    ref = r.opt_obj(resource, key, rtype)
    if ref is None:
        raise MissingRequiredField(path)
    resolved = resolver.resolve(r.opt_str(ref, "reference", path))
    if resolved is None or resolved.get("resourceType") != "Patient":
        raise MissingRequiredField(path, "the subject Patient was not supplied")
    with rec.scope("patient."):
        return map_patient(resolved, _Prefixed(rec, f"{path}.resolve()"), resolver)


class _Prefixed(LineageRecorder):
    """A recorder view that rewrites ``Patient.`` sources to ``<reference path>.resolve().``."""

    def __init__(self, inner: LineageRecorder, prefix: str) -> None:
        super().__init__(enabled=inner.enabled)
        self._inner = inner
        self._prefix = prefix

    def add(
        self,
        source: str | None,
        target: str,
        rule: str,
        *,
        table: str | None = None,
        table_version: str | None = None,
    ) -> None:
        if source is not None and source.startswith("Patient"):
            source = self._prefix + source[len("Patient") :]
        self._inner.add(source, target, rule, table=table, table_version=table_version)


def _check_subject(resource: r.JsonObj, rtype: str, patient: Patient) -> None:
    """A subject given by NHS number must be the patient the caller resolved."""
    key = _SUBJECT.get(rtype, "subject")
    ref = r.opt_obj(resource, key, rtype)
    if ref is None:
        return
    logical = r.opt_obj(ref, "identifier", f"{rtype}.{key}")
    if logical is None or logical.get("system") != systems.NHS_NUMBER:
        return
    value = r.opt_str(logical, "value", f"{rtype}.{key}.identifier")
    if (
        patient.nhs_number is not None
        and value is not None
        and value.replace(" ", "") != patient.nhs_number.value
    ):
        raise InvalidValue(f"{rtype}.{key}.identifier.value", "subject is not the patient supplied")


def _event(
    kind: EventKind,
    key: EventKey,
    patient: Patient,
    base: _Base,
    rec: LineageRecorder,
    rule: str,
    *,
    occurred_src: str | None = None,
    **parts: object,
) -> ClinicalEvent:
    if rec.enabled:
        rec.add(None, "kind", f"event rule: {rule}")
        rec.add(None, "key", "derived: shared.canonical.identity")
        rec.add(
            base.source_src, "source.application", "meta.source" if base.source_src else "caller / default"
        )
        rec.add(
            None, "provenance", "the FHIR interaction (resource type, interaction, request/correlation id)"
        )
        if base.recorded_at is not None:
            rec.add(base.recorded_src, "recorded_at", "meta.lastUpdated" if base.recorded_src else "caller")
        if parts.get("occurred_at") is not None:
            rec.add(occurred_src, "occurred_at", "event time (identity rule)")
        if parts.get("cancels") is not None:
            rec.add(None, "cancels", "derived: key of the admission / discharge being cancelled")
    return ClinicalEvent(
        kind=kind,
        key=key,
        source=base.source,
        provenance=base.provenance,
        recorded_at=base.recorded_at,
        patient=patient,
        **parts,
    )


# -------------------------------------------------------------------------------------------- Patient
def _patient_event(
    resource: r.JsonObj, interaction: Interaction, rec: LineageRecorder, resolver: r.Resolver, base: _Base
) -> ClinicalEvent:
    with rec.scope("patient."):
        patient = map_patient(resource, rec, resolver)
    merged = tuple(link.other for link in patient.links if link.kind == "replaces")
    if merged:
        rec.add("Patient.link", "merged_identifiers", "link type 'replaces' -> merged-away record")
        return _event(
            EventKind.PATIENT_MERGE,
            identity.merge_key(patient, merged),
            patient,
            base,
            rec,
            "Patient with link type replaces",
            merged_identifiers=merged,
        )
    kind = EventKind.PATIENT_CREATED if interaction == "create" else EventKind.PATIENT_UPDATED
    recorded = _need_recorded(base, "Patient")
    return _event(
        kind,
        identity.patient_event_key(kind, patient),
        patient,
        base,
        rec,
        f"Patient {interaction}",
        occurred_at=recorded,
        occurred_src=base.recorded_src,
    )


# ------------------------------------------------------------------------------------------ Encounter
def _encounter_kind(
    encounter: Encounter, interaction: Interaction, previous: Encounter | None, moved: bool
) -> tuple[EventKind, str]:
    status = encounter.status
    inpatient = any(
        c.system == systems.V3_ACT_CODE and c.code in INPATIENT_CLASSES
        for c in getattr(encounter.encounter_class, "codings", ())
    )
    started = EventKind.ADMISSION if inpatient else EventKind.REGISTRATION
    if interaction == "delete":
        return EventKind.CANCEL_ADMISSION, "Encounter delete"
    if interaction == "create" or (previous is not None and previous.status is EncounterStatus.PLANNED):
        if status is EncounterStatus.PLANNED:
            return EventKind.PRE_ADMISSION, "Encounter planned"
        if status is EncounterStatus.ARRIVED:
            return EventKind.REGISTRATION, "Encounter arrived"
        if status in _ACTIVE:
            return started, f"Encounter {status.value}, class {'inpatient' if inpatient else 'not inpatient'}"
        if status is EncounterStatus.FINISHED:
            return EventKind.DISCHARGE, "Encounter finished"
        return EventKind.CANCEL_ADMISSION, f"Encounter {status.value}"
    if previous is None:
        if status is EncounterStatus.FINISHED:
            return EventKind.DISCHARGE, "Encounter update, finished"
        if status in _CANCELLED:
            return EventKind.CANCEL_ADMISSION, f"Encounter update, {status.value}"
        return EventKind.ENCOUNTER_UPDATE, "Encounter update"
    before = previous.status
    if status is EncounterStatus.FINISHED and before is not EncounterStatus.FINISHED:
        return EventKind.DISCHARGE, "Encounter status became finished"
    if before is EncounterStatus.FINISHED and status in _ACTIVE:
        return EventKind.CANCEL_DISCHARGE, "Encounter status finished -> active"
    if status in _CANCELLED and before not in _CANCELLED:
        return EventKind.CANCEL_ADMISSION, f"Encounter status became {status.value}"
    if moved:
        return EventKind.TRANSFER, "Encounter current location changed"
    return EventKind.ENCOUNTER_UPDATE, "Encounter update"


def _encounter_event(
    resource: r.JsonObj,
    interaction: Interaction,
    patient: Patient,
    previous_resource: r.JsonObj | None,
    rec: LineageRecorder,
    resolver: r.Resolver,
    base: _Base,
) -> ClinicalEvent:
    with rec.scope("encounter."):
        encounter = map_encounter(resource, rec, resolver)
    previous = None
    moved = False
    if previous_resource is not None and interaction == "update":
        previous = map_encounter(previous_resource, LineageRecorder(enabled=False), resolver)
        moved = previous.location != encounter.location and encounter.location is not None
    kind, rule = _encounter_kind(encounter, interaction, previous, moved)
    if not encounter.identifiers:
        raise MissingRequiredField("Encounter.identifier", "encounter events need a visit number")
    period = encounter.period
    occurred: ClinicalDateTime | None
    occurred_src: str | None = "Encounter.period.start"
    if kind in (EventKind.ADMISSION, EventKind.REGISTRATION, EventKind.PRE_ADMISSION):
        occurred = period.start if period else None
        if occurred is None:
            raise MissingRequiredField("Encounter.period.start", "event identity needs the encounter start")
    elif kind is EventKind.DISCHARGE:
        occurred_src = "Encounter.period.end"
        occurred = period.end if period else None
        if occurred is None:
            raise MissingRequiredField("Encounter.period.end", "event identity needs the encounter end")
    elif kind is EventKind.TRANSFER:
        locs = encounter_locations(resource)
        occurred = locs.current_start or _need_recorded(base, "Encounter")
        occurred_src = (
            f"Encounter.location[{locs.current}].period.start" if locs.current_start else base.recorded_src
        )
    else:
        occurred = _need_recorded(base, "Encounter")
        occurred_src = base.recorded_src
    key = identity.encounter_event_key(
        kind, encounter, patient=patient, occurred_at=occurred, recorded_at=base.recorded_at
    )
    cancels = None
    if kind in (EventKind.CANCEL_ADMISSION, EventKind.CANCEL_DISCHARGE):
        cancels = _cancelled_key(kind, encounter, patient)
    return _event(
        kind,
        key,
        patient,
        base,
        rec,
        rule,
        encounter=encounter,
        occurred_at=occurred,
        cancels=cancels,
        occurred_src=occurred_src,
    )


def _cancelled_key(kind: EventKind, encounter: Encounter, patient: Patient) -> EventKey | None:
    """The key of the admission / discharge being cancelled."""
    try:
        return identity.cancelled_event_key(kind, encounter, patient=patient)
    except identity.IdentityError:
        return None


# ------------------------------------------------------------------------------------ clinical events
def _result_event(
    resource: r.JsonObj,
    interaction: Interaction,
    patient: Patient,
    previous: r.JsonObj | None,
    rec: LineageRecorder,
    resolver: r.Resolver,
    base: _Base,
) -> ClinicalEvent:
    rtype = str(resource["resourceType"])
    with rec.scope("reports[0]."):
        if rtype == "DiagnosticReport":
            report = clinical.map_report(resource, rec, resolver)
        else:
            report = clinical.report_for_observation(resource, rec, resolver)
    if report.filler_order_number is None:
        raise MissingRequiredField(f"{rtype}.identifier", "a result needs a filler order number (type FILL)")
    key = _keyed(
        lambda: identity.result_key(patient, report.filler_order_number, report.code), f"{rtype}.code.coding"
    )
    return _event(
        EventKind.RESULT,
        key,
        patient,
        base,
        rec,
        rtype,
        reports=(report,),
        occurred_at=report.effective,
        occurred_src=f"{rtype}.effective[x]",
    )


def _order_event(
    resource: r.JsonObj,
    interaction: Interaction,
    patient: Patient,
    previous: r.JsonObj | None,
    rec: LineageRecorder,
    resolver: r.Resolver,
    base: _Base,
) -> ClinicalEvent:
    with rec.scope("orders[0]."):
        order = clinical.map_service_request(resource, rec, resolver)
    key = identity.order_key(patient, order.placer_order_number, order.filler_order_number)
    return _event(
        EventKind.ORDER,
        key,
        patient,
        base,
        rec,
        "ServiceRequest",
        orders=(order,),
        occurred_at=order.authored_on,
        occurred_src="ServiceRequest.authoredOn",
    )


def _allergy_event(
    resource: r.JsonObj,
    interaction: Interaction,
    patient: Patient,
    previous: r.JsonObj | None,
    rec: LineageRecorder,
    resolver: r.Resolver,
    base: _Base,
) -> ClinicalEvent:
    with rec.scope("allergies[0]."):
        allergy = clinical.map_allergy(resource, rec, resolver)
    key = _keyed(lambda: identity.allergy_key(patient, allergy.code), "AllergyIntolerance.code.coding")
    return _event(
        EventKind.ALLERGY,
        key,
        patient,
        base,
        rec,
        "AllergyIntolerance",
        allergies=(allergy,),
        occurred_at=allergy.recorded,
        occurred_src="AllergyIntolerance.recordedDate",
    )


def _condition_event(
    resource: r.JsonObj,
    interaction: Interaction,
    patient: Patient,
    previous: r.JsonObj | None,
    rec: LineageRecorder,
    resolver: r.Resolver,
    base: _Base,
) -> ClinicalEvent:
    with rec.scope("conditions[0]."):
        condition = clinical.map_condition(resource, rec, resolver)
    if condition.onset is None:
        raise MissingRequiredField("Condition.onset[x]", "event identity needs the onset")
    key = _keyed(
        lambda: identity.condition_key(patient, condition.code, condition.onset), "Condition.code.coding"
    )
    return _event(
        EventKind.CONDITION,
        key,
        patient,
        base,
        rec,
        "Condition",
        conditions=(condition,),
        occurred_at=condition.onset,
        occurred_src="Condition.onset[x]",
    )


def _identified_event(
    kind: EventKind,
    rtype: str,
    scope: str,
    mapper: Callable[[r.JsonObj, LineageRecorder, r.Resolver], object],
) -> _Builder:
    def build(
        resource: r.JsonObj,
        interaction: Interaction,
        patient: Patient,
        previous: r.JsonObj | None,
        rec: LineageRecorder,
        resolver: r.Resolver,
        base: _Base,
    ) -> ClinicalEvent:
        with rec.scope(f"{scope}[0]."):
            value = mapper(resource, rec, resolver)
        idents: tuple[Identifier, ...] = getattr(value, "identifiers", ())
        if not idents:
            raise MissingRequiredField(
                f"{rtype}.identifier", f"a {kind.value} event needs a business identifier"
            )
        parts: dict[str, Any] = {scope: (value,)}
        return _event(
            kind, identity.identifier_key(kind, patient, idents), patient, base, rec, rtype, **parts
        )

    return build


def _keyed(make: Callable[[], EventKey], field: str) -> EventKey:
    try:
        return make()
    except identity.IdentityError as exc:
        raise MissingRequiredField(field, "event identity needs a coded value") from exc


_Builder = Callable[
    [r.JsonObj, Interaction, Patient, "r.JsonObj | None", LineageRecorder, r.Resolver, _Base], ClinicalEvent
]

_BUILDERS: dict[str, _Builder | None] = {
    "Patient": None,  # handled before subject resolution
    "Encounter": _encounter_event,
    "Observation": _result_event,
    "DiagnosticReport": _result_event,
    "ServiceRequest": _order_event,
    "AllergyIntolerance": _allergy_event,
    "Condition": _condition_event,
    "MedicationRequest": _identified_event(
        EventKind.MEDICATION_REQUEST,
        "MedicationRequest",
        "medication_requests",
        clinical.map_medication_request,
    ),
    "MedicationStatement": _identified_event(
        EventKind.MEDICATION_STATEMENT,
        "MedicationStatement",
        "medication_statements",
        clinical.map_medication_statement,
    ),
    "DocumentReference": _identified_event(
        EventKind.DOCUMENT, "DocumentReference", "documents", clinical.map_document
    ),
}
