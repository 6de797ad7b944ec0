"""The other clinical records: AllergyIntolerance, Condition, MedicationRequest,
MedicationStatement, DocumentReference."""

from __future__ import annotations

from shared.canonical.identity import patient_key
from shared.canonical.model import (
    AllergyIntolerance,
    Condition,
    DocumentReference,
    Identifier,
    MedicationRequest,
    MedicationStatement,
)
from shared.fhir import profiles
from shared.fhir.ids import keyed_id, resource_id, urn
from shared.mapping.fhir_out._build import (
    JSON,
    Lin,
    absent_extension,
    attachment,
    codeable,
    date_time,
    fixed_coding,
    identifier,
    instant,
    period,
)
from shared.mapping.fhir_out._bundle import (
    Builder,
    code_token,
    utc_token,
)
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.fhir_out.patient import party_ref


def _business_id(b: Builder, resource_type: str, idents: tuple[Identifier, ...], src: str) -> tuple[str, str]:
    if not idents:
        raise FhirOutError(f"a {resource_type} needs a business identifier", field=f"{src}.identifiers")
    return resource_id(resource_type, idents[0].system, idents[0].value), f"{src}.identifiers[0]"


def _identifiers(b: Builder, res: JSON, idents: tuple[Identifier, ...], lin: Lin | None, src: str) -> None:
    if idents:
        res["identifier"] = [
            identifier(i, lin, f"{src}.identifiers[{k}]", f"identifier[{k}]") for k, i in enumerate(idents)
        ]


def _status_cc(
    b: Builder, res: JSON, key: str, system: str, code: str | None, lin: Lin | None, src: str
) -> None:
    if code is None:
        return
    res[key] = {"coding": [fixed_coding(system, code)]}
    if lin is not None:
        lin.add(None, f"{key}.coding[0].system", "constant: FHIR code system of the element")
        lin.add(src, f"{key}.coding[0].code")


def allergy(b: Builder, a: AllergyIntolerance, n: int) -> None:
    src = f"allergies[{n}]"
    if a.identifiers:
        rid, key_src = _business_id(b, "AllergyIntolerance", a.identifiers, src)
    else:
        rid = keyed_id("AllergyIntolerance", patient_key(b.event.patient), code_token(a.code))
        key_src = f"{src}.code"
    lin = b.lin("AllergyIntolerance", urn(rid))
    res: JSON = {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "meta": b.meta("AllergyIntolerance", lin),
    }
    _identifiers(b, res, a.identifiers, lin, src)
    _status_cc(
        b,
        res,
        "clinicalStatus",
        profiles.ALLERGY_CLINICAL_SYSTEM,
        a.clinical_status,
        lin,
        f"{src}.clinical_status",
    )
    _status_cc(
        b,
        res,
        "verificationStatus",
        profiles.ALLERGY_VERIFICATION_SYSTEM,
        a.verification_status,
        lin,
        f"{src}.verification_status",
    )
    if a.type is not None:
        res["type"] = a.type
        if lin is not None:
            lin.add(f"{src}.type", "type")
    if a.category:
        res["category"] = list(a.category)
        if lin is not None:
            for k in range(len(a.category)):
                lin.add(f"{src}.category[{k}]", f"category[{k}]")
    if a.criticality is not None:
        res["criticality"] = a.criticality
        if lin is not None:
            lin.add(f"{src}.criticality", "criticality")
    res["code"] = codeable(a.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin, "patient")
    b.add_encounter_ref(res, lin)
    if a.onset is not None:
        res["onsetDateTime"] = date_time(a.onset, lin, f"{src}.onset", "onsetDateTime")
    if a.recorded is not None:
        res["recordedDate"] = date_time(a.recorded, lin, f"{src}.recorded", "recordedDate")
    if a.reactions:
        reactions: list[JSON] = []
        for k, rx in enumerate(a.reactions):
            rsrc, rdst = f"{src}.reactions[{k}]", f"reaction[{k}]"
            item: JSON = {}
            if rx.manifestation:
                item["manifestation"] = [
                    codeable(c, lin, f"{rsrc}.manifestation[{j}]", f"{rdst}.manifestation[{j}]")
                    for j, c in enumerate(rx.manifestation)
                ]
            else:  # manifestation is 1..* in R4: say explicitly that it is not known
                item["manifestation"] = [{"extension": absent_extension("unknown")}]
                if lin is not None:
                    lin.add(
                        rsrc,
                        f"{rdst}.manifestation[0]",
                        "derived: no manifestation given -> data-absent unknown",
                    )
            if rx.description is not None:
                item["description"] = rx.description
                if lin is not None:
                    lin.add(f"{rsrc}.description", f"{rdst}.description")
            if rx.severity is not None:
                item["severity"] = rx.severity
                if lin is not None:
                    lin.add(f"{rsrc}.severity", f"{rdst}.severity")
            reactions.append(item)
        res["reaction"] = reactions
    b.put("AllergyIntolerance", rid, res, lin, key_src)


