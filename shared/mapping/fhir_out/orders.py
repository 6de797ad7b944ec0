"""ServiceRequest: orders (ORM / OML) and e-RS referrals."""

from __future__ import annotations

from shared.canonical.model import (
    ClinicalDateTime,
    Identifier,
    Period,
    Referral,
    ServiceRequest,
)
from shared.fhir.ids import resource_id, urn
from shared.mapping.fhir_out._build import (
    JSON,
    Lin,
    codeable,
    date_time,
    each,
    identifier,
    identifier_with_type,
    period,
    set_built,
    set_codeable,
    set_date_time,
    set_field,
    set_opt,
    texts,
    trace,
)
from shared.mapping.fhir_out._bundle import (
    Builder,
)
from shared.mapping.fhir_out.patient import party_ref, set_party


def service_request(b: Builder, o: ServiceRequest, n: int) -> None:
    src = f"orders[{n}]"
    key, key_src = _order_key(o, src)
    rid = resource_id("ServiceRequest", key.system, key.value)
    lin = b.lin("ServiceRequest", urn(rid))
    res: JSON = {"resourceType": "ServiceRequest", "id": rid, "meta": b.meta("ServiceRequest", lin)}
    res["identifier"] = _order_identifiers(o, lin, src)
    set_field(res, "status", o.status, lin, f"{src}.status")
    set_field(res, "intent", o.intent, lin, f"{src}.intent")
    set_opt(res, "priority", o.priority, lin, f"{src}.priority")
    res["code"] = codeable(o.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    set_date_time(res, "authoredOn", o.authored_on, lin, f"{src}.authored_on")
    set_party(b, res, "requester", o.requester, lin, f"{src}.requester")
    _occurrence(res, o.occurrence, lin, f"{src}.occurrence")
    set_built(res, "reasonCode", _order_reasons(o, lin, src))
    set_built(res, "note", texts(o.notes, lin, f"{src}.notes", "note"))
    b.put("ServiceRequest", rid, res, lin, key_src)


def _order_key(o: ServiceRequest, src: str) -> tuple[Identifier, str]:
    """The identifier the id derives from: the placer order number, else the filler's."""
    if o.placer_order_number is not None:
        return o.placer_order_number, f"{src}.placer_order_number"
    assert o.filler_order_number is not None  # the model requires one of the two
    return o.filler_order_number, f"{src}.filler_order_number"


def _order_identifiers(o: ServiceRequest, lin: Lin | None, src: str) -> list[JSON]:
    idents: list[JSON] = []
    if o.placer_order_number is not None:
        placer = identifier_with_type(
            o.placer_order_number, "PLAC", lin, f"{src}.placer_order_number", "identifier[0]"
        )
        idents.append(placer)
    if o.filler_order_number is not None:
        dst = f"identifier[{len(idents)}]"
        idents.append(
            identifier_with_type(o.filler_order_number, "FILL", lin, f"{src}.filler_order_number", dst)
        )
    return idents


def _occurrence(res: JSON, occurrence: ClinicalDateTime | Period | None, lin: Lin | None, src: str) -> None:
    if isinstance(occurrence, ClinicalDateTime):
        res["occurrenceDateTime"] = date_time(occurrence, lin, src, "occurrenceDateTime")
    elif occurrence is not None:
        res["occurrencePeriod"] = period(occurrence, lin, src, "occurrencePeriod")


def _order_reasons(o: ServiceRequest, lin: Lin | None, src: str) -> list[JSON]:
    """The coded reasons, then OBR-13 relevant clinical information as a text-only reasonCode (UK Core's
    lab request carries the clinical reason there)."""
    reasons = each(codeable, o.reason, lin, f"{src}.reason", "reasonCode")
    if o.clinical_information is not None:
        rule = "relevant clinical information"
        trace(lin, f"{src}.clinical_information", f"reasonCode[{len(reasons)}].text", rule)
        reasons.append({"text": o.clinical_information})
    return reasons


def referral(b: Builder, r: Referral, n: int) -> None:
    """A referral (e-RS, keyed on its UBRN / first identifier) as a ServiceRequest (intent order)."""
    src = f"referrals[{n}]"
    key = r.identifiers[0]
    rid = resource_id("ServiceRequest", key.system, key.value)
    lin = b.lin("ServiceRequest", urn(rid))
    res: JSON = {"resourceType": "ServiceRequest", "id": rid, "meta": b.meta("ServiceRequest", lin)}
    res["identifier"] = each(identifier, r.identifiers, lin, f"{src}.identifiers", "identifier")
    set_field(res, "status", r.status, lin, f"{src}.status")
    set_field(res, "intent", "order", lin, src, "constant: a referral is an order for a service")
    set_opt(res, "priority", r.priority, lin, f"{src}.priority")
    set_codeable(res, "code", r.service, lin, f"{src}.service")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    set_date_time(res, "authoredOn", r.authored_on, lin, f"{src}.authored_on")
    set_party(b, res, "requester", r.requester, lin, f"{src}.requester")
    if r.recipient is not None:
        ref = party_ref(b, r.recipient, f"{src}.recipient", lin, "performer[0]")
        if ref is not None:
            res["performer"] = [ref]
    set_built(res, "reasonCode", each(codeable, r.reason, lin, f"{src}.reason", "reasonCode"))
    b.put("ServiceRequest", rid, res, lin, f"{src}.identifiers[0]")
