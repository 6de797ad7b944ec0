"""Clinical-event identity, content digest and clinical order (the rules: ``docs/event-identity.md``).

* **Identity** (:class:`~shared.canonical.model.EventKey`): what the event is *about* - its kind, the
  patient (``patient_key``: NHS number, else the first local identifier with its assigning authority) and
  the natural id, whose identifier system already names its issuer (PV1-19.4, OBR-3.2 ...; the sending
  facility / application only when the message names none). Never the transport, the control id or the
  time a message was sent, so one admission is one identity over HL7 v2 and over FHIR.
* **Digest** (:func:`content_digest`): the clinical content - the whole canonical event less provenance,
  source, key and record time. Same identity + same digest = a duplicate, proven.
* **Order** (:func:`clinical_order`): how two versions of one identity sort (result status precedence,
  then result time, then record time); an older version than the one applied is ``superseded``.
* **Claim** (:func:`natural_claim`): the natural id alone, to catch two patients claiming one visit or
  order number from one issuer (a conflict, never a silent overwrite).

Keys are ``<kind>-<32 hex>`` (SHA-256 of the components): safe for message ids, table keys and logs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Final

from shared.canonical.model import (
    ClinicalDateTime,
    ClinicalEvent,
    Coded,
    Concept,
    Encounter,
    EventKey,
    EventKind,
    Identifier,
    Patient,
    Provenance,
)
from shared.errors import PermanentError

NHS_NUMBER_SYSTEM: Final = "https://fhir.nhs.uk/Id/nhs-number"


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
    EventKind.CANCEL_TRANSFER,
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


#: Encounter events that happen once per encounter: identity = patient + visit (their time is content).
_ONCE_PER_ENCOUNTER = {
    EventKind.ADMISSION,
    EventKind.REGISTRATION,
    EventKind.PRE_ADMISSION,
    EventKind.DISCHARGE,
    EventKind.ENCOUNTER_UPDATE,
}


def encounter_event_key(
    kind: EventKind,
    encounter: Encounter | None,
    *,
    patient: Patient,
    occurred_at: ClinicalDateTime | None,
    recorded_at: ClinicalDateTime | None,
) -> EventKey:
    """Admission, registration, pre-admission, discharge and encounter update: patient + visit number.
    Transfers and cancellations are point events in an encounter's life: + the time they occurred."""
    if kind not in _ENCOUNTER_KINDS:
        raise ValueError(f"{kind} is not an encounter event")
    visit = encounter_identifier(encounter)
    who = patient_key(patient)
    if kind in _ONCE_PER_ENCOUNTER:
        return make_key(kind, who, visit.system, visit.value)
    when = utc_second(occurred_at or recorded_at, what="the time the event occurred")
    return make_key(kind, who, visit.system, visit.value, when)


def cancelled_event_key(
    kind: EventKind,
    encounter: Encounter | None,
    *,
    patient: Patient,
    occurred_at: ClinicalDateTime | None = None,
    recorded_at: ClinicalDateTime | None = None,
) -> EventKey:
    """The key of the event a cancellation undoes (A11 -> the admission, A13 -> the discharge, A12 -> the
    transfer that occurred at the cancellation's own event time: HL7 v2 EVN-6 of a cancellation is the
    time the cancelled event occurred, else EVN-2, as for the transfer's key)."""
    if kind is EventKind.CANCEL_ADMISSION:
        target = EventKind.ADMISSION
    elif kind is EventKind.CANCEL_DISCHARGE:
        target = EventKind.DISCHARGE
    elif kind is EventKind.CANCEL_TRANSFER:
        return encounter_event_key(
            EventKind.TRANSFER, encounter, patient=patient, occurred_at=occurred_at, recorded_at=recorded_at
        )
    else:
        raise ValueError(f"{kind} is not a cancellation")
    return encounter_event_key(target, encounter, patient=patient, occurred_at=None, recorded_at=None)


