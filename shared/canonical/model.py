"""Canonical clinical model (pydantic v2, frozen, no wire-format types).

Conventions
-----------
* Times are timezone-aware (:class:`ClinicalDateTime` carries the instant *and* the precision it was
  recorded with); HL7 v2 times without an offset are read as UK local time (GMT/BST) by the mappers.
* Coded values are :class:`Concept` (one or more codings + text) or :class:`DataAbsent` — an explicit
  reason why there is no value. Mappers never invent a default code.
* Identifiers carry the system they belong to (a URI, or ``urn:tie:authority:<assigning authority>`` for
  local identifiers without a registered URI).
* Every model is immutable; build new ones with ``model_copy(update=...)``.
* Updates (``docs/update-semantics.md``): an empty field is "not said". What the source explicitly
  deleted (HL7 v2 ``""``) is listed in ``cleared``; a value the mapper had to default because the source
  did not say it (HL7 v2 PD1-12 empty -> normal sensitivity) is listed in ``defaulted``. A writer that
  updates a stored record removes the cleared elements and keeps the stored value of defaulted ones.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Address",
    "AllergyIntolerance",
    "AllergyReaction",
    "Attachment",
    "ClinicalDateTime",
    "ClinicalEvent",
    "Coding",
    "Concept",
    "Condition",
    "ContactPoint",
    "DataAbsent",
    "DataAbsentReason",
    "DocumentReference",
    "Encounter",
    "EncounterClearable",
    "EncounterStatus",
    "EventKey",
    "EventKind",
    "HumanName",
    "Identifier",
    "Location",
    "MedicationRequest",
    "MedicationStatement",
    "MergeLink",
    "NhsNumber",
    "Observation",
    "ObservationValue",
    "Organization",
    "PartialDate",
    "Patient",
    "PatientClearable",
    "Period",
    "Practitioner",
    "Provenance",
    "Quantity",
    "Range",
    "ReferenceRange",
    "Referral",
    "ResultReport",
    "Sensitivity",
    "ServiceRequest",
    "SourceSystem",
    "Specimen",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)


# ------------------------------------------------------------------------------------------ primitives
Precision = Literal["year", "month", "day", "hour", "minute", "second", "millisecond"]


class ClinicalDateTime(_Model):
    """An instant with the precision it was recorded at (``200603`` is a month, not 1 March 00:00)."""

    value: datetime
    precision: Precision = "second"

    @field_validator("value")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("ClinicalDateTime must be timezone-aware")
        return v


class PartialDate(_Model):
    """A date that may be known only to the year or month (birth dates in some feeds)."""

    year: int = Field(ge=1, le=9999)
    month: int | None = Field(default=None, ge=1, le=12)
    day: int | None = Field(default=None, ge=1, le=31)

    @model_validator(mode="after")
    def _consistent(self) -> PartialDate:
        if self.day is not None and self.month is None:
            raise ValueError("a day needs a month")
        if self.day is not None and self.month is not None:
            date(self.year, self.month, self.day)  # raises for 30 February
        return self

    @classmethod
    def of(cls, d: date) -> PartialDate:
        return cls(year=d.year, month=d.month, day=d.day)

    def iso(self) -> str:
        if self.month is None:
            return f"{self.year:04d}"
        if self.day is None:
            return f"{self.year:04d}-{self.month:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


class Period(_Model):
    start: ClinicalDateTime | None = None
    end: ClinicalDateTime | None = None


class Coding(_Model):
    system: str | None = None
    code: str = Field(min_length=1)
    display: str | None = None
    version: str | None = None
    #: FHIR ``Coding.userSelected``: ``False`` marks a source code carried as sent because no concept map
    #: knew it (rules ``kept_source_user_selected``); ``None`` when the source does not say.
    user_selected: bool | None = None


class Concept(_Model):
    """A coded value: the same meaning in one or more code systems (source coding kept alongside)."""

    codings: tuple[Coding, ...] = ()
    text: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Concept:
        if not self.codings and not self.text:
            raise ValueError("a Concept needs a coding or text")
        return self

    def coding(self, system: str) -> Coding | None:
        return next((c for c in self.codings if c.system == system), None)


class DataAbsentReason(StrEnum):
    """FHIR R4 data-absent-reason codes (http://terminology.hl7.org/CodeSystem/data-absent-reason)."""

    UNKNOWN = "unknown"
    ASKED_UNKNOWN = "asked-unknown"
    TEMP_UNKNOWN = "temp-unknown"
    NOT_ASKED = "not-asked"
    ASKED_DECLINED = "asked-declined"
    MASKED = "masked"
    NOT_APPLICABLE = "not-applicable"
    UNSUPPORTED = "unsupported"
    AS_TEXT = "as-text"
    ERROR = "error"
    NOT_A_NUMBER = "not-a-number"
    NEGATIVE_INFINITY = "negative-infinity"
    POSITIVE_INFINITY = "positive-infinity"
    NOT_PERFORMED = "not-performed"
    NOT_PERMITTED = "not-permitted"


class DataAbsent(_Model):
    """An explicit "no value", with why — and the source code that could not be mapped, if any."""

    reason: DataAbsentReason
    source: Coding | None = None


Coded = Concept | DataAbsent


class Identifier(_Model):
    system: str = Field(min_length=1)
    value: str = Field(min_length=1)
    #: Identifier type (v2-0203 code, e.g. MR, VN, PLAC, FILL, NH) when known.
    type: str | None = None
    #: Organisation that issued it (ODS code or assigning authority name).
    assigner: str | None = None


class Quantity(_Model):
    value: Decimal
    unit: str | None = None
    #: UCUM code when the unit could be mapped to UCUM.
    code: str | None = None
    system: str | None = None
    comparator: Literal["<", "<=", ">=", ">"] | None = None


class Range(_Model):
    low: Quantity | None = None
    high: Quantity | None = None


class ContactPoint(_Model):
    system: Literal["phone", "fax", "email", "pager", "url", "sms", "other"]
    value: str = Field(min_length=1)
    use: Literal["home", "work", "temp", "old", "mobile"] | None = None
    #: The HL7 v2 equipment type (table 0202, XTN.3) and use (table 0201, XTN.2) codes the source sent,
    #: kept so an HL7 v2 write-back says what the source said (``system``/``use`` are their FHIR reading).
    equipment_type: str | None = None
    use_code: str | None = None


class HumanName(_Model):
    family: str | None = None
    given: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    use: Literal["usual", "official", "temp", "nickname", "anonymous", "old", "maiden"] | None = None
    period: Period | None = None


class Address(_Model):
    lines: tuple[str, ...] = ()
    city: str | None = None
    district: str | None = None
    postal_code: str | None = None
    country: str | None = None
    use: Literal["home", "work", "temp", "old", "billing"] | None = None
    type: Literal["postal", "physical", "both"] | None = None
    period: Period | None = None


class Attachment(_Model):
    content_type: str | None = None
    #: Where the bytes are (blob URL / claim-check reference); inline data is kept out of the model.
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    title: str | None = None


# ------------------------------------------------------------------------------------------- parties
class SourceSystem(_Model):
    """The system an event came from (HL7: MSH-3/MSH-4; FHIR: meta.source / the assigner)."""

    application: str
    facility: str | None = None


class Organization(_Model):
    ods_code: str | None = None
    name: str | None = None
    identifiers: tuple[Identifier, ...] = ()


class Practitioner(_Model):
    identifiers: tuple[Identifier, ...] = ()
    name: HumanName | None = None


class Location(_Model):
    """A place in a care setting (point of care / ward, room, bed) and its site (ODS site code)."""

    point_of_care: str | None = None
    room: str | None = None
    bed: str | None = None
    facility: str | None = None
    description: str | None = None


class Sensitivity(StrEnum):
    """Record sensitivity (PDS confidentiality: U unrestricted, R restricted, V very restricted)."""

    NORMAL = "normal"
    RESTRICTED = "restricted"
    VERY_RESTRICTED = "very-restricted"


class NhsNumber(_Model):
    value: Annotated[str, Field(pattern=r"^\d{10}$")]
    #: NHS number verification status (UK Core code 01..08); ``None`` when the source does not say.
    verification_status: Literal["01", "02", "03", "04", "05", "06", "07", "08"] | None = None

    @field_validator("value")
    @classmethod
    def _check_digit(cls, v: str) -> str:
        from shared.identifiers.nhs_number import is_valid_nhs_number

        if not is_valid_nhs_number(v):
            raise ValueError("NHS number fails the Modulus 11 check")
        return v


class MergeLink(_Model):
    """Patient record linkage after a merge (A40 / Patient.link)."""

    kind: Literal["replaced-by", "replaces", "refer", "seealso"]
    other: Identifier


#: Patient fields a source can delete (HL7 v2 ``""``; the rules' ``explicit_null`` table names the fields).
PatientClearable = Literal[
    "names",
    "birth_date",
    "gender",
    "deceased",
    "addresses",
    "telecom",
    "general_practitioner",
    "registered_gp",
    "ethnicity",
    "marital_status",
    "nhs_number.verification_status",
]
#: Encounter fields a source can delete. Locations are history (never deleted by an update); status,
#: class and identifiers are required; the period ends are set and cleared by triggers (A03 / A13).
EncounterClearable = Literal[
    "priority",
    "admission_method",
    "service_type",
    "admit_source",
    "discharge_disposition",
    "attending",
    "referring",
    "admitting",
]


class Patient(_Model):
    nhs_number: NhsNumber | None = None
    #: Local identifiers (hospital number / MRN ...) with their assigning authority.
    identifiers: tuple[Identifier, ...] = ()
    names: tuple[HumanName, ...] = ()
    birth_date: PartialDate | None = None
    gender: Literal["male", "female", "other", "unknown"] | DataAbsent | None = None
    deceased: bool | ClinicalDateTime | None = None
    addresses: tuple[Address, ...] = ()
    telecom: tuple[ContactPoint, ...] = ()
    general_practitioner: Organization | None = None
    #: The registered GP (HL7 v2 PD1-4; FHIR a Practitioner in ``generalPractitioner``), beside the
    #: practice in ``general_practitioner``.
    registered_gp: Practitioner | None = None
    ethnicity: Coded | None = None
    marital_status: Coded | None = None
    sensitivity: Sensitivity = Sensitivity.NORMAL
    links: tuple[MergeLink, ...] = ()
    #: Fields the source explicitly deleted (HL7 v2 ``""``); never one that holds a value.
    cleared: tuple[PatientClearable, ...] = ()
    #: Fields holding the mapper's default because the source did not state them (HL7 v2: no PD1-12).
    defaulted: tuple[Literal["sensitivity"], ...] = ()

    @model_validator(mode="after")
    def _identified(self) -> Patient:
        if self.nhs_number is None and not self.identifiers:
            raise ValueError("a Patient needs an NHS number or a local identifier")
        _check_cleared(self, self.cleared)
        return self


def _check_cleared(model: BaseModel, cleared: tuple[str, ...]) -> None:
    """A field is deleted or given a value, not both (``a.b``: ``b`` of ``a``, when ``a`` is present)."""
    for name in cleared:
        head, _, rest = name.partition(".")
        value = getattr(model, head)
        if rest and value is not None:
            value = getattr(value, rest)
        if value is not None and value != ():
            raise ValueError(f"{name} is both cleared and given a value")


# ------------------------------------------------------------------------------------------ encounter
class EncounterStatus(StrEnum):
    PLANNED = "planned"
    ARRIVED = "arrived"
    IN_PROGRESS = "in-progress"
    ON_LEAVE = "onleave"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"
    #: FHIR R4's value of last resort: the source names the encounter but does not say its state (an
    #: HL7 result/order message whose PV1 has a visit number but no admit/discharge time). Never the
    #: status of an encounter *event*: those get theirs from the trigger or from PV1.
    UNKNOWN = "unknown"


class Encounter(_Model):
    """One encounter (an admission, attendance, visit). A hospital *stay* (spell) may span several
    encounters/transfers; ``spell_identifier`` links them when the source gives one."""

    identifiers: tuple[Identifier, ...] = ()
    status: EncounterStatus
    encounter_class: Coded
    period: Period | None = None
    location: Location | None = None
    prior_location: Location | None = None
    attending: tuple[Practitioner, ...] = ()
    referring: tuple[Practitioner, ...] = ()
    admitting: tuple[Practitioner, ...] = ()
    service_type: Coded | None = None
    #: HL7 v2 PV1-18 patient type (user table 0018: a Trust's own codes); no FHIR R4 Encounter element.
    patient_type: Coded | None = None
    priority: Coded | None = None
    #: NHS admission method (HL7 v2 PV1-4 as NHS Trusts fill it; UK Core Extension-UKCore-AdmissionMethod).
    admission_method: Coded | None = None
    admit_source: Coded | None = None
    discharge_disposition: Coded | None = None
    service_provider: Organization | None = None
    spell_identifier: Identifier | None = None
    #: Fields the source explicitly deleted (HL7 v2 ``""``); never one that holds a value.
    cleared: tuple[EncounterClearable, ...] = ()
    #: ``("status",)``: the status was inferred from what PV1 lacks (A08 without PV1-45), not stated.
    defaulted: tuple[Literal["status"], ...] = ()

    @model_validator(mode="after")
    def _cleared_empty(self) -> Encounter:
        _check_cleared(self, self.cleared)
        return self


# ------------------------------------------------------------------------------------------- clinical
class ReferenceRange(_Model):
    low: Quantity | None = None
    high: Quantity | None = None
    text: str | None = None


ObservationValue = Quantity | Concept | str | ClinicalDateTime | Range | Attachment


class Observation(_Model):
    identifiers: tuple[Identifier, ...] = ()
    status: Literal[
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    ]
    category: Coded | None = None
    code: Coded
    value: ObservationValue | None = None
    data_absent: DataAbsent | None = None
    interpretation: tuple[Coded, ...] = ()
    reference_range: tuple[ReferenceRange, ...] = ()
    effective: ClinicalDateTime | None = None
    issued: ClinicalDateTime | None = None
    performer: tuple[Practitioner | Organization, ...] = ()
    notes: tuple[str, ...] = ()
    #: Position of the result in its report (OBX-1 / order of Observation references).
    sequence: int | None = None
    #: HL7 v2 OBX-4 observation sub-id: groups the results of one test (an organism and its
    #: susceptibilities, the parts of a multi-part result); no FHIR element (carried by hasMember).
    sub_id: str | None = None

    @model_validator(mode="after")
    def _value_or_reason(self) -> Observation:
        if self.value is not None and self.data_absent is not None:
            raise ValueError("an Observation has a value or a data-absent reason, not both")
        return self


class Specimen(_Model):
    """A specimen a report's results were obtained from (HL7 SPM, OBR-15 before v2.5 / FHIR Specimen)."""

    #: Specimen identifiers (SPM-2: placer then filler assigned).
    identifiers: tuple[Identifier, ...] = ()
    type: Coded | None = None
    #: Collection time (SPM-17 start; OBR-7 for an OBR-15 specimen).
    collected: ClinicalDateTime | None = None
    #: Time the laboratory received it (SPM-18; OBR-14).
    received: ClinicalDateTime | None = None
    #: Position in its report (SPM-1 / order of DiagnosticReport.specimen).
    sequence: int | None = None


class ResultReport(_Model):
    """A set of results reported together (HL7 ORU OBR group / FHIR DiagnosticReport)."""

    identifiers: tuple[Identifier, ...] = ()
    placer_order_number: Identifier | None = None
    filler_order_number: Identifier | None = None
    status: Literal[
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
        "entered-in-error",
        "unknown",
    ]
    category: Coded | None = None
    code: Coded
    effective: ClinicalDateTime | None = None
    issued: ClinicalDateTime | None = None
    performer: tuple[Practitioner | Organization, ...] = ()
    results: tuple[Observation, ...] = ()
    conclusion: str | None = None
    #: Report-level comments (HL7 NTE directly after the OBR). FHIR R4 DiagnosticReport has no ``note``
    #: element: a writer decides how to carry them; they are not a ``conclusion``.
    notes: tuple[str, ...] = ()
    #: Specimens the results were obtained from (HL7 SPM / OBR-15; FHIR DiagnosticReport.specimen).
    specimens: tuple[Specimen, ...] = ()
    #: Who ordered the tests reported (HL7 OBR-16 / ORC-12; FHIR ServiceRequest.requester of basedOn).
    ordering_providers: tuple[Practitioner, ...] = ()


class ServiceRequest(_Model):
    """An order / request for a service (HL7 ORM/OML ORC+OBR / FHIR ServiceRequest)."""

    placer_order_number: Identifier | None = None
    filler_order_number: Identifier | None = None
    status: Literal["draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"]
    intent: Literal[
        "proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order"
    ]
    code: Coded
    priority: Literal["routine", "urgent", "asap", "stat"] | None = None
    authored_on: ClinicalDateTime | None = None
    requester: Practitioner | Organization | None = None
    reason: tuple[Coded, ...] = ()
    notes: tuple[str, ...] = ()
    #: When the service is to happen (HL7 TQ1-7/8, ORC-7.4/.5, OBR-27.4/.5 / FHIR occurrence[x]).
    occurrence: ClinicalDateTime | Period | None = None
    #: Relevant clinical information as free text (HL7 OBR-13 / FHIR a text-only reasonCode).
    clinical_information: str | None = None

    @model_validator(mode="after")
    def _order_number(self) -> ServiceRequest:
        if self.placer_order_number is None and self.filler_order_number is None:
            raise ValueError("a ServiceRequest needs a placer or filler order number")
        return self


class AllergyReaction(_Model):
    manifestation: tuple[Coded, ...] = ()
    severity: Literal["mild", "moderate", "severe"] | None = None
    description: str | None = None


class AllergyIntolerance(_Model):
    identifiers: tuple[Identifier, ...] = ()
    clinical_status: Literal["active", "inactive", "resolved"] | None = None
    verification_status: Literal["unconfirmed", "confirmed", "refuted", "entered-in-error"] | None = None
    type: Literal["allergy", "intolerance"] | None = None
    category: tuple[Literal["food", "medication", "environment", "biologic"], ...] = ()
    criticality: Literal["low", "high", "unable-to-assess"] | None = None
    code: Coded
    onset: ClinicalDateTime | None = None
    recorded: ClinicalDateTime | None = None
    reactions: tuple[AllergyReaction, ...] = ()


class Condition(_Model):
    """A diagnosis or problem."""

    identifiers: tuple[Identifier, ...] = ()
    clinical_status: (
        Literal["active", "recurrence", "relapse", "inactive", "remission", "resolved"] | None
    ) = None
    verification_status: (
        Literal["unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"]
        | None
    ) = None
    category: Literal["problem-list-item", "encounter-diagnosis"] | None = None
    code: Coded
    onset: ClinicalDateTime | None = None
    recorded: ClinicalDateTime | None = None


class MedicationRequest(_Model):
    """An order to supply/administer a medication (a prescription). Not a statement of use."""

    identifiers: tuple[Identifier, ...] = ()
    status: Literal[
        "active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"
    ]
    intent: Literal[
        "proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order"
    ]
    medication: Coded
    authored_on: ClinicalDateTime | None = None
    requester: Practitioner | Organization | None = None
    dosage_text: str | None = None


class MedicationStatement(_Model):
    """What the patient is (or was) taking, as reported. Not an order."""

    identifiers: tuple[Identifier, ...] = ()
    status: Literal[
        "active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown", "not-taken"
    ]
    medication: Coded
    effective: Period | None = None
    dosage_text: str | None = None


class DocumentReference(_Model):
    identifiers: tuple[Identifier, ...] = ()
    status: Literal["current", "superseded", "entered-in-error"]
    type: Coded
    date: ClinicalDateTime | None = None
    author: tuple[Practitioner | Organization, ...] = ()
    description: str | None = None
    content: tuple[Attachment, ...] = ()


class Referral(_Model):
    """A referral (e-RS: identified by its UBRN)."""

    identifiers: tuple[Identifier, ...] = ()
    status: Literal["draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"]
    priority: Literal["routine", "urgent", "asap", "stat"] | None = None
    service: Coded | None = None
    reason: tuple[Coded, ...] = ()
    requester: Practitioner | Organization | None = None
    recipient: Practitioner | Organization | None = None
    authored_on: ClinicalDateTime | None = None

    @model_validator(mode="after")
    def _identified(self) -> Referral:
        if not self.identifiers:
            raise ValueError("a Referral needs an identifier (e.g. UBRN)")
        return self


# ---------------------------------------------------------------------------------------------- events
class EventKind(StrEnum):
    """What happened, independent of the wire format (HL7 trigger / FHIR interaction)."""

    ADMISSION = "admission"  # A01
    TRANSFER = "transfer"  # A02
    DISCHARGE = "discharge"  # A03
    REGISTRATION = "registration"  # A04 (outpatient / ED attendance)
    PRE_ADMISSION = "pre-admission"  # A05
    ENCOUNTER_UPDATE = "encounter-update"  # A08
    CANCEL_ADMISSION = "cancel-admission"  # A11
    CANCEL_TRANSFER = "cancel-transfer"  # A12
    CANCEL_DISCHARGE = "cancel-discharge"  # A13
    PATIENT_CREATED = "patient-created"  # A28
    PATIENT_UPDATED = "patient-updated"  # A31
    PATIENT_MERGE = "patient-merge"  # A40
    RESULT = "result"  # ORU^R01
    ORDER = "order"  # ORM^O01 / OML
    ALLERGY = "allergy"
    DOCUMENT = "document"  # MDM
    REFERRAL = "referral"
    CONDITION = "condition"
    MEDICATION_REQUEST = "medication-request"
    MEDICATION_STATEMENT = "medication-statement"


class EventKey(_Model):
    """The clinical event's natural identity (see :mod:`shared.canonical.identity`).

    ``components`` are the documented parts (kind first); ``value`` is the stable key derived from them,
    used as Service Bus ``message_id`` and idempotency key. Components may hold business identifiers
    (visit / order numbers): log ``value``, never ``components``.
    """

    kind: EventKind
    components: tuple[str, ...]
    value: str


class Provenance(_Model):
    source_format: Literal["hl7v2", "fhir"]
    #: HL7 MSH-10 control id / FHIR request id of the message the event came in.
    message_id: str | None = None
    message_type: str | None = None
    received_at: ClinicalDateTime | None = None
    correlation_id: str | None = None
    #: Who entered the event at the source (HL7 v2 EVN-5 operator; FHIR Provenance.agent).
    operators: tuple[Practitioner, ...] = ()


class ClinicalEvent(_Model):
    """Envelope for one clinical event and the state it carries."""

    kind: EventKind
    key: EventKey
    occurred_at: ClinicalDateTime | None = None
    recorded_at: ClinicalDateTime | None = None
    source: SourceSystem
    provenance: Provenance
    patient: Patient
    encounter: Encounter | None = None
    #: For cancellations (A11/A12/A13): the key of the event being cancelled.
    cancels: EventKey | None = None
    #: For merges (A40): the identifiers of the record that was merged away (MRG-1).
    merged_identifiers: tuple[Identifier, ...] = ()
    reports: tuple[ResultReport, ...] = ()
    orders: tuple[ServiceRequest, ...] = ()
    allergies: tuple[AllergyIntolerance, ...] = ()
    conditions: tuple[Condition, ...] = ()
    documents: tuple[DocumentReference, ...] = ()
    referrals: tuple[Referral, ...] = ()
    medication_requests: tuple[MedicationRequest, ...] = ()
    medication_statements: tuple[MedicationStatement, ...] = ()

    @property
    def sensitivity(self) -> Sensitivity:
        return self.patient.sensitivity
