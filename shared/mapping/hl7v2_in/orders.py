"""ORM^O01: ORC (+ its OBR) -> :class:`ServiceRequest` (rules in the package docstring)."""

from __future__ import annotations

from typing import Any

from shared.canonical.model import ClinicalDateTime, Coded, Period, Practitioner, ServiceRequest
from shared.hl7v2 import Segment
from shared.mapping._construct import builder
from shared.mapping.errors import MissingRequiredField, UnsupportedEvent
from shared.mapping.hl7v2_in._context import Ctx, _time, new_period, val
from shared.mapping.hl7v2_in.results import Group, group_segments, notes_of
from shared.mapping.hl7v2_in.rules import MessageRule

__all__ = ["map_orders"]

_new_service_request = builder(ServiceRequest)


def map_orders(ctx: Ctx, rule: MessageRule) -> tuple[ServiceRequest, ...]:
    orders: list[ServiceRequest] = []
    for group in group_segments(ctx, orders=True):
        orders.append(_order(ctx, rule, group, f"orders[{len(orders)}]"))
    if not orders:
        raise MissingRequiredField("ORC", "an order message needs at least one ORC/OBR group")
    return tuple(orders)


def _priority(
    ctx: Ctx, group: Group, orc: Segment | None, orc_src: str, obr: Segment, obr_src: str, tgt: str
) -> Any:
    """Order priority through ``order.priority`` (v2-0027): TQ1-9 (v2.5+), else the TQ priority component
    ORC-7.6, else OBR-27.6 (v2.3/v2.4). A priority with no FHIR request-priority is left empty."""
    sources: list[tuple[Segment, int, int, str]] = []
    if group.tq1 is not None:
        tq1, tq1_occ = group.tq1
        sources.append((tq1, 9, 1, f"TQ1({tq1_occ})-9"))
    if orc is not None:
        sources.append((orc, 7, 6, f"{orc_src}-7.6"))
    sources.append((obr, 27, 6, f"{obr_src}-27.6"))
    rule = ctx.rules.rule("order.priority")
    for seg, n, comp, src in sources:
        code = val(seg, n, 1, comp)
        if code is not None:
            return ctx.code_value(rule, code, src, f"{tgt}.priority")
    return None


def _leaf_time(seg: Segment, n: int, comp: int, src: str) -> ClinicalDateTime | None:
    """A TS inside a component (TQ.4 / TQ.5: its time is the first sub-component)."""
    raw = val(seg, n, 1, comp, 1)
    return None if raw is None else _time(raw, src)


def _occurrence(
    ctx: Ctx, group: Group, orc: Segment | None, orc_src: str, obr: Segment, obr_src: str, tgt: str
) -> ClinicalDateTime | Period | None:
    """When the service is to happen: TQ1-7 start / TQ1-8 end (v2.5+), else the TQ start/end
    components ORC-7.4/.5, else OBR-27.4/.5 (v2.3/v2.4). A start alone is a dateTime; with an end (or an
    end alone) a Period."""
    sources: list[tuple[Segment, int, int | None, int | None, str]] = []
    if group.tq1 is not None:
        tq1, tq1_occ = group.tq1
        sources.append((tq1, 7, None, None, f"TQ1({tq1_occ})"))
    if orc is not None:
        sources.append((orc, 7, 4, 5, orc_src))
    sources.append((obr, 27, 4, 5, obr_src))
    for seg, n, c_start, c_end, src in sources:
        if c_start is None:  # TQ1: start and end are fields 7 and 8
            start_src, end_src = f"{src}-7", f"{src}-8"
            start = ctx.time(seg, 7, start_src)
            end = ctx.time(seg, 8, end_src)
        else:
            assert c_end is not None
            start_src, end_src = f"{src}-{n}.{c_start}", f"{src}-{n}.{c_end}"
            start = _leaf_time(seg, n, c_start, start_src)
            end = _leaf_time(seg, n, c_end, end_src)
        if start is None and end is None:
            continue
        if end is None:
            if ctx.lin:
                ctx.add(start_src, f"{tgt}.occurrence", "timing: start date/time (no end)")
            return start
        if ctx.lin:
            if start is not None:
                ctx.add(start_src, f"{tgt}.occurrence.start", "timing: start date/time")
            ctx.add(end_src, f"{tgt}.occurrence.end", "timing: end date/time")
        return new_period(start=start, end=end)
    return None


