"""ORU^R01: OBR groups -> :class:`ResultReport`, their OBX -> :class:`Observation` (rules in the package
docstring). Grouping is structural: an OBR opens a report (taking the ORC just before it), OBX and NTE
after it belong to it until the next ORC/OBR; OBX after an SPM are specimen observations (not mapped)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal, cast

from shared.canonical.model import (
    Attachment,
    ClinicalDateTime,
    Coded,
    Concept,
    DataAbsent,
    Identifier,
    Observation,
    ObservationValue,
    Organization,
    Practitioner,
    Quantity,
    Range,
    ReferenceRange,
    ResultReport,
    Specimen,
)
from shared.hl7v2 import Segment
from shared.identifiers import systems as id_systems
from shared.mapping._construct import builder
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.hl7v2_in._context import (
    Ctx,
    _time,
    new_coding,
    new_concept,
    new_human_name,
    new_identifier,
    new_practitioner,
    remember,
    val,
)
from shared.mapping.hl7v2_in.rules import concept_from, outcome_kind
from shared.terminology import MappedCode, Unmapped, map_code
from shared.terminology.systems import OBSERVATION_CATEGORY, UCUM
from shared.terminology.ucum import ucum_code

__all__ = ["Group", "group_segments", "map_reports", "notes_of"]

# Trusted constructors (shared.mapping._construct): decimals are Decimal, comparators come from
# _SN_COMPARATORS, statuses from concept maps checked against the literals when the rules compile.
_new_quantity = builder(Quantity)
_new_range = builder(Range)
_new_reference_range = builder(ReferenceRange)
_new_observation = builder(Observation)
_new_report = builder(ResultReport)
_new_specimen = builder(Specimen)

#: OBR-24 (diagnostic service section) -> the category of the report's results (laboratory, imaging...).
#: A derived classification, not a source code: a section the map does not list (or no OBR-24) leaves
#: Observation.category empty in strict mode too - never "laboratory" for any result.
OBSERVATION_CATEGORY_MAP = "v2-0074-to-observation-category"

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_COMPARATOR = re.compile(r"(<=|>=|<|>)\s*")
_RANGE = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*-\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*")
_SN_COMPARATORS: dict[str, Literal["<", "<=", ">=", ">"] | None] = {
    "": None,
    "=": None,
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
_ENCODED_DATA = frozenset({"BASE64", "HEX"})
#: Order detail segments other than OBR (pharmacy, dietary, supply orders): recorded so an order group
#: without an OBR can say what it was.
_OTHER_ORDER_DETAIL = frozenset({"RXO", "RXE", "ODS", "ODT", "RQD", "RQ1"})

Comparator = Literal["<", "<=", ">=", ">"]


@dataclass
class Group:
    """One OBR (or, for orders, ORC) group: the segments with their message-wide occurrence numbers."""

    orc: tuple[Segment, int] | None = None
    obr: tuple[Segment, int] | None = None
    notes: list[tuple[Segment, int]] = field(default_factory=list)
    #: OBX with its own NTE notes.
    results: list[tuple[Segment, int, list[tuple[Segment, int]]]] = field(default_factory=list)
    #: First non-OBR order detail segment (RXO, ODS, RQD...) in the group, e.g. ``"RXO(1)"``.
    other_detail: str | None = None
    #: First TQ1 (timing/quantity, v2.5+) of the group.
    tq1: tuple[Segment, int] | None = None
    #: SPM segments (v2.5+ specimens) of the group.
    specimens: list[tuple[Segment, int]] = field(default_factory=list)


@dataclass(frozen=True)
class _ReportContext:
    """What a report's results take from their OBR: category (OBR-24), issued (OBR-22), and the
    principal result interpreter (OBR-32) as the performer of a result whose OBX names none."""

    category: Concept | None
    category_src: str
    issued: ClinicalDateTime | None
    issued_src: str
    performer: tuple[Practitioner, ...]
    performer_src: str


def group_segments(ctx: Ctx, *, orders: bool) -> list[Group]:
    """Split the message into order/observation groups.

    Results (``orders=False``): an OBR starts a group and takes the ORC just before it. Orders
    (``orders=True``): an ORC starts a group, the OBR after it joins it (an OBR without an ORC starts its
    own). NTE after the OBR/ORC and before any OBX are the group's notes; NTE after an OBX are that
    result's. OBX outside a group (e.g. ADT-style OBX after PID) and OBX after an SPM are not mapped.
    """
    groups: list[Group] = []
    current: Group | None = None
    pending_orc: tuple[Segment, int] | None = None
    in_specimen = False
    counts: dict[str, int] = {}
    for seg in ctx.msg.segments:
        name = seg.name
        occ = counts[name] = counts.get(name, 0) + 1
        if name == "ORC":
            if orders:
                current = Group(orc=(seg, occ))
                groups.append(current)
            else:
                pending_orc = (seg, occ)
                current = None
            in_specimen = False
        elif name == "OBR":
            if orders and current is not None and current.obr is None:
                current.obr = (seg, occ)
            else:
                current = Group(orc=None if orders else pending_orc, obr=(seg, occ))
                groups.append(current)
                pending_orc = None
            in_specimen = False
        elif name in _OTHER_ORDER_DETAIL:
            if current is not None and current.other_detail is None:
                current.other_detail = f"{name}({occ})"
        elif name == "TQ1":
            if current is not None and current.tq1 is None and not in_specimen:
                current.tq1 = (seg, occ)
        elif name == "SPM":
            in_specimen = True
            if current is not None:
                current.specimens.append((seg, occ))
        elif name == "OBX":
            if current is not None and not in_specimen:
                current.results.append((seg, occ, []))
        elif name == "NTE" and current is not None and not in_specimen:
            if current.results:
                current.results[-1][2].append((seg, occ))
            else:
                current.notes.append((seg, occ))
    return groups


def notes_of(ctx: Ctx, notes: list[tuple[Segment, int]], tgt: str) -> tuple[str, ...]:
    """NTE-3 (all repetitions, one line each) of each NTE -> one note per NTE; empty NTE skipped."""
    out: list[str] = []
    for seg, occ in notes:
        text = "\n".join(seg.repetitions(3)).strip("\n")
        if not text.strip():
            continue
        if ctx.lin:
            ctx.add(f"NTE({occ})-3", f"{tgt}[{len(out)}]", "nte-comment")
        out.append(text)
    return tuple(out)


def _first(
    ctx: Ctx, pairs: tuple[tuple[tuple[Segment, int] | None, int], ...], tgt: str, id_type: str
) -> Identifier | None:
    for pair, n in pairs:
        if pair is None:
            continue
        seg, occ = pair
        ident = ctx.ei(seg, n, f"{seg.name}({occ})-{n}", tgt, id_type)
        if ident is not None:
            return ident
    return None


def map_reports(ctx: Ctx) -> tuple[ResultReport, ...]:
    reports: list[ResultReport] = []
    for group in group_segments(ctx, orders=False):
        reports.append(_report(ctx, group, f"reports[{len(reports)}]"))
    return tuple(reports)


def _report(ctx: Ctx, group: Group, tgt: str) -> ResultReport:
    assert group.obr is not None
    obr, occ = group.obr
    src = f"OBR({occ})"
    r = ctx.rules
    code = ctx.coded(r.rule("report.code"), obr, 4, f"{src}-4", f"{tgt}.code")
    if code is None:
        raise MissingRequiredField(f"{src}-4", "a result report needs a code")
    status = ctx.code(r.rule("report.status"), obr, 25, f"{src}-25", f"{tgt}.status")
    placer = _first(ctx, ((group.obr, 2), (group.orc, 2)), f"{tgt}.placer_order_number", r.placer_type)
    filler = _first(ctx, ((group.obr, 3), (group.orc, 3)), f"{tgt}.filler_order_number", r.filler_type)
    effective = ctx.time(obr, 7, f"{src}-7")
    issued = ctx.time(obr, 22, f"{src}-22")
    if ctx.lin:
        if effective is not None:
            ctx.add(f"{src}-7", f"{tgt}.effective", "obr-observation-date-time")
        if issued is not None:
            ctx.add(f"{src}-22", f"{tgt}.issued", "obr-results-reported / status change")
    category = ctx.coded(r.rule("report.category"), obr, 24, f"{src}-24", f"{tgt}.category", simple=True)
    performer = _interpreters(ctx, obr, f"{src}-32", f"{tgt}.performer")
    ordering = ctx.xcns(obr, 16, f"{src}-16", f"{tgt}.ordering_providers")
    shared = _ReportContext(
        category=_observation_category(ctx, obr),
        category_src=f"{src}-24",
        issued=issued,
        issued_src=f"{src}-22",
        performer=performer,
        performer_src=f"{src}-32",
    )
    results = tuple(
        _observation(ctx, obx, o_occ, nte, effective, f"{src}-7", f"{tgt}.results[{i}]", shared)
        for i, (obx, o_occ, nte) in enumerate(group.results)
    )
    specimens = _specimens(ctx, group, obr, src, f"{tgt}.specimens")
    return _new_report(
        placer_order_number=placer,
        filler_order_number=filler,
        status=status,  # a Literal: checked against the map's targets when rules compile
        category=category,
        code=code,
        effective=effective,
        issued=issued,
        performer=performer,
        results=results,
        notes=notes_of(ctx, group.notes, f"{tgt}.notes"),
        specimens=specimens,
        ordering_providers=tuple(ordering),
    )


def _observation(
    ctx: Ctx,
    obx: Segment,
    occ: int,
    notes: list[tuple[Segment, int]],
    group_time: ClinicalDateTime | None,
    group_time_src: str,
    tgt: str,
    shared: _ReportContext,
) -> Observation:
    src = f"OBX({occ})"
    r = ctx.rules
    code = ctx.coded(r.rule("observation.code"), obx, 3, f"{src}-3", f"{tgt}.code")
    if code is None:
        raise MissingRequiredField(f"{src}-3", "a result needs an observation identifier")
    status = ctx.code(r.rule("observation.status"), obx, 11, f"{src}-11", f"{tgt}.status")
    value = _value(ctx, obx, src, f"{tgt}.value")
    interpretation: list[Coded] = []
    rule = r.rule("observation.interpretation")
    for rep in range(1, obx.repetition_count(8) + 1):
        flag = ctx.coded(
            rule, obx, 8, f"{src}-8[{rep}]", f"{tgt}.interpretation[{len(interpretation)}]", rep=rep
        )
        if flag is not None:
            interpretation.append(flag)
    effective = ctx.time(obx, 14, f"{src}-14")
    if effective is not None:
        if ctx.lin:
            ctx.add(f"{src}-14", f"{tgt}.effective", "obx-date-time-of-observation")
    elif group_time is not None:
        effective = group_time
        if ctx.lin:
            ctx.add(group_time_src, f"{tgt}.effective", "no OBX-14: the report's observation time (OBR-7)")
    performer: list[Practitioner | Organization] = list(ctx.xcns(obx, 16, f"{src}-16", f"{tgt}.performer"))
    org = ctx.xon(obx, 23, f"{src}-23", f"{tgt}.performer[{len(performer)}]")
    if org is not None:
        performer.append(org)
    if not performer and shared.performer:
        performer.extend(shared.performer)
        if ctx.lin:
            ctx.add(
                shared.performer_src, f"{tgt}.performer", "no OBX-16/OBX-23: the principal result interpreter"
            )
    if shared.category is not None and ctx.lin:
        ctx.add(
            shared.category_src,
            f"{tgt}.category",
            f"diagnostic service section via {OBSERVATION_CATEGORY_MAP}",
        )
    if shared.issued is not None and ctx.lin:
        ctx.add(shared.issued_src, f"{tgt}.issued", "the report's results reported / status change time")
    sequence = None
    set_id = val(obx, 1)
    if set_id is not None and set_id.isdigit():
        sequence = int(set_id)
        if ctx.lin:
            ctx.add(f"{src}-1", f"{tgt}.sequence", "obx-set-id")
    sub_id = val(obx, 4)
    if sub_id is not None and ctx.lin:
        ctx.add(f"{src}-4", f"{tgt}.sub_id", "obx-observation-sub-id")
    return _new_observation(  # never a data-absent reason here: Observation's own rule holds
        status=status,  # a Literal: checked against the map's targets when rules compile
        category=shared.category,
        code=code,
        value=value,
        interpretation=tuple(interpretation),
        reference_range=_reference_range(ctx, obx, src, f"{tgt}.reference_range"),
        effective=effective,
        issued=shared.issued,
        performer=tuple(performer),
        notes=notes_of(ctx, notes, f"{tgt}.notes"),
        sequence=sequence,
        sub_id=sub_id,
    )


def _observation_category(ctx: Ctx, obr: Segment) -> Concept | None:
    """OBR-24 through :data:`OBSERVATION_CATEGORY_MAP`: the observation-category coding alone (the
    section code stays on the report); ``None`` for a section the map does not call lab or imaging."""
    section = val(obr, 24)
    if section is None:
        return None
    key = ("observation-category", section)
    hit = ctx.rules.memo.get(key)
    if hit is not None:
        return hit if isinstance(hit, Concept) else None
    out = map_code(
        OBSERVATION_CATEGORY_MAP, section, policy=Unmapped.DATA_ABSENT, field="observation.category"
    )
    value: Concept | bool = False
    if isinstance(out, MappedCode) and out.target.system == OBSERVATION_CATEGORY:
        t = out.target
        value = new_concept(codings=(new_coding(system=t.system, code=t.code, display=t.display),))
    remember(ctx.rules.memo, key, value)
    return value if isinstance(value, Concept) else None


def _interpreters(ctx: Ctx, obr: Segment, src: str, tgt: str) -> tuple[Practitioner, ...]:
    """OBR-32 principal result interpreter (NDL: its first component is a CNN in sub-components - id,
    family, given, middle, suffix, prefix, degree, source table, assigning authority) -> Practitioner. The
    id's system: the assigning authority's URI (GMC...), else the sending facility, as for XCN."""
    out: list[Practitioner] = []
    for rep in range(1, obr.repetition_count(32) + 1):

        def part(sub: int, rep: int = rep) -> str | None:
            return val(obr, 32, rep, 1, sub)

        rsrc, rtgt = f"{src}[{rep}].1", f"{tgt}[{len(out)}]"
        identifiers: tuple[Identifier, ...] = ()
        ident_value = part(1)
        if ident_value is not None:
            ns = part(9)
            system = ctx.authority_system(ns, part(10), part(11), id_type=id_systems.PRACTITIONER)
            system_src = f"{rsrc}.9"
            if system is None:  # as for XCN: the sending facility's practitioner system
                system, system_src = ctx.facility(rsrc, id_systems.PRACTITIONER)
            identifiers = (new_identifier(system=system, value=ident_value, assigner=ns),)
            if ctx.lin:
                ctx.add(f"{rsrc}.1", f"{rtgt}.identifiers[0].value", "cnn-id")
                ctx.add(system_src, f"{rtgt}.identifiers[0].system", ctx.system_rule(system))
                if ns is not None:
                    ctx.add(f"{rsrc}.9", f"{rtgt}.identifiers[0].assigner", "cnn-assigning-authority")
        family, first, middle = part(2), part(3), part(4)
        given = tuple(x for x in (first,) if x is not None) + (tuple(middle.split()) if middle else ())
        prefix = tuple(x for x in (part(6),) if x is not None)
        suffix = tuple(x for x in (part(5), part(7)) if x is not None)
        name = None
        if family is not None or given:
            name = new_human_name(family=family, given=given, prefix=prefix, suffix=suffix)
            if ctx.lin:
                if family is not None:
                    ctx.add(f"{rsrc}.2", f"{rtgt}.name.family", "cnn-family")
                if given:
                    ctx.add(f"{rsrc}.3", f"{rtgt}.name.given", "cnn-given (+ middle names)")
                if prefix:
                    ctx.add(f"{rsrc}.6", f"{rtgt}.name.prefix", "cnn-prefix")
                if suffix:
                    ctx.add(f"{rsrc}.5", f"{rtgt}.name.suffix", "cnn-suffix / degree")
        if identifiers or name is not None:
            out.append(new_practitioner(identifiers=identifiers, name=name))
    return tuple(out)


# ------------------------------------------------------------------------------------------ specimens
def _specimens(ctx: Ctx, group: Group, obr: Segment, obr_src: str, tgt: str) -> tuple[Specimen, ...]:
    """SPM segments (v2.5+) of the group, else OBR-15 (v2.3/v2.4 specimen source) with OBR-7 as the
    collection time and OBR-14 as the received time."""
    out: list[Specimen] = []
    for spm, occ in group.specimens:
        specimen = _spm(ctx, spm, occ, len(out) + 1, f"{tgt}[{len(out)}]")
        if specimen is not None:
            out.append(specimen)
    if out or group.specimens:
        return tuple(out)
    specimen = _obr_specimen(ctx, obr, obr_src, f"{tgt}[0]")
    return () if specimen is None else (specimen,)


def _component_time(ctx: Ctx, seg: Segment, n: int, comp: int, src: str) -> ClinicalDateTime | None:
    raw = seg.get(n, 1, comp)
    if raw is None or not raw.strip() or raw.strip() == '""':
        return None
    return _time(raw.strip(), src)


def _spm(ctx: Ctx, spm: Segment, occ: int, position: int, tgt: str) -> Specimen | None:
    """SPM: id SPM-2 (EIP: placer EI then filler EI, in sub-components), type SPM-4 through
    ``specimen.type``, collected SPM-17.1, received SPM-18, sequence SPM-1."""
    src = f"SPM({occ})"
    identifiers: list[Identifier] = []
    for comp in (1, 2):
        value = val(spm, 2, 1, comp, 1)
        if value is None:
            continue
        ns = val(spm, 2, 1, comp, 2)
        esrc = f"{src}-2.{comp}"
        system = ctx.authority_system(ns, val(spm, 2, 1, comp, 3), val(spm, 2, 1, comp, 4))
        system_src = f"{esrc}.2"
        if system is None:
            system, system_src = ctx.application(esrc)
        ident = new_identifier(system=system, value=value, assigner=ns)
        if ident in identifiers:
            continue
        if ctx.lin:
            t = f"{tgt}.identifiers[{len(identifiers)}]"
            ctx.add(f"{esrc}.1", f"{t}.value", "spm-specimen-id (placer, then filler)")
            ctx.add(system_src, f"{t}.system", ctx.system_rule(system))
            if ns is not None:
                ctx.add(f"{esrc}.2", f"{t}.assigner", "ei-namespace")
        identifiers.append(ident)
    kind = ctx.coded(ctx.rules.rule("specimen.type"), spm, 4, f"{src}-4", f"{tgt}.type")
    collected = _component_time(ctx, spm, 17, 1, f"{src}-17.1")
    received = ctx.time(spm, 18, f"{src}-18")
    set_id = val(spm, 1)
    if not identifiers and kind is None and collected is None and received is None:
        return None
    sequence = int(set_id) if set_id is not None and set_id.isdigit() else position
    if ctx.lin:
        if collected is not None:
            ctx.add(f"{src}-17.1", f"{tgt}.collected", "spm-specimen-collection-date/time (start)")
        if received is not None:
            ctx.add(f"{src}-18", f"{tgt}.received", "spm-specimen-received-date/time")
        if sequence == position:
            ctx.add(None, f"{tgt}.sequence", "derived: position of the SPM in its report (no SPM-1)")
        else:
            ctx.add(f"{src}-1", f"{tgt}.sequence", "spm-set-id")
    return _new_specimen(
        identifiers=tuple(identifiers), type=kind, collected=collected, received=received, sequence=sequence
    )


def _obr_specimen(ctx: Ctx, obr: Segment, src: str, tgt: str) -> Specimen | None:
    """OBR-15 specimen source (v2.3/v2.4; its first component a CE in sub-components) -> a Specimen with
    OBR-7 (collected) and OBR-14 (received). Nothing when OBR-15 names no specimen."""
    code, text, system_name = val(obr, 15, 1, 1, 1), val(obr, 15, 1, 1, 2), val(obr, 15, 1, 1, 3)
    if code is None and text is None:
        return None
    rule = ctx.rules.rule("specimen.source")
    kind: Coded
    if code is None:
        kind = new_concept(text=text)
        if ctx.lin:
            ctx.add_coded(f"{src}-15.1.2", f"{tgt}.type.text", rule, "text only")
    else:
        system = ctx.coding_system(system_name) or rule.source_system
        out = rule.outcome(code, system, f"{src}-15.1")
        kind = concept_from(out, new_coding(system=system, code=code, display=text), text)
        if ctx.lin:
            ctx.add_coded(f"{src}-15.1.1", f"{tgt}.type", rule, outcome_kind(out))
            if text is not None and isinstance(kind, Concept):
                ctx.add_coded(f"{src}-15.1.2", f"{tgt}.type.text", rule, "original text")
    collected = ctx.time(obr, 7, f"{src}-7")
    received = ctx.time(obr, 14, f"{src}-14")
    if ctx.lin:
        if collected is not None:
            ctx.add(f"{src}-7", f"{tgt}.collected", "obr-observation-date/time: the collection time")
        if received is not None:
            ctx.add(f"{src}-14", f"{tgt}.received", "obr-specimen-received-date/time")
    if ctx.lin:
        ctx.add(None, f"{tgt}.sequence", "derived: the report's only specimen")
    return _new_specimen(type=kind, collected=collected, received=received, sequence=1)


# ---------------------------------------------------------------------------------------------- values
def _value(ctx: Ctx, obx: Segment, src: str, tgt: str) -> ObservationValue | None:
    reps = obx.repetition_count(5)
    vtype = val(obx, 2)
    if reps == 0 or (reps == 1 and not obx.raw_element(5, 1).strip(" ^&")):
        return None
    if vtype is None:
        raise MissingRequiredField(f"{src}-2", "a result value needs its value type")
    handler = ctx.rules.value_types.get(vtype.upper())
    if handler is None:
        raise InvalidValue(f"{src}-2", "observation value type not supported", error_code="103")
    if handler == "text":
        text = "\n".join(x for x in obx.repetitions(5) if x != '""')
        if not text.strip():
            return None
        if ctx.lin:
            ctx.add(f"{src}-5", tgt, f"obx-value {vtype.upper()}: text (repetitions one per line)")
        return text
    if reps > 1:
        raise InvalidValue(f"{src}-5", f"repeated values of type {vtype.upper()} are not supported")
    if handler == "numeric":
        return _numeric(ctx, obx, src, tgt)
    if handler == "structured-numeric":
        return _structured_numeric(ctx, obx, src, tgt)
    if handler == "coded":
        encoding = val(obx, 5, 1, 4)
        if encoding is not None and encoding.upper() in _ENCODED_DATA and val(obx, 5, 1, 5) is not None:
            raise InvalidValue(f"{src}-5", "a coded value carries encapsulated data (the value is ED)")
        coded = ctx.coded(ctx.rules.rule("observation.value"), obx, 5, f"{src}-5", tgt)
        if isinstance(coded, DataAbsent):  # the value rule keeps codes as sent: never data-absent
            raise InvalidValue(f"{src}-5", "coded value could not be carried", error_code="103")
        return coded
    if handler == "datetime":
        when = ctx.time(obx, 5, f"{src}-5")
        if when is not None and ctx.lin:
            ctx.add(f"{src}-5", tgt, f"obx-value {vtype.upper()}: date/time")
        return when
    if handler == "encapsulated":
        return _encapsulated(ctx, obx, src, tgt)
    return _reference(ctx, obx, src, tgt)


def _units(ctx: Ctx, obx: Segment) -> dict[str, str | None]:
    """OBX-6 -> Quantity unit fields: ``code``/``system`` UCUM when OBX-6.3 says UCUM or, with no coding
    system, when OBX-6.1 is in the UCUM unit table (``shared.terminology.ucum``, matched ignoring case:
    ``mmol/l`` -> ``mmol/L``); ``unit`` the human-readable text as sent. A unit that is not UCUM keeps its
    text and gets no system. The same units recur in result after result: remembered by OBX-6's text (a
    fresh dict each call)."""
    raw = obx.raw_field(6)
    if ctx.memo and ctx.esc not in raw:
        hit = ctx.rules.memo.get(("units", raw))
        if hit is None:
            hit = _read_units(ctx, obx)
            remember(ctx.rules.memo, ("units", raw), hit)
        return dict(cast(dict[str, str | None], hit))
    return _read_units(ctx, obx)


def _read_units(ctx: Ctx, obx: Segment) -> dict[str, str | None]:
    code, text, system = val(obx, 6, 1, 1), val(obx, 6, 1, 2), val(obx, 6, 1, 3)
    unit = text or code
    if code is None:
        return {"unit": unit, "code": None, "system": None}
    if ctx.coding_system(system) == UCUM:  # declared UCUM: the table's case when listed, else as sent
        return {"unit": unit, "code": ucum_code(code) or code, "system": UCUM}
    if system is None:
        canonical = ucum_code(code)
        if canonical is not None:
            return {"unit": unit, "code": canonical, "system": UCUM}
    return {"unit": unit, "code": None, "system": None}


def _unit_lineage(ctx: Ctx, obx: Segment, src: str, tgt: str, units: dict[str, str | None]) -> None:
    if units["unit"] is not None:
        ctx.add(f"{src}-6", f"{tgt}.unit", "obx-units (text, else code)")
    if units["code"] is not None:
        ctx.add(f"{src}-6.1", f"{tgt}.code", "obx-units: UCUM code")
        ctx.add(f"{src}-6.3", f"{tgt}.system", "obx-units: UCUM (declared, or in the UCUM unit table)")


def _decimal(text: str) -> Decimal | None:
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _numeric(ctx: Ctx, obx: Segment, src: str, tgt: str) -> ObservationValue | None:
    """NM: a number, optionally prefixed by a comparator (``<7``, ``>=10`` as UK labs send) -> Quantity."""
    text = obx.get(5) or ""
    stripped = text.strip()
    comparator: Comparator | None = None
    m = _COMPARATOR.match(stripped)
    number = stripped
    if m is not None:
        comparator = _SN_COMPARATORS[m.group(1)]
        number = stripped[m.end() :]
    value = _decimal(number)
    if value is None:
        if ctx.rules.numeric_unparseable is Unmapped.KEEP_SOURCE:
            if ctx.lin:
                ctx.add(f"{src}-5", tgt, "obx-value NM: not a number, kept as sent (policy keep-source)")
            return text
        raise InvalidValue(f"{src}-5", "NM value is not a number")
    units = _units(ctx, obx)
    if ctx.lin:
        ctx.add(f"{src}-5", f"{tgt}.value", "obx-value NM: decimal")
        if comparator is not None:
            ctx.add(f"{src}-5", f"{tgt}.comparator", "obx-value NM: comparator prefix")
        _unit_lineage(ctx, obx, src, tgt, units)
    return _new_quantity(value=value, comparator=comparator, **units)


def _structured_numeric(ctx: Ctx, obx: Segment, src: str, tgt: str) -> ObservationValue | None:
    """SN ``comparator^num1^separator^num2``: a number (with comparator) -> Quantity; ``num1-num2`` ->
    Range; ratios (``1:128``, ``1/2``) and categories (``2+``) -> text, as there is no canonical Ratio."""
    comp = (val(obx, 5, 1, 1) or "").strip()
    n1, sep, n2 = val(obx, 5, 1, 2), val(obx, 5, 1, 3), val(obx, 5, 1, 4)
    if comp not in _SN_COMPARATORS:
        raise InvalidValue(f"{src}-5", "SN comparator not supported")
    units = _units(ctx, obx)
    v1 = _decimal(n1) if n1 is not None else None
    v2 = _decimal(n2) if n2 is not None else None
    if (n1 is not None and v1 is None) or (n2 is not None and v2 is None):
        raise InvalidValue(f"{src}-5", "SN number is not a number")
    if sep is None and n2 is None and v1 is not None:
        if ctx.lin:
            ctx.add(f"{src}-5.2", f"{tgt}.value", "obx-value SN: number")
            if _SN_COMPARATORS[comp] is not None:
                ctx.add(f"{src}-5.1", f"{tgt}.comparator", "obx-value SN: comparator")
            _unit_lineage(ctx, obx, src, tgt, units)
        return _new_quantity(value=v1, comparator=_SN_COMPARATORS[comp], **units)
    if sep == "-" and v1 is not None and v2 is not None and _SN_COMPARATORS[comp] is None:
        if ctx.lin:
            ctx.add(f"{src}-5.2", f"{tgt}.low.value", "obx-value SN: range low")
            ctx.add(f"{src}-5.4", f"{tgt}.high.value", "obx-value SN: range high")
            _unit_lineage(ctx, obx, src, f"{tgt}.low", units)
            _unit_lineage(ctx, obx, src, f"{tgt}.high", units)
        return _new_range(low=_new_quantity(value=v1, **units), high=_new_quantity(value=v2, **units))
    if sep in (":", "/") and n1 is not None and n2 is not None and _SN_COMPARATORS[comp] is None:
        if ctx.lin:
            ctx.add(f"{src}-5", tgt, "obx-value SN: ratio as text (no canonical Ratio)")
        return f"{n1}{sep}{n2}"
    if sep == "+" and n1 is not None and n2 is None and _SN_COMPARATORS[comp] is None:
        if ctx.lin:
            ctx.add(f"{src}-5", tgt, "obx-value SN: category as text")
        return f"{n1}+"
    raise InvalidValue(f"{src}-5", "SN value shape not supported")


def _content_type(ctx: Ctx, data_type: str | None, subtype: str | None) -> str | None:
    if subtype is not None and "/" in subtype:
        return subtype.lower()
    if subtype is not None:
        mapped = ctx.rules.encapsulated_subtypes.get(subtype.upper())
        if mapped is not None:
            return mapped
    if data_type is not None and "/" in data_type:
        return data_type.lower()
    return None


def _encapsulated(ctx: Ctx, obx: Segment, src: str, tgt: str) -> Attachment:
    """ED: metadata only - content type (ED.3 subtype), decoded size and SHA-256. The data itself never
    enters the model (the ingest path keeps the message body in blob storage)."""
    data_type, subtype, encoding = val(obx, 5, 1, 2), val(obx, 5, 1, 3), val(obx, 5, 1, 4)
    data = obx.get(5, 1, 5) or ""
    kind = (encoding or "").upper()
    try:
        if kind == "BASE64":
            raw = base64.b64decode("".join(data.split()), validate=True)
        elif kind == "HEX":
            raw = bytes.fromhex(data)
        elif kind in ("A", ""):
            raw = data.encode("utf-8")
        else:
            raise InvalidValue(f"{src}-5.4", "ED encoding not supported", error_code="103")
    except (binascii.Error, ValueError):
        raise InvalidValue(f"{src}-5.5", "ED data does not decode with its declared encoding") from None
    content_type = _content_type(ctx, data_type, subtype)
    if ctx.lin:
        if content_type is not None:
            ctx.add(f"{src}-5.3", f"{tgt}.content_type", "obx-value ED: data subtype -> media type")
        ctx.add(f"{src}-5.5", f"{tgt}.size", "obx-value ED: decoded size (data not kept)")
        ctx.add(f"{src}-5.5", f"{tgt}.sha256", "obx-value ED: SHA-256 of the decoded data")
    return Attachment(content_type=content_type, size=len(raw), sha256=hashlib.sha256(raw).hexdigest())


def _reference(ctx: Ctx, obx: Segment, src: str, tgt: str) -> Attachment | None:
    """RP: pointer RP.1 -> Attachment.url; type/subtype RP.3/RP.4 -> content type."""
    pointer = val(obx, 5, 1, 1)
    if pointer is None:
        return None
    content_type = _content_type(ctx, val(obx, 5, 1, 3), val(obx, 5, 1, 4))
    if ctx.lin:
        ctx.add(f"{src}-5.1", f"{tgt}.url", "obx-value RP: pointer")
        if content_type is not None:
            ctx.add(f"{src}-5.4", f"{tgt}.content_type", "obx-value RP: subtype -> media type")
    return Attachment(url=pointer, content_type=content_type)


def _reference_range(ctx: Ctx, obx: Segment, src: str, tgt: str) -> tuple[ReferenceRange, ...]:
    """OBX-7 -> one ReferenceRange: ``text`` as sent always; ``low``/``high`` only for ``a-b`` numbers
    (``<7.2``, ``>2-7.2`` etc. stay text: a comparator is not a bound). A test's range recurs with its
    units in every result: remembered by the OBX-6 and OBX-7 text (the value is immutable)."""
    key = None
    if ctx.memo:
        key = ("range", obx.raw_field(6), obx.raw_field(7))
        if ctx.esc not in key[1] and ctx.esc not in key[2]:
            hit = ctx.rules.memo.get(key)
            if hit is not None:
                return hit  # type: ignore[return-value]
        else:
            key = None
    ranges = _read_reference_range(ctx, obx, src, tgt)
    if key is not None:
        remember(ctx.rules.memo, key, ranges)
    return ranges


def _read_reference_range(ctx: Ctx, obx: Segment, src: str, tgt: str) -> tuple[ReferenceRange, ...]:
    text = obx.get(7)
    if text is None or not text.strip() or text.strip() == '""':
        return ()
    low = high = None
    m = _RANGE.fullmatch(text)
    if m is not None:
        units = _units(ctx, obx)
        low = _new_quantity(value=Decimal(m.group(1)), **units)
        high = _new_quantity(value=Decimal(m.group(2)), **units)
    if ctx.lin:
        t = f"{tgt}[0]"
        ctx.add(f"{src}-7", f"{t}.text", "obx-reference-range as sent")
        if low is not None and high is not None:
            ctx.add(f"{src}-7", f"{t}.low.value", "obx-reference-range: low of 'low-high'")
            ctx.add(f"{src}-7", f"{t}.high.value", "obx-reference-range: high of 'low-high'")
            units = _units(ctx, obx)
            _unit_lineage(ctx, obx, src, f"{t}.low", units)
            _unit_lineage(ctx, obx, src, f"{t}.high", units)
    return (_new_reference_range(low=low, high=high, text=text.strip()),)
