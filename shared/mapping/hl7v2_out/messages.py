"""ADT^A08 and ORU^R01 writers (see the package docstring for the field rules)."""

from __future__ import annotations

from decimal import Decimal

from shared.canonical.model import (
    Attachment,
    ClinicalDateTime,
    ClinicalEvent,
    Concept,
    Observation,
    Organization,
    Practitioner,
    Quantity,
    Range,
    ReferenceRange,
    ResultReport,
    Specimen,
)
from shared.hl7v2 import FieldValue, Message, Repeated, build_message
from shared.mapping.hl7v2_in.rules import RULES
from shared.mapping.hl7v2_out import _fields as f
from shared.mapping.hl7v2_out import _segments as s
from shared.mapping.hl7v2_out.errors import Hl7OutError, UnmappableCode
from shared.mapping.hl7v2_out.header import Header
from shared.mapping.lineage import LineageRecorder, Mapped
from shared.terminology import systems

__all__ = ["adt_a08", "adt_a31", "oru_r01", "to_adt", "to_adt_a08", "to_adt_a31", "to_adt_a40", "to_oru_r01"]

#: ORC-1 order control for an ORU order group: "RE" = observations to follow (HL7 table 0119).
ORDER_CONTROL_RESULTS = "RE"
_TEXT_MAX = 199


def to_adt_a08(event: ClinicalEvent, header: Header) -> Message:
    """ADT^A08 (update patient information): MSH, EVN, PID, PD1 (GP / protection), PV1."""
    return adt_a08(event, header, lineage=False).value


def adt_a08(event: ClinicalEvent, header: Header, *, lineage: bool = True) -> Mapped[Message]:
    """:func:`to_adt_a08` with lineage (canonical path -> HL7 path)."""
    return _adt(event, header, ("ADT", "A08", "ADT_A01"), lineage)


def to_adt(event: ClinicalEvent, header: Header, *, trigger: str, structure: str) -> Message:
    """An ADT message with the A08 segments under another trigger event and structure (``A01``/``ADT_A01``,
    ``A03``/``ADT_A03``, ``A31``/``ADT_A05``...): for receivers that want each event as itself."""
    return _adt(event, header, ("ADT", trigger, structure), False).value


def to_adt_a31(event: ClinicalEvent, header: Header) -> Message:
    """ADT^A31 (update person information): the A08 segments for a patient-level change with no visit
    (receivers - and :mod:`shared.mapping.hl7v2_in` - expect an A08 to name the visit in PV1-19)."""
    return adt_a31(event, header, lineage=False).value


def adt_a31(event: ClinicalEvent, header: Header, *, lineage: bool = True) -> Mapped[Message]:
    """:func:`to_adt_a31` with lineage (canonical path -> HL7 path)."""
    return _adt(event, header, ("ADT", "A31", "ADT_A05"), lineage)


def to_adt_a40(event: ClinicalEvent, header: Header) -> Message:
    """ADT^A40 (merge patient - patient identifier list, structure ADT_A39): MSH, EVN, PID (the surviving
    record), [PD1], MRG (MRG-1: the identifiers of the record merged away). One PID/MRG pair, as
    :mod:`shared.mapping.hl7v2_in` reads it."""
    if not event.merged_identifiers:
        raise Hl7OutError("merged_identifiers", "an ADT^A40 needs the identifiers of the record merged away")
    o, segments = _head(event, header, ("ADT", "A40", "ADT_A39"), lineage=False, evn=True)
    merged = [
        f.cx(ident, o, f"merged_identifiers[{k}]", f"MRG-1[{k + 1}]")
        for k, ident in enumerate(event.merged_identifiers)
    ]
    segments.append(["MRG", Repeated(merged)])
    return build_message(segments)


def to_oru_r01(event: ClinicalEvent, header: Header) -> Message:
    """ORU^R01 (unsolicited results): MSH, PID, [PD1], [PV1], then per report [ORC] OBR {NTE} and per
    result OBX {NTE}."""
    return oru_r01(event, header, lineage=False).value


