"""DiagnosticReport, its Observations and Specimens (ORU results)."""

from __future__ import annotations

from shared.canonical.model import (
    Attachment,
    ClinicalDateTime,
    Concept,
    Identifier,
    Observation,
    Quantity,
    Range,
    ResultReport,
    Specimen,
)
from shared.fhir import profiles
from shared.fhir.ids import child_id, keyed_id, resource_id, urn
from shared.mapping.fhir_out._build import (
    JSON,
    RULE_ABSENT,
    RULE_REF,
    Lin,
    attachment,
    codeable,
    date_time,
    each,
    fixed_concept,
    identifier,
    identifier_with_type,
    instant,
    quantity,
    range_,
    set_built,
    set_field,
    set_opt,
    texts,
    trace,
)
from shared.mapping.fhir_out._bundle import (
    Builder,
    code_token,
)
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.fhir_out.patient import party_refs

#: FHIR cross-version extension for R5 ``DiagnosticReport.note`` used from R4 (report-level comments).
_EXT_REPORT_NOTE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note"


def report(b: Builder, r: ResultReport, n: int) -> None:
    src = f"reports[{n}]"
    key, key_src = _report_key(r, src)
    rid = keyed_id("DiagnosticReport", key.system, key.value, code_token(r.code))
    lin = b.lin("DiagnosticReport", urn(rid))
    res: JSON = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "meta": b.meta("DiagnosticReport", lin),
    }
    # R4 DiagnosticReport has no note: the R5 element via its cross-version extension
    set_built(res, "extension", _report_notes(r.notes, lin, src))
    set_built(res, "identifier", _report_identifiers(r, lin, src))
    _based_on(res, r.placer_order_number, lin, src)
    _result_core(b, res, r, lin, src)
    specimens = [specimen(b, sp, k, rid, f"{src}.specimens[{k}]") for k, sp in enumerate(r.specimens)]
    if specimens:
        res["specimen"] = [{"reference": ref} for ref in specimens]
        for k in range(len(specimens)):
            trace(lin, f"{src}.specimens[{k}]", f"specimen[{k}].reference", RULE_REF)
    # a result names its specimen only when the report has one: with several, which one a result
    # was measured on is not said
    one_specimen = (specimens[0], f"{src}.specimens[0]") if len(specimens) == 1 else None
    results, presented = _results(b, r, rid, lin, src, one_specimen)
    set_built(res, "result", results)
    set_opt(res, "conclusion", r.conclusion, lin, f"{src}.conclusion")
    set_built(res, "presentedForm", presented)
    b.put("DiagnosticReport", rid, res, lin, key_src)


def _report_key(r: ResultReport, src: str) -> tuple[Identifier, str]:
    """The identifier the report id derives from: filler order number, else placer, else the first."""
    if r.filler_order_number is not None:
        return r.filler_order_number, f"{src}.filler_order_number"
    if r.placer_order_number is not None:
        return r.placer_order_number, f"{src}.placer_order_number"
    if r.identifiers:
        return r.identifiers[0], f"{src}.identifiers[0]"
    raise FhirOutError(
        "a result report needs a filler or placer order number", field=f"{src}.filler_order_number"
    )


def _report_notes(notes: tuple[str, ...], lin: Lin | None, src: str) -> list[JSON]:
    for k in range(len(notes)):
        trace(lin, None, f"extension[{k}].url", "constant: R5 DiagnosticReport.note cross-version extension")
        trace(lin, f"{src}.notes[{k}]", f"extension[{k}].valueAnnotation.text")
    return [{"url": _EXT_REPORT_NOTE, "valueAnnotation": {"text": t}} for t in notes]


def _report_identifiers(r: ResultReport, lin: Lin | None, src: str) -> list[JSON]:
    idents = [
        identifier(i, lin, f"{src}.identifiers[{m}]", f"identifier[{m}]") for m, i in enumerate(r.identifiers)
    ]
    if r.filler_order_number is not None:
        dst = f"identifier[{len(idents)}]"
        idents.append(
            identifier_with_type(r.filler_order_number, "FILL", lin, f"{src}.filler_order_number", dst)
        )
    return idents


