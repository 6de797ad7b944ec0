"""FHIR R4 ServiceRequest -> canonical :class:`~shared.canonical.model.ServiceRequest`, and the placer /
filler order numbers a report or an order carries.

Common rules (value sets, parties, attachments): :mod:`shared.mapping.fhir_in._clinical`.

* ServiceRequest: ``PLAC`` / ``FILL`` identifiers; an untyped first identifier is the placer's.
  ``occurrenceDateTime`` / ``occurrencePeriod`` -> ``occurrence``; the first ``reasonCode`` with text and
  no coding -> ``clinical_information`` (HL7 OBR-13, written there by ``fhir_out``), coded ones ->
  ``reason``.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.canonical.model import (
    ClinicalDateTime,
    Coded,
    Identifier,
    Period,
    ServiceRequest,
)
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.fhir_in import _read as r
from shared.mapping.fhir_in._clinical import _run
from shared.mapping.fhir_in.patient import _check_type
from shared.mapping.lineage import LineageRecorder, Mapped

__all__ = ["service_request_from_fhir"]

_SR_STATUS = r.field_values(ServiceRequest, "status")
_SR_INTENT = r.field_values(ServiceRequest, "intent")
_SR_PRIORITY = r.field_values(ServiceRequest, "priority")


def _order_numbers(
    resource: r.JsonObj, src: str, rec: LineageRecorder, *, untyped: str
) -> tuple[Identifier | None, Identifier | None, tuple[Identifier, ...]]:
    """(placer, filler, other identifiers) of a report / order / observation.

    Placer and filler come from identifiers typed PLAC / FILL (v2-0203), then ``basedOn`` logical
    identifiers (typed, or untyped = the placer's); failing that, the first untyped identifier fills the
    ``untyped`` role ("placer" or "filler"). An identifier used as placer/filler is not repeated in the
    others, and its type is dropped: the canonical field says what it is (as ``fhir_out`` writes it).
    """
    off = LineageRecorder(enabled=False)
    parsed: list[tuple[int, Identifier]] = []
    for i, node in enumerate(r.arr(resource, "identifier", src)):
        if r.obj(node, f"{src}.identifier[{i}]").get("value") is not None:
            parsed.append((i, r.identifier(node, f"{src}.identifier[{i}]", "_", off)))
    used: dict[str, tuple[str, Identifier]] = {}
    for role, code in (("placer", "PLAC"), ("filler", "FILL")):
        found = next(((i, x) for i, x in parsed if x.type == code), None)
        if found is not None:
            used[role] = (f"{src}.identifier[{found[0]}]", found[1])
    for i, node in enumerate(r.arr(resource, "basedOn", src)):
        ref = r.obj(node, f"{src}.basedOn[{i}]")
        if ref.get("identifier") is None:
            continue
        path = f"{src}.basedOn[{i}].identifier"
        ident = r.identifier(ref["identifier"], path, "_", off)
        based_role = {"PLAC": "placer", "FILL": "filler", None: "placer"}.get(ident.type)
        if based_role is not None and based_role not in used:
            used[based_role] = (path, ident)
    taken = {id(x) for _, x in used.values()}
    untyped_first = next(((i, x) for i, x in parsed if x.type is None and id(x) not in taken), None)
    if untyped_first is not None and untyped not in used:
        used[untyped] = (f"{src}.identifier[{untyped_first[0]}]", untyped_first[1])
    for role, (path, _) in used.items():
        rec.add(path, f"{role}_order_number", f"{role} order number (v2-0203 type implied by the field)")
    taken = {id(x) for _, x in used.values()}
    others: list[Identifier] = []
    for i, ident in parsed:
        if id(ident) in taken:
            continue
        path = f"{src}.identifier[{i}]"
        others.append(r.identifier(resource["identifier"][i], path, f"identifiers[{len(others)}]", rec))

    def plain(role: str) -> Identifier | None:
        found = used.get(role)
        return None if found is None else found[1].model_copy(update={"type": None})

    return plain("placer"), plain("filler"), tuple(others)


# -------------------------------------------------------------------------------------- ServiceRequest
def service_request_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "orders[0]",
    full_url: str | None = None,
) -> Mapped[ServiceRequest]:
    value, rec = _run(map_service_request, resource, context, lineage, target, full_url)
    assert isinstance(value, ServiceRequest)
    return Mapped(value, rec.freeze())


def map_service_request(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> ServiceRequest:
    _check_type(resource, "ServiceRequest")
    src = "ServiceRequest"
    placer, filler, _ = _order_numbers(resource, src, rec, untyped="placer")
    if placer is None and filler is None:
        raise MissingRequiredField(f"{src}.identifier", "needs a placer or filler order number")
    status = r.req_code_in(resource, "status", src, _SR_STATUS)
    intent = r.req_code_in(resource, "intent", src, _SR_INTENT)
    priority = r.code_in(resource, "priority", src, _SR_PRIORITY)
    for key in ("status", "intent", "priority"):
        if resource.get(key) is not None:
            rec.add(f"{src}.{key}", key, "copy")
    code_node = resource.get("code")
    if code_node is None:
        raise MissingRequiredField(f"{src}.code")
    code = r.concept(code_node, f"{src}.code", "code", rec)
    authored = r.opt_date_time(resource, "authoredOn", src)
    if authored is not None:
        rec.add(f"{src}.authoredOn", "authored_on", "fhir-datetime")
    requester = (
        r.party(resource["requester"], f"{src}.requester", "requester", rec, resolver)
        if resource.get("requester") is not None
        else None
    )
    reasons: list[Coded] = []
    clinical_information: str | None = None
    for i, node in enumerate(r.arr(resource, "reasonCode", src)):
        path = f"{src}.reasonCode[{i}]"
        cc = r.obj(node, path)
        if clinical_information is None and not r.arr(cc, "coding", path) and cc.get("text") is not None:
            clinical_information = r.req_str(cc, "text", path)
            rec.add(
                f"{path}.text", "clinical_information", "text-only reasonCode: relevant clinical information"
            )
            continue
        reasons.append(r.concept(node, path, f"reason[{len(reasons)}]", rec))
    occurrence: ClinicalDateTime | Period | None = r.opt_date_time(resource, "occurrenceDateTime", src)
    if occurrence is not None:
        rec.add(f"{src}.occurrenceDateTime", "occurrence", "fhir-datetime")
    elif resource.get("occurrencePeriod") is not None:
        occurrence = r.period(resource["occurrencePeriod"], f"{src}.occurrencePeriod", "occurrence", rec)
    elif resource.get("occurrenceTiming") is not None:
        raise InvalidValue(f"{src}.occurrenceTiming", "a repeating timing is not supported", error_code="102")
    return ServiceRequest(
        placer_order_number=placer,
        filler_order_number=filler,
        status=status,
        intent=intent,
        code=code,
        priority=priority,
        authored_on=authored,
        requester=requester,
        reason=tuple(reasons),
        notes=r.notes(resource, src, "notes", rec),
        occurrence=occurrence,
        clinical_information=clinical_information,
    )
