"""PID / PD1 / MRG -> canonical :class:`~shared.canonical.model.Patient` (rules in the package docstring)."""

from __future__ import annotations

from typing import Any, cast

from shared.canonical.model import (
    Address,
    ClinicalDateTime,
    ContactPoint,
    HumanName,
    Identifier,
    MergeLink,
    NhsNumber,
    Patient,
    Sensitivity,
)
from shared.hl7v2 import Segment
from shared.hl7v2.validation import asserts_nhs_number
from shared.identifiers.nhs_number import (
    InvalidNhsNumber,
    is_repeated_digit_nhs_number,
    is_valid_nhs_number,
    normalise_nhs_number,
)
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.hl7v2_in._context import Ctx, val
from shared.terminology.systems import NHS_NUMBER

__all__ = ["map_merged_identifiers", "map_patient"]


def _nhs_repetitions(pid: Segment, n: int) -> list[int]:
    """Repetitions of PID-``n`` that assert an NHS number (computed once per field)."""
    return [rep for rep in range(1, pid.repetition_count(n) + 1) if asserts_nhs_number(pid, n, rep)]


def _nhs_number(ctx: Ctx, pid: Segment, nhs_reps: dict[int, list[int]]) -> tuple[str, str] | None:
    """``(number, source path)`` of the patient's NHS number, or ``None``.

    Repetitions of PID-3 (then PID-2, PID-4) that assert an NHS number (the validator's rule,
    :func:`~shared.hl7v2.validation.asserts_nhs_number`) must pass Modulus 11 (else InvalidValue) and
    agree with each other; repeated-digit placeholders (``9999999999``) are not a patient's number and are
    ignored. Failing those, PID-19 is used when it passes Modulus 11 (some v2.3 UK feeds send the NHS
    number there); a PID-19 value that does not is an SSN-style field and is ignored.
    """
    found: tuple[str, str] | None = None
    for _seg, n, _comp in ctx.rules.nhs_number_fields:
        for rep in nhs_reps[n]:
            raw = val(pid, n, rep, 1)
            src = f"PID-{n}[{rep}].1"
            if raw is None:
                continue
            try:
                number = normalise_nhs_number(raw)
            except InvalidNhsNumber:
                raise InvalidValue(f"PID-{n}", "NHS number fails the Modulus 11 check") from None
            if is_repeated_digit_nhs_number(number):
                continue
            if found is not None and found[0] != number:
                raise InvalidValue(f"PID-{n}", "two different NHS numbers for one patient")
            if found is None:
                found = (number, src)
    if found is not None:
        return found
    for _seg, n, _comp in ctx.rules.nhs_number_unflagged_fields:
        raw = val(pid, n, 1, 1)
        if raw is not None and is_valid_nhs_number(raw):
            number = normalise_nhs_number(raw)
            if not is_repeated_digit_nhs_number(number):
                return (number, f"PID-{n}")
    return None


def _local_identifiers(ctx: Ctx, pid: Segment, nhs_reps: dict[int, list[int]]) -> list[Identifier]:
    """PID-3, then PID-2 and PID-4 (rules ``local_identifier_fields``), CX rules; repetitions asserting an
    NHS number are skipped (they are the NHS number); a system|value seen before is not repeated."""
    out: list[Identifier] = []
    seen: set[tuple[str, str]] = set()
    for _seg, n, _comp in ctx.rules.local_identifier_fields:
        skip = nhs_reps.get(n, ())
        for rep in range(1, pid.repetition_count(n) + 1):
            if rep in skip:
                continue
            ident = ctx.cx(pid, n, rep, f"PID-{n}[{rep}]", f"patient.identifiers[{len(out)}]")
            if ident is not None and (ident.system, ident.value) not in seen:
                seen.add((ident.system, ident.value))
                out.append(ident)
    return out


