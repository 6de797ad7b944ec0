"""The other clinical records: AllergyIntolerance, Condition, MedicationRequest,
MedicationStatement, DocumentReference."""

from __future__ import annotations

from shared.canonical.identity import patient_key
from shared.canonical.model import (
    AllergyIntolerance,
    AllergyReaction,
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
    each,
    fixed_concept,
    identifier,
    instant,
    period,
    set_built,
    set_date_time,
    set_field,
    set_opt,
    trace,
)
from shared.mapping.fhir_out._bundle import (
    Builder,
    code_token,
    utc_token,
)
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.fhir_out.patient import party_refs, set_party

_STATUS_SYSTEM = "constant: FHIR code system of the element"


def _business_id(resource_type: str, idents: tuple[Identifier, ...], src: str) -> tuple[str, str]:
    if not idents:
        raise FhirOutError(f"a {resource_type} needs a business identifier", field=f"{src}.identifiers")
    return resource_id(resource_type, idents[0].system, idents[0].value), f"{src}.identifiers[0]"


def _identifiers(res: JSON, idents: tuple[Identifier, ...], lin: Lin | None, src: str) -> None:
    set_built(res, "identifier", each(identifier, idents, lin, f"{src}.identifiers", "identifier"))


def _status_cc(res: JSON, key: str, system: str, code: str | None, lin: Lin | None, src: str) -> None:
    """A status CodeableConcept (clinicalStatus, verificationStatus) in the element's FHIR code system."""
    if code is not None:
        res[key] = fixed_concept(system, code, lin, src, key, _STATUS_SYSTEM)


def _dosage(text: str | None, lin: Lin | None, src: str, key: str) -> list[JSON]:
    """A free-text Dosage (``[]`` when there is none)."""
    if text is None:
        return []
    trace(lin, f"{src}.dosage_text", f"{key}[0].text")
    return [{"text": text}]


def allergy(b: Builder, a: AllergyIntolerance, n: int) -> None:
    src = f"allergies[{n}]"
    if a.identifiers:
        rid, key_src = _business_id("AllergyIntolerance", a.identifiers, src)
    else:
        rid = keyed_id("AllergyIntolerance", patient_key(b.event.patient), code_token(a.code))
        key_src = f"{src}.code"
    lin = b.lin("AllergyIntolerance", urn(rid))
    res: JSON = {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "meta": b.meta("AllergyIntolerance", lin),
    }
    _identifiers(res, a.identifiers, lin, src)
    clinical, verification = profiles.ALLERGY_CLINICAL_SYSTEM, profiles.ALLERGY_VERIFICATION_SYSTEM
    _status_cc(res, "clinicalStatus", clinical, a.clinical_status, lin, f"{src}.clinical_status")
    _status_cc(
        res, "verificationStatus", verification, a.verification_status, lin, f"{src}.verification_status"
    )
    set_opt(res, "type", a.type, lin, f"{src}.type")
    if a.category:
        res["category"] = list(a.category)
        for k in range(len(a.category)):
            trace(lin, f"{src}.category[{k}]", f"category[{k}]")
    set_opt(res, "criticality", a.criticality, lin, f"{src}.criticality")
    res["code"] = codeable(a.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin, "patient")
    b.add_encounter_ref(res, lin)
    set_date_time(res, "onsetDateTime", a.onset, lin, f"{src}.onset")
    set_date_time(res, "recordedDate", a.recorded, lin, f"{src}.recorded")
    reactions = [
        _reaction(rx, lin, f"{src}.reactions[{k}]", f"reaction[{k}]") for k, rx in enumerate(a.reactions)
    ]
    set_built(res, "reaction", reactions)
    b.put("AllergyIntolerance", rid, res, lin, key_src)


def _reaction(rx: AllergyReaction, lin: Lin | None, src: str, dst: str) -> JSON:
    item: JSON = {}
    if rx.manifestation:
        item["manifestation"] = each(
            codeable, rx.manifestation, lin, f"{src}.manifestation", f"{dst}.manifestation"
        )
    else:  # manifestation is 1..* in R4: say explicitly that it is not known
        item["manifestation"] = [{"extension": absent_extension("unknown")}]
        trace(lin, src, f"{dst}.manifestation[0]", "derived: no manifestation given -> data-absent unknown")
    set_opt(item, "description", rx.description, lin, f"{src}.description", at=f"{dst}.")
    set_opt(item, "severity", rx.severity, lin, f"{src}.severity", at=f"{dst}.")
    return item


