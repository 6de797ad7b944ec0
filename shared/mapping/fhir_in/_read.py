"""Readers for FHIR R4 JSON elements: type-checked access with element paths, lineage and typed errors.

Every reader takes the FHIR path of the element it reads (``Patient.name[0]``) and, where it produces a
canonical value, the canonical path it lands on (``names[0]``, relative to the recorder's scope).
Malformed input raises :class:`~shared.mapping.errors.InvalidValue` /
:class:`~shared.mapping.errors.MissingRequiredField` naming the FHIR element — never its value.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from shared.canonical.model import (
    Attachment,
    ClinicalDateTime,
    Coding,
    Concept,
    DataAbsent,
    DataAbsentReason,
    HumanName,
    Identifier,
    Organization,
    PartialDate,
    Period,
    Practitioner,
    Quantity,
    Range,
)
from shared.identifiers import systems as id_systems
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.lineage import LineageRecorder
from shared.mapping.timeutil import TimeFormatError, from_fhir, partial_date_from_fhir
from shared.terminology import local_systems, systems

JsonObj = dict[str, Any]


# --------------------------------------------------------------------------------------------- value sets
def literal_values(annotation: object) -> frozenset[str]:
    """The string values of the ``Literal`` (possibly inside a union) of a model field annotation.

    The canonical model's ``Literal`` fields are the FHIR required bindings (status, gender, use, ...):
    reading the allowed codes from the model keeps one source of truth for the value set.
    """
    out: set[str] = set()

    def walk(node: object) -> None:
        if typing.get_origin(node) is Literal:
            out.update(a for a in typing.get_args(node) if isinstance(a, str))
            return
        for arg in typing.get_args(node):
            walk(arg)

    walk(annotation)
    return frozenset(out)


def field_values(model: type[Any], field: str) -> frozenset[str]:
    values = literal_values(model.model_fields[field].annotation)
    if not values:  # a programming error: the field is not a Literal
        raise TypeError(f"{model.__name__}.{field} is not a coded (Literal) field")
    return values


_DATA_ABSENT = frozenset(r.value for r in DataAbsentReason)
_COMPARATORS = frozenset({"<", "<=", ">=", ">"})


# ------------------------------------------------------------------------------------------- structure
def obj(node: object, path: str) -> JsonObj:
    if not isinstance(node, dict):
        raise InvalidValue(path, "must be a JSON object")
    return node


def opt_obj(parent: JsonObj, key: str, path: str) -> JsonObj | None:
    node = parent.get(key)
    if node is None:
        return None
    return obj(node, f"{path}.{key}")


def arr(parent: JsonObj, key: str, path: str) -> list[Any]:
    node = parent.get(key)
    if node is None:
        return []
    if not isinstance(node, list):
        raise InvalidValue(f"{path}.{key}", "must be an array")
    return node


def opt_str(parent: JsonObj, key: str, path: str) -> str | None:
    node = parent.get(key)
    if node is None:
        return None
    if not isinstance(node, str):
        raise InvalidValue(f"{path}.{key}", "must be a string")
    if not node.strip():
        raise InvalidValue(f"{path}.{key}", "must not be empty")
    return node


def req_str(parent: JsonObj, key: str, path: str) -> str:
    value = opt_str(parent, key, path)
    if value is None:
        raise MissingRequiredField(f"{path}.{key}")
    return value


def opt_bool(parent: JsonObj, key: str, path: str) -> bool | None:
    node = parent.get(key)
    if node is None:
        return None
    if not isinstance(node, bool):
        raise InvalidValue(f"{path}.{key}", "must be a boolean")
    return node


def str_list(parent: JsonObj, key: str, path: str) -> tuple[str, ...]:
    items = arr(parent, key, path)
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise InvalidValue(f"{path}.{key}[{i}]", "must be a non-empty string")
        out.append(item)
    return tuple(out)


def code_in(parent: JsonObj, key: str, path: str, allowed: frozenset[str]) -> str | None:
    """A FHIR ``code`` element bound to a required value set: unknown codes are an error, not a default."""
    value = opt_str(parent, key, path)
    if value is not None and value not in allowed:
        raise InvalidValue(f"{path}.{key}", "code is not in its value set", error_code="103")
    return value


def req_code_in(parent: JsonObj, key: str, path: str, allowed: frozenset[str]) -> str:
    value = code_in(parent, key, path, allowed)
    if value is None:
        raise MissingRequiredField(f"{path}.{key}")
    return value


# ------------------------------------------------------------------------------------------------ time
def date_time(node: object, path: str) -> ClinicalDateTime:
    if not isinstance(node, str):
        raise InvalidValue(path, "must be a dateTime string")
    try:
        return from_fhir(node)
    except (TimeFormatError, ValueError) as exc:
        raise InvalidValue(path, "not a valid FHIR dateTime") from exc


def opt_date_time(parent: JsonObj, key: str, path: str) -> ClinicalDateTime | None:
    node = parent.get(key)
    if node is None:
        return None
    return date_time(node, f"{path}.{key}")


def partial_date(node: object, path: str) -> PartialDate:
    if not isinstance(node, str):
        raise InvalidValue(path, "must be a date string")
    try:
        return partial_date_from_fhir(node)
    except (TimeFormatError, ValueError) as exc:
        raise InvalidValue(path, "not a valid FHIR date") from exc


def period(node: object, src: str, tgt: str, rec: LineageRecorder) -> Period | None:
    """FHIR Period -> canonical Period (``None`` when it has neither start nor end)."""
    p = obj(node, src)
    start = opt_date_time(p, "start", src)
    end = opt_date_time(p, "end", src)
    if start is not None and end is not None and end.value < start.value:
        raise InvalidValue(f"{src}.end", "period ends before it starts")
    if start is not None:
        rec.add(f"{src}.start", f"{tgt}.start", "fhir-datetime")
    if end is not None:
        rec.add(f"{src}.end", f"{tgt}.end", "fhir-datetime")
    if start is None and end is None:
        return None
    return Period(start=start, end=end)


# ---------------------------------------------------------------------------------------------- codes
def coding(node: object, src: str) -> Coding:
    c = obj(node, src)
    code = opt_str(c, "code", src)
    if code is None:
        raise MissingRequiredField(f"{src}.code")
    system = opt_str(c, "system", src)
    if system is not None and system.startswith(local_systems.DEFAULT_PREFIX):
        # a sender's local code under the default URN of a facility the Trust has since configured: the
        # configured URI (as hl7v2_in now labels it); the code itself is the original code, as sent
        system = local_systems.configured().canonical(system)
    return Coding(
        system=system,
        code=code,
        display=opt_str(c, "display", src),
        version=opt_str(c, "version", src),
        user_selected=opt_bool(c, "userSelected", src),
    )


def concept(node: object, src: str, tgt: str, rec: LineageRecorder) -> Concept:
    """CodeableConcept -> Concept: every coding kept, in order, with the text."""
    cc = obj(node, src)
    codings: list[Coding] = []
    for i, item in enumerate(arr(cc, "coding", src)):
        codings.append(coding(item, f"{src}.coding[{i}]"))
        rec.add(f"{src}.coding[{i}]", f"{tgt}.codings[{i}]", "copy-coding")
    text = opt_str(cc, "text", src)
    if text is not None:
        rec.add(f"{src}.text", f"{tgt}.text", "copy")
    if not codings and text is None:
        raise MissingRequiredField(src, "needs a coding or text")
    return Concept(codings=tuple(codings), text=text)


def opt_concept(parent: JsonObj, key: str, src: str, tgt: str, rec: LineageRecorder) -> Concept | None:
    node = parent.get(key)
    if node is None:
        return None
    return concept(node, f"{src}.{key}", tgt, rec)


def coding_concept(node: object, src: str, tgt: str, rec: LineageRecorder) -> Concept:
    """A bare FHIR Coding (e.g. Encounter.class) -> a Concept holding that one coding."""
    c = coding(node, src)
    rec.add(src, f"{tgt}.codings[0]", "copy-coding")
    return Concept(codings=(c,))


def bound_code(node: object, src: str, system: str, allowed: frozenset[str]) -> str:
    """A CodeableConcept bound to one code system (e.g. AllergyIntolerance.clinicalStatus): the code of
    its coding in ``system``, which must be in ``allowed``."""
    cc = obj(node, src)
    for i, item in enumerate(arr(cc, "coding", src)):
        c = coding(item, f"{src}.coding[{i}]")
        if c.system == system:
            if c.code not in allowed:
                raise InvalidValue(
                    f"{src}.coding[{i}].code", "code is not in its value set", error_code="103"
                )
            return c.code
    raise InvalidValue(src, "no coding in its required code system", error_code="103")


def absent_extension(element: JsonObj | None, src: str) -> DataAbsent | None:
    """The ``data-absent-reason`` extension on an element (``_gender``, ``class``), if any."""
    if element is None:
        return None
    for i, node in enumerate(arr(element, "extension", src)):
        ext = obj(node, f"{src}.extension[{i}]")
        if ext.get("url") != systems.EXT_DATA_ABSENT_REASON:
            continue
        code = req_str(ext, "valueCode", f"{src}.extension[{i}]")
        if code not in _DATA_ABSENT:
            raise InvalidValue(
                f"{src}.extension[{i}].valueCode", "code is not in its value set", error_code="103"
            )
        return DataAbsent(reason=DataAbsentReason(code))
    return None


def data_absent(node: object, src: str) -> DataAbsent:
    """``dataAbsentReason`` (CodeableConcept in the data-absent-reason code system) -> DataAbsent."""
    return DataAbsent(
        reason=DataAbsentReason(bound_code(node, src, systems.DATA_ABSENT_REASON, _DATA_ABSENT))
    )


# ---------------------------------------------------------------------------------------- identifiers
def identifier(node: object, src: str, tgt: str, rec: LineageRecorder) -> Identifier:
    """FHIR Identifier -> canonical: system and value required; type = its v2-0203 code; assigner = the
    assigner's identifier value (ODS code) or display."""
    ident = obj(node, src)
    sent_system = req_str(ident, "system", src)
    value = req_str(ident, "value", src)
    rec.add(f"{src}.value", f"{tgt}.value", "copy")
    id_type: str | None = None
    type_node = opt_obj(ident, "type", src)
    if type_node is not None:
        for i, item in enumerate(arr(type_node, "coding", f"{src}.type")):
            c = coding(item, f"{src}.type.coding[{i}]")
            if c.system == systems.V2_0203_IDENTIFIER_TYPE:
                id_type = c.code
                rec.add(f"{src}.type.coding[{i}].code", f"{tgt}.type", "copy", table="v2-0203")
                break
        if id_type is None and not type_node.get("coding"):
            # a sender's own type (not a v2-0203 code) is written as text alone (fhir_out): read it back
            id_type = opt_str(type_node, "text", f"{src}.type")
            if id_type is not None:
                rec.add(f"{src}.type.text", f"{tgt}.type", "copy (local identifier type)")
    # the default URN of an authority the Trust has configured is that authority's URI: one issuer, one
    # system, whichever path an identifier arrives by (event identity)
    system = id_systems.configured().canonical(sent_system, id_type)
    rec.add(f"{src}.system", f"{tgt}.system", "copy" if system == sent_system else "configured authority URI")
    assigner: str | None = None
    assigner_node = opt_obj(ident, "assigner", src)
    if assigner_node is not None:
        assigner_id = opt_obj(assigner_node, "identifier", f"{src}.assigner")
        if assigner_id is not None:
            assigner = opt_str(assigner_id, "value", f"{src}.assigner.identifier")
            if assigner is not None:
                rec.add(f"{src}.assigner.identifier.value", f"{tgt}.assigner", "copy")
        if assigner is None:
            assigner = opt_str(assigner_node, "display", f"{src}.assigner")
            if assigner is not None:
                rec.add(f"{src}.assigner.display", f"{tgt}.assigner", "copy")
    return Identifier(system=system, value=value, type=id_type, assigner=assigner)


