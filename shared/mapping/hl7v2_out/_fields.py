"""HL7 v2 data-type writers (CX, EI, HD, XPN, XAD, XCN, XON, PL, CWE, TS) and reverse code translation.

Each writer is the inverse of the matching reader in :mod:`shared.mapping.hl7v2_in` (``_context.py``), using
the same rules data (:data:`shared.mapping.hl7v2_in.rules.RULES`: identifier-system prefixes, authority
URIs, coding-system names, Y/N indicators), so HL7 -> canonical -> HL7 -> canonical is stable. Lineage
entries go from the canonical path (source) to the HL7 path (target, ``PID-5[1].2``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from urllib.parse import unquote

from shared.canonical.model import (
    Address,
    ClinicalDateTime,
    Coded,
    Coding,
    ContactPoint,
    DataAbsent,
    HumanName,
    Identifier,
    Location,
    Organization,
    PartialDate,
    Practitioner,
)
from shared.hl7v2 import FieldValue
from shared.identifiers import systems as id_systems
from shared.mapping.hl7v2_in.rules import RULES
from shared.mapping.hl7v2_out.errors import Hl7OutError, UnmappableCode
from shared.mapping.lineage import LineageRecorder
from shared.mapping.timeutil import to_hl7
from shared.terminology import (
    Equivalence,
    UnknownConceptMap,
    load_concept_map,
    local_systems,
    translate,
    v2tables,
)
from shared.terminology import systems as term
from shared.terminology.systems import V2_TABLE_BASE

Component = str | list[str | None] | None

_EXACT = frozenset({Equivalence.EQUAL, Equivalence.EQUIVALENT})
#: authority URI -> HL7 assigning-authority name (GMC, ODS ...): the inverse of the rules' table.
_AUTHORITY_NAMES: Mapping[str, str] = {
    uri: name for name, uri in reversed(list(RULES.authority_systems.items()))
}
#: code system URI -> HL7 coding-system name (LN, SCT ...): the first name the rules give each URI.
_SYSTEM_NAMES: Mapping[str, str] = {uri: name for name, uri in reversed(list(RULES.coding_systems.items()))}


def parse_version(version: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in version.split("."))
    except ValueError:
        raise Hl7OutError("version", "HL7 version must look like 2.5.1") from None
    if len(parts) < 2 or parts[0] != 2 or not 3 <= parts[1] <= 8:
        raise Hl7OutError("version", "only HL7 v2.3 to v2.8 can be written")
    return parts


class Out:
    """State of one message being written: the lineage recorder and the version's field layout."""

    __slots__ = ("lin", "rec", "v25", "version")

    def __init__(self, rec: LineageRecorder, version: str) -> None:
        self.rec = rec
        self.lin = rec.enabled
        self.version = version
        #: v2.5+ has XON.10, XPN.12-14, XAD.13-14, OBX-23, DTM and CWE.
        self.v25 = parse_version(version) >= (2, 5)

    def add(self, source: str | None, target: str, rule: str, *, table: str | None = None) -> None:
        if self.lin:
            table_version = None
            if table is not None:
                table_version = _map_version(table)
            self.rec.add(source, target, rule, table=table, table_version=table_version)


@functools.cache
def _map_version(concept_map_id: str) -> str | None:
    try:
        return load_concept_map(concept_map_id).version
    except UnknownConceptMap:
        return None


# ------------------------------------------------------------------------------------------------ times
def ts(t: ClinicalDateTime | None) -> str | None:
    """TS/DTM in UK local time with an explicit offset (``timeutil.to_hl7``), at the recorded precision."""
    return None if t is None else to_hl7(t)


def dt(d: PartialDate | None) -> str | None:
    if d is None:
        return None
    out = f"{d.year:04d}"
    if d.month is not None:
        out += f"{d.month:02d}"
        if d.day is not None:
            out += f"{d.day:02d}"
    return out


