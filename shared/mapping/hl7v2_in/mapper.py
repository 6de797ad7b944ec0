"""The event envelope and dispatch: :func:`map_message` / :func:`map_bytes` (see the package docstring)."""

from __future__ import annotations

from pydantic import ValidationError

from shared.canonical import identity
from shared.canonical.model import (
    ClinicalDateTime,
    ClinicalEvent,
    Encounter,
    EventKey,
    EventKind,
    Identifier,
    Patient,
    Provenance,
    ResultReport,
    ServiceRequest,
    SourceSystem,
)
from shared.hl7v2 import Message, Segment, parse_message
from shared.mapping._construct import builder
from shared.mapping.errors import (
    InvalidValue,
    MappingError,
    MissingRequiredField,
    UnsupportedEvent,
    UnsupportedMessageType,
)
from shared.mapping.hl7v2_in._context import Ctx, val
from shared.mapping.hl7v2_in.encounter import map_encounter
from shared.mapping.hl7v2_in.orders import map_orders
from shared.mapping.hl7v2_in.patient import map_merged_identifiers, map_patient
from shared.mapping.hl7v2_in.results import map_reports
from shared.mapping.hl7v2_in.rules import RULES, STRICT_RULES, Compiled, MessageRule, Path
from shared.mapping.lineage import LineageRecorder, Mapped

__all__ = ["map_bytes", "map_message"]

#: Encounter kinds whose identity (or cancelled event's identity) needs the encounter start / end.
_NEEDS_START = frozenset(
    {EventKind.ADMISSION, EventKind.REGISTRATION, EventKind.PRE_ADMISSION, EventKind.CANCEL_ADMISSION}
)
_NEEDS_END = frozenset({EventKind.DISCHARGE, EventKind.CANCEL_DISCHARGE})
_CANCELS = frozenset({EventKind.CANCEL_ADMISSION, EventKind.CANCEL_TRANSFER, EventKind.CANCEL_DISCHARGE})
_KEY_RULE = "identity: shared.canonical.identity rule for the event kind (see its table)"


def _rule_for(msg: Message, rules: Compiled) -> MessageRule:
    msh = msg.segment("MSH")
    assert msh is not None  # the parser guarantees MSH first
    raw = msh.raw_field(9)
    hit = rules.memo.get(("rule", raw))
    if hit is not None:
        return hit  # type: ignore[return-value]
    rule = _find_rule(msh, rules)
    if len(raw) < 64:
        rules.memo[("rule", raw)] = rule
    return rule


def _find_rule(msh: Segment, rules: Compiled) -> MessageRule:
    mtype = val(msh, 9, 1, 1)
    trigger = val(msh, 9, 1, 2)
    if mtype is None:
        raise MissingRequiredField("MSH-9", "no message type")
    name = f"{mtype.upper()}^{(trigger or '').upper()}"
    rule = rules.messages.get(name)
    if rule is None:
        if any(k.startswith(f"{mtype.upper()}^") for k in rules.messages):
            raise UnsupportedEvent(name[:20])
        raise UnsupportedMessageType(mtype.upper()[:10])
    return rule


def _first_time(ctx: Ctx, paths: tuple[Path, ...], target: str) -> ClinicalDateTime | None:
    for name, n, _comp in paths:
        src = f"{name}-{n}"
        when = ctx.time_at((name, n, None), src)
        if when is not None:
            if ctx.lin:
                ctx.add(src, target, f"{target}: first of {', '.join(f'{p[0]}-{p[1]}' for p in paths)}")
            return when
    return None


_new_source = builder(SourceSystem)
_new_provenance = builder(Provenance)
#: ``ClinicalEvent`` built without validation: its parts are models already, kind/key come from the rules
#: and shared.canonical.identity, times from timeutil (aware) - see shared.mapping._construct.
_new_event = builder(ClinicalEvent)
#: SourceSystem by the encoded MSH-3 + MSH-4 text (lineage off): a feed's sender never changes.
_SOURCES: dict[tuple[str, str], SourceSystem] = {}