def oru_r01(event: ClinicalEvent, header: Header, *, lineage: bool = True) -> Mapped[Message]:
    """:func:`to_oru_r01` with lineage (canonical path -> HL7 path)."""
    if not event.reports:
        raise Hl7OutError("reports", "an ORU^R01 needs at least one result report")
    o, segments = _head(event, header, ("ORU", "R01", "ORU_R01"), lineage=lineage, evn=False)
    if event.encounter is not None:
        segments.append(s.pv1(event, o))
    counts = {"NTE": 0, "OBX": 0, "OBR": 0}
    for n, report in enumerate(event.reports):
        segments.extend(_order_group(report, n, o, counts))
    return Mapped(build_message(segments), o.rec.freeze())


def _adt(
    event: ClinicalEvent, header: Header, message_type: tuple[str, str, str], lineage: bool
) -> Mapped[Message]:
    o, segments = _head(event, header, message_type, lineage=lineage, evn=True)
    segments.append(s.pv1(event, o))
    return Mapped(build_message(segments), o.rec.freeze())


def _head(
    event: ClinicalEvent, header: Header, message_type: tuple[str, str, str], *, lineage: bool, evn: bool
) -> tuple[f.Out, list[list[FieldValue]]]:
    """The writer state and the segments every message starts with: MSH, [EVN], PID, [PD1]."""
    o = f.Out(LineageRecorder(enabled=lineage), header.version)
    when = s.now_ts(header.now)
    kind, trigger, _structure = message_type
    control = header.control_id or s.control_id(event, f"{kind}^{trigger}")
    segments: list[list[FieldValue]] = [
        s.msh(o, header, message_type=message_type, control=control, when=when)
    ]
    if evn:
        segments.append(s.evn(event, o, trigger, when))
    segments.append(s.pid(event, o))
    pd1 = s.pd1(event, o)
    if pd1 is not None:
        segments.append(pd1)
    return o, segments


# -------------------------------------------------------------------------------------------- results
def _nte(text: str, o: f.Out, src: str, counts: dict[str, int]) -> list[FieldValue]:
    counts["NTE"] += 1
    o.add(src, f"NTE({counts['NTE']})-3", "note text (line breaks as \\.br\\)")
    return ["NTE", str(counts["NTE"]), None, text]