def identifiers(
    parent: JsonObj, key: str, src: str, tgt: str, rec: LineageRecorder
) -> tuple[Identifier, ...]:
    """A list of Identifiers; entries without a ``value`` identify nothing and are skipped."""
    out: list[Identifier] = []
    for i, item in enumerate(arr(parent, key, src)):
        if obj(item, f"{src}.{key}[{i}]").get("value") is None:
            continue
        out.append(identifier(item, f"{src}.{key}[{i}]", f"{tgt}[{len(out)}]", rec))
    return tuple(out)


def typed(idents: tuple[Identifier, ...], id_type: str) -> Identifier | None:
    return next((i for i in idents if i.type == id_type), None)


# ------------------------------------------------------------------------------------------ quantities
def decimal(node: object, path: str) -> Decimal:
    if isinstance(node, bool) or not isinstance(node, int | float | Decimal | str):
        raise InvalidValue(path, "must be a number")
    try:
        value = Decimal(repr(node)) if isinstance(node, float) else Decimal(node)
    except InvalidOperation as exc:
        raise InvalidValue(path, "must be a number") from exc
    if not value.is_finite():
        raise InvalidValue(path, "must be a finite number")
    return value


def quantity(node: object, src: str, tgt: str, rec: LineageRecorder) -> Quantity:
    q = obj(node, src)
    if q.get("value") is None:
        raise MissingRequiredField(f"{src}.value")
    value = decimal(q["value"], f"{src}.value")
    rec.add(f"{src}.value", f"{tgt}.value", "copy")
    comparator = code_in(q, "comparator", src, _COMPARATORS)
    unit = opt_str(q, "unit", src)
    code = opt_str(q, "code", src)
    system = opt_str(q, "system", src)
    for key, value_ in (("comparator", comparator), ("unit", unit), ("code", code), ("system", system)):
        if value_ is not None:
            rec.add(f"{src}.{key}", f"{tgt}.{key}", "copy")
    return Quantity(
        value=value,
        unit=unit,
        code=code,
        system=system,
        comparator=comparator,
    )


