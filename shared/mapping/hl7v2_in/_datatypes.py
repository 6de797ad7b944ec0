"""HL7 v2 data-type readers of the mapping context (CX, EI, XPN, XAD, XTN, XCN, PL, XON, DR periods).
Lineage is recorded here, at the leaf where the source path is known."""

from __future__ import annotations

from shared.canonical.model import (
    Address,
    ClinicalDateTime,
    ContactPoint,
    DataAbsent,
    HumanName,
    Identifier,
    Location,
    Organization,
    Period,
    Practitioner,
)
from shared.hl7v2 import Segment
from shared.identifiers import systems as id_systems
from shared.mapping.errors import InvalidValue, UnmappedSourceCode
from shared.mapping.hl7v2_in._builders import (
    new_address,
    new_contact_point,
    new_human_name,
    new_identifier,
    new_location,
    new_organization,
    new_period,
    new_practitioner,
)
from shared.mapping.hl7v2_in._codes import CodeReaders
from shared.mapping.hl7v2_in._context_base import CtxBase
from shared.mapping.hl7v2_in._fields import Rep
from shared.mapping.hl7v2_in._memo import MemoKey, _time, memoised

__all__ = ["DataTypeReaders", "street_line"]


def _text_key(ctx: CtxBase, text: str, kind: str, extra: object) -> MemoKey:
    """``(kind, text, extra)`` in the rules' memo, for text without escape sequences."""
    if not text or ctx.esc in text:
        return None
    return ctx.rules.memo, (kind, text, extra), text


def _strict(ctx: CtxBase) -> str | None:
    return "strict" if ctx.rules.strict else None


def street_line(street: str | None, name: str | None, number: str | None) -> str | None:
    """The first address line from XAD.1 (SAD): SAD.1 street or mailing address, SAD.2 street name,
    SAD.3 dwelling number - one line, nothing dropped. SAD.2/SAD.3 are by definition parsed parts of SAD.1:
    when SAD.1 already holds them (as whole words) they are not repeated; otherwise they follow SAD.1
    (``1000&Hospital Lane`` -> ``1000 Hospital Lane``). Without SAD.1 the line is number then street name
    (``&High Street&12`` -> ``12 High Street``), the UK order."""
    if street is None:
        parts = [p for p in (number, name) if p]
        return " ".join(parts) if parts else None
    words = set(street.replace(",", " ").split())
    extra = [p for p in (name, number) if p and not set(p.replace(",", " ").split()) <= words]
    return " ".join((street, *extra)) if extra else street