def _source(ctx: Ctx) -> SourceSystem:
    msh = ctx.segment("MSH")
    assert msh is not None
    memo_key = (msh.raw_field(3), msh.raw_field(4))
    if not ctx.lin:
        hit = _SOURCES.get(memo_key)
        if hit is not None:
            return hit
    app_src = "MSH-3.1"
    application = val(msh, 3, 1, 1)
    if application is None:
        application, app_src = val(msh, 3, 1, 2), "MSH-3.2"
    if application is None:
        raise MissingRequiredField("MSH-3", "no sending application")
    fac_src = "MSH-4.1"
    facility = val(msh, 4, 1, 1)
    if facility is None:
        facility, fac_src = val(msh, 4, 1, 2), "MSH-4.2"
    if ctx.lin:
        ctx.add(app_src, "source.application", "msh-sending-application")
        if facility is not None:
            ctx.add(fac_src, "source.facility", "msh-sending-facility")
    source = _new_source(application=application, facility=facility)
    if len(_SOURCES) < 256:
        _SOURCES[memo_key] = source
    return source


def _key(
    ctx: Ctx,
    rule: MessageRule,
    patient: Patient,
    encounter: Encounter | None,
    occurred_at: ClinicalDateTime | None,
    recorded_at: ClinicalDateTime | None,
    merged: tuple[Identifier, ...],
    reports: tuple[ResultReport, ...],
    orders: tuple[ServiceRequest, ...],
) -> tuple[EventKey, EventKey | None]:
    """The event key (and, for cancellations, the cancelled event's key). Missing parts are checked first
    so the error names the HL7 field the identity rule needs."""
    kind = rule.kind
    cancels = None
    if rule.assembly == "encounter":
        period = encounter.period if encounter is not None else None
        start = period.start if period is not None else None
        end = period.end if period is not None else None
        if kind in _NEEDS_START and start is None:
            raise MissingRequiredField("PV1-44", f"the {kind.value} event needs the admit date/time")
        if kind in _NEEDS_END and end is None:
            raise MissingRequiredField("PV1-45", f"the {kind.value} event needs the discharge date/time")
        if kind is EventKind.CANCEL_TRANSFER and (encounter is None or encounter.location is None):
            raise MissingRequiredField("PV1-3", "a cancel transfer names the location the patient stays in")
        if occurred_at is None and recorded_at is None:
            raise MissingRequiredField("MSH-7", "no event time (EVN-6, EVN-2, MSH-7)")
        key = identity.encounter_event_key(
            kind, encounter, patient=patient, occurred_at=occurred_at, recorded_at=recorded_at
        )
        if kind in _CANCELS:
            cancels = identity.cancelled_event_key(
                kind, encounter, patient=patient, occurred_at=occurred_at, recorded_at=recorded_at
            )
    elif rule.assembly == "patient":
        if recorded_at is None:
            raise MissingRequiredField("MSH-7", "no record time (EVN-2, MSH-7)")
        key = identity.patient_event_key(kind, patient)
    elif rule.assembly == "merge":
        key = identity.merge_key(patient, merged)
    elif rule.assembly == "results":
        first = reports[0]
        if first.filler_order_number is None:
            raise MissingRequiredField("OBR-3", "a result needs a filler order number (OBR-3 / ORC-3)")
        key = identity.result_key(patient, first.filler_order_number, first.code)
    else:  # orders
        first_order = orders[0]
        key = identity.order_key(patient, first_order.placer_order_number, first_order.filler_order_number)
    if ctx.lin:
        ctx.add(None, "key", _KEY_RULE)
        if cancels is not None:
            ctx.add(None, "cancels", f"{_KEY_RULE}: the key of the event this one cancels")
    return key, cancels