def _order_group(report: ResultReport, n: int, o: f.Out, counts: dict[str, int]) -> list[list[FieldValue]]:
    src = f"reports[{n}]"
    counts["OBR"] += 1
    obr_at = f"OBR({counts['OBR']})"
    out: list[list[FieldValue]] = []
    placer = f.ei(report.placer_order_number, o, f"{src}.placer_order_number", f"{obr_at}-2")
    filler = f.ei(report.filler_order_number, o, f"{src}.filler_order_number", f"{obr_at}-3")
    if placer is not None or filler is not None:
        out.append(["ORC", ORDER_CONTROL_RESULTS, placer, filler])
        o.add(None, f"ORC({counts['OBR']})-1", "constant RE: observations to follow")
    code = f.cwe(report.code, o, f"{src}.code", f"{obr_at}-4")
    if code is None:
        raise Hl7OutError(f"{src}.code", "OBR-4 needs the report code")
    status_rule = RULES.rule("report.status")
    status = None
    if report.status != status_rule.when_empty:
        status = f.table_code(
            report.status,
            o,
            f"{src}.status",
            f"{obr_at}-25",
            table_system=systems.V2_0123_RESULT_STATUS,
            concept_map_id="v2-0123-to-diagnostic-report-status",
            canonical_system=systems.DIAGNOSTIC_REPORT_STATUS,
        )
    else:
        o.add(f"{src}.status", f"{obr_at}-25", "status unknown: OBR-25 left empty (the source did not say)")
    category = None
    if report.category is not None:
        try:
            category = f.table_code(
                report.category,
                o,
                f"{src}.category",
                f"{obr_at}-24",
                table_system=systems.V2_0074_DIAGNOSTIC_SERVICE_SECTION,
                concept_map_id=None,
                canonical_system=None,
            )
        except UnmappableCode:
            # a category is broader than a section (FHIR "laboratory" covers CH, HM, MB...): no single
            # v2-0074 code, so OBR-24 is left empty - the report is still sent, never with a guessed section
            o.add(f"{src}.category", f"{obr_at}-24", "no v2-0074 section for the category: OBR-24 left empty")
    interpreters = tuple(p for p in report.performer if isinstance(p, Practitioner))
    obr: list[FieldValue] = [None] * 33
    obr[0] = "OBR"
    obr[1] = str(n + 1)
    obr[2] = placer
    obr[3] = filler
    obr[4] = code
    obr[7] = f.ts(report.effective)
    obr[22] = f.ts(report.issued)
    obr[24] = category
    obr[25] = status
    if report.ordering_providers:
        obr[16] = Repeated(
            [
                f.xcn(p, o, f"{src}.ordering_providers[{k}]", f"{obr_at}-16[{k + 1}]")
                for k, p in enumerate(report.ordering_providers)
            ]
        )
    if report.effective is not None:
        o.add(f"{src}.effective", f"{obr_at}-7", "observation date/time")
    if report.issued is not None:
        o.add(f"{src}.issued", f"{obr_at}-22", "results reported / status change")
    if interpreters:
        index = {id(p): i for i, p in enumerate(report.performer)}
        obr[32] = Repeated(
            [
                _ndl(p, o, f"{src}.performer[{index[id(p)]}]", f"{obr_at}-32[{k + 1}]")
                for k, p in enumerate(interpreters)
            ]
        )
    if report.specimens and not o.v25:
        _obr_specimen(report, obr, o, src, obr_at)
    elif (
        len(report.specimens) == 1
        and report.specimens[0].received is not None
        and f.parse_version(o.version) < (2, 7)
    ):
        # v2.5/2.6 keep OBR-14 beside SPM-18 (withdrawn in v2.7): senders fill both, receivers read either
        obr[14] = f.ts(report.specimens[0].received)
        o.add(f"{src}.specimens[0].received", f"{obr_at}-14", "specimen received date/time (also SPM-18)")
    out.append(f.field_list(obr))
    for k, text in enumerate(report.notes):
        out.append(_nte(text, o, f"{src}.notes[{k}]", counts))
    if report.conclusion is not None:
        out.append(_nte(report.conclusion, o, f"{src}.conclusion", counts))
    for m, obs in enumerate(report.results):
        osrc = f"{src}.results[{m}]"
        out.append(_obx(obs, m, o, osrc, counts, interpreters))
        for k, text in enumerate(obs.notes):
            out.append(_nte(text, o, f"{osrc}.notes[{k}]", counts))
    if o.v25:
        for k, sp in enumerate(report.specimens):
            counts["SPM"] = counts.get("SPM", 0) + 1
            out.append(_spm(sp, k, o, f"{src}.specimens[{k}]", f"SPM({counts['SPM']})"))
    return out


def _ndl(pr: Practitioner, o: f.Out, src: str, dst: str) -> list[f.Component]:
    """NDL whose first component is a CNN (the XCN parts as sub-components): OBR-32's reader inverse."""
    xcn = f.xcn(pr, o, src, dst)
    subs: list[str | None] = []
    for part in xcn[:11]:
        if isinstance(part, list):
            subs.extend(part)
        else:
            subs.append(part)
    # CNN has no identifier type (XCN.13) and no check digit: the authority's HD fills subs 9-11
    return [subs[:11]]


def _spm(sp: Specimen, k: int, o: f.Out, src: str, dst: str) -> list[FieldValue]:
    """SPM: set id, specimen id (EIP: the first identifier as placer's, the second as filler's), type
    (CWE), collection time (SPM-17.1), received time (SPM-18): the reader's inverse."""
    if len(sp.identifiers) > 2:
        raise Hl7OutError(f"{src}.identifiers", "SPM-2 holds two specimen identifiers (placer, filler)")
    fields: list[FieldValue] = [None] * 19
    fields[0] = "SPM"
    fields[1] = str(sp.sequence if sp.sequence is not None else k + 1)
    o.add(f"{src}.sequence" if sp.sequence is not None else None, f"{dst}-1", "set id")
    if sp.identifiers:
        eip: list[f.Component] = []
        for n, ident in enumerate(sp.identifiers):
            ei = f.ei(ident, o, f"{src}.identifiers[{n}]", f"{dst}-2.{n + 1}")
            assert ei is not None
            eip.append([x if isinstance(x, str) or x is None else None for x in ei])
        fields[2] = eip
    if sp.type is not None:
        fields[4] = f.cwe(sp.type, o, f"{src}.type", f"{dst}-4")
    if sp.collected is not None:
        fields[17] = [f.ts(sp.collected)]
        o.add(f"{src}.collected", f"{dst}-17.1", "specimen collection date/time (start)")
    if sp.received is not None:
        fields[18] = f.ts(sp.received)
        o.add(f"{src}.received", f"{dst}-18", "specimen received date/time")
    return f.field_list(fields)


