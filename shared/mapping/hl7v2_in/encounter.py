"""PV1 / PV2 -> canonical :class:`~shared.canonical.model.Encounter` (rules in the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.canonical.model import (
    ClinicalDateTime,
    Coded,
    Encounter,
    EncounterStatus,
    EventKind,
    Identifier,
    Period,
)
from shared.hl7v2 import Segment
from shared.mapping._construct import builder
from shared.mapping.errors import MissingRequiredField
from shared.mapping.hl7v2_in._context import Ctx, remember, val
from shared.mapping.hl7v2_in.rules import MessageRule, Path

__all__ = ["map_encounter"]

_new_encounter = builder(Encounter)


def _status(ctx: Ctx, rule: MessageRule, required: bool) -> tuple[EncounterStatus | None, bool]:
    """The status and whether the sender asserted it (``False``: inferred from what PV1 lacks - rules
    ``derived_encounter_status`` ``asserted``)."""
    if rule.encounter_status is not None and not rule.derived:
        if ctx.lin:
            ctx.add(
                "MSH-9.2", "encounter.status", f"trigger {rule.message_type}: {rule.encounter_status.value}"
            )
        return rule.encounter_status, True
    for step in ctx.rules.derived_status:
        if step.present is not None:
            name, n, comp = step.present
            seg = ctx.segment(name)
            hit = seg is not None and val(seg, n, 1, comp) is not None
        else:
            assert step.equals is not None
            (name, n, comp), expected = step.equals
            seg = ctx.segment(name)
            hit = seg is not None and val(seg, n, 1, comp) == expected
        if hit:
            if ctx.lin:
                ctx.add(
                    step.source, "encounter.status", f"derived status: {step.source} -> {step.status.value}"
                )
                if not step.asserted and required:
                    ctx.add(step.source, "encounter.defaulted", "derived status: inferred, not asserted")
            return step.status, step.asserted
    if required:
        raise MissingRequiredField("PV1-44", "the encounter status cannot be derived (no PV1-44/PV1-45)")
    # Result/order context: the PV1 names the encounter (visit number, class) but not its state.
    if ctx.lin:
        ctx.add("PV1-19", "encounter.status", "result/order context, no PV1-44/45: status unknown")
    return EncounterStatus.UNKNOWN, False


def _first_time(
    ctx: Ctx, table: Mapping[str, tuple[Path, ...]], kind: EventKind, pv1: Segment
) -> tuple[ClinicalDateTime | None, str | None]:
    for name, n, _comp in table.get(kind.value) or table["default"]:
        seg = pv1 if name == "PV1" else ctx.segment(name)
        if seg is None:
            continue
        src = f"{name}-{n}"
        when = ctx.time(seg, n, src)
        if when is not None:
            return when, src
    return None, None


def _period(ctx: Ctx, kind: EventKind, pv1: Segment) -> Period | None:
    """Start: rules ``encounter_start`` (PV1-44; a pre-admission also PV2-8); end: ``encounter_end``
    (PV1-45 for every trigger; a pre-admission also PV2-9)."""
    start, start_src = _first_time(ctx, ctx.rules.encounter_start, kind, pv1)
    end, end_src = _first_time(ctx, ctx.rules.encounter_end, kind, pv1)
    if start is None and end is None:
        return None
    if ctx.lin:
        if start_src is not None:
            ctx.add(start_src, "encounter.period.start", "encounter start (admit date/time)")
        if end_src is not None:
            ctx.add(end_src, "encounter.period.end", "encounter end (discharge date/time)")
    return Period(start=start, end=end)


def map_encounter(ctx: Ctx, rule: MessageRule, *, required: bool) -> Encounter | None:
    """The encounter in PV1/PV2. ``required`` (ADT encounter events): a missing PV1, visit number
    (PV1-19), patient class (PV1-2) or derivable status raises MissingRequiredField; otherwise (ORU/ORM
    context) the encounter is simply left out when any of those is missing.

    Lineage off, the result is reused for a later message of the same trigger with the same PV1 and
    PV2 text from the same sender (the Encounter is immutable)."""
    pv1 = ctx.segment("PV1")
    if pv1 is None:
        if required:
            raise MissingRequiredField("PV1", "an encounter event needs a PV1 segment")
        return None
    key = ctx.segments_key("PV1", "PV2")
    if key is not None:
        memo_key = ("encounter", rule.message_type, required, key)
        hit = ctx.rules.memo.get(memo_key, _NONE)
        if hit is not _NONE:
            return hit  # type: ignore[return-value]
    encounter = _map_encounter(ctx, rule, pv1, required=required)
    if key is not None:
        remember(ctx.rules.memo, memo_key, encounter)
    return encounter


_NONE = object()


def _map_encounter(ctx: Ctx, rule: MessageRule, pv1: Segment, *, required: bool) -> Encounter | None:
    if val(pv1, 19) is None or val(pv1, 2) is None:
        if required:
            raise MissingRequiredField("PV1-19" if val(pv1, 19) is None else "PV1-2")
        return None
    status, asserted = _status(ctx, rule, required)
    if status is None:
        return None
    r = ctx.rules
    visit = ctx.cx(pv1, 19, 1, "PV1-19", "encounter.identifiers[0]", id_type=r.visit_number_type)
    assert visit is not None
    identifiers: tuple[Identifier, ...] = (visit,)
    # PV1-50 alternate visit ID: a further identifier (type as sent), never the identity's visit number
    # (identity.encounter_identifier picks the VN-typed PV1-19, which comes first).
    _seg, alt_n, _comp = r.alternate_visit_field
    alternate = ctx.cx(pv1, alt_n, 1, f"PV1-{alt_n}", "encounter.identifiers[1]")
    if alternate is not None and (alternate.system, alternate.value) != (visit.system, visit.value):
        identifiers = (visit, alternate)
    enc_class = ctx.coded(
        r.rule("encounter.encounter_class"), pv1, 2, "PV1-2", "encounter.encounter_class", simple=True
    )
    assert enc_class is not None
    period = _period(ctx, rule.kind, pv1)
    prior = ctx.pl(pv1, 6, "PV1-6", "encounter.prior_location")
    # PV1-4: an NHS admission method (11, 21, 2A ...) when the admission-method map knows the code, else
    # an HL7 admission type read as a priority - never both (rules encounter.admission_method / priority).
    admission_method = _simple(ctx, "encounter.admission_method", pv1, 4)
    fields: dict[str, Any] = {
        "identifiers": identifiers,
        "status": status,
        "encounter_class": enc_class,
        "period": period,
        "location": ctx.pl(pv1, 3, "PV1-3", "encounter.location"),
        "prior_location": prior,
        "attending": ctx.xcns(pv1, 7, "PV1-7", "encounter.attending"),
        "referring": ctx.xcns(pv1, 8, "PV1-8", "encounter.referring"),
        "admitting": ctx.xcns(pv1, 17, "PV1-17", "encounter.admitting"),
        "service_type": _simple(ctx, "encounter.service_type", pv1, 10),
        "patient_type": _simple(ctx, "encounter.patient_type", pv1, 18),
        "priority": None if admission_method is not None else _simple(ctx, "encounter.priority", pv1, 4),
        "admission_method": admission_method,
        "admit_source": _simple(ctx, "encounter.admit_source", pv1, 14),
        "discharge_disposition": _simple(ctx, "encounter.discharge_disposition", pv1, 36),
    }
    fields["cleared"] = ctx.cleared("encounter", lambda name: fields[name] in (None, ()), pv1)
    if not asserted and required:  # an encounter event's own encounter (a result's is not written)
        fields["defaulted"] = ("status",)
    # Status/class were checked present above and ctx.cleared lists only empty fields (the model
    # validator's rule): a trusted build.
    return _new_encounter(**fields)


def _simple(ctx: Ctx, name: str, pv1: Segment, n: int) -> Coded | None:
    return ctx.coded(ctx.rules.rule(name), pv1, n, f"PV1-{n}", name, simple=True)
