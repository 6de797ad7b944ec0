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
from shared.mapping._construct import builder
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.hl7v2_in._context import Ctx, Rep, remember, val
from shared.terminology.systems import NHS_NUMBER

__all__ = ["map_merged_identifiers", "map_patient"]

_new_patient = builder(Patient)


def _nhs_value(raw: str, n: int) -> str | None:
    """The normalised NHS number of a repetition asserting one; ``None`` for a repeated-digit placeholder
    (``9999999999``: not a patient's number). A failed Modulus 11 check is InvalidValue ``PID-n``.

    Ten plain ASCII digits (the usual form) are checked here directly; anything else (spaces, hyphens,
    junk) goes through :func:`~shared.identifiers.nhs_number.normalise_nhs_number` - the same verdicts
    (tested against it)."""
    if len(raw) == 10 and raw.isascii() and raw.isdigit():
        d = raw.encode("ascii")  # byte values: digit = value - 48; the weights sum to 54
        total = (
            10 * d[0] + 9 * d[1] + 8 * d[2] + 7 * d[3] + 6 * d[4] + 5 * d[5] + 4 * d[6] + 3 * d[7] + 2 * d[8]
        ) - 54 * 48
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check == 10 or check != d[9] - 48:
            raise InvalidValue(f"PID-{n}", "NHS number fails the Modulus 11 check")
        return None if raw == raw[0] * 10 else raw
    try:
        number = normalise_nhs_number(raw)
    except InvalidNhsNumber:
        raise InvalidValue(f"PID-{n}", "NHS number fails the Modulus 11 check") from None
    return None if is_repeated_digit_nhs_number(number) else number


def _identifiers(ctx: Ctx, pid: Segment) -> tuple[tuple[str, str] | None, list[Identifier]]:
    """The NHS number ``(number, source path)`` and the local identifiers, in one pass over PID-3, PID-2
    and PID-4 (rules ``nhs_number_fields`` / ``local_identifier_fields``).

    * A repetition that asserts an NHS number (the validator's own rule,
      :func:`~shared.hl7v2.validation.asserts_nhs_number`) is the NHS number: it must pass Modulus 11
      (else InvalidValue) and agree with every other one; repeated-digit placeholders are ignored. It is
      never a local identifier.
    * Every other repetition -> a local identifier (CX rules), PID-3's first; a system|value once.
    * No asserted NHS number: PID-19 when it passes Modulus 11 (some v2.3 UK feeds send the NHS number
      there); a PID-19 value that does not is an SSN-style field and is ignored.
    """
    r = ctx.rules
    nhs_fields = {n for _s, n, _c in r.nhs_number_fields}
    local_fields = [n for _s, n, _c in r.local_identifier_fields]
    fields = [n for _s, n, _c in r.nhs_number_fields] + [n for n in local_fields if n not in nhs_fields]
    found: tuple[str, str] | None = None
    local: dict[int, list[tuple[int, Rep]]] = {}
    for n in fields:
        raw_field = pid.raw_field(n)
        if not raw_field:
            continue
        for rep, text in enumerate(pid.raw_repetitions(n), start=1):  # one split per field
            f = ctx.rep(pid, n, rep, text)
            if f.asserts_nhs_number():
                if n not in nhs_fields:
                    continue  # an NHS number is never a local identifier
                raw = f(1)
                if raw is None:
                    continue
                number = _nhs_value(raw, n)
                if number is None:
                    continue
                if found is None:
                    found = (number, f"PID-{n}[{rep}].1")
                elif found[0] != number:
                    raise InvalidValue(f"PID-{n}", "two different NHS numbers for one patient")
            else:
                local.setdefault(n, []).append((rep, f))
    out: list[Identifier] = []
    seen: set[tuple[str, str]] = set()
    for n in local_fields:
        for rep, f in local.get(n, ()):
            ident = ctx.cx(pid, n, rep, f"PID-{n}[{rep}]", f"patient.identifiers[{len(out)}]", f=f)
            if ident is not None and (ident.system, ident.value) not in seen:
                seen.add((ident.system, ident.value))
                out.append(ident)
    if found is None:
        for _seg, n, _comp in r.nhs_number_unflagged_fields:
            raw = val(pid, n, 1, 1)
            if raw is not None and is_valid_nhs_number(raw):
                number = normalise_nhs_number(raw)
                if not is_repeated_digit_nhs_number(number):
                    found = (number, f"PID-{n}")
                    break
    return found, out


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
    neither an NHS number nor a local identifier.

    Lineage off, the result is reused for a later message with the same PID and PD1 text from the same
    sender (a patient's demographics recur in every message of their stay; the Patient is immutable)."""
    pid = ctx.segment("PID")
    if pid is None:
        raise MissingRequiredField("PID", "the message has no PID segment")
    key = ctx.segments_key("PID", "PD1")
    if key is not None:
        hit = ctx.rules.memo.get(("patient", key))
        if hit is not None:
            return hit  # type: ignore[return-value]
    patient = _map_patient(ctx, pid)
    if key is not None:
        remember(ctx.rules.memo, ("patient", key), patient)
    return patient


def _map_patient(ctx: Ctx, pid: Segment) -> Patient:
    lin = ctx.lin
    nhs, identifiers = _identifiers(ctx, pid)
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

    gp = registered_gp = None
    sensitivity = Sensitivity.NORMAL
    pd1 = ctx.segment("PD1")
    if pd1 is not None:
        gp = ctx.xon(pd1, 3, "PD1-3", "patient.general_practitioner")
        registered_gp = ctx.xcn(pd1, 4, 1, "PD1-4[1]", "patient.registered_gp")
        level = _indicator(ctx, pd1, 12, "PD1-12", "patient.sensitivity")
        if isinstance(level, str):
            sensitivity = Sensitivity(level)
    if lin and pd1 is None:
        ctx.add(None, "patient.sensitivity", "no PD1-12 protection indicator: normal")

    fields: dict[str, Any] = {
        "nhs_number": nhs_number,
        "identifiers": tuple(identifiers),
        "names": tuple(names),
        "birth_date": birth_date,
        "gender": gender,
        "deceased": deceased,
        "addresses": tuple(addresses),
        "telecom": telecom,
        "general_practitioner": gp,
        "registered_gp": registered_gp,
        "ethnicity": ethnicity,
        "marital_status": marital,
        "sensitivity": sensitivity,
    }

    def empty(name: str) -> bool:
        if name == "nhs_number.verification_status":  # only a number that is carried has a status
            return nhs_number is not None and nhs_number.verification_status is None
        return fields[name] is None or fields[name] == ()

    fields["cleared"] = ctx.cleared("patient", empty, pid, pd1)
    fields["defaulted"] = _defaulted(ctx)
    # Patient's own rule (an NHS number or a local identifier, nothing both cleared and given a value)
    # was checked above and by ctx.cleared: a trusted build.
    return _new_patient(**fields)


def _defaulted(ctx: Ctx) -> tuple[str, ...]:
    """Rules ``explicit_null.defaults_when_absent``: a field left empty or absent (no segment) holds the
    mapper's default, not the sender's statement; the HL7 null ``""`` or a value is a statement."""
    out: list[str] = []
    for seg_name, n, name in ctx.rules.defaults_when_absent:
        seg = ctx.segment(seg_name)
        if seg is None or not seg.raw_field(n).strip():
            out.append(name)
            if ctx.lin:
                ctx.add(None, "patient.defaulted", f"{seg_name}-{n} not sent: the default, not a statement")
    return tuple(out)


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
    mrg = ctx.segment("MRG")
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
