"""Coded-value readers of the mapping context (CE/CWE, IS/ID codes, coding systems) through the rules'
coded rules and concept maps."""

from __future__ import annotations

from shared.canonical.model import Coded, Concept, DataAbsent
from shared.hl7v2 import Segment
from shared.mapping.errors import InvalidValue
from shared.mapping.hl7v2_in._builders import new_coding, new_concept
from shared.mapping.hl7v2_in._context_base import CtxBase
from shared.mapping.hl7v2_in._fields import Rep
from shared.mapping.hl7v2_in._memo import _MISS, MemoKey, _quoted, memoised
from shared.mapping.hl7v2_in.rules import CodedRule, concept_from, outcome_kind, to_absent
from shared.terminology import MappedAbsent as TermDataAbsent
from shared.terminology import MappedCode, local_systems, v2_table_system, v2tables

__all__ = ["CodeReaders"]


def _coded_key(ctx: CtxBase, rule: CodedRule, seg: Segment, n: int, rep: int, simple: bool) -> MemoKey:
    """``(text, simple, sender)`` in the coded rule's own memo (another field's rule may map the text
    otherwise; a code that is not the table's goes under the sender's local code system)."""
    raw = ctx.rep_text(seg, n, rep)
    if not raw or ctx.esc in raw:
        return None
    return rule.memo, (raw, simple, ctx.sender()), raw


