"""DiagnosticReport, its Observations and Specimens (ORU results)."""

from __future__ import annotations

from shared.canonical.model import (
    Attachment,
    ClinicalDateTime,
    Concept,
    Observation,
    Organization,
    Practitioner,
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
    fixed_coding,
    identifier,
    identifier_with_type,
    instant,
    quantity,
    range_,
)
from shared.mapping.fhir_out._bundle import (
    Builder,
    code_token,
)
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.fhir_out.patient import party_ref

#: FHIR cross-version extension for R5 ``DiagnosticReport.note`` used from R4 (report-level comments).
_EXT_REPORT_NOTE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note"


def report(b: Builder, r: ResultReport, n: int) -> None:
    src = f"reports[{n}]"
    if r.filler_order_number is not None:
        key, key_src = r.filler_order_number, f"{src}.filler_order_number"
    elif r.placer_order_number is not None:
        key, key_src = r.placer_order_number, f"{src}.placer_order_number"
    elif r.identifiers:
        key, key_src = r.identifiers[0], f"{src}.identifiers[0]"
    else:
        raise FhirOutError(
            "a result report needs a filler or placer order number", field=f"{src}.filler_order_number"
        )
    rid = keyed_id("DiagnosticReport", key.system, key.value, code_token(r.code))
    full_url = urn(rid)
    lin = b.lin("DiagnosticReport", full_url)
    res: JSON = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "meta": b.meta("DiagnosticReport", lin),
    }
    if r.notes:
        # R4 DiagnosticReport has no note: the R5 element via its cross-version extension
        res["extension"] = [{"url": _EXT_REPORT_NOTE, "valueAnnotation": {"text": t}} for t in r.notes]
        if lin is not None:
            for k in range(len(r.notes)):
                lin.add(
                    None,
                    f"extension[{k}].url",
                    "constant: R5 DiagnosticReport.note cross-version extension",
                )
                lin.add(f"{src}.notes[{k}]", f"extension[{k}].valueAnnotation.text")
    idents: list[JSON] = []
    for m, i in enumerate(r.identifiers):
        idents.append(identifier(i, lin, f"{src}.identifiers[{m}]", f"identifier[{m}]"))
    if r.filler_order_number is not None:
        k = len(idents)
        idents.append(
            identifier_with_type(
                r.filler_order_number, "FILL", lin, f"{src}.filler_order_number", f"identifier[{k}]"
            )
        )
    if idents:
        res["identifier"] = idents
    if r.placer_order_number is not None:
        placer = r.placer_order_number
        res["basedOn"] = [
            {
                "type": "ServiceRequest",
                "identifier": identifier_with_type(
                    placer, "PLAC", lin, f"{src}.placer_order_number", "basedOn[0].identifier"
                ),
            }
        ]
        if lin is not None:
            lin.add(None, "basedOn[0].type", "constant: the order, by placer number")
    res["status"] = r.status
    if lin is not None:
        lin.add(f"{src}.status", "status")
    if r.category is not None:
        res["category"] = [codeable(r.category, lin, f"{src}.category", "category[0]")]
    res["code"] = codeable(r.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    if r.effective is not None:
        res["effectiveDateTime"] = date_time(r.effective, lin, f"{src}.effective", "effectiveDateTime")
    if r.issued is not None:
        issued = instant(r.issued, lin, f"{src}.issued", "issued")
        if issued is not None:
            res["issued"] = issued
    performers = _performers(b, r.performer, src, lin)
    if performers:
        res["performer"] = performers
    specimens = [specimen(b, sp, k, rid, f"{src}.specimens[{k}]") for k, sp in enumerate(r.specimens)]
    if specimens:
        res["specimen"] = [{"reference": ref} for ref in specimens]
        if lin is not None:
            for k in range(len(specimens)):
                lin.add(f"{src}.specimens[{k}]", f"specimen[{k}].reference", RULE_REF)
    # a result names its specimen only when the report has one: with several, which one a result
    # was measured on is not said
    one_specimen = (specimens[0], f"{src}.specimens[0]") if len(specimens) == 1 else None
    results: list[JSON] = []
    presented: list[JSON] = []
    for m, obs in enumerate(r.results):
        osrc = f"{src}.results[{m}]"
        if isinstance(obs.value, Attachment):
            k = len(presented)
            presented.append(attachment(obs.value, lin, f"{osrc}.value", f"presentedForm[{k}]"))
            continue
        k = len(results)
        results.append({"reference": observation(b, obs, m, rid, osrc, one_specimen)})
        if lin is not None:
            lin.add(osrc, f"result[{k}].reference", RULE_REF)
    if results:
        res["result"] = results
    if r.conclusion is not None:
        res["conclusion"] = r.conclusion
        if lin is not None:
            lin.add(f"{src}.conclusion", "conclusion")
    if presented:
        res["presentedForm"] = presented
    b.put("DiagnosticReport", rid, res, lin, key_src)


def _performers(
    b: Builder, performers: tuple[Practitioner | Organization, ...], src: str, lin: Lin | None
) -> list[JSON]:
    out: list[JSON] = []
    for m, party in enumerate(performers):
        ref = party_ref(b, party, f"{src}.performer[{m}]", lin, f"performer[{len(out)}]")
        if ref is not None:
            out.append(ref)
    return out


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
    if sp.identifiers:
        res["identifier"] = [
            identifier(i, lin, f"{src}.identifiers[{n}]", f"identifier[{n}]")
            for n, i in enumerate(sp.identifiers)
        ]
    if sp.type is not None:
        res["type"] = codeable(sp.type, lin, f"{src}.type", "type")
    b.add_subject(res, lin)
    if sp.received is not None:
        res["receivedTime"] = date_time(sp.received, lin, f"{src}.received", "receivedTime")
    if sp.collected is not None:
        res["collection"] = {
            "collectedDateTime": date_time(
                sp.collected, lin, f"{src}.collected", "collection.collectedDateTime"
            )
        }
    full_url = urn(rid)
    existing = b.entries.get(full_url)
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
        res["identifier"] = [
            identifier(i, lin, f"{src}.identifiers[{k}]", f"identifier[{k}]")
            for k, i in enumerate(obs.identifiers)
        ]
    res["status"] = obs.status
    if lin is not None:
        lin.add(f"{src}.status", "status")
    if obs.category is not None:
        res["category"] = [codeable(obs.category, lin, f"{src}.category", "category[0]")]
    res["code"] = codeable(obs.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    if obs.effective is not None:
        res["effectiveDateTime"] = date_time(obs.effective, lin, f"{src}.effective", "effectiveDateTime")
    if obs.issued is not None:
        issued = instant(obs.issued, lin, f"{src}.issued", "issued")
        if issued is not None:
            res["issued"] = issued
    performers = _performers(b, obs.performer, src, lin)
    if performers:
        res["performer"] = performers
    if specimen is not None:
        res["specimen"] = {"reference": specimen[0]}
        if lin is not None:
            lin.add(specimen[1], "specimen.reference", "reference: the report's only specimen")
    _value(b, obs, res, lin, src)
    if obs.data_absent is not None:
        res["dataAbsentReason"] = {
            "coding": [fixed_coding(profiles.DATA_ABSENT_REASON_SYSTEM, obs.data_absent.reason.value)]
        }
        if lin is not None:
            lin.add(None, "dataAbsentReason.coding[0].system", "constant: data-absent-reason code system")
            lin.add(f"{src}.data_absent.reason", "dataAbsentReason.coding[0].code", RULE_ABSENT)
        if obs.data_absent.source is not None:
            res["dataAbsentReason"]["text"] = "source code could not be mapped"
            if lin is not None:
                lin.add(f"{src}.data_absent.source", "dataAbsentReason.text", "derived: unmapped source code")
    if obs.interpretation:
        res["interpretation"] = [
            codeable(c, lin, f"{src}.interpretation[{k}]", f"interpretation[{k}]")
            for k, c in enumerate(obs.interpretation)
        ]
    if obs.notes:
        res["note"] = [{"text": t} for t in obs.notes]
        if lin is not None:
            for k in range(len(obs.notes)):
                lin.add(f"{src}.notes[{k}]", f"note[{k}].text")
    if obs.reference_range:
        ranges: list[JSON] = []
        for k, rr in enumerate(obs.reference_range):
            item: JSON = {}
            rsrc, rdst = f"{src}.reference_range[{k}]", f"referenceRange[{len(ranges)}]"
            if rr.low is not None:
                item["low"] = quantity(rr.low, lin, f"{rsrc}.low", f"{rdst}.low", simple=True)
            if rr.high is not None:
                item["high"] = quantity(rr.high, lin, f"{rsrc}.high", f"{rdst}.high", simple=True)
            if rr.text is not None:
                item["text"] = rr.text
                if lin is not None:
                    lin.add(f"{rsrc}.text", f"{rdst}.text")
            if item:
                ranges.append(item)
        if ranges:
            res["referenceRange"] = ranges
    b.put("Observation", rid, res, lin, src)
    return f"Observation/{rid}"


def _value(b: Builder, obs: Observation, res: JSON, lin: Lin | None, src: str) -> None:
    v = obs.value
    if v is None:
        return
    vsrc = f"{src}.value"
    if isinstance(v, Quantity):
        res["valueQuantity"] = quantity(v, lin, vsrc, "valueQuantity")
    elif isinstance(v, Concept):
        res["valueCodeableConcept"] = codeable(v, lin, vsrc, "valueCodeableConcept")
    elif isinstance(v, str):
        res["valueString"] = v
        if lin is not None:
            lin.add(vsrc, "valueString")
    elif isinstance(v, ClinicalDateTime):
        res["valueDateTime"] = date_time(v, lin, vsrc, "valueDateTime")
    elif isinstance(v, Range):
        res["valueRange"] = range_(v, lin, vsrc, "valueRange")
    else:  # Attachment values are routed to DiagnosticReport.presentedForm by the caller
        raise FhirOutError("an attachment result must be mapped with its report", field=vsrc)