def _map(
    ctx: Ctx, rule: MessageRule, *, correlation_id: str | None, received_at: ClinicalDateTime | None
) -> ClinicalEvent:
    msg = ctx.msg
    lin = ctx.lin
    r = ctx.rules
    if lin:
        ctx.add("MSH-9", "kind", f"trigger table: {rule.message_type} -> {rule.kind.value}")
    source = _source(ctx)
    occurred_at = _first_time(ctx, r.occurred_at, "occurred_at")
    recorded_at = _first_time(ctx, r.recorded_at, "recorded_at")
    if len(msg.segments_named("PID")) > 1:
        raise InvalidValue(
            "PID(2)", "more than one patient in one message is not supported", error_code="207"
        )
    patient = map_patient(ctx)
    encounter = None
    merged: tuple[Identifier, ...] = ()
    reports: tuple[ResultReport, ...] = ()
    orders: tuple[ServiceRequest, ...] = ()
    if rule.assembly == "encounter":
        encounter = map_encounter(ctx, rule, required=True)
    elif rule.assembly == "merge":
        merged, patient = map_merged_identifiers(ctx, patient)
    elif rule.assembly == "results":
        encounter = map_encounter(ctx, rule, required=False)
        reports = map_reports(ctx)
        if not reports:
            raise MissingRequiredField("OBR", "a result message needs at least one OBR group")
    elif rule.assembly == "orders":
        encounter = map_encounter(ctx, rule, required=False)
        orders = map_orders(ctx, rule)
    key, cancels = _key(ctx, rule, patient, encounter, occurred_at, recorded_at, merged, reports, orders)

    message_id = msg.get("MSH-10")
    operators = ctx.xcns(msg.segment("EVN"), 5, "EVN-5", "provenance.operators")
    if lin:
        ctx.add(None, "provenance.source_format", "constant hl7v2")
        if message_id is not None:
            ctx.add("MSH-10", "provenance.message_id", "msh-message-control-id")
        ctx.add("MSH-9", "provenance.message_type", "msh-message-type (type^trigger)")
        if received_at is not None:
            ctx.add(None, "provenance.received_at", "argument: when the ingest path received the message")
        if correlation_id is not None:
            ctx.add(None, "provenance.correlation_id", "argument: the ingest correlation id")
    return _new_event(
        kind=rule.kind,
        key=key,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        source=source,
        provenance=_new_provenance(
            source_format="hl7v2",
            message_id=message_id,
            message_type=rule.message_type,
            received_at=received_at,
            correlation_id=correlation_id,
            operators=operators,
        ),
        patient=patient,
        encounter=encounter,
        cancels=cancels,
        merged_identifiers=merged,
        reports=reports,
        orders=orders,
    )


def map_message(
    message: Message,
    *,
    correlation_id: str | None = None,
    received_at: ClinicalDateTime | None = None,
    lineage: bool = False,
    strict: bool = False,
) -> Mapped[ClinicalEvent]:
    """Map one parsed HL7 v2 message to a :class:`ClinicalEvent` (and its lineage when ``lineage``).

    ``strict``: every coded field that has a concept map raises on a code the map cannot map, whatever
    its declared policy. Raises a :class:`~shared.mapping.errors.MappingError` subclass (and nothing
    else) when the message cannot be mapped safely; nothing is returned half-built.
    """
    # the envelope is built without validation (see _map): check the caller's two values here
    if received_at is not None and not isinstance(received_at, ClinicalDateTime):
        raise TypeError("received_at must be a ClinicalDateTime")
    if correlation_id is not None and not isinstance(correlation_id, str):
        raise TypeError("correlation_id must be a str")
    rules = STRICT_RULES if strict else RULES
    rec = LineageRecorder(enabled=lineage)
    ctx = Ctx(message, rules, rec)
    rule = _rule_for(message, rules)
    try:
        event = _map(ctx, rule, correlation_id=correlation_id, received_at=received_at)
    except identity.IdentityError:
        raise MappingError("the event lacks what its identity rule needs", error_code="101") from None
    except ValidationError as exc:
        # A defect in this mapper (it should have raised a typed error first). The pydantic text holds the
        # offending value, so it is not chained into the exception or the logs.
        model = exc.title
        raise MappingError(f"mapped data failed canonical validation ({model})", error_code="207") from None
    return Mapped(value=event, lineage=rec.freeze())


def map_bytes(
    raw: bytes | str,
    *,
    correlation_id: str | None = None,
    received_at: ClinicalDateTime | None = None,
    lineage: bool = False,
    strict: bool = False,
) -> Mapped[ClinicalEvent]:
    """Parse (``shared.hl7v2.parse_message``: raises ``Hl7ParseError`` for malformed input) and map."""
    return map_message(
        parse_message(raw),
        correlation_id=correlation_id,
        received_at=received_at,
        lineage=lineage,
        strict=strict,
    )