class CodeReaders(CtxBase):
    """The context's code readers."""

    __slots__ = ()

    def coding_system(self, name: str | None) -> str | None:
        """URI of a CWE.3 coding-system name: the rules' table (LN, SCT...), ``HL7nnnn`` -> v2 table,
        a URI as is, else ``urn:tie:codesystem:<name>``."""
        if name is None:
            return None
        r = self.rules
        known = r.coding_systems.get(name.upper())
        if known is not None:
            return known
        if len(name) == 7 and name[:3].upper() == "HL7" and name[3:].isdigit():
            return v2_table_system(name[3:])
        if name.startswith(("http://", "https://", "urn:")):
            return name
        return r.local_coding_system_prefix + _quoted(name)

    @memoised(
        lambda ctx, rule, seg, n, src, tgt, *, rep=1, simple=False: _coded_key(ctx, rule, seg, n, rep, simple)
    )
    def coded(
        self,
        rule: CodedRule,
        seg: Segment,
        n: int,
        src: str,
        tgt: str,
        *,
        rep: int = 1,
        simple: bool = False,
        text: str | None = None,
    ) -> Coded | None:
        """A CE/CWE (or, with ``simple``, an IS/ID code) -> Concept / DataAbsent through ``rule``.

        The sender's coding comes first; the concept-map translation (if any) follows it. The alternate
        coding (CWE.4-6) is kept as a further coding, untranslated. A text-only value becomes a Concept
        with text. The sender's system: CWE.3 resolved to a URI, else the rule's v2 table when the rule
        says the field is drawn from one, else none (and then nothing is translated).
        """
        raw = self.rep_text(seg, n, rep) if text is None else text
        if not raw:
            return None
        f = self.rep(seg, n, rep, raw)
        code = f(1)
        text = system_name = alt_code = None
        if not simple:
            text, system_name, alt_code = f(2), f(3), f(4)
        if code is None and alt_code is None:
            if text is None:
                return None
            if self.lin:
                self.add_coded(f"{src}.2", f"{tgt}.text", rule, "text only")
            return new_concept(text=text)  # a text
        out = None
        value: Coded | None = None
        if code is not None:
            system = self.coding_system(system_name)
            if system is None and rule.assume_source_system:
                system = rule.source_system
            lookup = system
            if (
                rule.source_system is not None
                and system is not None
                and system != rule.source_system
                and local_systems.table_of(system) == v2tables.table_of(rule.source_system)
            ):
                # a sender's local code written back with its local system (hl7v2_out): map it as the
                # field's table code it was sent as
                lookup = rule.source_system
            out = rule.outcome(code, lookup, src)
            if rule.omit and rule.target == "concept" and not isinstance(out, MappedCode):
                # "unmapped": "omit" on a concept field: a code the map cannot map is not this field's
                # value at all (PV1-4 letters are priorities, not admission methods). Nothing is kept.
                return None
            table = v2tables.table_of(system)
            if table is not None and not v2tables.is_table_code(table, code):
                # Not a code of the HL7 table: the sender's own code, under its local code system.
                system = self.local_code_system(table, rule, src, tgt, mapped=isinstance(out, MappedCode))
            display = text
            if display is None and isinstance(out, MappedCode):
                display = out.source.display
            value = concept_from(
                out,
                new_coding(system=system, code=code, display=display),
                text,
                replace_source=rule.replace_source,
                kept_user_selected=rule.kept_user_selected if rule.concept_map_id is not None else None,
            )
        if alt_code is not None:
            alt = new_coding(system=self.coding_system(f(6)), code=alt_code, display=f(5))
            if code is None:
                value = new_concept(codings=(alt,), text=text)  # a coding
            elif isinstance(value, Concept) and alt not in value.codings:
                value = new_concept(codings=(*value.codings, alt), text=text)  # codings
        assert value is not None  # a code or an alternate code was present
        if self.lin:
            if code is not None:
                self.add_coded(src if simple else f"{src}.1", tgt, rule, outcome_kind(out))
            if system_name is not None:
                self.add_coded(f"{src}.3", tgt, rule, "coding system name -> URI")
            if text is not None and isinstance(value, Concept):
                self.add_coded(f"{src}.2", f"{tgt}.text", rule, "original text")
            if alt_code is not None:
                self.add_coded(f"{src}.4", tgt, rule, "alternate coding kept as sent")
        return value

    def local_code_system(self, table: str, rule: CodedRule, src: str, tgt: str, *, mapped: bool) -> str:
        """The sending facility's (MSH-4.1, else MSH-3.1) local code system for HL7 table ``table``
        (``shared.terminology.local_systems``). A code no map translated is counted per field (no code,
        no patient data) and flagged in lineage. The sender is in the memo key of :meth:`coded`."""
        uri, configured = local_systems.local_system(self.sender(), table)
        if not mapped:
            self.count_unmapped(rule.name)
        if self.lin:
            how = "configured" if configured else "default urn:tie:codesystem (not configured)"
            what = "mapped code" if mapped else "UNMAPPED local code"
            self.add_coded(
                src, f"{tgt}.system", rule, f"{what}, not a code of HL7 table {table}: sender's system, {how}"
            )
        return uri

    def code_value(self, rule: CodedRule, code: str, src: str, tgt: str) -> str | DataAbsent | None:
        """A bare code from a component with no coding-system slot (XPN.7, XAD.7, XTN.2/3, TQ.6) in the
        rule's source table -> what the canonical field holds: the mapped code; for a code the map cannot
        map, a DataAbsent when the field can hold one, else ``None`` (rule ``omit``); ``raise`` rules raise
        UnmappedSourceCode naming ``src``."""
        if not self.lin:
            hit = rule.values.get(code, _MISS)
            if hit is not _MISS:
                return hit  # type: ignore[return-value]
        if not rule.active:
            return None
        out = rule.outcome(code, rule.source_system, src)
        if isinstance(out, MappedCode):
            result: str | DataAbsent | None = out.target.code
        elif isinstance(out, TermDataAbsent):
            result = to_absent(out) if rule.accepts_absent else None
        else:
            raise InvalidValue(src, f"code is not in a system {rule.name} can map", error_code="103")
        if self.lin:
            if result is not None:
                self.add_coded(src, tgt, rule, outcome_kind(out))
        elif len(rule.values) < 1024:
            rule.values[code] = result
        return result

    def code(
        self, rule: CodedRule, seg: Segment, n: int, src: str, tgt: str, rep: int = 1
    ) -> str | DataAbsent | None:
        """An IS/ID code (or CWE.1) -> the bare code a ``Literal`` field holds, through ``rule``'s map.

        Empty -> the rule's ``when_empty`` (e.g. FHIR's ``unknown`` status) or ``None``. A data-absent
        outcome becomes a canonical DataAbsent when the field can hold one, else ``None``.
        """
        f = Rep(seg, n, rep)
        code = f(1)
        if code is None:
            if rule.when_empty is not None and self.lin:
                self.add(src, tgt, f"{rule.name}: empty field -> {rule.when_empty} (the source does not say)")
            return rule.when_empty
        if not rule.active:
            return None
        system = self.coding_system(f(3)) or rule.source_system
        out = rule.outcome(code, system, src)
        if isinstance(out, MappedCode):
            result: str | DataAbsent | None = out.target.code
        elif isinstance(out, TermDataAbsent):
            result = to_absent(out) if rule.accepts_absent else None
        else:
            raise InvalidValue(src, f"code is not in a system {rule.name} can map", error_code="103")
        if self.lin and result is not None:
            self.add_coded(src, tgt, rule, outcome_kind(out))
        return result