# ------------------------------------------------------------------------------------------ identifiers
def hd(system: str) -> list[str | None]:
    """Identifier system -> HD (namespace, universal id, universal id type), the inverse of the reader:
    ``urn:tie:authority:<ns>`` -> ns; a Trust's configured URI -> its namespace (shared.identifiers.systems);
    a known authority URI -> its name (ODS, GMC ...);
    ``urn:oid:``/``urn:uuid:`` -> universal id ISO/UUID; any other URI -> universal id type ``URI``."""
    prefix = RULES.local_system_prefix
    if system.startswith(prefix):
        return [unquote(system[len(prefix) :])]
    configured = id_systems.configured().authority_of(system)
    if configured is not None:  # a Trust's configured URI -> the namespace it was configured for
        return [configured]
    name = _AUTHORITY_NAMES.get(system)
    if name is not None:
        return [name]
    for utype, uprefix in RULES.universal_id_prefixes.items():
        if system.startswith(uprefix):
            return [None, system[len(uprefix) :], utype]
    return [None, system, "URI"]


def cx(ident: Identifier, o: Out, src: str, dst: str) -> list[Component]:
    """CX: value ^^^ assigning authority (HD) ^ identifier type."""
    o.add(f"{src}.value", f"{dst}.1", "cx-value")
    o.add(f"{src}.system", f"{dst}.4", "identifier system -> assigning authority (HD)")
    if ident.type is not None:
        o.add(f"{src}.type", f"{dst}.5", "cx-type")
    return _trim([ident.value, None, None, hd(ident.system), ident.type])


def ei(ident: Identifier | None, o: Out, src: str, dst: str) -> list[Component] | None:
    """EI: entity id ^ namespace ^ universal id ^ universal id type."""
    if ident is None:
        return None
    h = hd(ident.system)
    o.add(f"{src}.value", f"{dst}.1", "ei-entity-identifier")
    o.add(f"{src}.system", f"{dst}.2", "identifier system -> namespace (HD)")
    return [ident.value, *h]


# ------------------------------------------------------------------------------------------------ names
def xpn(name: HumanName, o: Out, src: str, dst: str) -> list[Component]:
    """XPN: family ^ given ^ middle names (space-joined) ^ suffix ^ prefix ^ degree (2nd suffix) ^ name type
    (XPN.7, v2-0200 read backwards; a use with no v2 code is left empty) ... ^ (v2.5+) 12 start ^ 13 end ^
    14 professional suffix (3rd). Further prefixes/suffixes are space-joined into the last slot."""
    given = name.given
    first = given[0] if given else None
    middle = " ".join(given[1:]) or None
    prefix = " ".join(name.prefix) or None
    slots = 3 if o.v25 else 2
    suffixes: list[str | None] = list(name.suffix[: slots - 1])
    if len(name.suffix) >= slots:
        suffixes.append(" ".join(name.suffix[slots - 1 :]))
    suffixes += [None] * (3 - len(suffixes))
    name_type = optional_code(name.use, o, f"{src}.use", f"{dst}.7", term.NAME_USE, "v2-0200-to-name-use")
    out: list[Component] = [name.family, first, middle, suffixes[0], prefix, suffixes[1], name_type]
    if name.family is not None:
        o.add(f"{src}.family", f"{dst}.1", "xpn-family")
    if first is not None:
        o.add(f"{src}.given[0]", f"{dst}.2", "xpn-given")
    for i in range(1, len(given)):
        o.add(f"{src}.given[{i}]", f"{dst}.3", "xpn-middle-names (space-joined)")
    if prefix is not None:
        o.add(f"{src}.prefix", f"{dst}.5", "xpn-prefix (space-joined)")
    comps = (4, 6, 14)[:slots]
    for i in range(len(name.suffix)):
        o.add(f"{src}.suffix[{i}]", f"{dst}.{comps[min(i, slots - 1)]}", "xpn-suffix / degree")
    if o.v25:
        start = ts(name.period.start) if name.period else None
        end = ts(name.period.end) if name.period else None
        out += [None] * 4 + [start, end, suffixes[2]]
        if start is not None:
            o.add(f"{src}.period.start", f"{dst}.12", "ts")
        if end is not None:
            o.add(f"{src}.period.end", f"{dst}.13", "ts")
    return _trim(out)