def _telecom(ctx: Ctx, pid: Segment) -> tuple[ContactPoint, ...]:
    """PID-13 (home) and PID-14 (business) repetitions -> ContactPoints (:meth:`Ctx.xtn`)."""
    out: list[ContactPoint] = []
    for loc, use in ctx.rules.telecom_fields.items():
        n = int(loc[4:])
        for rep in range(1, pid.repetition_count(n) + 1):
            contact = ctx.xtn(pid, n, rep, f"{loc}[{rep}]", f"patient.telecom[{len(out)}]", use)
            if contact is not None:
                out.append(contact)
    return tuple(out)


def _verification_status(ctx: Ctx, pid: Segment) -> str | None:
    """PID-32 repetitions through ``patient.nhs_number.verification_status`` (HL7 UK NSTS01..NSTS08): the
    first status; the table's other reliability codes say nothing about the NHS number (no status); two
    different statuses are an error."""
    rule = ctx.rules.rule("patient.nhs_number.verification_status")
    found: str | None = None
    for rep in range(1, pid.repetition_count(32) + 1):
        code = val(pid, 32, rep, 1)
        if code is None:
            continue
        src = f"PID-32[{rep}]"
        status = ctx.code_value(rule, code, src, "patient.nhs_number.verification_status")
        if not isinstance(status, str):
            continue
        if found is not None and status != found:
            raise InvalidValue("PID-32", "two different NHS number statuses")
        found = status
    return found


def map_patient(ctx: Ctx) -> Patient:
    """The patient of the message (PID, PD1). Raises MissingRequiredField("PID-3") when there is
    neither an NHS number nor a local identifier."""
    pid = ctx.msg.segment("PID")
    if pid is None:
        raise MissingRequiredField("PID", "the message has no PID segment")
    lin = ctx.lin
    nhs_reps = {n: _nhs_repetitions(pid, n) for _seg, n, _comp in ctx.rules.nhs_number_fields}
    nhs = _nhs_number(ctx, pid, nhs_reps)
    nhs_number = None
    if nhs is not None:
        status = _verification_status(ctx, pid)
        # normalise_nhs_number has checked ten digits and Modulus 11, and the status is a target of the
        # concept map, checked against the field's literals when the rules compiled: the model's own
        # checks are not re-run.
        nhs_number = NhsNumber.model_construct(value=nhs[0], verification_status=cast(Any, status))
        if lin:
            ctx.add(
                nhs[1], "patient.nhs_number.value", "nhs-number: asserted (CX.4 NHS / CX.5 NH|HN), Modulus 11"
            )
    identifiers = _local_identifiers(ctx, pid, nhs_reps)
    if nhs_number is None and not identifiers:
        raise MissingRequiredField("PID-3", "no NHS number and no local patient identifier (PID-3/2/4)")

    names: list[HumanName] = []
    for rep in range(1, pid.repetition_count(5) + 1):
        name = ctx.xpn(pid, 5, rep, f"PID-5[{rep}]", f"patient.names[{len(names)}]")
        if name is not None:
            names.append(name)

    birth_date = ctx.birth_date(pid, 7, "PID-7")
    if birth_date is not None and lin:
        ctx.add("PID-7", "patient.birth_date", "birth-date: date part, as sent (UK local date)")

    gender = None
    if val(pid, 8) is not None:
        gender = ctx.code(ctx.rules.rule("patient.gender"), pid, 8, "PID-8", "patient.gender")

    deceased: bool | ClinicalDateTime | None = ctx.time(pid, 29, "PID-29")
    if deceased is not None:
        if lin:
            ctx.add("PID-29", "patient.deceased", "death date/time")
    else:
        flag = _indicator(ctx, pid, 30, "PID-30", "patient.deceased")
        deceased = flag if isinstance(flag, bool) else None

    addresses: list[Address] = []
    for rep in range(1, pid.repetition_count(11) + 1):
        address = ctx.xad(pid, 11, rep, f"PID-11[{rep}]", f"patient.addresses[{len(addresses)}]")
        if address is not None:
            addresses.append(address)

    telecom = _telecom(ctx, pid)

    marital = ctx.coded(ctx.rules.rule("patient.marital_status"), pid, 16, "PID-16", "patient.marital_status")
    ethnicity = ctx.coded(ctx.rules.rule("patient.ethnicity"), pid, 22, "PID-22[1]", "patient.ethnicity")

    gp = None
    sensitivity = Sensitivity.NORMAL
    pd1 = ctx.msg.segment("PD1")
    if pd1 is not None:
        gp = ctx.xon(pd1, 3, "PD1-3", "patient.general_practitioner")
        level = _indicator(ctx, pd1, 12, "PD1-12", "patient.sensitivity")
        if isinstance(level, str):
            sensitivity = Sensitivity(level)
    if lin and pd1 is None:
        ctx.add(None, "patient.sensitivity", "no PD1-12 protection indicator: normal")

    return Patient(
        nhs_number=nhs_number,
        identifiers=tuple(identifiers),
        names=tuple(names),
        birth_date=birth_date,
        gender=gender,
        deceased=deceased,
        addresses=tuple(addresses),
        telecom=telecom,
        general_practitioner=gp,
        ethnicity=ethnicity,
        marital_status=marital,
        sensitivity=sensitivity,
    )


