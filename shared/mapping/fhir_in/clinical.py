"""FHIR R4 clinical resources -> canonical models.

Common rules: CodeableConcepts become :class:`~shared.canonical.model.Concept` with every coding kept;
elements bound to a required value set (statuses, intents, categories, criticality ...) are checked
against the canonical model's codes and an unknown code is :class:`~shared.mapping.errors.InvalidValue`
(HL7 0357 ``103``), never a default; references to Practitioner/Organization become canonical parties
(resolved from ``contained`` or the caller's ``context`` when supplied, else by logical identifier).

* Observation: ``value[x]`` Quantity / CodeableConcept / string / dateTime / Range / integer (as a
  unit-less Quantity); any other ``value[x]`` is rejected. ``dataAbsentReason`` -> ``data_absent``.
  ``effective[x]``: dateTime / instant, or a Period's start. An Observation with ``component`` is a panel:
  :func:`observation_group` turns it into one canonical Observation per component (an HL7 OBX each).
* DiagnosticReport: identifiers typed ``FILL`` / ``PLAC`` (v2-0203) give the filler / placer order
  numbers (also read from ``basedOn`` identifiers); without a FILL-typed one, the report's first untyped
  identifier is taken as the filler's (the result producer issued it). ``result`` references must resolve
  (``contained`` or ``context``) — an unresolvable result is an error, not a silently shorter report.
  ``presentedForm`` attachments become results valued with the attachment (report code and status);
  report-level comments come in the R5 ``DiagnosticReport.note`` cross-version extension -> ``notes``.
  ``specimen`` references that resolve (``contained`` / ``context``) -> ``specimens`` (identifiers, type,
  ``collection.collectedDateTime``, ``receivedTime``); one the request does not carry is not read (a
  report may name a specimen the server already holds). ``Observation.specimen`` is not read: the
  writer derives it from the report's single specimen.
* ServiceRequest: ``PLAC`` / ``FILL`` identifiers; an untyped first identifier is the placer's.
  ``occurrenceDateTime`` / ``occurrencePeriod`` -> ``occurrence``; the first ``reasonCode`` with text and
  no coding -> ``clinical_information`` (HL7 OBR-13, written there by ``fhir_out``), coded ones ->
  ``reason``.
* Inline attachment ``data`` is rejected: the API stores bytes first and passes a URL (claim check).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

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
    Observation,
    ObservationValue,
    Organization,
    Period,
    Practitioner,
    Quantity,
    ReferenceRange,
    ResultReport,
    ServiceRequest,
    Specimen,
)
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.fhir_in import _read as r
from shared.mapping.fhir_in.patient import _check_type
from shared.mapping.lineage import LineageRecorder, Mapped
from shared.terminology import systems

__all__ = [
    "allergy_from_fhir",
    "condition_from_fhir",
    "document_reference_from_fhir",
    "medication_request_from_fhir",
    "medication_statement_from_fhir",
    "observation_from_fhir",
    "report_from_fhir",
    "service_request_from_fhir",
]

#: FHIR cross-version extension carrying R5 ``DiagnosticReport.note`` in R4 (report-level comments).
EXT_REPORT_NOTE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note"
_OBS_STATUS = r.field_values(Observation, "status")
_REPORT_STATUS = r.field_values(ResultReport, "status")
_SR_STATUS = r.field_values(ServiceRequest, "status")
_SR_INTENT = r.field_values(ServiceRequest, "intent")
_SR_PRIORITY = r.field_values(ServiceRequest, "priority")
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

#: value[x] element -> the reader producing the canonical value.
_VALUE_KINDS = (
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueDateTime",
    "valueRange",
    "valueInteger",
)
_UNSUPPORTED_VALUES = (
    "valueAttachment",  # not an R4 Observation.value[x]: documents come as DiagnosticReport.presentedForm
    "valueBoolean",
    "valueTime",
    "valuePeriod",
    "valueRatio",
    "valueSampledData",
)


def _run(
    mapper: str,
    resource: r.JsonObj,
    context: Mapping[str, r.JsonObj] | None,
    lineage: bool,
    target: str,
    full_url: str | None,
) -> tuple[object, LineageRecorder]:
    rec = LineageRecorder(enabled=lineage)
    resolver = r.Resolver(resource, context)
    with rec.scope(f"{target}.", resource=full_url):
        value = _MAPPERS[mapper](resource, rec, resolver)
    return value, rec


# ------------------------------------------------------------------------------------------ Observation
def observation_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "reports[0].results[0]",
    full_url: str | None = None,
    sequence: int | None = None,
) -> Mapped[Observation]:
    """Map one FHIR Observation (without ``component``; use :func:`observation_group` for panels)."""
    rec = LineageRecorder(enabled=lineage)
    with rec.scope(f"{target}.", resource=full_url):
        obs = map_observation(resource, rec, r.Resolver(resource, context), sequence=sequence)
    return Mapped(obs, rec.freeze())


def _choice(resource: r.JsonObj, prefix: str, src: str) -> None:
    """A FHIR choice element (``effective[x]``, ``onset[x]``) has at most one type present."""
    present = [k for k in resource if k.startswith(prefix) and resource[k] is not None]
    if len(present) > 1:
        raise InvalidValue(f"{src}.{prefix}[x]", f"more than one {prefix}[x]")


def _effective(resource: r.JsonObj, src: str, tgt: str, rec: LineageRecorder) -> ClinicalDateTime | None:
    _choice(resource, "effective", src)
    for key in ("effectiveDateTime", "effectiveInstant"):
        if resource.get(key) is not None:
            rec.add(f"{src}.{key}", tgt, "fhir-datetime")
            return r.date_time(resource[key], f"{src}.{key}")
    if resource.get("effectivePeriod") is not None:
        p = r.obj(resource["effectivePeriod"], f"{src}.effectivePeriod")
        start = r.opt_date_time(p, "start", f"{src}.effectivePeriod")
        if start is None:
            raise MissingRequiredField(f"{src}.effectivePeriod.start")
        rec.add(f"{src}.effectivePeriod.start", tgt, "fhir-datetime (period start)")
        return start
    for key, node in resource.items():
        if key.startswith("effective") and node is not None:
            raise InvalidValue(f"{src}.{key}", "this effective[x] type is not supported")
    return None


def _value(node: r.JsonObj, src: str, rec: LineageRecorder) -> tuple[ObservationValue | None, str | None]:
    present = [k for k in node if k.startswith("value") and node[k] is not None]
    if len(present) > 1:
        raise InvalidValue(f"{src}.value[x]", "more than one value[x]")
    if not present:
        return None, None
    key = present[0]
    path = f"{src}.{key}"
    if key in _UNSUPPORTED_VALUES or key not in _VALUE_KINDS:
        raise InvalidValue(path, "this value[x] type has no canonical representation")
    raw = node[key]
    value: ObservationValue
    if key == "valueQuantity":
        value = r.quantity(raw, path, "value", rec)
    elif key == "valueCodeableConcept":
        value = r.concept(raw, path, "value", rec)
    elif key == "valueString":
        value = r.req_str(node, key, src)
        rec.add(path, "value", "copy")
    elif key == "valueDateTime":
        value = r.date_time(raw, path)
        rec.add(path, "value", "fhir-datetime")
    elif key == "valueRange":
        value = r.fhir_range(raw, path, "value", rec)
    else:  # valueInteger
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidValue(path, "must be an integer")
        value = Quantity(value=Decimal(raw))
        rec.add(path, "value.value", "integer-as-quantity")
    return value, key


def _reference_ranges(node: r.JsonObj, src: str, rec: LineageRecorder) -> tuple[ReferenceRange, ...]:
    out: list[ReferenceRange] = []
    for i, item in enumerate(r.arr(node, "referenceRange", src)):
        path = f"{src}.referenceRange[{i}]"
        rr = r.obj(item, path)
        tgt = f"reference_range[{i}]"
        low = r.quantity(rr["low"], f"{path}.low", f"{tgt}.low", rec) if rr.get("low") is not None else None
        high = (
            r.quantity(rr["high"], f"{path}.high", f"{tgt}.high", rec) if rr.get("high") is not None else None
        )
        text = r.opt_str(rr, "text", path)
        if text is not None:
            rec.add(f"{path}.text", f"{tgt}.text", "copy")
        if low is None and high is None and text is None:
            raise MissingRequiredField(path, "needs low, high or text")
        out.append(ReferenceRange(low=low, high=high, text=text))
    return tuple(out)


def map_observation(
    resource: r.JsonObj,
    rec: LineageRecorder,
    resolver: r.Resolver,
    *,
    sequence: int | None = None,
    src: str = "Observation",
) -> Observation:
    _check_type(resource, "Observation")
    if r.arr(resource, "component", src):
        raise InvalidValue(f"{src}.component", "a panel with components maps to several observations")
    status = r.req_code_in(resource, "status", src, _OBS_STATUS)
    rec.add(f"{src}.status", "status", "copy", table="observation-status")
    return _observation_body(resource, src, rec, resolver, status=status, sequence=sequence)


def _observation_body(
    node: r.JsonObj,
    src: str,
    rec: LineageRecorder,
    resolver: r.Resolver,
    *,
    status: str,
    sequence: int | None,
    parent: r.JsonObj | None = None,
    parent_src: str | None = None,
) -> Observation:
    """Shared by a whole Observation and by one ``component`` (which inherits the parent's status,
    category, times, performers and identifiers)."""
    whole = parent if parent is not None else node
    whole_src = parent_src if parent_src is not None else src
    code_node = node.get("code")
    if code_node is None:
        raise MissingRequiredField(f"{src}.code")
    code = r.concept(code_node, f"{src}.code", "code", rec)
    value, _ = _value(node, src, rec)
    absent = None
    if node.get("dataAbsentReason") is not None:
        absent = r.data_absent(node["dataAbsentReason"], f"{src}.dataAbsentReason")
        rec.add(f"{src}.dataAbsentReason", "data_absent", "copy", table="data-absent-reason")
        if value is not None:
            raise InvalidValue(f"{src}.dataAbsentReason", "a value and a data-absent reason together")
    interpretation: list[Coded] = []
    for i, item in enumerate(r.arr(node, "interpretation", src)):
        interpretation.append(r.concept(item, f"{src}.interpretation[{i}]", f"interpretation[{i}]", rec))
    categories = r.arr(whole, "category", whole_src)
    category = r.concept(categories[0], f"{whole_src}.category[0]", "category", rec) if categories else None
    idents = r.identifiers(whole, "identifier", whole_src, "identifiers", rec)
    effective = _effective(whole, whole_src, "effective", rec)
    issued = r.opt_date_time(whole, "issued", whole_src)
    if issued is not None:
        rec.add(f"{whole_src}.issued", "issued", "fhir-datetime")
    performers = r.parties(whole, "performer", whole_src, "performer", rec, resolver)
    # A panel's notes go with its first component (components have no notes of their own).
    first_part = parent is None or node is r.arr(whole, "component", whole_src)[0]
    obs_notes = r.notes(whole, whole_src, "notes", rec) if first_part else ()
    if sequence is not None:
        rec.add(None, "sequence", "position in the report")
    return Observation(
        identifiers=idents,
        status=status,
        category=category,
        code=code,
        value=value,
        data_absent=absent,
        interpretation=tuple(interpretation),
        reference_range=_reference_ranges(node, src, rec),
        effective=effective,
        issued=issued,
        performer=performers,
        notes=obs_notes,
        sequence=sequence,
    )


def observation_group(
    resource: r.JsonObj,
    rec: LineageRecorder,
    resolver: r.Resolver,
    *,
    first_sequence: int,
    target: str,
    src: str = "Observation",
) -> list[Observation]:
    """An Observation -> canonical observations: itself, or one per ``component`` for a panel (blood
    pressure). ``target`` is the report's results path (``reports[0].results``)."""
    _check_type(resource, "Observation")
    status = r.req_code_in(resource, "status", src, _OBS_STATUS)
    components = r.arr(resource, "component", src)
    out: list[Observation] = []
    if not components:
        with rec.scope(f"{target}[{first_sequence - 1}]."):
            rec.add(f"{src}.status", "status", "copy", table="observation-status")
            out.append(
                _observation_body(resource, src, rec, resolver, status=status, sequence=first_sequence)
            )
        return out
    if any(k.startswith("value") for k in resource):
        raise InvalidValue(f"{src}.value[x]", "a panel with components must not carry its own value")
    for i, comp in enumerate(components):
        seq = first_sequence + i
        comp_src = f"{src}.component[{i}]"
        with rec.scope(f"{target}[{seq - 1}]."):
            rec.add(f"{src}.status", "status", "copy", table="observation-status")
            out.append(
                _observation_body(
                    r.obj(comp, comp_src),
                    comp_src,
                    rec,
                    resolver,
                    status=status,
                    sequence=seq,
                    parent=resource,
                    parent_src=src,
                )
            )
    return out


