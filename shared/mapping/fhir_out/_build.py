"""Building blocks of the canonical -> FHIR mapping: the bundle under construction, lineage, datatypes.

Every helper takes ``lin`` (a :class:`Lin` scoped to one resource, or ``None`` when lineage is off - the
hot path) and the canonical ``src`` / FHIR ``dst`` paths of the element it writes. Resources are plain
dicts in FHIR JSON key order; decimals stay :class:`~decimal.Decimal` (see :mod:`shared.fhir.json`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from shared.canonical.model import (
    Address,
    Attachment,
    ClinicalDateTime,
    Coded,
    Coding,
    ContactPoint,
    DataAbsent,
    HumanName,
    Identifier,
    Period,
    Quantity,
    Range,
)
from shared.fhir import profiles
from shared.mapping.lineage import LineageEntry
from shared.mapping.timeutil import to_fhir, to_fhir_instant
from shared.terminology.v2tables import is_table_code

JSON = dict[str, Any]

RULE_COPY = "copy"
RULE_TIME = "ClinicalDateTime -> FHIR dateTime at recorded precision, UK offset (timeutil.to_fhir)"
RULE_INSTANT = "ClinicalDateTime -> FHIR instant (timeutil.to_fhir_instant)"
RULE_ABSENT = "DataAbsent -> data-absent-reason extension"
RULE_PROFILE = "constant: UK Core profile for the resource type"
RULE_ID = "derived: deterministic id (shared.fhir.ids, uuid5 of type|system|value)"
RULE_REF = "derived: reference to the entry mapped from the source"


class Lin:
    """Lineage sink scoped to one resource (target paths prefixed ``<Type>.``, ``resource`` = fullUrl)."""

    __slots__ = ("prefix", "resource", "sink")

    def __init__(self, sink: list[LineageEntry], prefix: str, resource: str) -> None:
        self.sink = sink
        self.prefix = prefix
        self.resource = resource

    def add(
        self,
        source: str | None,
        target: str,
        rule: str = RULE_COPY,
        *,
        table: str | None = None,
        table_version: str | None = None,
    ) -> None:
        self.sink.append(
            LineageEntry(source, self.prefix + target, rule, table, table_version, self.resource)
        )


# ------------------------------------------------------------------------------------- fields
# A builder is a list of field assignments: each writes the element and, when lineage is on (``lin`` is
# not ``None``), records where it came from. With lineage off (the hot path) only the value is written.
T = TypeVar("T")


def trace(lin: Lin | None, source: str | None, target: str, rule: str = RULE_COPY) -> None:
    """Record ``source`` -> ``target`` when lineage is on (``source`` ``None``: a constant or derived
    value, ``rule`` says which)."""
    if lin is not None:
        lin.add(source, target, rule)


def set_field(
    res: JSON,
    key: str,
    value: Any,
    lin: Lin | None,
    source: str | None,
    rule: str = RULE_COPY,
    *,
    at: str = "",
) -> None:
    """``res[key] = value``, traced from ``source`` to ``<at><key>`` (``at``: the path of ``res`` within
    the resource, for a nested element)."""
    res[key] = value
    if lin is not None:
        lin.add(source, at + key, rule)


def set_opt(
    res: JSON,
    key: str,
    value: Any,
    lin: Lin | None,
    source: str | None,
    rule: str = RULE_COPY,
    *,
    at: str = "",
) -> None:
    """:func:`set_field` when there is a value (``None`` writes nothing)."""
    if value is not None:
        res[key] = value
        if lin is not None:
            lin.add(source, at + key, rule)


def set_built(res: JSON, key: str, value: Any) -> None:
    """``res[key] = value`` unless the built element is ``None`` or empty (its parts traced themselves)."""
    if value:
        res[key] = value


def set_date_time(res: JSON, key: str, t: ClinicalDateTime | None, lin: Lin | None, source: str) -> None:
    """``res[key]`` = the FHIR dateTime of ``t`` (nothing when ``None``)."""
    if t is not None:
        res[key] = date_time(t, lin, source, key)


def set_codeable(res: JSON, key: str, c: Coded | None, lin: Lin | None, source: str) -> None:
    """``res[key]`` = the CodeableConcept of ``c`` (nothing when ``None``)."""
    if c is not None:
        res[key] = codeable(c, lin, source, key)


def each(
    build: Callable[[T, Lin | None, str, str], JSON],
    items: Sequence[T],
    lin: Lin | None,
    src: str,
    dst: str,
) -> list[JSON]:
    """``build`` over ``items``: the i-th from ``<src>[i]`` to ``<dst>[i]`` (no paths when lineage is off)."""
    if lin is None:
        return [build(x, None, "", "") for x in items]
    return [build(x, lin, f"{src}[{i}]", f"{dst}[{i}]") for i, x in enumerate(items)]


def texts(items: Sequence[str], lin: Lin | None, src: str, dst: str) -> list[JSON]:
    """Annotations / text-only elements ``{"text": t}``: the i-th from ``<src>[i]`` to ``<dst>[i].text``."""
    if lin is not None:
        for k in range(len(items)):
            lin.add(f"{src}[{k}]", f"{dst}[{k}].text")
    return [{"text": t} for t in items]


def fixed_concept(
    system: str,
    code: str,
    lin: Lin | None,
    source: str | None,
    dst: str,
    system_rule: str,
    rule: str = RULE_COPY,
) -> JSON:
    """A CodeableConcept of one coding in a fixed FHIR code system (the code chosen from ``source``)."""
    if lin is not None:
        lin.add(None, f"{dst}.coding[0].system", system_rule)
        lin.add(source, f"{dst}.coding[0].code", rule)
    return {"coding": [fixed_coding(system, code)]}


# ------------------------------------------------------------------------------------------- search
_QUERY_SAFE = re.compile(r"[A-Za-z0-9:/._~@!*'()-]*")


def _token_part(text: str) -> str:
    """Escape a token search part (FHIR search: ``\\`` ``|`` ``,`` ``$`` are backslash-escaped) and
    percent-encode what would break a query string; URI characters in systems stay readable."""
    if _QUERY_SAFE.fullmatch(text):
        return text
    if "\\" in text or "|" in text or "," in text or "$" in text:
        text = text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")
    return quote(text, safe=":/.-_~@!*'()")


def identifier_query(system: str, value: str) -> str:
    """``identifier=<system>|<value>`` for ``ifNoneExist`` / conditional update URLs."""
    return f"identifier={_token_part(system)}|{_token_part(value)}"


# ---------------------------------------------------------------------------------------- datatypes
def absent_extension(reason: str) -> list[JSON]:
    return [{"url": profiles.EXT_DATA_ABSENT_REASON, "valueCode": reason}]


def coding(c: Coding, lin: Lin | None, src: str, dst: str) -> JSON:
    out: JSON = {}
    if c.system is not None:
        out["system"] = c.system
    if c.version is not None:
        out["version"] = c.version
    out["code"] = c.code
    if c.display is not None:
        out["display"] = c.display
    if lin is not None:
        for key in out:
            lin.add(f"{src}.{key}", f"{dst}.{key}")
    if c.user_selected is not None:
        out["userSelected"] = c.user_selected
        if lin is not None:
            lin.add(f"{src}.user_selected", f"{dst}.userSelected")
    return out


def codeable(c: Coded, lin: Lin | None, src: str, dst: str) -> JSON:
    """Concept -> CodeableConcept (codings + text); DataAbsent -> a CodeableConcept carrying the
    data-absent-reason extension and, when the source code could not be mapped, that source coding."""
    if isinstance(c, DataAbsent):
        out: JSON = {"extension": absent_extension(c.reason.value)}
        if lin is not None:
            lin.add(f"{src}.reason", f"{dst}.extension[0]", RULE_ABSENT)
        if c.source is not None:
            out["coding"] = [coding(c.source, lin, f"{src}.source", f"{dst}.coding[0]")]
        return out
    out = {}
    if c.codings:
        if lin is None:
            out["coding"] = [coding(cd, None, "", "") for cd in c.codings]
        else:
            out["coding"] = [
                coding(cd, lin, f"{src}.codings[{i}]", f"{dst}.coding[{i}]") for i, cd in enumerate(c.codings)
            ]
    if c.text:
        out["text"] = c.text
        if lin is not None:
            lin.add(f"{src}.text", f"{dst}.text")
    return out


def fixed_coding(system: str, code: str, display: str | None = None) -> JSON:
    out: JSON = {"system": system, "code": code}
    if display is not None:
        out["display"] = display
    return out


def identifier(i: Identifier, lin: Lin | None, src: str, dst: str) -> JSON:
    out: JSON = {}
    if i.type is not None and is_table_code("0203", i.type):
        out["type"] = {"coding": [{"system": profiles.IDENTIFIER_TYPE_SYSTEM, "code": i.type}]}
        if lin is not None:
            lin.add(None, f"{dst}.type.coding[0].system", "constant: v2-0203 identifier type system")
            lin.add(f"{src}.type", f"{dst}.type.coding[0].code")
    elif i.type is not None:
        # a sender's own CX.5 type (MEDREC, CONS...) is not a v2-0203 code: kept as text, no system claimed
        out["type"] = {"text": i.type}
        if lin is not None:
            lin.add(f"{src}.type", f"{dst}.type.text", "UNMAPPED local identifier type: not a v2-0203 code")
    out["system"] = i.system
    out["value"] = i.value
    if i.assigner is not None:
        out["assigner"] = {"display": i.assigner}
    if lin is not None:
        lin.add(f"{src}.system", f"{dst}.system")
        lin.add(f"{src}.value", f"{dst}.value")
        if i.assigner is not None:
            lin.add(f"{src}.assigner", f"{dst}.assigner.display")
    return out


def identifier_with_type(i: Identifier, type_code: str, lin: Lin | None, src: str, dst: str) -> JSON:
    """An identifier whose v2-0203 type is implied by the canonical field it came from (PLAC, FILL)."""
    if i.type is not None:
        return identifier(i, lin, src, dst)
    out = identifier(i.model_copy(update={"type": type_code}), None, "", "")
    if lin is not None:
        lin.add(None, f"{dst}.type.coding[0].system", "constant: v2-0203 identifier type system")
        lin.add(src, f"{dst}.type.coding[0].code", f"derived: {type_code} from the canonical field")
        lin.add(f"{src}.system", f"{dst}.system")
        lin.add(f"{src}.value", f"{dst}.value")
        if i.assigner is not None:
            lin.add(f"{src}.assigner", f"{dst}.assigner.display")
    return out


def date_time(t: ClinicalDateTime, lin: Lin | None, src: str, dst: str) -> str:
    if lin is not None:
        lin.add(src, dst, RULE_TIME)
    return to_fhir(t)


_INSTANT_PRECISIONS = frozenset({"minute", "second", "millisecond"})


def instant(t: ClinicalDateTime, lin: Lin | None, src: str, dst: str) -> str | None:
    """FHIR instant, or ``None`` when the time is known only to the hour or coarser (an instant needs
    seconds: padding ``2026-07`` to midnight on the 1st would invent a time)."""
    if t.precision not in _INSTANT_PRECISIONS:
        return None
    if lin is not None:
        lin.add(src, dst, RULE_INSTANT)
    return to_fhir_instant(t)


def period(p: Period, lin: Lin | None, src: str, dst: str, *, keep_end: bool = True) -> JSON:
    out: JSON = {}
    if p.start is not None:
        out["start"] = date_time(p.start, lin, f"{src}.start", f"{dst}.start")
    if keep_end and p.end is not None:
        out["end"] = date_time(p.end, lin, f"{src}.end", f"{dst}.end")
    return out


def human_name(n: HumanName, lin: Lin | None, src: str, dst: str) -> JSON:
    out: JSON = {}
    if n.use is not None:
        out["use"] = n.use
    if n.family is not None:
        out["family"] = n.family
    if n.given:
        out["given"] = list(n.given)
    if n.prefix:
        out["prefix"] = list(n.prefix)
    if n.suffix:
        out["suffix"] = list(n.suffix)
    if n.period is not None:
        p = period(n.period, lin, f"{src}.period", f"{dst}.period")
        if p:
            out["period"] = p
    if lin is not None:
        if n.use is not None:
            lin.add(f"{src}.use", f"{dst}.use")
        if n.family is not None:
            lin.add(f"{src}.family", f"{dst}.family")
        for key in ("given", "prefix", "suffix"):
            for j in range(len(getattr(n, key))):
                lin.add(f"{src}.{key}[{j}]", f"{dst}.{key}[{j}]")
    return out


def display_name(n: HumanName) -> str | None:
    parts = [*n.prefix, *n.given, *([n.family] if n.family else []), *n.suffix]
    return " ".join(parts) if parts else None


def address(a: Address, lin: Lin | None, src: str, dst: str) -> JSON:
    out: JSON = {}
    if a.use is not None:
        out["use"] = a.use
    if a.type is not None:
        out["type"] = a.type
    if a.lines:
        out["line"] = list(a.lines)
    if a.city is not None:
        out["city"] = a.city
    if a.district is not None:
        out["district"] = a.district
    if a.postal_code is not None:
        out["postalCode"] = a.postal_code
    if a.country is not None:
        out["country"] = a.country
    if a.period is not None:
        p = period(a.period, lin, f"{src}.period", f"{dst}.period")
        if p:
            out["period"] = p
    if lin is not None:
        for key, attr in (
            ("use", "use"),
            ("type", "type"),
            ("city", "city"),
            ("district", "district"),
            ("postalCode", "postal_code"),
            ("country", "country"),
        ):
            if key in out:
                lin.add(f"{src}.{attr}", f"{dst}.{key}")
        for j in range(len(a.lines)):
            lin.add(f"{src}.lines[{j}]", f"{dst}.line[{j}]")
    return out


def contact_point(c: ContactPoint, lin: Lin | None, src: str, dst: str) -> JSON:
    out: JSON = {"system": c.system, "value": c.value}
    if c.use is not None:
        out["use"] = c.use
    if lin is not None:
        for key in out:
            lin.add(f"{src}.{key}", f"{dst}.{key}")
    return out


def quantity(q: Quantity, lin: Lin | None, src: str, dst: str, *, simple: bool = False) -> JSON:
    """Quantity; ``simple`` (SimpleQuantity: ranges, reference ranges) refuses a comparator."""
    out: JSON = {"value": q.value}
    if q.comparator is not None and not simple:
        out["comparator"] = q.comparator
    if q.unit is not None:
        out["unit"] = q.unit
    if q.system is not None:
        out["system"] = q.system
    if q.code is not None:
        out["code"] = q.code
    if lin is not None:
        for key in out:
            lin.add(f"{src}.{key}", f"{dst}.{key}")
    return out


def range_(r: Range, lin: Lin | None, src: str, dst: str) -> JSON:
    out: JSON = {}
    if r.low is not None:
        out["low"] = quantity(r.low, lin, f"{src}.low", f"{dst}.low", simple=True)
    if r.high is not None:
        out["high"] = quantity(r.high, lin, f"{src}.high", f"{dst}.high", simple=True)
    return out


def attachment(a: Attachment, lin: Lin | None, src: str, dst: str) -> JSON:
    """Attachment. ``sha256`` is not written: R4 ``Attachment.hash`` is a base64 SHA-1."""
    out: JSON = {}
    if a.content_type is not None:
        out["contentType"] = a.content_type
    if a.url is not None:
        out["url"] = a.url
    if a.size is not None:
        out["size"] = a.size
    if a.title is not None:
        out["title"] = a.title
    if lin is not None:
        for key, attr in (
            ("contentType", "content_type"),
            ("url", "url"),
            ("size", "size"),
            ("title", "title"),
        ):
            if key in out:
                lin.add(f"{src}.{attr}", f"{dst}.{key}")
    return out
