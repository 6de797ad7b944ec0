"""Clinical-event identity: one deterministic key per event, whatever wire format it arrived in.

Write-back deduplicates on these keys (not on HTTP requests or HL7 control IDs), so an HL7 v2 ADT^A01 and
a FHIR Encounter create describing the same admission must produce the same key. The rules, per kind:

=========================  ==========================================================================
kind                       key components (after the kind)
=========================  ==========================================================================
admission, registration,   encounter identifier system, value; the event time = encounter start
pre-admission              (HL7 PV1-44 / FHIR Encounter.period.start)
discharge                  encounter identifier; event time = encounter end (PV1-45 / period.end)
transfer                   encounter identifier; event time = occurred_at (EVN-6, else EVN-2 /
                           the new location's period start)
encounter-update           encounter identifier; recorded_at (EVN-2 / MSH-7; FHIR: meta.lastUpdated)
cancel-admission,          encounter identifier; occurred_at of the cancellation
cancel-discharge
patient-created/-updated   patient key; recorded_at
patient-merge              surviving patient key; the merged-away identifiers (sorted)
result                     filler order number (system, value); report code (system|code)
                           — "filler order number + observation set"
order                      placer order number (system, value) (filler number if no placer); status
allergy                    patient key; allergen code (system|code)
condition                  patient key; code; onset
document, referral,        the resource's first business identifier (system, value)
medication-request/-stmt
=========================  ==========================================================================

Times are normalised to UTC and written to the second (``YYYY-MM-DDTHH:MM:SSZ``). The *patient key* is
``nhs|<NHS number>`` when there is one, else ``<system>|<value>`` of the first local identifier; it is the
Service Bus session id (per-patient ordering). Keys are ``<kind>-<32 hex>`` (a SHA-256 of the
components), safe for message ids, table keys and logs; the components stay out of logs.
"""

from __future__ import annotations

import hashlib
from datetime import UTC

from shared.canonical.model import (
    ClinicalDateTime,
    Coded,
    Concept,
    Encounter,
    EventKey,
    EventKind,
    Identifier,
    Patient,
)
from shared.errors import PermanentError


class IdentityError(PermanentError):
    """The event lacks what its identity rule needs (e.g. an admission without a visit number)."""

    code = "event-identity"


_ENCOUNTER_KINDS = {
    EventKind.ADMISSION,
    EventKind.REGISTRATION,
    EventKind.PRE_ADMISSION,
    EventKind.DISCHARGE,
    EventKind.TRANSFER,
    EventKind.ENCOUNTER_UPDATE,
    EventKind.CANCEL_ADMISSION,
    EventKind.CANCEL_DISCHARGE,
}


def _hash(components: tuple[str, ...]) -> str:
    return hashlib.sha256("\x1f".join(components).encode("utf-8")).hexdigest()[:32]


def make_key(kind: EventKind, *parts: str) -> EventKey:
    components = (kind.value, *parts)
    return EventKey(kind=kind, components=components, value=f"{kind.value}-{_hash(components)}")


def utc_second(t: ClinicalDateTime | None, *, what: str) -> str:
    if t is None:
        raise IdentityError(f"event identity needs {what}")
    return t.value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def patient_key(patient: Patient) -> str:
    if patient.nhs_number is not None:
        return f"nhs|{patient.nhs_number.value}"
    first = patient.identifiers[0]  # the model guarantees one of the two
    return f"{first.system}|{first.value}"


def patient_session_id(patient: Patient) -> str:
    """Service Bus session id for per-patient ordering (hashed: no identifier on the wire metadata)."""
    return "patient-" + hashlib.sha256(patient_key(patient).encode("utf-8")).hexdigest()[:32]


def encounter_identifier(encounter: Encounter | None) -> Identifier:
    if encounter is None or not encounter.identifiers:
        raise IdentityError("encounter events need an encounter identifier (visit number)")
    visit = next((i for i in encounter.identifiers if i.type == "VN"), encounter.identifiers[0])
    return visit


def code_token(code: Coded) -> str:
    if isinstance(code, Concept) and code.codings:
        first = code.codings[0]
        return f"{first.system or ''}|{first.code}"
    raise IdentityError("event identity needs a coded value")


def encounter_event_key(
    kind: EventKind,
    encounter: Encounter | None,
    *,
    occurred_at: ClinicalDateTime | None,
    recorded_at: ClinicalDateTime | None,
) -> EventKey:
    if kind not in _ENCOUNTER_KINDS:
        raise ValueError(f"{kind} is not an encounter event")
    visit = encounter_identifier(encounter)
    assert encounter is not None
    period = encounter.period
    if kind in (EventKind.ADMISSION, EventKind.REGISTRATION, EventKind.PRE_ADMISSION):
        when = utc_second(period.start if period else None, what="the encounter start time")
    elif kind is EventKind.DISCHARGE:
        when = utc_second(period.end if period else None, what="the encounter end time")
    elif kind is EventKind.ENCOUNTER_UPDATE:
        when = utc_second(recorded_at, what="the time the update was recorded")
    else:
        when = utc_second(occurred_at or recorded_at, what="the time the event occurred")
    return make_key(kind, visit.system, visit.value, when)


def cancelled_event_key(kind: EventKind, encounter: Encounter | None) -> EventKey:
    """The key of the event a cancellation undoes (A11 -> the admission, A13 -> the discharge)."""
    if kind is EventKind.CANCEL_ADMISSION:
        return encounter_event_key(EventKind.ADMISSION, encounter, occurred_at=None, recorded_at=None)
    if kind is EventKind.CANCEL_DISCHARGE:
        return encounter_event_key(EventKind.DISCHARGE, encounter, occurred_at=None, recorded_at=None)
    raise ValueError(f"{kind} is not a cancellation")


def patient_event_key(kind: EventKind, patient: Patient, *, recorded_at: ClinicalDateTime | None) -> EventKey:
    return make_key(kind, patient_key(patient), utc_second(recorded_at, what="the time it was recorded"))


def merge_key(surviving: Patient, merged: tuple[Identifier, ...]) -> EventKey:
    if not merged:
        raise IdentityError("a merge needs the identifiers of the record merged away (MRG-1)")
    retired = sorted(f"{i.system}|{i.value}" for i in merged)
    return make_key(EventKind.PATIENT_MERGE, patient_key(surviving), *retired)


def result_key(filler_order_number: Identifier | None, code: Coded) -> EventKey:
    if filler_order_number is None:
        raise IdentityError("a result needs a filler order number")
    return make_key(EventKind.RESULT, filler_order_number.system, filler_order_number.value, code_token(code))


def order_key(placer: Identifier | None, filler: Identifier | None, status: str) -> EventKey:
    number = placer or filler
    if number is None:
        raise IdentityError("an order needs a placer or filler order number")
    return make_key(EventKind.ORDER, number.system, number.value, status)


def identifier_key(kind: EventKind, identifiers: tuple[Identifier, ...]) -> EventKey:
    if not identifiers:
        raise IdentityError(f"a {kind.value} event needs a business identifier")
    first = identifiers[0]
    return make_key(kind, first.system, first.value)


def allergy_key(patient: Patient, code: Coded) -> EventKey:
    return make_key(EventKind.ALLERGY, patient_key(patient), code_token(code))


def condition_key(patient: Patient, code: Coded, onset: ClinicalDateTime | None) -> EventKey:
    return make_key(
        EventKind.CONDITION, patient_key(patient), code_token(code), utc_second(onset, what="the onset time")
    )