def fhir_range(node: object, src: str, tgt: str, rec: LineageRecorder) -> Range:
    r = obj(node, src)
    low = quantity(r["low"], f"{src}.low", f"{tgt}.low", rec) if r.get("low") is not None else None
    high = quantity(r["high"], f"{src}.high", f"{tgt}.high", rec) if r.get("high") is not None else None
    if low is None and high is None:
        raise MissingRequiredField(src, "needs low or high")
    return Range(low=low, high=high)


def attachment(node: object, src: str, tgt: str, rec: LineageRecorder) -> Attachment:
    """Attachment by reference only: inline ``data`` must be moved to blob storage (claim check) by the
    caller first — the canonical model never carries document bytes."""
    a = obj(node, src)
    if a.get("data") is not None:
        raise InvalidValue(f"{src}.data", "inline attachment data is not accepted (claim-check it first)")
    size_node = a.get("size")
    size: int | None = None
    if size_node is not None:
        if isinstance(size_node, bool) or not isinstance(size_node, int) or size_node < 0:
            raise InvalidValue(f"{src}.size", "must be a non-negative integer")
        size = size_node
    out = Attachment(
        content_type=opt_str(a, "contentType", src),
        url=opt_str(a, "url", src),
        size=size,
        title=opt_str(a, "title", src),
    )
    for fkey, ckey in (("contentType", "content_type"), ("url", "url"), ("size", "size"), ("title", "title")):
        if a.get(fkey) is not None:
            rec.add(f"{src}.{fkey}", f"{tgt}.{ckey}", "copy")
    if out.url is None:
        raise MissingRequiredField(f"{src}.url")
    return out