def _obr_specimen(report: ResultReport, obr: list[FieldValue], o: f.Out, src: str, obr_at: str) -> None:
    """Before v2.5 (no SPM): the one specimen's type in OBR-15.1 (sub-components code & text & system)
    and its received time in OBR-14; its collection time is OBR-7 (the report's effective time)."""
    if len(report.specimens) > 1:
        raise Hl7OutError(f"{src}.specimens", "OBR-15 holds one specimen before v2.5 (SPM)")
    sp = report.specimens[0]
    ssrc = f"{src}.specimens[0]"
    if sp.collected is not None and sp.collected != report.effective:
        raise Hl7OutError(f"{ssrc}.collected", "before v2.5 the collection time is OBR-7 (the report's time)")
    if sp.type is not None:
        cwe = f.cwe(sp.type, o, f"{ssrc}.type", f"{obr_at}-15.1")
        if cwe is not None:
            obr[15] = [[x if isinstance(x, str) or x is None else None for x in cwe[:3]]]
    if sp.received is not None:
        obr[14] = f.ts(sp.received)
        o.add(f"{ssrc}.received", f"{obr_at}-14", "specimen received date/time")


def _number(d: Decimal) -> str:
    """A decimal as an HL7 NM (no exponent)."""
    text = format(d, "f")
    return text


def _units(q: Quantity | None) -> list[str | None] | None:
    """OBX-6: UCUM code ^ unit text ^ UCUM (the reader's inverse); a unit without a code is text only."""
    if q is None or (q.unit is None and q.code is None):
        return None
    if q.code is not None and q.system == systems.UCUM:
        return [q.code, q.unit if q.unit != q.code else None, "UCUM"]
    return [q.unit or q.code]


def _value(obs: Observation, o: f.Out, src: str, dst: str) -> tuple[str | None, FieldValue, Quantity | None]:
    """(OBX-2 value type, OBX-5, the quantity whose units go in OBX-6)."""
    v = obs.value
    vsrc = f"{src}.value"
    if v is None:
        return None, None, None
    if isinstance(v, Quantity):
        if v.comparator is None:
            o.add(f"{vsrc}.value", f"{dst}-5", "NM")
            return "NM", _number(v.value), v
        o.add(vsrc, f"{dst}-5", "SN: comparator ^ number")
        return "SN", [v.comparator, _number(v.value)], v
    if isinstance(v, Range):
        if v.low is None or v.high is None:
            raise Hl7OutError(vsrc, "an open-ended range value cannot be written as SN")
        o.add(vsrc, f"{dst}-5", "SN: low ^ - ^ high")
        return "SN", [None, _number(v.low.value), "-", _number(v.high.value)], v.low
    if isinstance(v, Concept):
        o.add(vsrc, f"{dst}-5", "coded value")
        return ("CWE" if o.v25 else "CE"), f.cwe(v, o, vsrc, f"{dst}-5"), None
    if isinstance(v, str):
        o.add(vsrc, f"{dst}-5", "text")
        return ("TX" if "\n" in v or len(v) > _TEXT_MAX else "ST"), v, None
    if isinstance(v, ClinicalDateTime):
        o.add(vsrc, f"{dst}-5", "date/time")
        return ("DTM" if o.v25 else "TS"), f.ts(v), None
    if isinstance(v, Attachment):
        if v.url is None:
            raise Hl7OutError(
                f"{vsrc}.url", "an attachment without a URL cannot be written (no data in the model)"
            )
        o.add(f"{vsrc}.url", f"{dst}-5.1", "RP pointer")
        if v.content_type is not None:
            o.add(f"{vsrc}.content_type", f"{dst}-5.4", "RP subtype = media type")
        return "RP", [v.url, None, None, v.content_type], None
    raise Hl7OutError(vsrc, "value type cannot be written")


def _range_text(rr: ReferenceRange) -> str | None:
    if rr.text is not None:
        return rr.text
    if rr.low is not None and rr.high is not None:
        return f"{_number(rr.low.value)}-{_number(rr.high.value)}"
    if rr.low is not None:
        return f">={_number(rr.low.value)}"
    if rr.high is not None:
        return f"<={_number(rr.high.value)}"
    return None