# -------------------------------------------------------------------------------------- DiagnosticReport
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


def report_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "reports[0]",
    full_url: str | None = None,
) -> Mapped[ResultReport]:
    """Map a DiagnosticReport and its results (``contained`` or supplied in ``context`` by reference /
    fullUrl) to one ResultReport. Result lineage sources read ``DiagnosticReport.result[i].resolve()...``."""
    value, rec = _run("report", resource, context, lineage, target, full_url)
    assert isinstance(value, ResultReport)
    return Mapped(value, rec.freeze())


def map_report(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> ResultReport:
    _check_type(resource, "DiagnosticReport")
    src = "DiagnosticReport"
    placer, filler, idents = _order_numbers(resource, src, rec, untyped="filler")
    status = r.req_code_in(resource, "status", src, _REPORT_STATUS)
    rec.add(f"{src}.status", "status", "copy", table="diagnostic-report-status")
    categories = r.arr(resource, "category", src)
    category = r.concept(categories[0], f"{src}.category[0]", "category", rec) if categories else None
    code_node = resource.get("code")
    if code_node is None:
        raise MissingRequiredField(f"{src}.code")
    code = r.concept(code_node, f"{src}.code", "code", rec)
    effective = _effective(resource, src, "effective", rec)
    issued = r.opt_date_time(resource, "issued", src)
    if issued is not None:
        rec.add(f"{src}.issued", "issued", "fhir-datetime")
    performers = r.parties(resource, "performer", src, "performer", rec, resolver)
    results: list[Observation] = []
    for i, node in enumerate(r.arr(resource, "result", src)):
        path = f"{src}.result[{i}]"
        ref = r.obj(node, path)
        resolved = resolver.resolve(r.opt_str(ref, "reference", path))
        if resolved is None:
            raise MissingRequiredField(path, "the referenced Observation was not supplied")
        results.extend(
            observation_group(
                resolved,
                rec,
                resolver,
                first_sequence=len(results) + 1,
                target="results",
                src=f"{path}.resolve()",
            )
        )
    for i, node in enumerate(r.arr(resource, "presentedForm", src)):
        results.append(_presented(node, f"{src}.presentedForm[{i}]", status, code, len(results) + 1, rec))
    specimens: list[Specimen] = []
    for i, node in enumerate(r.arr(resource, "specimen", src)):
        path = f"{src}.specimen[{i}]"
        resolved = resolver.resolve(r.opt_str(r.obj(node, path), "reference", path))
        if resolved is not None:
            specimens.append(_specimen(resolved, f"{path}.resolve()", len(specimens), rec))
    conclusion = r.opt_str(resource, "conclusion", src)
    if conclusion is not None:
        rec.add(f"{src}.conclusion", "conclusion", "copy")
    report_notes: list[str] = []
    for i, node in enumerate(r.arr(resource, "extension", src)):
        path = f"{src}.extension[{i}]"
        ext = r.obj(node, path)
        if ext.get("url") != EXT_REPORT_NOTE:
            continue
        annotation = r.opt_obj(ext, "valueAnnotation", path)
        if annotation is None:
            raise MissingRequiredField(f"{path}.valueAnnotation")
        report_notes.append(r.req_str(annotation, "text", f"{path}.valueAnnotation"))
        rec.add(f"{path}.valueAnnotation.text", f"notes[{len(report_notes) - 1}]", "R5 DiagnosticReport.note")
    return ResultReport(
        notes=tuple(report_notes),
        identifiers=idents,
        placer_order_number=placer,
        filler_order_number=filler,
        status=status,
        category=category,
        code=code,
        effective=effective,
        issued=issued,
        performer=performers,
        results=tuple(results),
        conclusion=conclusion,
        specimens=tuple(specimens),
    )


def _specimen(resource: r.JsonObj, src: str, k: int, rec: LineageRecorder) -> Specimen:
    """A Specimen resource -> ``specimens[k]`` (``sequence`` = its position, as for results)."""
    _check_type(resource, "Specimen")
    tgt = f"specimens[{k}]"
    idents = r.identifiers(resource, "identifier", src, f"{tgt}.identifiers", rec)
    kind = r.opt_concept(resource, "type", src, f"{tgt}.type", rec)
    received = r.opt_date_time(resource, "receivedTime", src)
    if received is not None:
        rec.add(f"{src}.receivedTime", f"{tgt}.received", "fhir-datetime")
    collected = None
    collection = r.opt_obj(resource, "collection", src)
    if collection is not None:
        collected = r.opt_date_time(collection, "collectedDateTime", f"{src}.collection")
        if collected is not None:
            rec.add(f"{src}.collection.collectedDateTime", f"{tgt}.collected", "fhir-datetime")
    rec.add(None, f"{tgt}.sequence", "derived: position in DiagnosticReport.specimen")
    return Specimen(identifiers=idents, type=kind, collected=collected, received=received, sequence=k + 1)


def _presented(
    node: object, src: str, status: str, code: Concept, sequence: int, rec: LineageRecorder
) -> Observation:
    """``presentedForm[i]`` -> a result whose value is the attachment (an HL7 ED/RP OBX): it carries the
    report's code and status, as R4 has no Observation.valueAttachment to hold its own."""
    if status not in _OBS_STATUS:
        raise InvalidValue("DiagnosticReport.status", "no result status for a presentedForm with this status")
    with rec.scope(f"results[{sequence - 1}]."):
        value = r.attachment(node, src, "value", rec)
        rec.add("DiagnosticReport.status", "status", "report status")
        rec.add("DiagnosticReport.code", "code", "report code")
        rec.add(None, "sequence", "position in the report")
    return Observation(status=status, code=code, value=value, sequence=sequence)


def report_for_observation(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> ResultReport:
    """A standalone Observation as a one-result report (the shape of an ORU OBR group): the report takes
    the observation's code, status and times; a panel's components become its results."""
    _check_type(resource, "Observation")
    src = "Observation"
    placer, filler, idents = _order_numbers(resource, src, rec, untyped="filler")
    status = r.req_code_in(resource, "status", src, _OBS_STATUS)
    rec.add(f"{src}.status", "status", "copy", table="observation-status")
    code_node = resource.get("code")
    if code_node is None:
        raise MissingRequiredField(f"{src}.code")
    code = r.concept(code_node, f"{src}.code", "code", rec)
    categories = r.arr(resource, "category", src)
    category = r.concept(categories[0], f"{src}.category[0]", "category", rec) if categories else None
    effective = _effective(resource, src, "effective", rec)
    issued = r.opt_date_time(resource, "issued", src)
    if issued is not None:
        rec.add(f"{src}.issued", "issued", "fhir-datetime")
    results = observation_group(resource, rec, resolver, first_sequence=1, target="results")
    return ResultReport(
        identifiers=idents,
        placer_order_number=placer,
        filler_order_number=filler,
        status=status,
        category=category,
        code=code,
        effective=effective,
        issued=issued,
        results=tuple(results),
    )


# -------------------------------------------------------------------------------------- ServiceRequest
def service_request_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "orders[0]",
    full_url: str | None = None,
) -> Mapped[ServiceRequest]:
    value, rec = _run("service_request", resource, context, lineage, target, full_url)
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


# ---------------------------------------------------------------------------------- AllergyIntolerance
def allergy_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "allergies[0]",
    full_url: str | None = None,
) -> Mapped[AllergyIntolerance]:
    value, rec = _run("allergy", resource, context, lineage, target, full_url)
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
    value, rec = _run("condition", resource, context, lineage, target, full_url)
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
    value, rec = _run("medication_request", resource, context, lineage, target, full_url)
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
    value, rec = _run("medication_statement", resource, context, lineage, target, full_url)
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
    value, rec = _run("document", resource, context, lineage, target, full_url)
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


_MAPPERS = {
    "report": map_report,
    "service_request": map_service_request,
    "allergy": map_allergy,
    "condition": map_condition,
    "medication_request": map_medication_request,
    "medication_statement": map_medication_statement,
    "document": map_document,
}
