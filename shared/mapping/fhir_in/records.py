"""The other FHIR R4 clinical records -> canonical models: AllergyIntolerance, Condition,
MedicationRequest / MedicationStatement, DocumentReference.

Common rules (value sets, parties, attachments): :mod:`shared.mapping.fhir_in._clinical`.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.canonical.model import (
    AllergyIntolerance,
    AllergyReaction,
    ClinicalDateTime,
    Coded,
    Concept,
    Condition,
    DocumentReference,
    Identifier,
    MedicationRequest,
    MedicationStatement,
    Organization,
    Period,
    Practitioner,
)
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.fhir_in import _read as r
from shared.mapping.fhir_in._clinical import _choice, _run
from shared.mapping.fhir_in.patient import _check_type
from shared.mapping.lineage import LineageRecorder, Mapped
from shared.terminology import systems

__all__ = [
    "allergy_from_fhir",
    "condition_from_fhir",
    "document_reference_from_fhir",
    "medication_request_from_fhir",
    "medication_statement_from_fhir",
]

_AI_CLINICAL = r.field_values(AllergyIntolerance, "clinical_status")
_AI_VERIFICATION = r.field_values(AllergyIntolerance, "verification_status")
_AI_TYPE = r.field_values(AllergyIntolerance, "type")
_AI_CATEGORY = r.field_values(AllergyIntolerance, "category")
_AI_CRITICALITY = r.field_values(AllergyIntolerance, "criticality")
_AI_SEVERITY = r.field_values(AllergyReaction, "severity")
_CO_CLINICAL = r.field_values(Condition, "clinical_status")
_CO_VERIFICATION = r.field_values(Condition, "verification_status")
_CO_CATEGORY = r.field_values(Condition, "category")
_MR_STATUS = r.field_values(MedicationRequest, "status")
_MR_INTENT = r.field_values(MedicationRequest, "intent")
_MS_STATUS = r.field_values(MedicationStatement, "status")
_DOC_STATUS = r.field_values(DocumentReference, "status")


# ---------------------------------------------------------------------------------- AllergyIntolerance
def allergy_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "allergies[0]",
    full_url: str | None = None,
) -> Mapped[AllergyIntolerance]:
    value, rec = _run(map_allergy, resource, context, lineage, target, full_url)
    assert isinstance(value, AllergyIntolerance)
    return Mapped(value, rec.freeze())


def _bound(
    resource: r.JsonObj,
    key: str,
    src: str,
    system: str,
    allowed: frozenset[str],
    tgt: str,
    rec: LineageRecorder,
) -> str | None:
    node = resource.get(key)
    if node is None:
        return None
    code = r.bound_code(node, f"{src}.{key}", system, allowed)
    rec.add(f"{src}.{key}", tgt, "bound-code")
    return code


def _onset(resource: r.JsonObj, src: str, rec: LineageRecorder) -> ClinicalDateTime | None:
    _choice(resource, "onset", src)
    if resource.get("onsetDateTime") is not None:
        rec.add(f"{src}.onsetDateTime", "onset", "fhir-datetime")
        return r.date_time(resource["onsetDateTime"], f"{src}.onsetDateTime")
    if resource.get("onsetPeriod") is not None:
        p = r.obj(resource["onsetPeriod"], f"{src}.onsetPeriod")
        start = r.opt_date_time(p, "start", f"{src}.onsetPeriod")
        if start is None:
            raise MissingRequiredField(f"{src}.onsetPeriod.start")
        rec.add(f"{src}.onsetPeriod.start", "onset", "fhir-datetime (period start)")
        return start
    for key, node in resource.items():
        if key.startswith("onset") and key not in ("onsetDateTime", "onsetPeriod") and node is not None:
            raise InvalidValue(f"{src}.{key}", "this onset[x] type is not supported")
    return None


def map_allergy(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> AllergyIntolerance:
    _check_type(resource, "AllergyIntolerance")
    src = "AllergyIntolerance"
    idents = r.identifiers(resource, "identifier", src, "identifiers", rec)
    clinical = _bound(
        resource, "clinicalStatus", src, systems.ALLERGY_CLINICAL_STATUS, _AI_CLINICAL, "clinical_status", rec
    )
    verification = _bound(
        resource,
        "verificationStatus",
        src,
        systems.ALLERGY_VERIFICATION_STATUS,
        _AI_VERIFICATION,
        "verification_status",
        rec,
    )
    ai_type = r.code_in(resource, "type", src, _AI_TYPE)
    criticality = r.code_in(resource, "criticality", src, _AI_CRITICALITY)
    category = tuple(
        r.code_in({"c": item}, "c", f"{src}.category[{i}]", _AI_CATEGORY) or ""
        for i, item in enumerate(r.arr(resource, "category", src))
    )
    for key, value in (("type", ai_type), ("criticality", criticality)):
        if value is not None:
            rec.add(f"{src}.{key}", key, "copy")
    for i in range(len(category)):
        rec.add(f"{src}.category[{i}]", f"category[{i}]", "copy")
    code_node = resource.get("code")
    if code_node is None:
        raise MissingRequiredField(f"{src}.code")
    code = r.concept(code_node, f"{src}.code", "code", rec)
    onset = _onset(resource, src, rec)
    recorded = r.opt_date_time(resource, "recordedDate", src)
    if recorded is not None:
        rec.add(f"{src}.recordedDate", "recorded", "fhir-datetime")
    reactions: list[AllergyReaction] = []
    for i, node in enumerate(r.arr(resource, "reaction", src)):
        path = f"{src}.reaction[{i}]"
        reaction = r.obj(node, path)
        manifestations = tuple(
            r.concept(m, f"{path}.manifestation[{j}]", f"reactions[{i}].manifestation[{j}]", rec)
            for j, m in enumerate(r.arr(reaction, "manifestation", path))
        )
        severity = r.code_in(reaction, "severity", path, _AI_SEVERITY)
        description = r.opt_str(reaction, "description", path)
        for key, value in (("severity", severity), ("description", description)):
            if value is not None:
                rec.add(f"{path}.{key}", f"reactions[{i}].{key}", "copy")
        reactions.append(
            AllergyReaction(
                manifestation=manifestations,
                severity=severity,
                description=description,
            )
        )
    return AllergyIntolerance(
        identifiers=idents,
        clinical_status=clinical,
        verification_status=verification,
        type=ai_type,
        category=category,
        criticality=criticality,
        code=code,
        onset=onset,
        recorded=recorded,
        reactions=tuple(reactions),
    )


# --------------------------------------------------------------------------------------------- Condition
def condition_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "conditions[0]",
    full_url: str | None = None,
) -> Mapped[Condition]:
    value, rec = _run(map_condition, resource, context, lineage, target, full_url)
    assert isinstance(value, Condition)
    return Mapped(value, rec.freeze())


def map_condition(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> Condition:
    _check_type(resource, "Condition")
    src = "Condition"
    idents = r.identifiers(resource, "identifier", src, "identifiers", rec)
    clinical = _bound(
        resource,
        "clinicalStatus",
        src,
        systems.CONDITION_CLINICAL_STATUS,
        _CO_CLINICAL,
        "clinical_status",
        rec,
    )
    verification = _bound(
        resource,
        "verificationStatus",
        src,
        systems.CONDITION_VERIFICATION_STATUS,
        _CO_VERIFICATION,
        "verification_status",
        rec,
    )
    category: str | None = None
    for i, node in enumerate(r.arr(resource, "category", src)):
        path = f"{src}.category[{i}]"
        cc = r.obj(node, path)
        for j, item in enumerate(r.arr(cc, "coding", path)):
            c = r.coding(item, f"{path}.coding[{j}]")
            if c.system != systems.CONDITION_CATEGORY:
                continue  # other category systems (e.g. SNOMED headings) have no canonical slot
            if c.code not in _CO_CATEGORY:
                raise InvalidValue(
                    f"{path}.coding[{j}].code", "code is not in its value set", error_code="103"
                )
            if category is None:
                category = c.code
                rec.add(f"{path}.coding[{j}].code", "category", "copy")
    code_node = resource.get("code")
    if code_node is None:
        raise MissingRequiredField(f"{src}.code")
    code = r.concept(code_node, f"{src}.code", "code", rec)
    onset = _onset(resource, src, rec)
    recorded = r.opt_date_time(resource, "recordedDate", src)
    if recorded is not None:
        rec.add(f"{src}.recordedDate", "recorded", "fhir-datetime")
    return Condition(
        identifiers=idents,
        clinical_status=clinical,
        verification_status=verification,
        category=category,
        code=code,
        onset=onset,
        recorded=recorded,
    )


# ------------------------------------------------------------------------------------------- Medication
def _medication(resource: r.JsonObj, src: str, rec: LineageRecorder, resolver: r.Resolver) -> Coded:
    if resource.get("medicationCodeableConcept") is not None:
        return r.concept(
            resource["medicationCodeableConcept"], f"{src}.medicationCodeableConcept", "medication", rec
        )
    ref_node = resource.get("medicationReference")
    if ref_node is None:
        raise MissingRequiredField(f"{src}.medication[x]")
    path = f"{src}.medicationReference"
    ref = r.obj(ref_node, path)
    resolved = resolver.resolve(r.opt_str(ref, "reference", path))
    if (
        resolved is not None
        and resolved.get("resourceType") == "Medication"
        and resolved.get("code") is not None
    ):
        return r.concept(resolved["code"], f"{path}.resolve().code", "medication", rec)
    display = r.opt_str(ref, "display", path)
    if display is not None:
        rec.add(f"{path}.display", "medication.text", "copy")
        return Concept(text=display)
    raise MissingRequiredField(path, "the referenced Medication was not supplied")


def _dosage_text(resource: r.JsonObj, key: str, src: str, rec: LineageRecorder) -> str | None:
    texts: list[str] = []
    for i, node in enumerate(r.arr(resource, key, src)):
        text = r.opt_str(r.obj(node, f"{src}.{key}[{i}]"), "text", f"{src}.{key}[{i}]")
        if text is not None:
            rec.add(f"{src}.{key}[{i}].text", "dosage_text", "copy (joined with newlines)")
            texts.append(text)
    return "\n".join(texts) if texts else None


def medication_request_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "medication_requests[0]",
    full_url: str | None = None,
) -> Mapped[MedicationRequest]:
    value, rec = _run(map_medication_request, resource, context, lineage, target, full_url)
    assert isinstance(value, MedicationRequest)
    return Mapped(value, rec.freeze())


def map_medication_request(
    resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver
) -> MedicationRequest:
    _check_type(resource, "MedicationRequest")
    src = "MedicationRequest"
    idents = r.identifiers(resource, "identifier", src, "identifiers", rec)
    status = r.req_code_in(resource, "status", src, _MR_STATUS)
    intent = r.req_code_in(resource, "intent", src, _MR_INTENT)
    rec.add(f"{src}.status", "status", "copy")
    rec.add(f"{src}.intent", "intent", "copy")
    authored = r.opt_date_time(resource, "authoredOn", src)
    if authored is not None:
        rec.add(f"{src}.authoredOn", "authored_on", "fhir-datetime")
    requester = (
        r.party(resource["requester"], f"{src}.requester", "requester", rec, resolver)
        if resource.get("requester") is not None
        else None
    )
    return MedicationRequest(
        identifiers=idents,
        status=status,
        intent=intent,
        medication=_medication(resource, src, rec, resolver),
        authored_on=authored,
        requester=requester,
        dosage_text=_dosage_text(resource, "dosageInstruction", src, rec),
    )


def medication_statement_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "medication_statements[0]",
    full_url: str | None = None,
) -> Mapped[MedicationStatement]:
    value, rec = _run(map_medication_statement, resource, context, lineage, target, full_url)
    assert isinstance(value, MedicationStatement)
    return Mapped(value, rec.freeze())


def map_medication_statement(
    resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver
) -> MedicationStatement:
    _check_type(resource, "MedicationStatement")
    src = "MedicationStatement"
    idents = r.identifiers(resource, "identifier", src, "identifiers", rec)
    status = r.req_code_in(resource, "status", src, _MS_STATUS)
    rec.add(f"{src}.status", "status", "copy")
    effective = None
    if resource.get("effectivePeriod") is not None:
        effective = r.period(resource["effectivePeriod"], f"{src}.effectivePeriod", "effective", rec)
    elif resource.get("effectiveDateTime") is not None:
        start = r.date_time(resource["effectiveDateTime"], f"{src}.effectiveDateTime")
        rec.add(f"{src}.effectiveDateTime", "effective.start", "fhir-datetime")
        effective = Period(start=start)
    return MedicationStatement(
        identifiers=idents,
        status=status,
        medication=_medication(resource, src, rec, resolver),
        effective=effective,
        dosage_text=_dosage_text(resource, "dosage", src, rec),
    )


# ------------------------------------------------------------------------------------ DocumentReference
def document_reference_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "documents[0]",
    full_url: str | None = None,
) -> Mapped[DocumentReference]:
    value, rec = _run(map_document, resource, context, lineage, target, full_url)
    assert isinstance(value, DocumentReference)
    return Mapped(value, rec.freeze())


def map_document(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> DocumentReference:
    """``masterIdentifier`` first, then ``identifier`` -> identifiers."""
    _check_type(resource, "DocumentReference")
    src = "DocumentReference"
    idents: list[Identifier] = []
    if resource.get("masterIdentifier") is not None:
        idents.append(
            r.identifier(resource["masterIdentifier"], f"{src}.masterIdentifier", "identifiers[0]", rec)
        )
    for i, node in enumerate(r.arr(resource, "identifier", src)):
        idents.append(r.identifier(node, f"{src}.identifier[{i}]", f"identifiers[{len(idents)}]", rec))
    status = r.req_code_in(resource, "status", src, _DOC_STATUS)
    rec.add(f"{src}.status", "status", "copy")
    type_node = resource.get("type")
    if type_node is None:
        raise MissingRequiredField(f"{src}.type")
    doc_type = r.concept(type_node, f"{src}.type", "type", rec)
    date = r.opt_date_time(resource, "date", src)
    if date is not None:
        rec.add(f"{src}.date", "date", "fhir-datetime")
    authors: tuple[Practitioner | Organization, ...] = r.parties(
        resource, "author", src, "author", rec, resolver
    )
    description = r.opt_str(resource, "description", src)
    if description is not None:
        rec.add(f"{src}.description", "description", "copy")
    contents = []
    for i, node in enumerate(r.arr(resource, "content", src)):
        path = f"{src}.content[{i}]"
        content = r.obj(node, path)
        if content.get("attachment") is None:
            raise MissingRequiredField(f"{path}.attachment")
        contents.append(r.attachment(content["attachment"], f"{path}.attachment", f"content[{i}]", rec))
    return DocumentReference(
        identifiers=tuple(idents),
        status=status,
        type=doc_type,
        date=date,
        author=authors,
        description=description,
        content=tuple(contents),
    )