def xad(addr: Address, o: Out, src: str, dst: str) -> list[Component]:
    """XAD: street (line 1, as SAD.1) ^ other designation (line 2; further lines comma-joined into it) ^
    city ^ district (county) ^ postcode ^ country ^ address type (XAD.7: the use read backwards through
    v2-0190, else the type; no v2 code -> empty) ... (v2.5+) 13 start ^ 14 end."""
    lines = addr.lines
    other = ", ".join(lines[1:]) or None
    out: list[Component] = [
        lines[0] if lines else None,
        other,
        addr.city,
        addr.district,
        addr.postal_code,
        addr.country,
    ]
    address_type = optional_code(
        addr.use, o, f"{src}.use", f"{dst}.7", term.ADDRESS_USE, "v2-0190-to-address-use-and-type"
    )
    if address_type is None:
        address_type = optional_code(
            addr.type, o, f"{src}.type", f"{dst}.7", term.ADDRESS_TYPE, "v2-0190-to-address-use-and-type"
        )
    out.append(address_type)
    for i in range(len(lines)):
        o.add(f"{src}.lines[{i}]", f"{dst}.{1 if i == 0 else 2}", "xad-street / other designation")
    for attr, comp in (("city", 3), ("district", 4), ("postal_code", 5), ("country", 6)):
        if getattr(addr, attr) is not None:
            o.add(f"{src}.{attr}", f"{dst}.{comp}", f"xad-{attr}")
    if o.v25 and addr.period is not None:
        start, end = ts(addr.period.start), ts(addr.period.end)
        out += [None] * 5 + [start, end]
        if start is not None:
            o.add(f"{src}.period.start", f"{dst}.13", "ts")
        if end is not None:
            o.add(f"{src}.period.end", f"{dst}.14", "ts")
    return _trim(out)


def xtn(c: ContactPoint, o: Out, src: str, dst: str) -> list[Component]:
    """XTN: number (XTN.1; an email address goes in XTN.4) ^ use (XTN.2, v2-0201 backwards; no use: NET for
    an email, BPN for a pager, else empty) ^ equipment type (XTN.3, v2-0202 backwards: required - a system
    with no single v2 code, e.g. ``other`` or ``url``, raises UnmappableCode)."""
    if _sent_equipment(c):
        # the source's own XTN.3 / XTN.2, still true of system and use: what the source said, as it said it
        assert c.equipment_type is not None
        o.add(
            f"{src}.equipment_type",
            f"{dst}.3",
            "equipment type as sent",
            table="v2-0202-to-contact-point-system",
        )
        use_code = c.use_code if _sent_use(c) else None
        if use_code is not None:
            o.add(f"{src}.use_code", f"{dst}.2", "use as sent", table="v2-0201-to-contact-point-use")
        elif (
            c.use_code is None
            and c.use is not None
            and c.use
            in (
                RULES.telecom_use_by_equipment.get(c.equipment_type.upper()),
                RULES.telecom_fields.get(dst.split("[", 1)[0]),
            )
        ):
            # the source left XTN.2 empty and its use came from the equipment type or the field: so again
            o.add(f"{src}.use", f"{dst}.2", "no XTN.2 as sent: the equipment type or the field says the use")
        elif c.use is not None:
            use_code = optional_code(
                c.use, o, f"{src}.use", f"{dst}.2", term.CONTACT_POINT_USE, "v2-0201-to-contact-point-use"
            )
        if c.system == RULES.telecom_address_system:
            o.add(f"{src}.value", f"{dst}.4", "xtn-communication-address (email)")
            return [None, use_code, c.equipment_type, c.value]
        o.add(f"{src}.value", f"{dst}.1", "xtn-telephone-number")
        return [c.value, use_code, c.equipment_type]
    equipment, why = reverse_code(c.system, term.CONTACT_POINT_SYSTEM, "v2-0202-to-contact-point-system")
    if equipment is None:
        raise UnmappableCode(f"{src}.system", "v2-0202-to-contact-point-system", why)
    # a mobile is a phone whose equipment type says so (rules: telecom.use_by_equipment_type backwards: CP)
    by_use = {use: code for code, use in RULES.telecom_use_by_equipment.items()}
    if c.system == RULES.telecom_number_system and c.use in by_use:
        equipment, why = by_use[c.use], "equipment type of the use (rules: telecom.use_by_equipment_type)"
    o.add(f"{src}.system", f"{dst}.3", why, table="v2-0202-to-contact-point-system")
    if c.system == "email" and "email" in RULES.telecom_use_code_without_use:
        # HL7 v2-0201: an Internet address is NET whatever its use (the field says home / business)
        o.add(f"{src}.system", f"{dst}.2", "an email address is NET (v2-0201); the field carries the use")
        o.add(f"{src}.value", f"{dst}.4", "xtn-communication-address (email)")
        return [None, RULES.telecom_use_code_without_use["email"], equipment, c.value]
    use = optional_code(
        c.use, o, f"{src}.use", f"{dst}.2", term.CONTACT_POINT_USE, "v2-0201-to-contact-point-use"
    )
    if use is None and c.use is None:
        # HL7 pairs an email address with NET and a beeper with BPN (rules: telecom.use_code_without_use);
        # hl7v2_in reads them back as no use. Anything else is left empty (read back as the field's use).
        use = RULES.telecom_use_code_without_use.get(c.system)
        if use is not None:
            o.add(f"{src}.system", f"{dst}.2", "no use: the XTN.2 HL7 pairs with the equipment type")
    if c.system == "email":
        o.add(f"{src}.value", f"{dst}.4", "xtn-communication-address (email)")
        return [None, use, equipment, c.value]
    o.add(f"{src}.value", f"{dst}.1", "xtn-telephone-number")
    return [c.value, use, equipment]