class DataTypeReaders(CodeReaders):
    """The context's data-type readers."""

    __slots__ = ()

    @memoised(
        lambda ctx, seg, n, rep, src, tgt, *, id_type=None, f=None: _text_key(
            ctx, ctx.rep_text(seg, n, rep) if f is None else f.text, "cx", id_type
        )
    )
    def cx(
        self,
        seg: Segment,
        n: int,
        rep: int,
        src: str,
        tgt: str,
        *,
        id_type: str | None = None,
        f: Rep | None = None,
        text: str | None = None,
    ) -> Identifier | None:
        """CX -> Identifier: value CX.1, system from CX.4 (else the sending facility), type CX.5 (or
        ``id_type`` when the field fixes it, e.g. VN for PV1-19), assigner CX.4.1. ``f``: the repetition
        already split by the caller."""
        if f is None:
            f = self.rep(seg, n, rep, self.rep_text(seg, n, rep) if text is None else text)
        value = f(1)
        if value is None:
            return None
        ns = f(4, 1)
        kind = id_type or f(5)
        system = self.authority_system(ns, f(4, 2), f(4, 3), id_type=kind) if f.has(4) else None
        fallback = system is None
        if fallback:
            system, system_src = self.facility(src, kind)
            self.not_memoisable()  # the sender's namespace
        ident = new_identifier(system=system, value=value, type=kind, assigner=ns)
        if self.lin:
            if not fallback:
                system_src = f"{src}.4"
            self.add(f"{src}.1", f"{tgt}.value", "cx-value")
            self.add(system_src, f"{tgt}.system", self.system_rule(ident.system))
            if id_type is not None:
                self.add(src, f"{tgt}.type", f"constant {id_type}: what the field identifies")
            elif ident.type is not None:
                self.add(f"{src}.5", f"{tgt}.type", "cx-type (v2-0203 code as sent)")
            if ns is not None:
                self.add(f"{src}.4.1", f"{tgt}.assigner", "cx-assigning-authority")
        return ident

    def ei(self, seg: Segment, n: int, src: str, tgt: str, id_type: str) -> Identifier | None:
        """EI -> Identifier: value EI.1, system from EI.2/EI.3+EI.4 (else the sending application)."""
        f = Rep(seg, n)
        value = f(1)
        if value is None:
            return None
        ns = f(2)
        system = self.authority_system(ns, f(3), f(4), id_type=id_type)
        system_src = f"{src}.2"
        if system is None:
            system, system_src = self.application(src, id_type)
        ident = new_identifier(system=system, value=value, type=id_type, assigner=ns)
        if self.lin:
            self.add(f"{src}.1", f"{tgt}.value", "ei-entity-identifier")
            self.add(system_src, f"{tgt}.system", self.system_rule(system))
            self.add(src, f"{tgt}.type", f"constant {id_type}: the field is a {id_type} order number")
            if ns is not None:
                self.add(f"{src}.2", f"{tgt}.assigner", "ei-namespace")
        return ident

    def period(self, f: Rep, start_c: int, end_c: int, src: str, tgt: str) -> Period | None:
        if not f.has(start_c) and not f.has(end_c):
            return None
        start = self._component_time(f, start_c, f"{src}.{start_c}")
        end = self._component_time(f, end_c, f"{src}.{end_c}")
        if start is None and end is None:
            return None
        if self.lin:
            if start is not None:
                self.add(f"{src}.{start_c}", f"{tgt}.start", "ts")
            if end is not None:
                self.add(f"{src}.{end_c}", f"{tgt}.end", "ts")
        return new_period(start=start, end=end)

    def _component_time(self, f: Rep, comp: int, src: str) -> ClinicalDateTime | None:
        raw = f(comp)
        if raw is None:
            return None
        return _time(raw, src)

    @memoised(
        lambda ctx, seg, n, rep, src, tgt: _text_key(ctx, ctx.rep_text(seg, n, rep), "xpn", _strict(ctx))
    )
    def xpn(
        self, seg: Segment, n: int, rep: int, src: str, tgt: str, *, text: str | None = None
    ) -> HumanName | None:
        """XPN -> HumanName: family XPN.1.1; given XPN.2 then XPN.3 split on spaces (middle names);
        prefix XPN.5; suffix XPN.4, XPN.6 (degree), XPN.14; period XPN.12/13; use XPN.7 through the
        ``patient.names.use`` rule (v2-0200; a type with no FHIR name-use leaves ``use`` empty)."""
        f = self.rep(seg, n, rep, self.rep_text(seg, n, rep) if text is None else text)
        family = f(1, 1)
        first = f(2)
        middle = f(3)
        given: tuple[str, ...] = ()
        if first is not None:
            given = (first,)
        if middle is not None:
            given = (*given, *middle.split())
        if family is None and not given:
            return None
        pre = f(5)
        prefix = () if pre is None else (pre,)
        suffix = tuple(s for s in (f(4), f(6), f(14)) if s)
        period = self.period(f, 12, 13, src, f"{tgt}.period") if f.width > 11 else None
        use = None
        name_type = f(7)
        if name_type is not None:
            use = self.code_value(self.rules.coded["patient.names.use"], name_type, f"{src}.7", f"{tgt}.use")
        name = new_human_name(
            family=family,
            given=given,
            prefix=prefix,
            suffix=suffix,
            use=use,  # a HumanName.use literal: checked when rules compile
            period=period,
        )
        if self.lin:
            if family is not None:
                self.add(f"{src}.1.1", f"{tgt}.family", "xpn-family")
            if first is not None:
                self.add(f"{src}.2", f"{tgt}.given[0]", "xpn-given")
            if middle is not None:
                start = 1 if first is not None else 0
                for i in range(start, len(given)):
                    self.add(f"{src}.3", f"{tgt}.given[{i}]", "xpn-middle-names: split on spaces")
            if prefix:
                self.add(f"{src}.5", f"{tgt}.prefix[0]", "xpn-prefix")
            i = 0
            for comp in (4, 6, 14):
                if f(comp) is not None:
                    self.add(f"{src}.{comp}", f"{tgt}.suffix[{i}]", "xpn-suffix / degree")
                    i += 1
        return name

    @memoised(
        lambda ctx, seg, n, rep, src, tgt: _text_key(ctx, ctx.rep_text(seg, n, rep), "xad", _strict(ctx))
    )
    def xad(
        self, seg: Segment, n: int, rep: int, src: str, tgt: str, *, text: str | None = None
    ) -> Address | None:
        """XAD -> Address: first line from XAD.1 (SAD, see :func:`street_line`), second line XAD.2 (other
        designation), city .3, district .4 (county), postcode .5, country .6, period .13/.14; XAD.7 through
        ``patient.addresses.use`` / ``patient.addresses.type`` (v2-0190: home/business... are uses,
        mailing a type; the other stays empty). XAD.8 (other geographic designation) is not a line."""
        f = self.rep(seg, n, rep, self.rep_text(seg, n, rep) if text is None else text)
        sad = (f(1, 1), f(1, 2), f(1, 3))
        street = street_line(*sad)
        other = f(2)
        lines = tuple(x for x in (street, other) if x is not None)
        city = f(3)
        district = f(4)
        postcode = f(5)
        country = f(6)
        if not lines and city is None and district is None and postcode is None and country is None:
            return None
        period = self.period(f, 13, 14, src, f"{tgt}.period") if f.width > 12 else None
        use = kind = None
        address_type = f(7)
        if address_type is not None:
            use, kind = self._address_use_and_type(address_type, f"{src}.7", tgt)
        address = new_address(
            lines=lines,
            city=city,
            district=district,
            postal_code=postcode,
            country=country,
            use=use,  # Address.use / .type literals: checked when rules compile
            type=kind,
            period=period,
        )
        if self.lin:
            i = 0
            if street is not None:
                for k, part in enumerate(sad, start=1):
                    if part is not None:
                        self.add(f"{src}.1.{k}", f"{tgt}.lines[0]", "xad-street (SAD: street, name, number)")
                i = 1
            if other is not None:
                self.add(f"{src}.2", f"{tgt}.lines[{i}]", "xad-other-designation")
            for comp, attr, value in (
                (3, "city", city),
                (4, "district", district),
                (5, "postal_code", postcode),
                (6, "country", country),
            ):
                if value is not None:
                    self.add(f"{src}.{comp}", f"{tgt}.{attr}", f"xad-{attr}")
        return address

    def _address_use_and_type(self, code: str, src: str, tgt: str) -> tuple[object, object]:
        """XAD.7 is a use *or* a type: each group of the v2-0190 map is asked; the code is unmapped (and a
        ``raise`` / strict rule raises) only when neither maps it."""
        coded = self.rules.coded
        found: list[object] = []
        failure: UnmappedSourceCode | None = None
        for name, attr in (("patient.addresses.use", "use"), ("patient.addresses.type", "type")):
            try:
                found.append(self.code_value(coded[name], code, src, f"{tgt}.{attr}"))
            except UnmappedSourceCode as exc:
                failure = failure or exc
                found.append(None)
        if failure is not None and found == [None, None]:
            raise failure
        return found[0], found[1]

    @memoised(
        lambda ctx, seg, n, rep, src, tgt, field_use: _text_key(
            ctx, ctx.rep_text(seg, n, rep), "xtn", f"{field_use}|{'strict' if ctx.rules.strict else ''}"
        )
    )
    def xtn(
        self,
        seg: Segment,
        n: int,
        rep: int,
        src: str,
        tgt: str,
        field_use: str | None,
        *,
        text: str | None = None,
    ) -> ContactPoint | None:
        """XTN -> ContactPoint (rules ``telecom`` and ``patient.telecom.*``): system from XTN.3 through
        v2-0202 (a local equipment type raises); without XTN.3 an email address (XTN.4, or an ``@`` in
        XTN.1) is ``email`` and anything else a phone number (the field is a phone-number field). Value:
        an email's XTN.4 else XTN.1; otherwise XTN.1, else XTN.12 (unformatted), else XTN.5-8 joined.
        Use: XTN.2 through v2-0201 (no FHIR use: empty); an empty XTN.2 takes ``field_use`` (PID-13 home,
        PID-14 work). ``None`` when there is no value."""
        f = self.rep(seg, n, rep, self.rep_text(seg, n, rep) if text is None else text)
        r = self.rules
        number, number_comp = f(1), 1
        if number is None:
            number, number_comp = f(12), 12
        if number is None:
            parts = [f(5), f(6), f(7)]
            extension = f(8)
            if any(parts):
                number = " ".join(p for p in parts if p) + (f" ext. {extension}" if extension else "")
                number_comp = 7
        email = f(4)
        equipment = f(3)
        if equipment is not None:
            rule = r.coded["patient.telecom.system"]
            system = self.code_value(rule, equipment, f"{src}.3", f"{tgt}.system")
            if not isinstance(system, str):  # the rule raises for unmapped codes: defensive
                raise InvalidValue(
                    f"{src}.3", "telecom equipment type has no contact point system", error_code="103"
                )
        elif (number is None and email is not None) or (number is not None and "@" in number):
            system = r.telecom_address_system
            if self.lin:
                self.add(src, f"{tgt}.system", "telecom: no XTN.3, an email address -> email")
        else:
            system = r.telecom_number_system
            if self.lin:
                self.add(src, f"{tgt}.system", "telecom: no XTN.3, a number in a phone-number field -> phone")
        value: str | None
        if system == r.telecom_address_system and email is not None:
            value, value_comp = email, 4
        else:
            value, value_comp = number, number_comp
        if value is None:
            return None
        use_code = f(2)
        use: str | DataAbsent | None
        fixed_use = r.telecom_use_by_equipment.get(equipment.upper()) if equipment is not None else None
        if fixed_use is not None:
            use = fixed_use
            if self.lin:
                self.add(f"{src}.3", f"{tgt}.use", f"telecom: equipment type {equipment} -> use {use}")
        elif use_code is not None:
            use = self.code_value(r.coded["patient.telecom.use"], use_code, f"{src}.2", f"{tgt}.use")
        else:
            use = field_use
            if use is not None and self.lin:
                self.add(src, f"{tgt}.use", f"telecom: no XTN.2, the field's own use ({use})")
        if self.lin:
            self.add(f"{src}.{value_comp}", f"{tgt}.value", "xtn-value")
            if equipment is not None:
                self.add(f"{src}.3", f"{tgt}.equipment_type", "xtn-equipment-type as sent")
            if use_code is not None:
                self.add(f"{src}.2", f"{tgt}.use_code", "xtn-use-code as sent")
        contact = new_contact_point(
            system=system,  # ContactPoint literals: checked when rules compile
            value=value,
            use=use,
            equipment_type=equipment,  # as sent (XTN.3 / XTN.2), for an HL7 v2 write-back
            use_code=use_code,
        )
        return contact

    @memoised(lambda ctx, seg, n, rep, src, tgt: _text_key(ctx, ctx.rep_text(seg, n, rep), "xcn", None))
    def xcn(
        self, seg: Segment, n: int, rep: int, src: str, tgt: str, *, text: str | None = None
    ) -> Practitioner | None:
        """XCN -> Practitioner: id XCN.1 in the system of XCN.9 (GMC/GMP... URIs for known authorities,
        else ``urn:tie:authority:``), else of XCN.13 when it names a known authority (GMP, GMC), else the
        sending facility; type XCN.13; name XCN.2-7."""
        f = self.rep(seg, n, rep, self.rep_text(seg, n, rep) if text is None else text)
        ident_value = f(1)
        identifiers: tuple[Identifier, ...] = ()
        if ident_value is not None:
            ns = f(9, 1)
            system = self.authority_system(ns, f(9, 2), f(9, 3), id_type=id_systems.PRACTITIONER)
            system_src = f"{src}.9"
            id_type = f(13)
            if system is None and id_type is not None:
                # no XCN.9, but the identifier type names a registered authority (PD1-4 ...^^^^GMP): its URI
                system = self.rules.authority_systems.get(id_type.upper())
                system_src = f"{src}.13"
            if system is None:
                system, system_src = self.facility(src, id_systems.PRACTITIONER)
                self.not_memoisable()  # the sender's namespace
            identifiers = (new_identifier(system=system, value=ident_value, type=f(13), assigner=ns),)
            if self.lin:
                self.add(f"{src}.1", f"{tgt}.identifiers[0].value", "xcn-id")
                self.add(system_src, f"{tgt}.identifiers[0].system", self.system_rule(system))
                if identifiers[0].type is not None:
                    self.add(f"{src}.13", f"{tgt}.identifiers[0].type", "xcn-identifier-type")
                if ns is not None:
                    self.add(f"{src}.9.1", f"{tgt}.identifiers[0].assigner", "xcn-assigning-authority")
        family = f(2, 1)
        first = f(3)
        middle = f(4)
        given = tuple(x for x in (first,) if x is not None) + (tuple(middle.split()) if middle else ())
        prefix = tuple(x for x in (f(6),) if x is not None)
        suffix = tuple(x for x in (f(5), f(7)) if x is not None)
        name = None
        if family is not None or given:
            name = new_human_name(family=family, given=given, prefix=prefix, suffix=suffix)
            if self.lin:
                t = f"{tgt}.name"
                if family is not None:
                    self.add(f"{src}.2.1", f"{t}.family", "xcn-family")
                if given:
                    self.add(f"{src}.3", f"{t}.given", "xcn-given (+ XCN.4 middle names)")
                if prefix:
                    self.add(f"{src}.6", f"{t}.prefix", "xcn-prefix")
                if suffix:
                    self.add(f"{src}.5", f"{t}.suffix", "xcn-suffix / degree (XCN.5, XCN.7)")
        if not identifiers and name is None:
            return None
        practitioner = new_practitioner(identifiers=identifiers, name=name)
        return practitioner

    def xcns(self, seg: Segment | None, n: int, src: str, tgt: str) -> tuple[Practitioner, ...]:
        if seg is None:
            return ()
        out: list[Practitioner] = []
        for rep in range(1, seg.repetition_count(n) + 1):
            p = self.xcn(seg, n, rep, f"{src}[{rep}]", f"{tgt}[{len(out)}]")
            if p is not None:
                out.append(p)
        return tuple(out)

    @memoised(lambda ctx, seg, n, src, tgt: _text_key(ctx, ctx.rep_text(seg, n), "pl", None))
    def pl(self, seg: Segment, n: int, src: str, tgt: str, *, text: str | None = None) -> Location | None:
        """PL -> Location: point of care .1, room .2, bed .3, facility .4.1, description .9."""
        f = self.rep(seg, n, 1, self.rep_text(seg, n) if text is None else text)
        poc, room, bed = f(1), f(2), f(3)
        facility, desc = f(4, 1), f(9)
        if poc is None and room is None and bed is None and facility is None and desc is None:
            return None
        if self.lin:
            for comp, attr, value in (
                ("1", "point_of_care", poc),
                ("2", "room", room),
                ("3", "bed", bed),
                ("4.1", "facility", facility),
                ("9", "description", desc),
            ):
                if value is not None:
                    self.add(f"{src}.{comp}", f"{tgt}.{attr}", f"pl-{attr}")
        location = new_location(point_of_care=poc, room=room, bed=bed, facility=facility, description=desc)
        return location

    def xon(self, seg: Segment, n: int, src: str, tgt: str) -> Organization | None:
        """XON -> Organization: ODS code XON.10 (v2.5+) else XON.3 (v2.3/2.4 id number), name XON.1."""
        f = Rep(seg, n)
        name = f(1)
        code = f(10)
        code_src = f"{src}.10"
        if code is None:
            code, code_src = f(3), f"{src}.3"
        if name is None and code is None:
            return None
        if self.lin:
            if code is not None:
                self.add(code_src, f"{tgt}.ods_code", "xon-organization-identifier (ODS code)")
            if name is not None:
                self.add(f"{src}.1", f"{tgt}.name", "xon-organization-name")
        return new_organization(ods_code=code, name=name)