def _based_on(res: JSON, placer: Identifier | None, lin: Lin | None, src: str) -> None:
    """DiagnosticReport.basedOn: the order, by its placer number (a logical reference)."""
    if placer is None:
        return
    ident = identifier_with_type(placer, "PLAC", lin, f"{src}.placer_order_number", "basedOn[0].identifier")
    res["basedOn"] = [{"type": "ServiceRequest", "identifier": ident}]
    trace(lin, None, "basedOn[0].type", "constant: the order, by placer number")


def _result_core(b: Builder, res: JSON, item: ResultReport | Observation, lin: Lin | None, src: str) -> None:
    """The elements a DiagnosticReport and an Observation share, in FHIR order: status, category, code,
    subject, encounter, effective, issued, performer."""
    set_field(res, "status", item.status, lin, f"{src}.status")
    if item.category is not None:
        res["category"] = [codeable(item.category, lin, f"{src}.category", "category[0]")]
    res["code"] = codeable(item.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    if item.effective is not None:
        res["effectiveDateTime"] = date_time(item.effective, lin, f"{src}.effective", "effectiveDateTime")
    if item.issued is not None:
        set_built(res, "issued", instant(item.issued, lin, f"{src}.issued", "issued"))
    if item.performer:
        set_built(res, "performer", party_refs(b, item.performer, lin, f"{src}.performer", "performer"))


def _results(
    b: Builder, r: ResultReport, rid: str, lin: Lin | None, src: str, one_specimen: tuple[str, str] | None
) -> tuple[list[JSON], list[JSON]]:
    """(DiagnosticReport.result, .presentedForm): an attachment result (OBX ED/RP) is presented form
    (R4 Observation has no valueAttachment); every other result is an Observation."""
    results: list[JSON] = []
    presented: list[JSON] = []
    for m, obs in enumerate(r.results):
        osrc = f"{src}.results[{m}]"
        if isinstance(obs.value, Attachment):
            dst = f"presentedForm[{len(presented)}]"
            presented.append(attachment(obs.value, lin, f"{osrc}.value", dst))
            continue
        k = len(results)
        results.append({"reference": observation(b, obs, m, rid, osrc, one_specimen)})
        trace(lin, osrc, f"result[{k}].reference", RULE_REF)
    return results, presented


def specimen(b: Builder, sp: Specimen, k: int, report_id: str, src: str) -> str:
    """PUT Specimen/<id>: id from its first identifier (SPM-2), else the report id + its sequence;
    returns ``Specimen/<id>``. The same specimen named by two reports of one event is written once."""
    if sp.identifiers:
        key = sp.identifiers[0]
        rid, key_src = resource_id("Specimen", key.system, key.value), f"{src}.identifiers[0]"
    else:
        seq = sp.sequence if sp.sequence is not None else k + 1
        rid, key_src = child_id("Specimen", report_id, str(seq)), src
    lin = b.lin("Specimen", urn(rid))
    res: JSON = {"resourceType": "Specimen", "id": rid, "meta": b.meta("Specimen", lin)}
    set_built(res, "identifier", each(identifier, sp.identifiers, lin, f"{src}.identifiers", "identifier"))
    if sp.type is not None:
        res["type"] = codeable(sp.type, lin, f"{src}.type", "type")
    b.add_subject(res, lin)
    if sp.received is not None:
        res["receivedTime"] = date_time(sp.received, lin, f"{src}.received", "receivedTime")
    if sp.collected is not None:
        collected = date_time(sp.collected, lin, f"{src}.collected", "collection.collectedDateTime")
        res["collection"] = {"collectedDateTime": collected}
    existing = b.entries.get(urn(rid))
    if existing is not None and existing.get("resource") == res:
        return f"Specimen/{rid}"
    b.put("Specimen", rid, res, lin, key_src)
    return f"Specimen/{rid}"


def observation(
    b: Builder,
    obs: Observation,
    m: int,
    report_id: str,
    src: str,
    specimen: tuple[str, str] | None = None,
) -> str:
    """PUT Observation/<id>, id from the report id + OBX sequence + code; returns ``Observation/<id>``.
    ``specimen``: (reference, canonical path) of the report's single specimen."""
    seq = obs.sequence if obs.sequence is not None else m + 1
    rid = child_id("Observation", report_id, str(seq), code_token(obs.code))
    lin = b.lin("Observation", urn(rid))
    res: JSON = {"resourceType": "Observation", "id": rid, "meta": b.meta("Observation", lin)}
    if obs.identifiers:
        res["identifier"] = each(identifier, obs.identifiers, lin, f"{src}.identifiers", "identifier")
    _result_core(b, res, obs, lin, src)
    if specimen is not None:
        res["specimen"] = {"reference": specimen[0]}
        trace(lin, specimen[1], "specimen.reference", "reference: the report's only specimen")
    _value(obs, res, lin, src)
    _data_absent(obs, res, lin, src)
    if obs.interpretation:
        res["interpretation"] = each(
            codeable, obs.interpretation, lin, f"{src}.interpretation", "interpretation"
        )
    if obs.notes:
        res["note"] = texts(obs.notes, lin, f"{src}.notes", "note")
    if obs.reference_range:
        set_built(res, "referenceRange", _reference_ranges(obs, lin, src))
    b.put("Observation", rid, res, lin, src)
    return f"Observation/{rid}"


def _value(obs: Observation, res: JSON, lin: Lin | None, src: str) -> None:
    v = obs.value
    if v is None:
        return
    vsrc = f"{src}.value"
    if isinstance(v, Quantity):
        res["valueQuantity"] = quantity(v, lin, vsrc, "valueQuantity")
    elif isinstance(v, Concept):
        res["valueCodeableConcept"] = codeable(v, lin, vsrc, "valueCodeableConcept")
    elif isinstance(v, str):
        set_field(res, "valueString", v, lin, vsrc)
    elif isinstance(v, ClinicalDateTime):
        res["valueDateTime"] = date_time(v, lin, vsrc, "valueDateTime")
    elif isinstance(v, Range):
        res["valueRange"] = range_(v, lin, vsrc, "valueRange")
    else:  # Attachment values are routed to DiagnosticReport.presentedForm by the caller
        raise FhirOutError("an attachment result must be mapped with its report", field=vsrc)


def _data_absent(obs: Observation, res: JSON, lin: Lin | None, src: str) -> None:
    """Observation.dataAbsentReason (the value is missing, or its source code could not be mapped)."""
    absent = obs.data_absent
    if absent is None:
        return
    reason = fixed_concept(
        profiles.DATA_ABSENT_REASON_SYSTEM,
        absent.reason.value,
        lin,
        f"{src}.data_absent.reason",
        "dataAbsentReason",
        "constant: data-absent-reason code system",
        RULE_ABSENT,
    )
    res["dataAbsentReason"] = reason
    if absent.source is not None:
        text, rule = "source code could not be mapped", "derived: unmapped source code"
        set_field(reason, "text", text, lin, f"{src}.data_absent.source", rule, at="dataAbsentReason.")


def _reference_ranges(obs: Observation, lin: Lin | None, src: str) -> list[JSON]:
    ranges: list[JSON] = []
    for k, rr in enumerate(obs.reference_range):
        item: JSON = {}
        rsrc, rdst = f"{src}.reference_range[{k}]", f"referenceRange[{len(ranges)}]"
        if rr.low is not None:
            item["low"] = quantity(rr.low, lin, f"{rsrc}.low", f"{rdst}.low", simple=True)
        if rr.high is not None:
            item["high"] = quantity(rr.high, lin, f"{rsrc}.high", f"{rdst}.high", simple=True)
        set_opt(item, "text", rr.text, lin, f"{rsrc}.text", at=f"{rdst}.")
        if item:
            ranges.append(item)
    return ranges
