"""FHIR R4 results -> canonical models: Observation, DiagnosticReport (with its Specimens).

Common rules (value sets, parties, attachments): :mod:`shared.mapping.fhir_in._clinical`.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from shared.canonical.model import (
    ClinicalDateTime,
    Coded,
    Concept,
    Observation,
    ObservationValue,
    Quantity,
    ReferenceRange,
    ResultReport,
    Specimen,
)
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.fhir_in import _read as r
from shared.mapping.fhir_in._clinical import _choice, _run
from shared.mapping.fhir_in.orders import _order_numbers
from shared.mapping.fhir_in.patient import _check_type
from shared.mapping.lineage import LineageRecorder, Mapped

__all__ = ["observation_from_fhir", "report_from_fhir"]

#: FHIR cross-version extension carrying R5 ``DiagnosticReport.note`` in R4 (report-level comments).
EXT_REPORT_NOTE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note"
_OBS_STATUS = r.field_values(Observation, "status")
_REPORT_STATUS = r.field_values(ResultReport, "status")

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
    value, rec = _run(map_report, resource, context, lineage, target, full_url)
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
