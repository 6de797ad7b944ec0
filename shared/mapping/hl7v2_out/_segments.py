"""Segments shared by the ADT and ORU writers: MSH, EVN, PID, PD1, PV1."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from shared.canonical.identity import carrier_of, encounter_identifier, event_digest
from shared.canonical.model import (
    ClinicalDateTime,
    ClinicalEvent,
    Coded,
    Concept,
    DataAbsent,
    Encounter,
    Sensitivity,
)
from shared.hl7v2 import ComponentValue, FieldValue, Raw, Repeated
from shared.mapping.hl7v2_in.rules import RULES
from shared.mapping.hl7v2_out import _fields as f
from shared.mapping.hl7v2_out.errors import Hl7OutError, UnmappableCode
from shared.mapping.hl7v2_out.header import Header
from shared.terminology import load_concept_map, local_systems, systems, translate, v2tables

#: HL7 v2 table 0004 code for "Not applicable": the patient class of an ADT message about a patient
#: with no encounter (a demographics update).
PATIENT_CLASS_NOT_APPLICABLE = "N"


def control_id(event: ClinicalEvent, message_type: str) -> str:
    """A deterministic MSH-10 (20 characters) from the event key, its content digest and the inbound
    message that carried it (its correlation id and control id): a redelivered or replayed write-back
    carries the same control id, so the receiver's duplicate check works, while an update (other content)
    or the same content applied again by another message (an admission re-instated after its cancellation)
    gets its own and is not mistaken for a duplicate."""
    version = f"{message_type}|{event.key.value}|{event_digest(event)}|{carrier_of(event.provenance)}"
    digest = hashlib.sha256(version.encode()).hexdigest()[:17].upper()
    return f"TIE{digest}"


def now_ts(now: datetime | None) -> ClinicalDateTime:
    value = now if now is not None else datetime.now(UTC)
    if value.tzinfo is None:
        raise Hl7OutError("now", "the message time must be timezone-aware")
    return ClinicalDateTime(value=value, precision="second")


def msh(
    o: f.Out, header: Header, *, message_type: tuple[str, str, str], control: str, when: ClinicalDateTime
) -> list[FieldValue]:
    if len(control) > 20:
        raise Hl7OutError("control_id", "MSH-10 is at most 20 characters")
    mtype: list[str | list[str | None] | None] = list(message_type)
    if f.parse_version(o.version) < (2, 3, 1):
        mtype = mtype[:2]  # MSH-9.3 (message structure) exists from v2.3.1
    o.add(None, "MSH-7", "message time (timeutil.to_hl7, UK offset)")
    o.add(None, "MSH-10", "message control id")
    return [
        "MSH",
        None,
        None,
        [header.sending_application],
        [header.sending_facility],
        [header.receiving_application],
        [header.receiving_facility],
        f.ts(when),
        None,
        mtype,
        control,
        header.processing_id,
        o.version,
    ]


def evn(event: ClinicalEvent, o: f.Out, trigger: str, when: ClinicalDateTime) -> list[FieldValue]:
    """EVN-1 trigger, EVN-2 recorded time (the event's, else the message time), EVN-6 occurred time - only
    when it differs from EVN-2: hl7v2_in reads an absent EVN-6 as EVN-2, so an EVN-6 equal to it would be
    one the sender may never have sent."""
    recorded = event.recorded_at or when
    o.add("recorded_at" if event.recorded_at else None, "EVN-2", "recorded date/time")
    occurred = event.occurred_at if event.occurred_at != recorded else None
    if occurred is not None:
        o.add("occurred_at", "EVN-6", "event occurred")
    elif event.occurred_at is not None:
        o.add("occurred_at", "EVN-2", "event occurred = recorded: EVN-6 left empty (read back from EVN-2)")
    operators = event.provenance.operators
    evn5 = (
        Repeated(
            [f.xcn(p, o, f"provenance.operators[{k}]", f"EVN-5[{k + 1}]") for k, p in enumerate(operators)]
        )
        if operators
        else None
    )
    return f.field_list(["EVN", trigger, f.ts(recorded), None, None, evn5, f.ts(occurred)])


def _indicator_code(location: str, value: object) -> str | None:
    """The Y/N code the rules read as ``value`` at ``location`` (PID-30, PD1-12), else None."""
    return next((code for code, meaning in RULES.indicators[location].items() if meaning == value), None)


def _explicit_nulls(
    fields: list[FieldValue], segment: str, owner: str, cleared: tuple[str, ...], o: f.Out
) -> None:
    """The HL7 null ``""`` (delete) in the first field the rules' ``explicit_null`` table lists for each
    cleared field, so the receiver deletes what the source deleted (an empty field would mean "no
    change"). See ``docs/update-semantics.md``."""
    for name in cleared:
        for n, obj, field in RULES.null_fields.get(segment, ()):
            if obj == owner and field == name:
                if fields[n] is None:
                    fields[n] = Raw('""')
                    o.add(
                        f"{owner}.cleared", f"{segment}-{n}", 'explicit null "": the source deleted the field'
                    )
                break


def pid(event: ClinicalEvent, o: f.Out) -> list[FieldValue]:
    p = event.patient
    ids: list[ComponentValue] = []
    if p.nhs_number is not None:
        ids.append([p.nhs_number.value, None, None, "NHS", "NH"])
        o.add("patient.nhs_number.value", "PID-3[1].1", "nhs-number: <nhs>^^^NHS^NH")
    for i, ident in enumerate(p.identifiers):
        ids.append(f.cx(ident, o, f"patient.identifiers[{i}]", f"PID-3[{len(ids) + 1}]"))
    names = [f.xpn(n, o, f"patient.names[{i}]", f"PID-5[{i + 1}]") for i, n in enumerate(p.names)]
    if p.birth_date is not None:
        o.add("patient.birth_date", "PID-7", "birth date at its precision")
    sex = None
    if p.gender is not None:
        sex = f.table_code(
            p.gender,
            o,
            "patient.gender",
            "PID-8",
            table_system=systems.V2_0001_ADMINISTRATIVE_SEX,
            concept_map_id="v2-0001-to-administrative-gender",
            canonical_system=systems.ADMINISTRATIVE_GENDER,
        )
    addresses = [
        f.xad(a, o, f"patient.addresses[{i}]", f"PID-11[{i + 1}]") for i, a in enumerate(p.addresses)
    ]
    # Telecom: PID-14 is the business number field, PID-13 the home one (hl7v2_in reads a work use from
    # XTN.2 wherever it is, and an XTN.2-less PID-14 entry as work).
    home: list[ComponentValue] = []
    business: list[ComponentValue] = []
    for i, c in enumerate(p.telecom):
        bucket, field = (business, "PID-14") if c.use == "work" else (home, "PID-13")
        bucket.append(f.xtn(c, o, f"patient.telecom[{i}]", f"{field}[{len(bucket) + 1}]"))
    status = None
    if p.nhs_number is not None:
        status = f.optional_code(
            p.nhs_number.verification_status,
            o,
            "patient.nhs_number.verification_status",
            "PID-32",
            systems.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND,
            "hl7uk-0445-to-nhs-number-verification-status",
        )
    marital = _uk_cwe(
        p.marital_status,
        o,
        "patient.marital_status",
        "PID-16",
        "hl7uk-0002-to-person-marital-status-england",
        "v3-marital-status-to-hl7uk-0002",
    )
    ethnicity = _uk_cwe(
        p.ethnicity,
        o,
        "patient.ethnicity",
        "PID-22",
        "hl7uk-0189-to-ethnic-category-england",
    )
    death_time = death_flag = None
    if isinstance(p.deceased, bool):
        death_flag = _indicator_code("PID-30", p.deceased)
        o.add("patient.deceased", "PID-30", "death indicator (rules' PID-30 Y/N table)")
    elif p.deceased is not None:
        death_time = f.ts(p.deceased)
        death_flag = _indicator_code("PID-30", True)
        o.add("patient.deceased", "PID-29", "death date/time")
        o.add("patient.deceased", "PID-30", "death indicator Y: a death time is known")
    fields: list[FieldValue] = [None] * 33
    fields[0] = "PID"
    fields[1] = "1"
    fields[3] = Repeated(ids)
    fields[5] = Repeated(names) if names else None
    fields[7] = f.dt(p.birth_date)
    fields[8] = sex
    fields[11] = Repeated(addresses) if addresses else None
    fields[13] = Repeated(home) if home else None
    fields[14] = Repeated(business) if business else None
    fields[16] = marital
    fields[22] = ethnicity
    fields[29] = death_time
    fields[30] = death_flag
    fields[32] = status
    _explicit_nulls(fields, "PID", "patient", p.cleared, o)
    return f.field_list(fields)


def _back_code(code: str, system: str, concept_map_id: str) -> tuple[str | None, str]:
    """(v2 code, why) through a map that goes to the v2 table (read forwards); None unless exactly one."""
    codes = sorted(
        {m.concept.code for m in translate(code, system, concept_map_id=concept_map_id).usable if m.concept}
    )
    if len(codes) == 1:
        return codes[0], f"{concept_map_id}: {code} -> {codes[0]}"
    return (
        None,
        "no mapping back to the HL7 v2 table" if not codes else "more than one HL7 v2 code maps to it",
    )


def _uk_cwe(
    value: Coded | None, o: f.Out, src: str, dst: str, concept_map_id: str, back_map_id: str | None = None
) -> list[f.Component] | None:
    """CWE for a field NHS Trusts fill with an NHS Data Dictionary code (PID-16, PID-22): the code as the
    sender sent it - a coding in the map's source (v2 table) system as it is, else a coding in the source
    system of ``back_map_id`` (a map to the v2 table) through it, else a coding in one of the map's target
    systems read backwards - with the concept's text and no coding-system name, which hl7v2_in reads as the
    same value again; anything else as :func:`f.cwe`."""
    if value is None:
        return None
    if isinstance(value, Concept):
        cmap = load_concept_map(concept_map_id)
        back = load_concept_map(back_map_id) if back_map_id is not None else None
        targets = {g.target for g in cmap.groups}
        table = v2tables.table_of(cmap.source_system)
        for k, c in enumerate(value.codings):
            if table is not None and c.system is not None and local_systems.table_of(c.system) == table:
                # the sender's own code: as sent, CWE.3 the table's id (f.system_name), which hl7v2_in
                # scopes to the message's sender and maps as the table code it was sent as
                o.add(f"{src}.codings[{k}]", f"{dst}.1", "sender's local code, as sent", table=concept_map_id)
                if value.text is not None:
                    o.add(f"{src}.text", f"{dst}.2", "cwe-text")
                return [c.code, value.text, f.system_name(c.system)]
        chosen: tuple[int, str, str] | None = None
        for k, c in enumerate(value.codings):
            if c.system == cmap.source_system:
                chosen = (k, c.code, "code as sent (the map's source table)")
                break
            if chosen is None and back is not None and c.system == back.source_system:
                code, why = _back_code(c.code, c.system, back.id)
                if code is None:
                    raise UnmappableCode(src, back.id, why)
                chosen = (k, code, why)
            elif chosen is None and c.system in targets and c.system is not None:
                code, why = f.reverse_code(c.code, c.system, concept_map_id)
                if code is None:
                    raise UnmappableCode(src, concept_map_id, why)
                chosen = (k, code, why)
        if chosen is not None:
            k, code, why = chosen
            o.add(f"{src}.codings[{k}]", f"{dst}.1", why, table=concept_map_id)
            if value.text is not None:
                o.add(f"{src}.text", f"{dst}.2", "cwe-text")
                return [code, value.text]
            return [code]
    return f.cwe(value, o, src, dst)


def pd1(event: ClinicalEvent, o: f.Out) -> list[FieldValue] | None:
    """PD1-3 the GP practice (XON, ODS code), PD1-4 the registered GP (XCN), PD1-12 the protection
    indicator from the sensitivity (the rules' PD1-12 table: restricted Y, normal N). A very restricted
    record has no v2 expression. A sensitivity the source did not state (``defaulted``) is not written:
    PD1-12 empty, "no change"."""
    p = event.patient
    unstated = "sensitivity" in p.defaulted
    if (
        p.general_practitioner is None
        and p.registered_gp is None
        and p.sensitivity is Sensitivity.NORMAL
        and "general_practitioner" not in p.cleared
        and "registered_gp" not in p.cleared
    ):
        return None
    fields: list[FieldValue] = [None] * 13
    fields[0] = "PD1"
    if p.general_practitioner is not None:
        fields[3] = f.xon(p.general_practitioner, o, "patient.general_practitioner", "PD1-3")
    if p.registered_gp is not None:
        fields[4] = f.xcn(p.registered_gp, o, "patient.registered_gp", "PD1-4")
    _explicit_nulls(fields, "PD1", "patient", p.cleared, o)
    if unstated and p.sensitivity is Sensitivity.NORMAL:
        return f.field_list(fields)
    flag = _indicator_code("PD1-12", p.sensitivity.value)
    if flag is None:
        raise UnmappableCode(
            "patient.sensitivity", None, "no PD1-12 protection indicator for this sensitivity"
        )
    fields[12] = flag
    o.add("patient.sensitivity", "PD1-12", "protection indicator (rules' PD1-12 table)")
    return f.field_list(fields)


def _coded_table(
    value: object,
    o: f.Out,
    src: str,
    dst: str,
    table: str,
    concept_map_id: str | None = None,
    canonical_system: str | None = None,
) -> str | None:
    if value is None:
        return None
    return f.table_code(
        value,  # type: ignore[arg-type]  # Coded: the encounter's coded fields
        o,
        src,
        dst,
        table_system=systems.v2_table_system(table),
        concept_map_id=concept_map_id,
        canonical_system=canonical_system,
    )


def pv1(event: ClinicalEvent, o: f.Out) -> list[FieldValue]:
    """PV1 from the encounter; a patient-only event gets ``PV1|1|N`` (patient class not applicable)."""
    enc: Encounter | None = event.encounter
    fields: list[FieldValue] = [None] * 51
    fields[0] = "PV1"
    fields[1] = "1"
    if enc is None:
        fields[2] = PATIENT_CLASS_NOT_APPLICABLE
        o.add(None, "PV1-2", "no encounter: patient class N (not applicable)")
        return f.field_list(fields)
    cls = _coded_table(
        enc.encounter_class,
        o,
        "encounter.encounter_class",
        "PV1-2",
        "0004",
        "v2-0004-to-encounter-class",
        systems.V3_ACT_CODE,
    )
    if cls is None:
        if isinstance(enc.encounter_class, DataAbsent):
            # e.g. a local patient class the v2-0004 map does not list (UCLH "NH"): not written as a guess
            raise UnmappableCode(
                "encounter.encounter_class",
                "v2-0004-to-encounter-class",
                "the patient class is data-absent and its source is not a v2-0004 code the map lists",
            )
        raise Hl7OutError("encounter.encounter_class", "PV1-2 needs a patient class")
    fields[2] = cls
    if enc.location is not None:
        fields[3] = f.pl(enc.location, o, "encounter.location", "PV1-3")
    if enc.admission_method is not None:
        fields[4] = _coded_table(
            enc.admission_method,
            o,
            "encounter.admission_method",
            "PV1-4",
            "0007",
            "hl7uk-0007-to-admission-method-england",
            systems.ADMISSION_METHOD_ENGLAND,
        )
    else:
        fields[4] = _coded_table(
            enc.priority,
            o,
            "encounter.priority",
            "PV1-4",
            "0007",
            "v2-0007-to-encounter-priority",
            systems.V3_ACT_PRIORITY,
        )
    if enc.prior_location is not None:
        fields[6] = f.pl(enc.prior_location, o, "encounter.prior_location", "PV1-6")
    for attr, n in (("attending", 7), ("referring", 8), ("admitting", 17)):
        people = getattr(enc, attr)
        if people:
            fields[n] = Repeated(
                [f.xcn(pr, o, f"encounter.{attr}[{i}]", f"PV1-{n}[{i + 1}]") for i, pr in enumerate(people)]
            )
    fields[10] = _coded_table(enc.service_type, o, "encounter.service_type", "PV1-10", "0069")
    fields[18] = _coded_table(enc.patient_type, o, "encounter.patient_type", "PV1-18", "0018")
    fields[14] = _coded_table(
        enc.admit_source,
        o,
        "encounter.admit_source",
        "PV1-14",
        "0023",
        "hl7uk-0023-to-source-of-admission-england",
        systems.SOURCE_OF_ADMISSION_ENGLAND,
    )
    visit = encounter_identifier(enc) if enc.identifiers else None
    if visit is not None:
        index = enc.identifiers.index(visit)
        fields[19] = f.cx(visit, o, f"encounter.identifiers[{index}]", "PV1-19")
        # PV1-50 (alternate visit ID) holds one identifier: the first that is not the visit number.
        for k, other in enumerate(enc.identifiers):
            if k != index:
                fields[50] = f.cx(other, o, f"encounter.identifiers[{k}]", "PV1-50")
                break
    fields[36] = _coded_table(
        enc.discharge_disposition,
        o,
        "encounter.discharge_disposition",
        "PV1-36",
        "0112",
        "hl7uk-0112-to-discharge-destination-england",
        systems.DISCHARGE_DESTINATION_ENGLAND,
    )
    if enc.period is not None:
        fields[44] = f.ts(enc.period.start)
        fields[45] = f.ts(enc.period.end)
        if enc.period.start is not None:
            o.add("encounter.period.start", "PV1-44", "admit date/time")
        if enc.period.end is not None:
            o.add("encounter.period.end", "PV1-45", "discharge date/time")
    _explicit_nulls(fields, "PV1", "encounter", enc.cleared, o)
    return f.field_list(fields)
