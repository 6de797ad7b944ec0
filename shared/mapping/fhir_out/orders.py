"""ServiceRequest: orders (ORM / OML) and e-RS referrals."""

from __future__ import annotations

from shared.canonical.model import (
    ClinicalDateTime,
    Referral,
    ServiceRequest,
)
from shared.fhir.ids import resource_id, urn
from shared.mapping.fhir_out._build import (
    JSON,
    codeable,
    date_time,
    identifier,
    identifier_with_type,
    period,
)
from shared.mapping.fhir_out._bundle import (
    Builder,
)
from shared.mapping.fhir_out.patient import party_ref


def service_request(b: Builder, o: ServiceRequest, n: int) -> None:
    src = f"orders[{n}]"
    if o.placer_order_number is not None:
        key, key_src = o.placer_order_number, f"{src}.placer_order_number"
    else:
        assert o.filler_order_number is not None  # the model requires one of the two
        key, key_src = o.filler_order_number, f"{src}.filler_order_number"
    rid = resource_id("ServiceRequest", key.system, key.value)
    lin = b.lin("ServiceRequest", urn(rid))
    res: JSON = {"resourceType": "ServiceRequest", "id": rid, "meta": b.meta("ServiceRequest", lin)}
    idents: list[JSON] = []
    if o.placer_order_number is not None:
        idents.append(
            identifier_with_type(
                o.placer_order_number, "PLAC", lin, f"{src}.placer_order_number", "identifier[0]"
            )
        )
    if o.filler_order_number is not None:
        k = len(idents)
        idents.append(
            identifier_with_type(
                o.filler_order_number, "FILL", lin, f"{src}.filler_order_number", f"identifier[{k}]"
            )
        )
    res["identifier"] = idents
    res["status"] = o.status
    res["intent"] = o.intent
    if o.priority is not None:
        res["priority"] = o.priority
    if lin is not None:
        lin.add(f"{src}.status", "status")
        lin.add(f"{src}.intent", "intent")
        if o.priority is not None:
            lin.add(f"{src}.priority", "priority")
    res["code"] = codeable(o.code, lin, f"{src}.code", "code")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    if o.authored_on is not None:
        res["authoredOn"] = date_time(o.authored_on, lin, f"{src}.authored_on", "authoredOn")
    if o.requester is not None:
        ref = party_ref(b, o.requester, f"{src}.requester", lin, "requester")
        if ref is not None:
            res["requester"] = ref
    if isinstance(o.occurrence, ClinicalDateTime):
        res["occurrenceDateTime"] = date_time(o.occurrence, lin, f"{src}.occurrence", "occurrenceDateTime")
    elif o.occurrence is not None:
        res["occurrencePeriod"] = period(o.occurrence, lin, f"{src}.occurrence", "occurrencePeriod")
    reasons = [codeable(c, lin, f"{src}.reason[{k}]", f"reasonCode[{k}]") for k, c in enumerate(o.reason)]
    if o.clinical_information is not None:
        # OBR-13 as a text-only reasonCode: UK Core's lab request carries the clinical reason there
        if lin is not None:
            k = len(reasons)
            lin.add(f"{src}.clinical_information", f"reasonCode[{k}].text", "relevant clinical information")
        reasons.append({"text": o.clinical_information})
    if reasons:
        res["reasonCode"] = reasons
    if o.notes:
        res["note"] = [{"text": t} for t in o.notes]
        if lin is not None:
            for k in range(len(o.notes)):
                lin.add(f"{src}.notes[{k}]", f"note[{k}].text")
    b.put("ServiceRequest", rid, res, lin, key_src)


def referral(b: Builder, r: Referral, n: int) -> None:
    """A referral (e-RS, keyed on its UBRN / first identifier) as a ServiceRequest (intent order)."""
    src = f"referrals[{n}]"
    key = r.identifiers[0]
    rid = resource_id("ServiceRequest", key.system, key.value)
    lin = b.lin("ServiceRequest", urn(rid))
    res: JSON = {"resourceType": "ServiceRequest", "id": rid, "meta": b.meta("ServiceRequest", lin)}
    res["identifier"] = [
        identifier(i, lin, f"{src}.identifiers[{k}]", f"identifier[{k}]") for k, i in enumerate(r.identifiers)
    ]
    res["status"] = r.status
    res["intent"] = "order"
    if lin is not None:
        lin.add(f"{src}.status", "status")
        lin.add(src, "intent", "constant: a referral is an order for a service")
    if r.priority is not None:
        res["priority"] = r.priority
        if lin is not None:
            lin.add(f"{src}.priority", "priority")
    if r.service is not None:
        res["code"] = codeable(r.service, lin, f"{src}.service", "code")
    b.add_subject(res, lin)
    b.add_encounter_ref(res, lin)
    if r.authored_on is not None:
        res["authoredOn"] = date_time(r.authored_on, lin, f"{src}.authored_on", "authoredOn")
    if r.requester is not None:
        ref = party_ref(b, r.requester, f"{src}.requester", lin, "requester")
        if ref is not None:
            res["requester"] = ref
    if r.recipient is not None:
        ref = party_ref(b, r.recipient, f"{src}.recipient", lin, "performer[0]")
        if ref is not None:
            res["performer"] = [ref]
    if r.reason:
        res["reasonCode"] = [
            codeable(c, lin, f"{src}.reason[{k}]", f"reasonCode[{k}]") for k, c in enumerate(r.reason)
        ]
    b.put("ServiceRequest", rid, res, lin, f"{src}.identifiers[0]")