def _forward(code: str, system: str, concept_map_id: str) -> str | None:
    """The single FHIR code ``code`` of HL7 table ``system`` maps to through ``concept_map_id``, else None."""
    codes = {
        m.concept.code for m in translate(code, system, concept_map_id=concept_map_id).usable if m.concept
    }
    return codes.pop() if len(codes) == 1 else None


def _sent_equipment(c: ContactPoint) -> bool:
    """Whether the XTN.3 the source sent still reads as ``c.system`` (a contact changed since is not)."""
    if c.equipment_type is None:
        return False
    system = _forward(
        c.equipment_type, term.V2_0202_TELECOM_EQUIPMENT_TYPE, "v2-0202-to-contact-point-system"
    )
    return system == c.system


def _sent_use(c: ContactPoint) -> bool:
    """Whether the XTN.2 the source sent still reads as ``c.use``: the use it maps to, the use the equipment
    type fixes (rules: telecom.use_by_equipment_type: PRN^CP is a mobile), or no use for a code with none
    (NET, BPN, EMR...)."""
    if c.use_code is None:
        return False
    fixed = RULES.telecom_use_by_equipment.get((c.equipment_type or "").upper())
    if fixed is not None:
        return c.use == fixed
    return _forward(c.use_code, term.V2_0201_TELECOM_USE, "v2-0201-to-contact-point-use") == c.use


def xcn(pr: Practitioner, o: Out, src: str, dst: str) -> list[Component]:
    """XCN: id ^ family ^ given ^ middle ^ suffix ^ prefix ^ degree ^^ assigning authority ^...^ 13 type."""
    out: list[Component] = [None] * 13
    if pr.identifiers:
        ident = pr.identifiers[0]
        out[0] = ident.value
        out[8] = hd(ident.system)
        out[12] = ident.type
        o.add(f"{src}.identifiers[0].value", f"{dst}.1", "xcn-id")
        o.add(f"{src}.identifiers[0].system", f"{dst}.9", "identifier system -> assigning authority")
        if ident.type is not None:
            o.add(f"{src}.identifiers[0].type", f"{dst}.13", "xcn-identifier-type")
    name = pr.name
    if name is not None:
        out[1] = name.family
        out[2] = name.given[0] if name.given else None
        out[3] = " ".join(name.given[1:]) or None
        out[4] = name.suffix[0] if name.suffix else None
        out[5] = " ".join(name.prefix) or None
        out[6] = " ".join(name.suffix[1:]) or None
        o.add(f"{src}.name", f"{dst}.2", "xcn-name (XCN.2-7)")
    if all(c is None for c in out):
        raise Hl7OutError(src, "a practitioner needs an identifier or a name")
    return _trim(out)