def patient_event_key(kind: EventKind, patient: Patient) -> EventKey:
    """Registration / demographic updates of one patient: every version is the same identity, ordered by
    the time it was recorded."""
    return make_key(kind, patient_key(patient))


def merge_key(surviving: Patient, merged: tuple[Identifier, ...]) -> EventKey:
    if not merged:
        raise IdentityError("a merge needs the identifiers of the record merged away (MRG-1)")
    retired = sorted(f"{i.system}|{i.value}" for i in merged)
    return make_key(EventKind.PATIENT_MERGE, patient_key(surviving), *retired)


def result_key(patient: Patient, filler_order_number: Identifier | None, code: Coded) -> EventKey:
    """Patient + filler order number (its system names the issuer, OBR-3.2) + the test (OBR-4)."""
    if filler_order_number is None:
        raise IdentityError("a result needs a filler order number")
    return make_key(
        EventKind.RESULT,
        patient_key(patient),
        filler_order_number.system,
        filler_order_number.value,
        code_token(code),
    )


def order_key(patient: Patient, placer: Identifier | None, filler: Identifier | None) -> EventKey:
    """Patient + placer order number (filler when there is no placer); the status is content."""
    number = placer or filler
    if number is None:
        raise IdentityError("an order needs a placer or filler order number")
    return make_key(EventKind.ORDER, patient_key(patient), number.system, number.value)


def identifier_key(kind: EventKind, patient: Patient, identifiers: tuple[Identifier, ...]) -> EventKey:
    if not identifiers:
        raise IdentityError(f"a {kind.value} event needs a business identifier")
    first = identifiers[0]
    return make_key(kind, patient_key(patient), first.system, first.value)


def allergy_key(patient: Patient, code: Coded) -> EventKey:
    return make_key(EventKind.ALLERGY, patient_key(patient), code_token(code))


def condition_key(patient: Patient, code: Coded, onset: ClinicalDateTime | None) -> EventKey:
    return make_key(
        EventKind.CONDITION, patient_key(patient), code_token(code), utc_second(onset, what="the onset time")
    )


# ------------------------------------------------------------------------------ digest, order, claims
#: Not clinical content: how and when the event travelled, what it is (the key), and its event time - the
#: clinically meaningful times are in the content or the key (``docs/event-identity.md``).
_NOT_CONTENT = frozenset({"key", "provenance", "source", "recorded_at", "occurred_at"})


def carrier_of(provenance: Provenance) -> str:
    """The message that carried an event: its correlation id and its own id (inbound MSH-10, FHIR request
    id). A redelivery or replay of that message has the same; another message - even one whose sender
    reused a correlation id - has another."""
    return f"{provenance.correlation_id or ''}|{provenance.message_id or ''}"