# --------------------------------------------------------------------------------------------- people
NAME_USES = field_values(HumanName, "use")


def human_name(node: object, src: str, tgt: str, rec: LineageRecorder) -> HumanName:
    n = obj(node, src)
    family = opt_str(n, "family", src)
    given = str_list(n, "given", src)
    prefix = str_list(n, "prefix", src)
    suffix = str_list(n, "suffix", src)
    use = code_in(n, "use", src, NAME_USES)
    name_period = period(n["period"], f"{src}.period", f"{tgt}.period", rec) if n.get("period") else None
    if family is not None:
        rec.add(f"{src}.family", f"{tgt}.family", "copy")
    for key, values in (("given", given), ("prefix", prefix), ("suffix", suffix)):
        for i in range(len(values)):
            rec.add(f"{src}.{key}[{i}]", f"{tgt}.{key}[{i}]", "copy")
    if use is not None:
        rec.add(f"{src}.use", f"{tgt}.use", "copy")
    return HumanName(
        family=family,
        given=given,
        prefix=prefix,
        suffix=suffix,
        use=use,
        period=name_period,
    )


class Resolver:
    """Finds the resource a Reference points to: ``#id`` in ``contained``, else the reference (or a Bundle
    fullUrl) in the caller's ``context``. Never fetches anything."""

    __slots__ = ("_contained", "_context")

    def __init__(self, resource: JsonObj, context: Mapping[str, JsonObj] | None) -> None:
        self._context: Mapping[str, JsonObj] = context or {}
        self._contained: dict[str, JsonObj] = {}
        for item in resource.get("contained") or ():
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                self._contained[item["id"]] = item

    def resolve(self, reference: str | None) -> JsonObj | None:
        if not reference:
            return None
        if reference.startswith("#"):
            return self._contained.get(reference[1:])
        found = self._context.get(reference)
        if found is None and "/_history/" in reference:
            found = self._context.get(reference.split("/_history/", 1)[0])
        return found