def xon(org: Organization, o: Out, src: str, dst: str) -> list[Component]:
    """XON: name ^^ (v2.3/2.4) id number ^ ... ^ (v2.5+) 10 organization identifier = the ODS code."""
    if org.name is None and org.ods_code is None:
        raise Hl7OutError(src, "an organisation needs an ODS code or a name")
    out: list[Component] = [org.name, None, None]
    if org.name is not None:
        o.add(f"{src}.name", f"{dst}.1", "xon-organization-name")
    if org.ods_code is not None:
        if o.v25:
            out += [None] * 6 + [org.ods_code]
            o.add(f"{src}.ods_code", f"{dst}.10", "xon-organization-identifier (ODS code)")
        else:
            out[2] = org.ods_code
            o.add(f"{src}.ods_code", f"{dst}.3", "xon-id-number (ODS code)")
    return _trim(out)


def pl(loc: Location, o: Out, src: str, dst: str) -> list[Component]:
    """PL: point of care ^ room ^ bed ^ facility (HD) ^^^^^ description."""
    out: list[Component] = [
        loc.point_of_care,
        loc.room,
        loc.bed,
        [loc.facility] if loc.facility else None,
        None,
        None,
        None,
        None,
        loc.description,
    ]
    for attr, comp in (
        ("point_of_care", "1"),
        ("room", "2"),
        ("bed", "3"),
        ("facility", "4.1"),
        ("description", "9"),
    ):
        if getattr(loc, attr) is not None:
            o.add(f"{src}.{attr}", f"{dst}.{comp}", f"pl-{attr}")
    return _trim(out)


# ------------------------------------------------------------------------------------------------ codes
def system_name(uri: str | None) -> str | None:
    """Code system URI -> CWE.3 name, the inverse of the reader: the rules' names (LN, SCT ...), v2
    tables and a sender's local codes of a table as ``HL7nnnn``, ``urn:tie:codesystem:<name>`` -> name, any
    other URI as it is."""
    if uri is None:
        return None
    known = _SYSTEM_NAMES.get(uri)
    if known is not None:
        return known
    if uri.startswith(V2_TABLE_BASE):
        return "HL7" + uri[len(V2_TABLE_BASE) :]
    table = local_systems.table_of(uri)
    if table is not None:
        # a sender's local code in a user-defined table: the table's id (HL7 0396 ``HL7nnnn``), never the URI
        # (CE.3 is an ID of 20 characters at most); a reader scopes a code outside the table to its sender
        return "HL7" + table
    prefix = RULES.local_coding_system_prefix
    if uri.startswith(prefix):
        return unquote(uri[len(prefix) :])
    return uri


def cwe(c: Coded, o: Out, src: str, dst: str) -> list[Component] | None:
    """CE/CWE: the first coding (with the concept's text) and the second as the alternate coding; a
    text-only concept is CWE.2 alone. Further codings are not written (CWE has two slots before v2.7).
    A DataAbsent writes its source code when it has one, else nothing."""
    if isinstance(c, DataAbsent):
        if c.source is None:
            return None
        o.add(f"{src}.source", dst, "data-absent: the unmapped source code as sent")
        return _trim([c.source.code, c.source.display, system_name(c.source.system)])
    if not c.codings:
        o.add(f"{src}.text", f"{dst}.2", "text only")
        return [None, c.text]
    first = c.codings[0]
    out: list[Component] = [first.code, c.text or first.display, system_name(first.system)]
    o.add(f"{src}.codings[0]", f"{dst}.1", "cwe-identifier / coding system")
    if c.text is not None:
        o.add(f"{src}.text", f"{dst}.2", "cwe-text")
    if len(c.codings) > 1:
        alt = c.codings[1]
        out += [alt.code, alt.display, system_name(alt.system)]
        o.add(f"{src}.codings[1]", f"{dst}.4", "cwe-alternate-identifier")
    return _trim(out)