def _indicator(ctx: Ctx, seg: Segment, n: int, src: str, tgt: str) -> str | bool | None:
    """A Y/N indicator through the rules' ``indicators`` table; empty -> its ``when_empty`` (or None);
    any other value -> InvalidValue (table 0136 value not found)."""
    table = ctx.rules.indicators[src]
    code = val(seg, n)
    if code is None:
        if src in ctx.rules.indicator_when_empty:
            value: str | bool | None = ctx.rules.indicator_when_empty[src]
            if ctx.lin:
                ctx.add(src, tgt, f"indicator {src} empty: {value}")
            return value
        return None
    if code.upper() not in table:
        raise InvalidValue(src, "not a Y/N indicator value", error_code="103")
    value = table[code.upper()]
    if ctx.lin:
        ctx.add(src, tgt, f"indicator {src}: {code.upper()} -> {value}")
    return value


def map_merged_identifiers(ctx: Ctx, surviving: Patient) -> tuple[tuple[Identifier, ...], Patient]:
    """A40: MRG-1 (the record merged away) -> ``merged_identifiers``, and the surviving patient with a
    ``replaces`` link to each of them. An NHS-number repetition of MRG-1 gives an NHS-number identifier."""
    mrg = ctx.msg.segment("MRG")
    if mrg is None:
        raise MissingRequiredField("MRG", "a merge needs an MRG segment")
    merged: list[Identifier] = []
    sources: list[str] = []
    for rep in range(1, mrg.repetition_count(1) + 1):
        src = f"MRG-1[{rep}]"
        tgt = f"merged_identifiers[{len(merged)}]"
        if asserts_nhs_number(mrg, 1, rep):
            raw = val(mrg, 1, rep, 1)
            if raw is None:
                continue
            try:
                number = normalise_nhs_number(raw)
            except InvalidNhsNumber:
                raise InvalidValue("MRG-1", "NHS number fails the Modulus 11 check") from None
            if is_repeated_digit_nhs_number(number):
                continue
            ident: Identifier | None = Identifier(system=NHS_NUMBER, value=number, type="NH")
            if ctx.lin:
                ctx.add(f"{src}.1", f"{tgt}.value", "mrg-nhs-number (Modulus 11)")
                ctx.add(f"{src}.4", f"{tgt}.system", "nhs-number system")
                ctx.add(f"{src}.5", f"{tgt}.type", "nhs-number type NH")
        else:
            ident = ctx.cx(mrg, 1, rep, src, tgt)
        if ident is not None and ident not in merged:
            merged.append(ident)
            sources.append(src)
    if not merged:
        raise MissingRequiredField("MRG-1", "a merge needs the identifier of the record merged away")
    links = tuple(MergeLink(kind="replaces", other=i) for i in merged)
    if ctx.lin:
        for i, src in enumerate(sources):
            ctx.add(src, f"patient.links[{i}].other", "merge: surviving record replaces MRG-1")
            ctx.add("MSH-9.2", f"patient.links[{i}].kind", "merge link kind 'replaces' (A40)")
    return tuple(merged), surviving.model_copy(update={"links": links})