def _kind_of(ref: JsonObj, resolved: JsonObj | None, reference: str | None) -> str | None:
    if resolved is not None and isinstance(resolved.get("resourceType"), str):
        return str(resolved["resourceType"])
    ref_type = ref.get("type")
    if isinstance(ref_type, str):
        return ref_type
    if reference and "/" in reference and not reference.startswith(("urn:", "#", "http")):
        return reference.split("/", 1)[0]
    if reference and reference.startswith("http") and "/" in reference:
        parts = reference.rstrip("/").split("/")
        return parts[-2] if len(parts) >= 2 else None
    return None


def party_kind(node: object, src: str, resolver: Resolver) -> str | None:
    """The resource type a Reference names (resolved, ``type``, or the literal reference), if it says."""
    ref = obj(node, src)
    reference = opt_str(ref, "reference", src)
    kind = _kind_of(ref, resolver.resolve(reference), reference)
    if kind is None and isinstance(ref.get("identifier"), dict):
        system = ref["identifier"].get("system")
        kind = "Organization" if system == systems.ODS_ORGANIZATION_CODE else "Practitioner"
    return kind


def organization_from(resource: JsonObj, src: str, tgt: str, rec: LineageRecorder) -> Organization:
    """Organization resource -> canonical: the (first) ODS code is ``ods_code`` and is not repeated in
    ``identifiers``, which hold the organisation's other identifiers."""
    ods: str | None = None
    idents: list[Identifier] = []
    for i, node in enumerate(arr(resource, "identifier", src)):
        item = obj(node, f"{src}.identifier[{i}]")
        if item.get("value") is None:
            continue
        if ods is None and item.get("system") == systems.ODS_ORGANIZATION_CODE:
            ods = req_str(item, "value", f"{src}.identifier[{i}]")
            rec.add(f"{src}.identifier[{i}].value", f"{tgt}.ods_code", "ods-code")
            continue
        idents.append(identifier(item, f"{src}.identifier[{i}]", f"{tgt}.identifiers[{len(idents)}]", rec))
    name = opt_str(resource, "name", src)
    if name is not None:
        rec.add(f"{src}.name", f"{tgt}.name", "copy")
    return Organization(ods_code=ods, name=name, identifiers=tuple(idents))