@functools.lru_cache(maxsize=1024)
def reverse_code(code: str, system: str, concept_map_id: str) -> tuple[str | None, str]:
    """(v2 code, why) for a canonical ``code`` in ``system`` through ``concept_map_id`` read backwards:
    the single equivalent/equal match, else the single usable match; ``None`` when there is no match or
    more than one candidate (never a guess)."""
    result = translate(code, system, concept_map_id=concept_map_id, reverse=True)
    usable = result.usable
    exact = [m for m in usable if m.equivalence in _EXACT]
    chosen = exact or usable
    codes = sorted({m.concept.code for m in chosen if m.concept is not None})
    if len(codes) == 1:
        return codes[0], f"reverse {chosen[0].equivalence.value}"
    if not codes:
        return None, "no mapping back to the HL7 v2 table"
    return None, "more than one HL7 v2 code maps to it"


def table_code(
    value: Coded | str,
    o: Out,
    src: str,
    dst: str,
    *,
    table_system: str,
    concept_map_id: str | None,
    canonical_system: str | None,
) -> str | None:
    """An HL7 v2 table code (IS/ID) for a canonical value: a coding already in the table's system is used
    as it is; a code in ``canonical_system`` is translated through ``concept_map_id`` backwards; a
    DataAbsent writes its source code if the table's map lists it, else nothing. Anything else ->
    :class:`UnmappableCode`."""
    if isinstance(value, DataAbsent):
        source = value.source
        if (
            source is not None
            and source.system == table_system
            and _known(source.code, table_system, concept_map_id)
        ):
            o.add(f"{src}.source.code", dst, "data-absent: the table code as sent", table=concept_map_id)
            return source.code
        o.add(src, dst, "data-absent: field left empty")
        return None
    codings: tuple[Coding, ...]
    codings = (Coding(system=canonical_system, code=value),) if isinstance(value, str) else value.codings
    for k, c in enumerate(codings):
        if c.system == table_system:
            o.add(
                src if isinstance(value, str) else f"{src}.codings[{k}]", dst, "code already in the v2 table"
            )
            return c.code
    table = v2tables.table_of(table_system)
    for k, c in enumerate(codings):
        if table is not None and local_systems.table_of(c.system) == table:
            o.add(f"{src}.codings[{k}]", dst, "sender's local code, as sent")
            return c.code
    if concept_map_id is not None:
        for k, c in enumerate(codings):
            if c.system is None or c.system != canonical_system:
                continue
            code, why = reverse_code(c.code, c.system, concept_map_id)
            if code is None:
                raise UnmappableCode(src, concept_map_id, why)
            o.add(src if isinstance(value, str) else f"{src}.codings[{k}]", dst, why, table=concept_map_id)
            return code
    raise UnmappableCode(src, concept_map_id, "no coding that can be expressed in the HL7 v2 table")


def optional_code(
    value: str | None, o: Out, src: str, dst: str, canonical_system: str, concept_map_id: str
) -> str | None:
    """The v2 code for a descriptive canonical code (a name/address/telecom use, a verification status)
    through ``concept_map_id`` read backwards; ``None`` (the component left empty, with lineage saying why)
    when there is no value or no single v2 code - HL7 v2 cannot say it, and a guess would mislead."""
    if value is None:
        return None
    code, why = reverse_code(value, canonical_system, concept_map_id)
    if code is None:
        o.add(src, dst, f"{why}: left empty", table=concept_map_id)
        return None
    o.add(src, dst, why, table=concept_map_id)
    return code


def _known(code: str, table_system: str, concept_map_id: str | None) -> bool:
    """Whether a data-absent source code may be written back: a code the table's concept map lists
    (mapped or explicitly unmatched); any code of a table without a map (local / user-defined tables)."""
    if concept_map_id is None:
        return True
    return code in load_concept_map(concept_map_id).source_codes(table_system)


# ------------------------------------------------------------------------------------------------ misc
def _trim(parts: list[Component]) -> list[Component]:
    while parts and parts[-1] is None:
        parts.pop()
    return parts


def field_list(values: list[FieldValue]) -> list[FieldValue]:
    """Drop trailing empty fields of a segment."""
    while values and values[-1] is None:
        values.pop()
    return values
