"""Hand-built canonical events (ADT A01/A02/A03/A11/A13/A40, ORU, ORM, a clinical kitchen sink) for the
FHIR output and validation tests. All data is fabricated; NHS numbers are valid test numbers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from shared.canonical import identity
from shared.canonical.model import (
    Address,
    AllergyIntolerance,
    AllergyReaction,
    Attachment,
    ClinicalDateTime,
    ClinicalEvent,
    Coding,
    Concept,
    Condition,
    ContactPoint,
    DataAbsent,
    DataAbsentReason,
    DocumentReference,
    Encounter,
    EncounterStatus,
    EventKind,
    HumanName,
    Identifier,
    Location,
    MedicationRequest,
    MedicationStatement,
    MergeLink,
    NhsNumber,
    Observation,
    Organization,
    PartialDate,
    Patient,
    Period,
    Practitioner,
    Provenance,
    Quantity,
    Range,
    ReferenceRange,
    Referral,
    ResultReport,
    Sensitivity,
    ServiceRequest,
    SourceSystem,
)
from shared.mapping.timeutil import UK
from shared.terminology import systems

NHS = "9434765919"
MRN_SYSTEM = "urn:tie:authority:RX1"
VISIT_SYSTEM = "urn:tie:authority:RX1-VISIT"
ORDER_SYSTEM = "urn:tie:authority:ICE"
FILLER_SYSTEM = "urn:tie:authority:WINPATH"
SOURCE = SourceSystem(application="PAS", facility="RX1")
V2_0004 = systems.v2_table_system("0004")


def uk(*args: int, precision: str = "second") -> ClinicalDateTime:
    return ClinicalDateTime(value=datetime(*args, tzinfo=UK), precision=precision)  # type: ignore[arg-type]


SUMMER = uk(2026, 7, 1, 12, 0, 0)  # BST: +01:00
WINTER = uk(2026, 1, 15, 9, 30, 0)  # GMT: +00:00


def patient(
    *,
    nhs: str | None = NHS,
    sensitivity: Sensitivity = Sensitivity.NORMAL,
    links: tuple[MergeLink, ...] = (),
    gender: object = "female",
    birth_date: PartialDate | None = None,
) -> Patient:
    return Patient(
        nhs_number=NhsNumber(value=nhs, verification_status="01") if nhs else None,
        identifiers=(Identifier(system=MRN_SYSTEM, value="RX1000001", type="MR", assigner="RX1"),),
        names=(HumanName(family="Testpatient", given=("Ann", "Marie"), prefix=("Ms",), use="official"),),
        birth_date=birth_date or PartialDate(year=1980, month=2, day=29),
        gender=gender,  # type: ignore[arg-type]
        addresses=(
            Address(lines=("1 Test Street", "Flat 2"), city="Leeds", postal_code="LS1 1AA", use="home"),
        ),
        telecom=(ContactPoint(system="phone", value="01130000000", use="home"),),
        general_practitioner=Organization(ods_code="Y12345", name="Test Surgery"),
        ethnicity=Concept(codings=(Coding(system=systems.ETHNIC_CATEGORY_ENGLAND, code="A"),)),
        marital_status=DataAbsent(
            reason=DataAbsentReason.UNSUPPORTED,
            source=Coding(system=systems.v2_table_system("0002"), code="Z"),
        ),
        sensitivity=sensitivity,
        links=links,
    )


ATTENDING = Practitioner(
    identifiers=(Identifier(system=systems.GMC_NUMBER, value="C1234567"),),
    name=HumanName(family="Consultant", given=("Carol",), prefix=("Dr",)),
)
REFERRING = Practitioner(name=HumanName(family="Gp", given=("Gary",)))
WARD = Location(point_of_care="WARD1", room="BAY2", bed="BED3", facility="RX101")
OLD_WARD = Location(point_of_care="AMU", bed="B7", facility="RX101")
INPATIENT = Concept(
    codings=(
        Coding(system=systems.V3_ACT_CODE, code="IMP", display="inpatient encounter"),
        Coding(system=V2_0004, code="I"),
    )
)


def encounter(
    *,
    status: EncounterStatus = EncounterStatus.IN_PROGRESS,
    period: Period | None = None,
    location: Location | None = WARD,
    prior: Location | None = None,
    discharge: Concept | None = None,
) -> Encounter:
    return Encounter(
        identifiers=(Identifier(system=VISIT_SYSTEM, value="V0001", type="VN"),),
        status=status,
        encounter_class=INPATIENT,
        period=period or Period(start=SUMMER),
        location=location,
        prior_location=prior,
        attending=(ATTENDING,),
        admitting=(ATTENDING,),
        referring=(REFERRING,),
        admit_source=Concept(codings=(Coding(system=systems.v2_table_system("0023"), code="1"),), text="GP"),
        discharge_disposition=discharge,
        service_provider=Organization(ods_code="RX1", name="Test Hospitals NHS Trust"),
        spell_identifier=Identifier(system=VISIT_SYSTEM + "-SPELL", value="S0001"),
    )


def _adt(
    kind: EventKind, enc: Encounter, pat: Patient, *, occurred: ClinicalDateTime = SUMMER
) -> ClinicalEvent:
    key = identity.encounter_event_key(kind, enc, patient=pat, occurred_at=occurred, recorded_at=occurred)
    cancels = None
    if kind in (EventKind.CANCEL_ADMISSION, EventKind.CANCEL_TRANSFER, EventKind.CANCEL_DISCHARGE):
        cancels = identity.cancelled_event_key(
            kind, enc, patient=pat, occurred_at=occurred, recorded_at=occurred
        )
    return ClinicalEvent(
        kind=kind,
        key=key,
        occurred_at=occurred,
        recorded_at=occurred,
        source=SOURCE,
        provenance=Provenance(source_format="hl7v2", message_id="MSG0001", message_type="ADT^A01"),
        patient=pat,
        encounter=enc,
        cancels=cancels,
    )


def adt_a01(**patient_kw: object) -> ClinicalEvent:
    return _adt(EventKind.ADMISSION, encounter(), patient(**patient_kw))  # type: ignore[arg-type]


def adt_a02() -> ClinicalEvent:
    moved = uk(2026, 7, 2, 8, 15)
    return _adt(EventKind.TRANSFER, encounter(prior=OLD_WARD), patient(), occurred=moved)


def adt_a03() -> ClinicalEvent:
    enc = encounter(
        status=EncounterStatus.FINISHED,
        period=Period(start=SUMMER, end=uk(2026, 11, 3, 16, 45)),  # GMT again by November
        discharge=Concept(codings=(Coding(system=systems.DISCHARGE_DESTINATION_ENGLAND, code="19"),)),
    )
    return _adt(EventKind.DISCHARGE, enc, patient())


def adt_a11() -> ClinicalEvent:
    return _adt(EventKind.CANCEL_ADMISSION, encounter(), patient(), occurred=uk(2026, 7, 1, 13, 0))


def adt_a12() -> ClinicalEvent:
    """A12 cancelling :func:`adt_a02`: back in the ward before it (PV1-3), PV1-6 the cancelled ward."""
    moved = uk(2026, 7, 2, 8, 15)
    cancelled_ward = encounter().location
    assert cancelled_ward is not None
    enc = encounter(prior=cancelled_ward).model_copy(update={"location": OLD_WARD})
    return _adt(EventKind.CANCEL_TRANSFER, enc, patient(), occurred=moved)


def adt_a13() -> ClinicalEvent:
    enc = encounter(
        status=EncounterStatus.FINISHED,
        period=Period(start=SUMMER, end=uk(2026, 11, 3, 16, 45)),
        discharge=Concept(codings=(Coding(system=systems.DISCHARGE_DESTINATION_ENGLAND, code="19"),)),
    )
    return _adt(EventKind.CANCEL_DISCHARGE, enc, patient(), occurred=uk(2026, 11, 3, 17, 0))


MERGED = Identifier(system=MRN_SYSTEM, value="RX1000099")
MERGED_2 = Identifier(system=MRN_SYSTEM, value="RX1000098")


def adt_a40() -> ClinicalEvent:
    pat = patient(links=(MergeLink(kind="replaces", other=MERGED),))
    merged = (MERGED, MERGED_2)
    return ClinicalEvent(
        kind=EventKind.PATIENT_MERGE,
        key=identity.merge_key(pat, merged),
        occurred_at=WINTER,
        recorded_at=WINTER,
        source=SOURCE,
        provenance=Provenance(source_format="hl7v2", message_id="MSG0040", message_type="ADT^A40"),
        patient=pat,
        merged_identifiers=merged,
    )


FILLER = Identifier(system=FILLER_SYSTEM, value="LAB123456")
PLACER = Identifier(system=ORDER_SYSTEM, value="ORD98765")
FBC = Concept(
    codings=(Coding(system=systems.LOINC, code="58410-2", display="CBC panel"),), text="Full blood count"
)
UCUM = systems.UCUM


def _q(value: str, unit: str, *, comparator: str | None = None) -> Quantity:
    return Quantity(value=Decimal(value), unit=unit, code=unit, system=UCUM, comparator=comparator)  # type: ignore[arg-type]


def results() -> tuple[Observation, ...]:
    lab = Concept(codings=(Coding(system=systems.OBSERVATION_CATEGORY, code="laboratory"),))
    return (
        Observation(  # NM
            status="final",
            category=lab,
            code=Concept(codings=(Coding(system=systems.LOINC, code="718-7", display="Hemoglobin"),)),
            value=_q("132.0", "g/L"),
            interpretation=(
                Concept(codings=(Coding(system=systems.V3_OBSERVATION_INTERPRETATION, code="N"),)),
            ),
            reference_range=(ReferenceRange(low=_q("115", "g/L"), high=_q("165", "g/L")),),
            effective=uk(2026, 3, 29, 0, 30),  # the morning the clocks change: still GMT
            issued=uk(2026, 3, 29, 2, 30),  # after 01:00 GMT: BST
            sequence=1,
        ),
        Observation(  # ST
            status="final",
            code=Concept(codings=(Coding(system=systems.LOCAL_LAB, code="COMM"),), text="Comment"),
            value="Sample slightly haemolysed",
            notes=("Repeat if clinically indicated",),
            sequence=2,
        ),
        Observation(  # CE
            status="final",
            code=Concept(codings=(Coding(system=systems.LOINC, code="882-1", display="ABO+Rh group"),)),
            value=Concept(
                codings=(
                    Coding(
                        system=systems.SNOMED_CT, code="278149003", display="Blood group A Rh(D) positive"
                    ),
                )
            ),
            sequence=3,
        ),
        Observation(  # SN with comparator
            status="final",
            code=Concept(codings=(Coding(system=systems.LOINC, code="1988-5", display="CRP"),)),
            value=_q("5", "mg/L", comparator="<"),
            sequence=4,
        ),
        Observation(  # SN range
            status="preliminary",
            code=Concept(codings=(Coding(system=systems.LOCAL_LAB, code="TITRE"),)),
            value=Range(low=_q("1", "1"), high=_q("10", "1")),
            sequence=5,
        ),
        Observation(  # DTM
            status="final",
            code=Concept(codings=(Coding(system=systems.LOCAL_LAB, code="COLLECTED"),)),
            value=uk(2026, 7, 1, 7, 5, precision="minute"),
            sequence=6,
        ),
        Observation(  # unmapped code -> data absent (code and value)
            status="final",
            code=DataAbsent(
                reason=DataAbsentReason.UNSUPPORTED, source=Coding(system=systems.LOCAL_LAB, code="ZZZ")
            ),
            data_absent=DataAbsent(reason=DataAbsentReason.ERROR),
            sequence=7,
        ),
        Observation(  # ED -> presentedForm
            status="final",
            code=Concept(text="Report PDF"),
            value=Attachment(
                content_type="application/pdf", url="https://blob.example/claim/abc", title="Report"
            ),
            sequence=8,
        ),
    )


def oru_r01(*, enc: Encounter | None = None) -> ClinicalEvent:
    report = ResultReport(
        placer_order_number=PLACER,
        filler_order_number=FILLER,
        status="final",
        category=Concept(codings=(Coding(system=systems.V2_0074_DIAGNOSTIC_SERVICE_SECTION, code="HM"),)),
        code=FBC,
        effective=uk(2026, 3, 29, 0, 30),
        issued=uk(2026, 3, 29, 9, 0),
        performer=(Organization(ods_code="RX1", name="Test Hospitals NHS Trust"),),
        results=results(),
        conclusion="Normal",
        notes=("Sample received late",),
    )
    return ClinicalEvent(
        kind=EventKind.RESULT,
        key=identity.result_key(patient(), FILLER, FBC),
        occurred_at=uk(2026, 3, 29, 9, 0),
        source=SourceSystem(application="WINPATH", facility="RX1"),
        provenance=Provenance(source_format="hl7v2", message_id="MSG0100", message_type="ORU^R01"),
        patient=patient(),
        encounter=enc if enc is not None else encounter(),
        reports=(report,),
    )


def orm_o01(status: str = "active") -> ClinicalEvent:
    order = ServiceRequest(
        placer_order_number=PLACER,
        status=status,  # type: ignore[arg-type]
        intent="order",
        code=FBC,
        priority="urgent",
        authored_on=WINTER,
        requester=ATTENDING,
        reason=(Concept(text="Tired all the time"),),
        notes=("Fasting sample",),
    )
    return ClinicalEvent(
        kind=EventKind.ORDER,
        key=identity.order_key(patient(), PLACER, None),
        occurred_at=WINTER,
        source=SourceSystem(application="ICE"),
        provenance=Provenance(source_format="hl7v2", message_id="MSG0200", message_type="ORM^O01"),
        patient=patient(),
        orders=(order,),
    )


def clinical(**patient_kw: object) -> ClinicalEvent:
    """Allergy, condition, medications, a document and a referral, for an A08-style event."""
    amox = Concept(codings=(Coding(system=systems.SNOMED_CT, code="372687004", display="Amoxicillin"),))
    return ClinicalEvent(
        kind=EventKind.ENCOUNTER_UPDATE,
        key=identity.encounter_event_key(
            EventKind.ENCOUNTER_UPDATE,
            encounter(),
            patient=patient(**patient_kw),  # type: ignore[arg-type]
            occurred_at=None,
            recorded_at=WINTER,
        ),
        recorded_at=WINTER,
        source=SOURCE,
        provenance=Provenance(source_format="hl7v2", message_id="MSG0300", message_type="ADT^A08"),
        patient=patient(**patient_kw),  # type: ignore[arg-type]
        encounter=encounter(),
        allergies=(
            AllergyIntolerance(
                clinical_status="active",
                verification_status="confirmed",
                type="allergy",
                category=("medication",),
                criticality="high",
                code=amox,
                recorded=WINTER,
                reactions=(
                    AllergyReaction(
                        manifestation=(
                            Concept(codings=(Coding(system=systems.SNOMED_CT, code="271807003"),)),
                        ),
                        severity="moderate",
                    ),
                    AllergyReaction(description="Unclear"),
                ),
            ),
        ),
        conditions=(
            Condition(
                clinical_status="active",
                verification_status="confirmed",
                category="encounter-diagnosis",
                code=Concept(codings=(Coding(system=systems.ICD10_UK, code="J45.9"),)),
                onset=uk(2020, 5, 1, precision="day"),
            ),
        ),
        medication_requests=(
            MedicationRequest(
                identifiers=(Identifier(system="urn:tie:authority:EPMA", value="RX-1"),),
                status="active",
                intent="order",
                medication=amox,
                authored_on=WINTER,
                requester=ATTENDING,
                dosage_text="500mg three times a day",
            ),
        ),
        medication_statements=(
            MedicationStatement(
                identifiers=(Identifier(system="urn:tie:authority:EPMA", value="MS-1"),),
                status="active",
                medication=Concept(text="Salbutamol inhaler"),
                effective=Period(start=uk(2020, 5, 1, precision="day")),
            ),
        ),
        documents=(
            DocumentReference(
                identifiers=(Identifier(system="urn:tie:authority:EDMS", value="DOC-1"),),
                status="current",
                type=Concept(
                    codings=(Coding(system=systems.SNOMED_CT, code="373942005", display="Discharge summary"),)
                ),
                date=WINTER,
                author=(ATTENDING,),
                description="Discharge summary",
                content=(
                    Attachment(content_type="application/pdf", url="https://blob.example/doc/1", size=1024),
                ),
            ),
        ),
        referrals=(
            Referral(
                identifiers=(Identifier(system="https://fhir.nhs.uk/Id/UBRN", value="000000000001"),),
                status="active",
                priority="routine",
                service=Concept(text="Respiratory clinic"),
                requester=Organization(ods_code="Y12345"),
                recipient=Organization(ods_code="RX1"),
                authored_on=WINTER,
            ),
        ),
    )
