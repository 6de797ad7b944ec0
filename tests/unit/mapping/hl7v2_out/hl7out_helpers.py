"""Canonical events for the hl7v2_out tests (fabricated values) and HL7 text builders."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from shared.canonical import identity
from shared.canonical.model import (
    Address,
    ClinicalDateTime,
    ClinicalEvent,
    Coding,
    Concept,
    Encounter,
    EncounterStatus,
    EventKind,
    HumanName,
    Identifier,
    Location,
    NhsNumber,
    Observation,
    Organization,
    Patient,
    Period,
    Practitioner,
    Provenance,
    Quantity,
    ReferenceRange,
    ResultReport,
    SourceSystem,
)
from shared.hl7v2 import Message
from shared.mapping.hl7v2_out import Header
from shared.terminology import systems

UK = ZoneInfo("Europe/London")
NOW = datetime(2026, 7, 1, 11, 0, tzinfo=UTC)
HEADER = Header(
    sending_application="TIE",
    sending_facility="RX1",
    receiving_application="PAS",
    receiving_facility="RX1",
    now=NOW,
)


def t(*parts: int, precision: str = "second") -> ClinicalDateTime:
    return ClinicalDateTime(value=datetime(*parts, tzinfo=UK), precision=precision)  # type: ignore[arg-type]


def patient(**update: Any) -> Patient:
    p = Patient(
        nhs_number=NhsNumber(value="9434765919", verification_status="01"),
        identifiers=(Identifier(system="urn:tie:authority:RX1", value="MRN123", type="MR", assigner="RX1"),),
        names=(
            HumanName(family="Smith", given=("Jane", "Anne"), prefix=("Mrs",), suffix=("MBE",)),
            HumanName(family="Jones", given=("Jane",)),
        ),
        birth_date=None,
        gender="female",
        addresses=(
            Address(
                lines=("1 Trevelyan Square", "Boar Lane"),
                city="Leeds",
                district="West Yorkshire",
                postal_code="LS1 6AE",
                country="GBR",
            ),
        ),
        general_practitioner=Organization(ods_code="B82005", name="Example Surgery"),
    )
    return p.model_copy(update=update)


def encounter(**update: Any) -> Encounter:
    e = Encounter(
        identifiers=(Identifier(system="urn:tie:authority:RX1", value="V0001", type="VN", assigner="RX1"),),
        status=EncounterStatus.IN_PROGRESS,
        encounter_class=Concept(
            codings=(
                Coding(system=systems.V2_0004_PATIENT_CLASS, code="I"),
                Coding(system=systems.V3_ACT_CODE, code="IMP"),
            )
        ),
        period=Period(start=t(2026, 7, 1, 10, 15)),
        location=Location(point_of_care="WARD7", room="R2", bed="B4", facility="RX101"),
        attending=(
            Practitioner(
                identifiers=(Identifier(system=systems.GMC_NUMBER, value="C1234567", assigner="GMC"),),
                name=HumanName(family="Who", given=("Alan",), prefix=("Dr",)),
            ),
        ),
    )
    return e.model_copy(update=update)


def event(kind: EventKind = EventKind.ENCOUNTER_UPDATE, **update: Any) -> ClinicalEvent:
    p = update.pop("patient", patient())
    enc = update.pop("encounter", encounter())
    ev = ClinicalEvent(
        kind=kind,
        key=identity.make_key(kind, "test", str(len(update))),
        recorded_at=t(2026, 7, 1, 10, 16),
        source=SourceSystem(application="EPR"),
        provenance=Provenance(source_format="fhir"),
        patient=p,
        encounter=enc,
    )
    return ev.model_copy(update=update)


def potassium(**update: Any) -> Observation:
    o = Observation(
        status="final",
        code=Concept(
            codings=(
                Coding(system=systems.LOCAL_LAB, code="K", display="Potassium"),
                Coding(system=systems.LOINC, code="2823-3"),
            ),
            text="Potassium",
        ),
        value=Quantity(value=Decimal("5.9"), unit="mmol/L", code="mmol/L", system=systems.UCUM),
        interpretation=(Concept(codings=(Coding(system=systems.V3_OBSERVATION_INTERPRETATION, code="H"),)),),
        reference_range=(
            ReferenceRange(
                low=Quantity(value=Decimal("3.5"), unit="mmol/L", code="mmol/L", system=systems.UCUM),
                high=Quantity(value=Decimal("5.3"), unit="mmol/L", code="mmol/L", system=systems.UCUM),
                text="3.5-5.3",
            ),
        ),
        effective=t(2026, 1, 15, 9, 30),
        notes=("haemolysed",),
        sequence=1,
    )
    return o.model_copy(update=update)


def report(**update: Any) -> ResultReport:
    r = ResultReport(
        placer_order_number=Identifier(
            system="urn:tie:authority:EPR", value="P456", type="PLAC", assigner="EPR"
        ),
        filler_order_number=Identifier(
            system="urn:tie:authority:LAB", value="F123", type="FILL", assigner="LAB"
        ),
        status="final",
        code=Concept(codings=(Coding(system=systems.LOCAL_LAB, code="UE", display="U&E"),), text="U&E"),
        effective=t(2026, 1, 15, 9, 30),
        issued=t(2026, 1, 15, 11, 0),
        results=(potassium(),),
    )
    return r.model_copy(update=update)


def segment_text(msg: Message, name: str, occurrence: int = 1) -> str:
    seg = msg.segment(name, occurrence)
    assert seg is not None, name
    return seg.raw


def seg(name: str, fields: dict[int, str]) -> str:
    """An HL7 segment from {field number: ER7 text}."""
    n = max(fields)
    return name + "|" + "|".join(fields.get(i, "") for i in range(1, n + 1))