def condition(b: Builder, c: Condition, n: int) -> None:
    src = f"conditions[{n}]"
    if c.identifiers:
        rid, key_src = _business_id("Condition", c.identifiers, src)
    else:
        rid = keyed_id("Condition", patient_key(b.event.patient), utc_token(c.onset), code_token(c.code))
        key_src = f"{src}.code"
    lin = b.lin("Condition", urn(rid))
    res: JSON = {"resourceType": "Condition", "id": rid, "meta": b.meta("Condition", lin)}
    _identifiers(res, c.identifiers, lin, src)
    clinical, verification = profiles.CONDITION_CLINICAL_SYSTEM, profiles.CONDITION_VERIFICATION_SYSTEM
    _status_cc(res, "clinicalStatus", clinical, c.clinical_status, lin, f"{src}.clinical_status")
    _status_cc(
        res, "verificationStatus", verification, c.verification_status, lin, f"{src}.verification_status"
    )
    if c.category is not None:
        system, rule = profiles.CONDITION_CATEGORY_SYSTEM, "constant: condition-category code system"
        res["category"] = [fixed_concept(system, c.category, lin, f"{src}.category", "category[0]", rule)]
    res["code"] = codeable(c.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    set_date_time(res, "onsetDateTime", c.onset, lin, f"{src}.onset")
    set_date_time(res, "recordedDate", c.recorded, lin, f"{src}.recorded")
    b.put("Condition", rid, res, lin, key_src)


def medication_request(b: Builder, m: MedicationRequest, n: int) -> None:
    src = f"medication_requests[{n}]"
    rid, key_src = _business_id("MedicationRequest", m.identifiers, src)
    lin = b.lin("MedicationRequest", urn(rid))
    res: JSON = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "meta": b.meta("MedicationRequest", lin),
    }
    _identifiers(res, m.identifiers, lin, src)
    set_field(res, "status", m.status, lin, f"{src}.status")
    set_field(res, "intent", m.intent, lin, f"{src}.intent")
    res["medicationCodeableConcept"] = codeable(
        m.medication, lin, f"{src}.medication", "medicationCodeableConcept"
    )
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    set_date_time(res, "authoredOn", m.authored_on, lin, f"{src}.authored_on")
    set_party(b, res, "requester", m.requester, lin, f"{src}.requester")
    set_built(res, "dosageInstruction", _dosage(m.dosage_text, lin, src, "dosageInstruction"))
    b.put("MedicationRequest", rid, res, lin, key_src)


def medication_statement(b: Builder, m: MedicationStatement, n: int) -> None:
    src = f"medication_statements[{n}]"
    rid, key_src = _business_id("MedicationStatement", m.identifiers, src)
    lin = b.lin("MedicationStatement", urn(rid))
    res: JSON = {
        "resourceType": "MedicationStatement",
        "id": rid,
        "meta": b.meta("MedicationStatement", lin),
    }
    _identifiers(res, m.identifiers, lin, src)
    set_field(res, "status", m.status, lin, f"{src}.status")
    res["medicationCodeableConcept"] = codeable(
        m.medication, lin, f"{src}.medication", "medicationCodeableConcept"
    )
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin, "context")
    if m.effective is not None:
        set_built(res, "effectivePeriod", period(m.effective, lin, f"{src}.effective", "effectivePeriod"))
    set_built(res, "dosage", _dosage(m.dosage_text, lin, src, "dosage"))
    b.put("MedicationStatement", rid, res, lin, key_src)


def document(b: Builder, d: DocumentReference, n: int) -> None:
    src = f"documents[{n}]"
    rid, key_src = _business_id("DocumentReference", d.identifiers, src)
    if not d.content:
        raise FhirOutError("a document needs at least one content attachment", field=f"{src}.content")
    lin = b.lin("DocumentReference", urn(rid))
    res: JSON = {
        "resourceType": "DocumentReference",
        "id": rid,
        "meta": b.meta("DocumentReference", lin),
    }
    _identifiers(res, d.identifiers, lin, src)
    set_field(res, "status", d.status, lin, f"{src}.status")
    res["type"] = codeable(d.type, lin, f"{src}.type", "type")
    b.add_subject(res, lin)
    if d.date is not None:
        set_built(res, "date", instant(d.date, lin, f"{src}.date", "date"))
    set_built(res, "author", party_refs(b, d.author, lin, f"{src}.author", "author"))
    set_opt(res, "description", d.description, lin, f"{src}.description")
    res["content"] = [
        {"attachment": attachment(a, lin, f"{src}.content[{k}]", f"content[{k}].attachment")}
        for k, a in enumerate(d.content)
    ]
    ref = b.encounter_reference(lin, "context.encounter[0]")
    if ref is not None:
        res["context"] = {"encounter": [ref]}
    b.put("DocumentReference", rid, res, lin, key_src)