def _obx(
    obs: Observation,
    m: int,
    o: f.Out,
    src: str,
    counts: dict[str, int],
    interpreters: tuple[Practitioner, ...] = (),
) -> list[FieldValue]:
    counts["OBX"] += 1
    dst = f"OBX({counts['OBX']})"
    vtype, value, qty = _value(obs, o, src, dst)
    code = f.cwe(obs.code, o, f"{src}.code", f"{dst}-3")
    if code is None:
        raise Hl7OutError(f"{src}.code", "OBX-3 needs the observation code")
    units = _units(qty)
    if units is not None:
        o.add(f"{src}.value", f"{dst}-6", "units (UCUM code ^ text ^ UCUM)")
    else:  # a non-numeric value: OBX-6 still carries the reference range's units
        bound = next((b for rr in obs.reference_range for b in (rr.low, rr.high) if b is not None), None)
        units = _units(bound)
        if units is not None:
            o.add(f"{src}.reference_range[0]", f"{dst}-6", "units of the reference range")
    ranges = [_range_text(rr) for rr in obs.reference_range]
    ranges = [x for x in ranges if x is not None]
    if len(ranges) > 1:
        raise Hl7OutError(f"{src}.reference_range", "OBX-7 holds one reference range")
    if ranges:
        o.add(f"{src}.reference_range[0]", f"{dst}-7", "reference range text (else low-high)")
    flags = [
        f.table_code(
            flag,
            o,
            f"{src}.interpretation[{k}]",
            f"{dst}-8[{k + 1}]",
            table_system=systems.V2_0078_ABNORMAL_FLAGS,
            concept_map_id="v2-0078-to-observation-interpretation",
            canonical_system=systems.V3_OBSERVATION_INTERPRETATION,
        )
        for k, flag in enumerate(obs.interpretation)
    ]
    status_rule = RULES.rule("observation.status")
    status = None
    if obs.status != status_rule.when_empty:
        status = f.table_code(
            obs.status,
            o,
            f"{src}.status",
            f"{dst}-11",
            table_system=systems.V2_0085_OBSERVATION_RESULT_STATUS,
            concept_map_id="v2-0085-to-observation-status",
            canonical_system=systems.OBSERVATION_STATUS,
        )
    else:
        o.add(f"{src}.status", f"{dst}-11", "status unknown: OBX-11 left empty (the source did not say)")
    people = [p for p in obs.performer if isinstance(p, Practitioner)]
    orgs = [p for p in obs.performer if isinstance(p, Organization)]
    if interpreters and obs.performer == interpreters:
        # the reader gives a result without OBX-16/23 the report's interpreter (OBR-32): written there once
        o.add(f"{src}.performer", f"{dst}-16", "the report's principal result interpreter: carried by OBR-32")
        people, orgs = [], []
    if len(orgs) > 1 or (orgs and not o.v25):
        raise Hl7OutError(f"{src}.performer", "OBX-23 (v2.5+) holds one performing organisation")
    fields: list[FieldValue] = [None] * 24
    fields[0] = "OBX"
    fields[1] = str(obs.sequence if obs.sequence is not None else m + 1)
    fields[2] = vtype
    fields[3] = code
    fields[4] = obs.sub_id
    if obs.sub_id is not None:
        o.add(f"{src}.sub_id", f"{dst}-4", "observation sub-id")
    fields[5] = value
    fields[6] = units
    fields[7] = ranges[0] if ranges else None
    fields[8] = Repeated([x for x in flags if x is not None]) if any(x is not None for x in flags) else None
    fields[11] = status
    fields[14] = f.ts(obs.effective)
    if obs.effective is not None:
        o.add(f"{src}.effective", f"{dst}-14", "date/time of the observation")
    if people:
        index = {id(p): i for i, p in enumerate(obs.performer)}
        fields[16] = Repeated(
            [
                f.xcn(p, o, f"{src}.performer[{index[id(p)]}]", f"{dst}-16[{k + 1}]")
                for k, p in enumerate(people)
            ]
        )
    if orgs:
        org = orgs[0]
        fields[23] = f.xon(org, o, f"{src}.performer[{obs.performer.index(org)}]", f"{dst}-23")
    o.add(f"{src}.sequence" if obs.sequence is not None else None, f"{dst}-1", "set id")
    return f.field_list(fields)