def condition(b: Builder, c: Condition, n: int) -> None:
    src = f"conditions[{n}]"
    if c.identifiers:
        rid, key_src = _business_id(b, "Condition", c.identifiers, src)
    else:
        rid = keyed_id("Condition", patient_key(b.event.patient), utc_token(c.onset), code_token(c.code))
        key_src = f"{src}.code"
    lin = b.lin("Condition", urn(rid))
    res: JSON = {"resourceType": "Condition", "id": rid, "meta": b.meta("Condition", lin)}
    _identifiers(b, res, c.identifiers, lin, src)
    _status_cc(
        b,
        res,
        "clinicalStatus",
        profiles.CONDITION_CLINICAL_SYSTEM,
        c.clinical_status,
        lin,
        f"{src}.clinical_status",
    )
    _status_cc(
        b,
        res,
        "verificationStatus",
        profiles.CONDITION_VERIFICATION_SYSTEM,
        c.verification_status,
        lin,
        f"{src}.verification_status",
    )
    if c.category is not None:
        res["category"] = [{"coding": [fixed_coding(profiles.CONDITION_CATEGORY_SYSTEM, c.category)]}]
        if lin is not None:
            lin.add(None, "category[0].coding[0].system", "constant: condition-category code system")
            lin.add(f"{src}.category", "category[0].coding[0].code")
    res["code"] = codeable(c.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    if c.onset is not None:
        res["onsetDateTime"] = date_time(c.onset, lin, f"{src}.onset", "onsetDateTime")
    if c.recorded is not None:
        res["recordedDate"] = date_time(c.recorded, lin, f"{src}.recorded", "recordedDate")
    b.put("Condition", rid, res, lin, key_src)


def medication_request(b: Builder, m: MedicationRequest, n: int) -> None:
    src = f"medication_requests[{n}]"
    rid, key_src = _business_id(b, "MedicationRequest", m.identifiers, src)
    lin = b.lin("MedicationRequest", urn(rid))
    res: JSON = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "meta": b.meta("MedicationRequest", lin),
    }
    _identifiers(b, res, m.identifiers, lin, src)
    res["status"] = m.status
    res["intent"] = m.intent
    if lin is not None:
        lin.add(f"{src}.status", "status")
        lin.add(f"{src}.intent", "intent")
    res["medicationCodeableConcept"] = codeable(
        m.medication, lin, f"{src}.medication", "medicationCodeableConcept"
    )
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    if m.authored_on is not None:
        res["authoredOn"] = date_time(m.authored_on, lin, f"{src}.authored_on", "authoredOn")
    if m.requester is not None:
        ref = party_ref(b, m.requester, f"{src}.requester", lin, "requester")
        if ref is not None:
            res["requester"] = ref
    if m.dosage_text is not None:
        res["dosageInstruction"] = [{"text": m.dosage_text}]
        if lin is not None:
            lin.add(f"{src}.dosage_text", "dosageInstruction[0].text")
    b.put("MedicationRequest", rid, res, lin, key_src)


def medication_statement(b: Builder, m: MedicationStatement, n: int) -> None:
    src = f"medication_statements[{n}]"
    rid, key_src = _business_id(b, "MedicationStatement", m.identifiers, src)
    lin = b.lin("MedicationStatement", urn(rid))
    res: JSON = {
        "resourceType": "MedicationStatement",
        "id": rid,
        "meta": b.meta("MedicationStatement", lin),
    }
    _identifiers(b, res, m.identifiers, lin, src)
    res["status"] = m.status
    if lin is not None:
        lin.add(f"{src}.status", "status")
    res["medicationCodeableConcept"] = codeable(
        m.medication, lin, f"{src}.medication", "medicationCodeableConcept"
    )
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin, "context")
    if m.effective is not None:
        p = period(m.effective, lin, f"{src}.effective", "effectivePeriod")
        if p:
            res["effectivePeriod"] = p
    if m.dosage_text is not None:
        res["dosage"] = [{"text": m.dosage_text}]
        if lin is not None:
            lin.add(f"{src}.dosage_text", "dosage[0].text")
    b.put("MedicationStatement", rid, res, lin, key_src)


def document(b: Builder, d: DocumentReference, n: int) -> None:
    src = f"documents[{n}]"
    rid, key_src = _business_id(b, "DocumentReference", d.identifiers, src)
    if not d.content:
        raise FhirOutError("a document needs at least one content attachment", field=f"{src}.content")
    lin = b.lin("DocumentReference", urn(rid))
    res: JSON = {
        "resourceType": "DocumentReference",
        "id": rid,
        "meta": b.meta("DocumentReference", lin),
    }
    _identifiers(b, res, d.identifiers, lin, src)
    res["status"] = d.status
    if lin is not None:
        lin.add(f"{src}.status", "status")
    res["type"] = codeable(d.type, lin, f"{src}.type", "type")
    b.add_subject(res, lin)
    if d.date is not None:
        when = instant(d.date, lin, f"{src}.date", "date")
        if when is not None:
            res["date"] = when
    authors: list[JSON] = []
    for k, party in enumerate(d.author):
        ref = party_ref(b, party, f"{src}.author[{k}]", lin, f"author[{len(authors)}]")
        if ref is not None:
            authors.append(ref)
    if authors:
        res["author"] = authors
    if d.description is not None:
        res["description"] = d.description
        if lin is not None:
            lin.add(f"{src}.description", "description")
    res["content"] = [
        {"attachment": attachment(a, lin, f"{src}.content[{k}]", f"content[{k}].attachment")}
        for k, a in enumerate(d.content)
    ]
    ref = b.encounter_reference(lin, "context.encounter[0]")
    if ref is not None:
        res["context"] = {"encounter": [ref]}
    b.put("DocumentReference", rid, res, lin, key_src)
