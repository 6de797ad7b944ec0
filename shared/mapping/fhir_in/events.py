"""A FHIR write (create / update / delete of one resource) -> one canonical :class:`ClinicalEvent`.

The FHIR API publishes the same clinical events as the HL7 v2 path, with the same identity keys, so
both sources deduplicate against each other. Event-kind rules per resource type and the identity
inputs: ``docs/mapping-fhir-in-events.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    Patient,
    Provenance,
    SourceSystem,
)
from shared.mapping.errors import InvalidValue, MappingError, MissingRequiredField
from shared.mapping.fhir_in import _read as r
from shared.mapping.fhir_in import orders, records, results
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
    if rtype not in ("Patient", "Encounter") and rtype not in _RULES:
        raise UnsupportedInteraction("resourceType", "no event mapping for this resource type")
    with rec.scope("", resource=full_url):  # every entry names the resource (Bundle entry) it came from
        if rtype == "Patient":  # the patient is the resource: no subject to resolve
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
            if rtype == "Encounter":
                event = _encounter_event(resource, interaction, subject, previous, rec, resolver, base)
            else:
                event = _clinical_event(_RULES[rtype], rtype, resource, subject, rec, resolver, base)
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
def _moved_back(encounter: Encounter, previous: Encounter | None) -> bool:
    """A cancelled transfer (A12's FHIR form): the previous current location is gone from the current and
    prior ones, and the previous prior location is current again (a move back lists where it left)."""
    if previous is None or previous.location is None or previous.prior_location is None:
        return False
    back = encounter.location == previous.prior_location
    return back and previous.location not in (encounter.location, encounter.prior_location)


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
    if moved and _moved_back(encounter, previous):
        return EventKind.CANCEL_TRANSFER, "Encounter current location removed, the prior one current again"
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
    elif kind is EventKind.CANCEL_TRANSFER and previous_resource is not None:
        # The time of the transfer it cancels, as that transfer's key took it: the cancelled location's
        # period.start, else the previous version's record time.
        was = encounter_locations(previous_resource)
        meta = r.opt_obj(previous_resource, "meta", "Encounter")
        then = r.opt_date_time(meta, "lastUpdated", "Encounter.meta") if meta is not None else None
        occurred = was.current_start or then or _need_recorded(base, "Encounter")
        occurred_src = None
    else:
        occurred = _need_recorded(base, "Encounter")
        occurred_src = base.recorded_src
    key = identity.encounter_event_key(
        kind, encounter, patient=patient, occurred_at=occurred, recorded_at=base.recorded_at
    )
    cancels = None
    if kind in (EventKind.CANCEL_ADMISSION, EventKind.CANCEL_DISCHARGE):
        cancels = _cancelled_key(kind, encounter, patient)
    elif kind is EventKind.CANCEL_TRANSFER:
        cancels = identity.cancelled_event_key(
            kind, encounter, patient=patient, occurred_at=occurred, recorded_at=base.recorded_at
        )
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
@dataclass(frozen=True, slots=True)
class _Rule:
    """How one resource type becomes an event of ``kind``: ``mapper`` fills the one-item list ``scope`` of
    the event; ``key`` makes its identity key (``key_field``, after ``<Type>.``, is named when the key lacks
    a coded value; ``None``: the identity error propagates); ``time`` is (attribute of the mapped value,
    FHIR path) of the event time; ``requires`` is (attribute, FHIR path, reason) that must be present."""

    kind: EventKind
    scope: str
    mapper: Callable[[r.JsonObj, LineageRecorder, r.Resolver], Any]
    key: Callable[[Patient, Any], EventKey]
    key_field: str | None = None
    time: tuple[str, str] | None = None
    requires: tuple[str, str, str] | None = None


def _identified(
    kind: EventKind, scope: str, mapper: Callable[[r.JsonObj, LineageRecorder, r.Resolver], Any]
) -> _Rule:
    """An event keyed by the resource's first business identifier (no event time)."""
    return _Rule(
        kind,
        scope,
        mapper,
        key=lambda patient, value: identity.identifier_key(kind, patient, value.identifiers),
        requires=("identifiers", "identifier", f"a {kind.value} event needs a business identifier"),
    )


_RESULT_FILLER = ("filler_order_number", "identifier", "a result needs a filler order number (type FILL)")

#: Resource type -> event rule (Patient and Encounter have their own functions above).
_RULES: dict[str, _Rule] = {
    "Observation": _Rule(
        EventKind.RESULT,
        "reports",
        results.report_for_observation,
        key=lambda patient, report: identity.result_key(patient, report.filler_order_number, report.code),
        key_field="code.coding",
        time=("effective", "effective[x]"),
        requires=_RESULT_FILLER,
    ),
    "DiagnosticReport": _Rule(
        EventKind.RESULT,
        "reports",
        results.map_report,
        key=lambda patient, report: identity.result_key(patient, report.filler_order_number, report.code),
        key_field="code.coding",
        time=("effective", "effective[x]"),
        requires=_RESULT_FILLER,
    ),
    "ServiceRequest": _Rule(
        EventKind.ORDER,
        "orders",
        orders.map_service_request,
        key=lambda patient, order: identity.order_key(
            patient, order.placer_order_number, order.filler_order_number
        ),
        time=("authored_on", "authoredOn"),
    ),
    "AllergyIntolerance": _Rule(
        EventKind.ALLERGY,
        "allergies",
        records.map_allergy,
        key=lambda patient, allergy: identity.allergy_key(patient, allergy.code),
        key_field="code.coding",
        time=("recorded", "recordedDate"),
    ),
    "Condition": _Rule(
        EventKind.CONDITION,
        "conditions",
        records.map_condition,
        key=lambda patient, condition: identity.condition_key(patient, condition.code, condition.onset),
        key_field="code.coding",
        time=("onset", "onset[x]"),
        requires=("onset", "onset[x]", "event identity needs the onset"),
    ),
    "MedicationRequest": _identified(
        EventKind.MEDICATION_REQUEST, "medication_requests", records.map_medication_request
    ),
    "MedicationStatement": _identified(
        EventKind.MEDICATION_STATEMENT, "medication_statements", records.map_medication_statement
    ),
    "DocumentReference": _identified(EventKind.DOCUMENT, "documents", records.map_document),
}


def _clinical_event(
    rule: _Rule,
    rtype: str,
    resource: r.JsonObj,
    patient: Patient,
    rec: LineageRecorder,
    resolver: r.Resolver,
    base: _Base,
) -> ClinicalEvent:
    with rec.scope(f"{rule.scope}[0]."):
        value = rule.mapper(resource, rec, resolver)
    if rule.requires is not None:
        attribute, path, reason = rule.requires
        present = getattr(value, attribute, None)
        if present is None or present == ():
            raise MissingRequiredField(f"{rtype}.{path}", reason)
    try:
        key = rule.key(patient, value)
    except identity.IdentityError as exc:
        if rule.key_field is None:
            raise
        raise MissingRequiredField(f"{rtype}.{rule.key_field}", "event identity needs a coded value") from exc
    parts: dict[str, Any] = {rule.scope: (value,)}
    occurred_src = None
    if rule.time is not None:
        attribute, path = rule.time
        parts["occurred_at"] = getattr(value, attribute)
        occurred_src = f"{rtype}.{path}"
    return _event(rule.kind, key, patient, base, rec, rtype, occurred_src=occurred_src, **parts)