def practitioner_from(resource: JsonObj, src: str, tgt: str, rec: LineageRecorder) -> Practitioner:
    idents = identifiers(resource, "identifier", src, f"{tgt}.identifiers", rec)
    names = arr(resource, "name", src)
    name = human_name(names[0], f"{src}.name[0]", f"{tgt}.name", rec) if names else None
    return Practitioner(identifiers=idents, name=name)


def party(
    node: object, src: str, tgt: str, rec: LineageRecorder, resolver: Resolver
) -> Practitioner | Organization | None:
    """A Reference to a Practitioner / PractitionerRole / Organization -> canonical party.

    Resolved resources give identifiers and name (lineage sources use FHIRPath ``resolve()``:
    ``Observation.performer[0].resolve().identifier[0].value``); an unresolved reference gives its logical
    ``identifier`` (an ODS system means an organisation) or, for an organisation, its display.
    ``None`` when nothing identifying can be carried (a bare literal reference that was not supplied).
    """
    ref = obj(node, src)
    reference = opt_str(ref, "reference", src)
    resolved = resolver.resolve(reference)
    kind = _kind_of(ref, resolved, reference)
    if resolved is not None and kind == "Organization":
        return organization_from(resolved, f"{src}.resolve()", tgt, rec)
    if resolved is not None and kind == "Practitioner":
        return practitioner_from(resolved, f"{src}.resolve()", tgt, rec)
    logical = opt_obj(ref, "identifier", src)
    if logical is not None:
        if kind == "Organization" or logical.get("system") == systems.ODS_ORGANIZATION_CODE:
            display = opt_str(ref, "display", src)
            if display is not None:
                rec.add(f"{src}.display", f"{tgt}.name", "copy")
            if logical.get("system") == systems.ODS_ORGANIZATION_CODE:
                ods = req_str(logical, "value", f"{src}.identifier")
                rec.add(f"{src}.identifier.value", f"{tgt}.ods_code", "ods-code")
                return Organization(ods_code=ods, name=display)
            ident = identifier(logical, f"{src}.identifier", f"{tgt}.identifiers[0]", rec)
            return Organization(name=display, identifiers=(ident,))
        return Practitioner(
            identifiers=(identifier(logical, f"{src}.identifier", f"{tgt}.identifiers[0]", rec),)
        )
    display = opt_str(ref, "display", src)
    if kind == "Organization" and display is not None:
        rec.add(f"{src}.display", f"{tgt}.name", "copy")
        return Organization(name=display)
    return None


def parties(
    parent: JsonObj, key: str, src: str, tgt: str, rec: LineageRecorder, resolver: Resolver
) -> tuple[Practitioner | Organization, ...]:
    out: list[Practitioner | Organization] = []
    for i, item in enumerate(arr(parent, key, src)):
        found = party(item, f"{src}.{key}[{i}]", f"{tgt}[{len(out)}]", rec, resolver)
        if found is not None:
            out.append(found)
    return tuple(out)


def notes(parent: JsonObj, src: str, tgt: str, rec: LineageRecorder) -> tuple[str, ...]:
    out: list[str] = []
    for i, item in enumerate(arr(parent, "note", src)):
        text = req_str(obj(item, f"{src}.note[{i}]"), "text", f"{src}.note[{i}]")
        rec.add(f"{src}.note[{i}].text", f"{tgt}[{len(out)}]", "copy")
        out.append(text)
    return tuple(out)