def _clinical_information(ctx: Ctx, obr: Segment, obr_src: str, tgt: str) -> str | None:
    """OBR-13 relevant clinical information (ST before v2.7; CWE text or code after): every repetition's
    text, one per line."""
    lines: list[str] = []
    for rep in range(1, obr.repetition_count(13) + 1):
        text = val(obr, 13, rep, 2) or val(obr, 13, rep, 1)
        if text is not None:
            lines.append(text)
    if not lines:
        return None
    if ctx.lin:
        ctx.add(f"{obr_src}-13", f"{tgt}.clinical_information", "obr-relevant-clinical-information (text)")
    return "\n".join(lines)


def _order(ctx: Ctx, rule: MessageRule, group: Group, tgt: str) -> ServiceRequest:
    r = ctx.rules
    orc, orc_occ = group.orc if group.orc is not None else (None, 0)
    if group.obr is None and group.other_detail is not None:
        raise UnsupportedEvent(
            f"{rule.message_type} {group.other_detail[:3]}",
            "only service orders (ORC + OBR) are mapped; pharmacy/dietary/supply order detail is not",
        )
    if group.obr is None:
        raise MissingRequiredField(f"ORC({orc_occ})", "an order needs an OBR (the requested service)")
    obr, obr_occ = group.obr
    obr_src = f"OBR({obr_occ})"
    orc_src = f"ORC({orc_occ})"

    placer = None
    filler = None
    for seg, src, n_placer, n_filler in ((orc, orc_src, 2, 3), (obr, obr_src, 2, 3)):
        if seg is None:
            continue
        if placer is None:
            placer = ctx.ei(seg, n_placer, f"{src}-{n_placer}", f"{tgt}.placer_order_number", r.placer_type)
        if filler is None:
            filler = ctx.ei(seg, n_filler, f"{src}-{n_filler}", f"{tgt}.filler_order_number", r.filler_type)
    if placer is None and filler is None:
        raise MissingRequiredField(f"{orc_src}-2", "an order needs a placer or filler order number")

    status: Any = None
    if orc is not None and val(orc, 5) is not None:
        status = ctx.code(r.rule("order.status"), orc, 5, f"{orc_src}-5", f"{tgt}.status")
    elif orc is not None and val(orc, 1) is not None:
        status = ctx.code(r.rule("order.status_from_control"), orc, 1, f"{orc_src}-1", f"{tgt}.status")
    if status is None:
        raise MissingRequiredField(f"{orc_src}-1", "an order needs an order control or order status")

    code = ctx.coded(r.rule("order.code"), obr, 4, f"{obr_src}-4", f"{tgt}.code")
    if code is None:
        raise MissingRequiredField(f"{obr_src}-4", "an order needs the requested service code")

    authored = None
    if orc is not None:
        authored = ctx.time(orc, 9, f"{orc_src}-9")
        if authored is not None and ctx.lin:
            ctx.add(f"{orc_src}-9", f"{tgt}.authored_on", "orc-date-time-of-transaction")

    requester: Practitioner | None = None
    for seg, src, n in ((orc, orc_src, 12), (obr, obr_src, 16)):
        if seg is not None and requester is None:
            requester = ctx.xcn(seg, n, 1, f"{src}-{n}[1]", f"{tgt}.requester")

    reasons: list[Coded] = []
    reason_rule = r.rule("order.reason")
    for rep in range(1, obr.repetition_count(31) + 1):
        reason = ctx.coded(
            reason_rule, obr, 31, f"{obr_src}-31[{rep}]", f"{tgt}.reason[{len(reasons)}]", rep=rep
        )
        if reason is not None:
            reasons.append(reason)

    priority = _priority(ctx, group, orc, orc_src, obr, obr_src, tgt)

    if ctx.lin:
        ctx.add("MSH-9", f"{tgt}.intent", f"{rule.message_type}: intent {rule.intent} (rules constant)")
    # ServiceRequest's own rule (a placer or filler number) was checked above: a trusted build.
    return _new_service_request(
        placer_order_number=placer,
        filler_order_number=filler,
        status=status,
        intent=rule.intent,  # a Literal: checked when rules compile
        code=code,
        priority=priority,  # a ServiceRequest.priority literal: checked when rules compile
        authored_on=authored,
        requester=requester,
        reason=tuple(reasons),
        notes=notes_of(ctx, group.notes, f"{tgt}.notes"),
        occurrence=_occurrence(ctx, group, orc, orc_src, obr, obr_src, tgt),
        clinical_information=_clinical_information(ctx, obr, obr_src, tgt),
    )