def content_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of an event's clinical content, from its JSON form (``ClinicalEvent`` dumped in JSON
    mode, as the clinical-event envelope carries it in ``data``): both ends of the bus compute it from the
    same JSON, and the HL7 v2 and FHIR versions of one statement give the same digest."""
    content = {k: v for k, v in data.items() if k not in _NOT_CONTENT}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_digest(event: ClinicalEvent) -> str:
    return content_digest(json.loads(event.model_dump_json(exclude_defaults=True)))


#: Result status precedence: a late preliminary never overwrites a final; a correction beats a final;
#: cancelled / entered-in-error are the last word.
RESULT_STATUS_RANK: Final[Mapping[str, int]] = {
    "unknown": 0,
    "registered": 1,
    "partial": 1,
    "preliminary": 1,
    "final": 2,
    "appended": 2,
    "amended": 3,
    "corrected": 3,
    "cancelled": 4,
    "entered-in-error": 4,
}
ORDER_STATUS_RANK: Final[Mapping[str, int]] = {
    "unknown": 0,
    "draft": 1,
    "active": 1,
    "on-hold": 1,
    "completed": 2,
    "revoked": 2,
    "entered-in-error": 3,
}

Order = tuple[int, str, str]


def _instant(t: ClinicalDateTime | None) -> str:
    return "" if t is None else t.value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def clinical_order(event: ClinicalEvent) -> Order:
    """``(status rank, clinical time, record time)``: compare two versions of one identity.

    Results: status precedence (:data:`RESULT_STATUS_RANK`, the highest of the report and its results),
    then the result time (issued, else effective), then the record time. Orders: status precedence, then
    the record time. Everything else: the record time (EVN-2 / MSH-7; FHIR ``meta.lastUpdated``)."""
    recorded = _instant(event.recorded_at or event.occurred_at)
    if event.reports:
        rank = 0
        latest: ClinicalDateTime | None = None
        for report in event.reports:
            rank = max(rank, RESULT_STATUS_RANK.get(report.status, 0))
            rank = max([rank, *(RESULT_STATUS_RANK.get(r.status, 0) for r in report.results)])
            when = report.issued or report.effective
            if when is not None and (latest is None or when.value > latest.value):
                latest = when
        return (rank, _instant(latest), recorded)
    if event.orders:
        rank = max(ORDER_STATUS_RANK.get(o.status, 0) for o in event.orders)
        return (rank, "", recorded)
    return (0, "", recorded)


def ordering_scope(event: ClinicalEvent) -> str:
    """The stream in which versions are put in clinical order: every event of one encounter (an A01, A08
    and A03 of a visit change one record), of one patient's demographics, else the identity itself."""
    if event.kind in _ENCOUNTER_KINDS and event.encounter is not None and event.encounter.identifiers:
        visit = encounter_identifier(event.encounter)
        return "encounter-" + _hash(("encounter", patient_key(event.patient), visit.system, visit.value))
    if event.kind in (EventKind.PATIENT_CREATED, EventKind.PATIENT_UPDATED):
        return "patient-" + _hash(("patient", patient_key(event.patient)))
    return event.key.value


def natural_claim(event: ClinicalEvent) -> str | None:
    """The natural id without the patient (visit number, filler / placer order number, each with its
    issuer): one issuer's number names one patient's record. ``None``: the event has none to claim."""
    number: Identifier | None = None
    family = ""
    if event.kind in _ENCOUNTER_KINDS and event.encounter is not None and event.encounter.identifiers:
        number, family = encounter_identifier(event.encounter), "visit"
    elif event.reports:
        number, family = event.reports[0].filler_order_number, "filler"
    elif event.orders:
        order = event.orders[0]
        number, family = order.placer_order_number or order.filler_order_number, "order"
    if number is None:
        return None
    return f"{family}-{_hash((family, number.system, number.value))}"


def patient_tokens(patient: Patient) -> tuple[str, ...]:
    """Hashed tokens of every identifier of ``patient`` (NHS number and local ones, with authority):
    two records are one patient when any token is shared."""
    raw = [f"{i.system}|{i.value}" for i in patient.identifiers]
    if patient.nhs_number is not None:
        raw.append(f"nhs|{patient.nhs_number.value}")
    return tuple(sorted(_hash(("patient", token)) for token in raw))


def nhs_token(patient: Patient) -> str | None:
    """The hashed token of the patient's NHS number (``None``: none): two different NHS numbers are two
    patients, whatever local identifiers they share."""
    if patient.nhs_number is None:
        return None
    return _hash(("patient", f"nhs|{patient.nhs_number.value}"))


def identifier_tokens(identifiers: tuple[Identifier, ...]) -> tuple[str, ...]:
    """As :func:`patient_tokens`, for identifiers alone (a merge's retired record, MRG-1)."""
    raw = []
    for i in identifiers:
        raw.append(f"{i.system}|{i.value}")
        if i.system == NHS_NUMBER_SYSTEM:
            raw.append(f"nhs|{i.value}")
    return tuple(sorted(_hash(("patient", token)) for token in raw))
