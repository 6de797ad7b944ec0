"""Per-message mapping context and the HL7 v2 data-type readers (CX, EI, HD, XPN, XAD, XCN, XON, PL, CWE,
TS) shared by the segment mappers. Lineage is recorded here, at the leaf where the source path is known."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import quote

from shared.canonical.model import (
    Address,
    ClinicalDateTime,
    Coded,
    Coding,
    Concept,
    ContactPoint,
    DataAbsent,
    HumanName,
    Identifier,
    Location,
    Organization,
    PartialDate,
    Period,
    Practitioner,
)
from shared.hl7v2 import Message, Segment
from shared.hl7v2.validation import NHS_NUMBER_OID
from shared.identifiers import systems as id_systems
from shared.mapping._construct import builder
from shared.mapping.errors import InvalidValue, MissingRequiredField, UnmappedSourceCode
from shared.mapping.hl7v2_in.rules import CodedRule, Compiled, Path, concept_from, outcome_kind, to_absent
from shared.mapping.lineage import LineageRecorder
from shared.mapping.timeutil import TimeFormatError, birth_date_from_hl7, from_hl7
from shared.terminology import MappedAbsent as TermDataAbsent
from shared.terminology import MappedCode, local_systems, v2_table_system, v2tables

__all__ = ["Ctx", "val"]

_NULL = '""'

# Trusted constructors (shared.mapping._construct): every reader below builds its models only from
# non-empty stripped strings, tuples of them, models, aware times and literals the rules compiler checked.
new_identifier = builder(Identifier)
new_human_name = builder(HumanName)
new_address = builder(Address)
new_contact_point = builder(ContactPoint)
new_location = builder(Location)
new_practitioner = builder(Practitioner)
new_organization = builder(Organization)
new_coding = builder(Coding)
new_concept = builder(Concept)  # callers guarantee a coding or a text (Concept's own rule)
new_period = builder(Period)


def val(seg: Segment, n: int, rep: int = 1, comp: int | None = None, sub: int | None = None) -> str | None:
    """Decoded leaf, stripped; ``None`` when absent, blank or the HL7 null ``""``."""
    x = seg.get(n, rep, comp, sub)
    if x is None:
        return None
    if x[0] == " " or x[-1] == " ":
        x = x.strip()
        if not x:
            return None
    return None if x == _NULL else x


class Rep:
    """One repetition of a field split into components once (the readers take several components of the
    same field; :meth:`Segment.get` would re-split the field for each). ``rep(c)`` / ``rep(c, sub)`` is
    the decoded, stripped leaf, ``None`` when empty or the HL7 null."""

    __slots__ = ("_esc", "_parts", "_rep", "_seg", "_sub", "n", "text")

    def __init__(self, seg: Segment, n: int, rep: int = 1, text: str | None = None) -> None:
        self._seg = seg
        self.n = n
        self._rep = rep
        seps = seg.separators
        self._sub = seps.subcomponent
        self._esc = seps.escape
        if text is None:
            text = rep_text(seg, n, rep)
        #: The repetition's encoded text (the memo key of the readers).
        self.text = text
        self._parts: list[str] = text.split(seps.component) if text else []

    @classmethod
    def of(cls, seg: Segment, n: int, rep: int, text: str, seps: tuple[str, str, str]) -> Rep:
        """:class:`Rep` from already-known text and (component, subcomponent, escape) separators."""
        f = cls.__new__(cls)
        f._seg = seg
        f.n = n
        f._rep = rep
        f._sub = seps[1]
        f._esc = seps[2]
        f.text = text
        f._parts = text.split(seps[0]) if text else []
        return f

    @property
    def width(self) -> int:
        """Number of components present (trailing empty ones included as sent)."""
        return len(self._parts)

    def has(self, c: int) -> bool:
        """Whether component ``c`` holds anything (encoded text, before decoding)."""
        parts = self._parts
        return c <= len(parts) and bool(parts[c - 1])

    def asserts_nhs_number(self) -> bool:
        """This CX repetition declares itself an NHS number: exactly
        :func:`shared.hl7v2.validation.asserts_nhs_number` (assigning authority ``NHS`` or the NHS number
        OID with type ``NH``/``HN``/none, or type ``NH`` without an authority), on the already split
        components (tested equal)."""
        parts = self._parts
        if len(parts) < 4:
            return False  # no CX.4 and no CX.5
        authority = parts[3]
        sub = self._sub
        if sub in authority:
            subs = authority.split(sub)
            namespace, oid = subs[0], subs[1]
        else:
            namespace, oid = authority, ""
        id_type = parts[4] if len(parts) > 4 else ""
        if self._esc in authority or self._esc in id_type or sub in id_type:
            return self._asserts_slow()
        namespace = namespace.strip().upper()
        id_type = id_type.strip().upper()
        if namespace == "NHS" or oid.strip() == NHS_NUMBER_OID:
            return id_type in ("NH", "HN", "")
        return id_type == "NH" and not namespace

    def _asserts_slow(self) -> bool:
        from shared.hl7v2.validation import asserts_nhs_number

        return asserts_nhs_number(self._seg, self.n, self._rep)

    @property
    def memoable(self) -> bool:
        """No escape sequences (their decoding depends on the message's character set)."""
        return bool(self.text) and self._esc not in self.text

    def __bool__(self) -> bool:
        return any(self._parts)

    def __call__(self, c: int, sub: int | None = None) -> str | None:
        parts = self._parts
        if c > len(parts):
            return None
        x = parts[c - 1]
        if not x:
            return None
        if self._sub in x:
            subs = x.split(self._sub)
            k = sub or 1
            x = subs[k - 1] if k <= len(subs) else ""
            if not x:
                return None
        elif sub is not None and sub > 1:
            return None
        if self._esc in x:
            return val(self._seg, self.n, self._rep, c, sub)
        if x[0] == " " or x[-1] == " ":
            x = x.strip()
            if not x:
                return None
        return None if x == _NULL else x


def rep_text(seg: Segment, n: int, rep: int = 1) -> str:
    """The encoded text of repetition ``rep`` of field ``n`` (``""`` when absent)."""
    if rep == 1:
        raw = seg.raw_field(n)
        i = raw.find(seg.separators.repetition)
        return raw if i < 0 else raw[:i]
    reps = seg.raw_repetitions(n)  # split once per field, not once per repetition read
    return reps[rep - 1] if rep <= len(reps) else ""


#: Reader results by the repetition's encoded text (lineage off, standard delimiters, no escapes): the
#: same consultant, ward or code recurs in message after message, and every canonical value is immutable.
#: They live on the compiled rules (``Compiled.memo``): the same text under other rules may map otherwise.
_MEMO_MAX = 2048
_MISS = object()
_F = TypeVar("_F", bound=Callable[..., Any])
#: Where a reader's result is kept, under which key, and the field text read (handed to the reader so
#: it is not read twice); ``None``: not kept (see :func:`memoised`).
MemoKey = tuple[dict[Any, Any], object, str] | None


def remember(memo: dict[Any, Any], key: object, value: object) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


def memoised(key: Callable[..., MemoKey]) -> Callable[[_F], _F]:
    """A reader whose result depends only on ``key(ctx, *args)`` (a value: the field's encoded text and
    what else the reader reads), kept in a bounded dict: the one memo of the HL7 readers
    (``docs/speed-code.md``). A reader that reads more than its key (the sender's namespace as a
    fallback system, a counted unmapped local code) calls :meth:`Ctx.not_memoisable`, and that result -
    and any reader's that used it - is not kept. On a miss the reader gets the field text the key read
    as ``text=`` (read once)."""

    def wrap(reader: _F) -> _F:
        @functools.wraps(reader)
        def memo_reader(ctx: Ctx, *args: Any, **kwargs: Any) -> Any:
            if ctx.memo:
                where = key(ctx, *args, **kwargs)
                if where is not None:
                    store, k, text = where
                    hit = store.get(k, _MISS)
                    if hit is not _MISS:
                        return hit
                    outer = ctx.volatile
                    ctx.volatile = False
                    try:
                        value = reader(ctx, *args, text=text, **kwargs)
                    finally:
                        volatile = ctx.volatile
                        ctx.volatile = outer or volatile
                    if not volatile:
                        if len(store) >= _MEMO_MAX:
                            store.clear()
                        store[k] = value
                    return value
            return reader(ctx, *args, **kwargs)

        return cast("_F", memo_reader)

    return wrap


def _text_key(ctx: Ctx, text: str, kind: str, extra: object) -> MemoKey:
    """``(kind, text, extra)`` in the rules' memo, for text without escape sequences."""
    if not text or ctx.esc in text:
        return None
    return ctx.rules.memo, (kind, text, extra), text


def _coded_key(ctx: Ctx, rule: CodedRule, seg: Segment, n: int, rep: int, simple: bool) -> MemoKey:
    """``(text, simple)`` in the coded rule's own memo (another field's rule may map the text otherwise)."""
    raw = ctx.rep_text(seg, n, rep)
    if not raw or ctx.esc in raw:
        return None
    return rule.memo, (raw, simple), raw


def _strict(ctx: Ctx) -> str | None:
    return "strict" if ctx.rules.strict else None


@functools.lru_cache(maxsize=4096)
def _quoted(name: str) -> str:
    return quote(name, safe="-._~")


#: Parsed times by their text: a message usually repeats one time in MSH-7, EVN-2 and PV1-44.
_TIMES: dict[str, ClinicalDateTime | None] = {}


def _time(raw: str, src: str) -> ClinicalDateTime | None:
    """:func:`~shared.mapping.timeutil.from_hl7` (Europe/London for offset-less values), memoised;
    an unreadable value is InvalidValue at ``src``."""
    hit = _TIMES.get(raw, _MISS)
    if hit is not _MISS:
        return hit  # type: ignore[return-value]
    try:
        value = from_hl7(raw)
    except TimeFormatError:
        raise InvalidValue(src, "not a valid HL7 date/time") from None
    if len(_TIMES) >= 1024:
        _TIMES.clear()
    _TIMES[raw] = value
    return value


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


class Ctx:
    """One message being mapped: the message, the compiled rules, the lineage recorder and the sender's
    namespaces (computed on first use)."""

    __slots__ = (
        "_application",
        "_facility",
        "_segments",
        "esc",
        "lin",
        "memo",
        "msg",
        "rec",
        "rsep",
        "rules",
        "seps",
        "volatile",
    )

    def __init__(self, msg: Message, rules: Compiled, rec: LineageRecorder) -> None:
        self.msg = msg
        self.rules = rules
        self.rec = rec
        self.lin = rec.enabled
        seps = msg.separators
        self.esc = seps.escape
        self.rsep = seps.repetition
        #: (component, subcomponent, escape) for :meth:`Rep.of`.
        self.seps = (seps.component, seps.subcomponent, seps.escape)
        #: Readers may reuse earlier results for the same encoded text (see ``_MEMO``).
        self.memo = not self.lin and seps.component == "^" and seps.subcomponent == "&"
        #: Set by a reader whose result depends on more than its memo key (see :func:`memoised`).
        self.volatile = False
        self._facility: dict[str | None, tuple[str, str]] = {}
        self._application: dict[str | None, tuple[str, str]] = {}
        self._segments: dict[str, Segment | None] = {}

    def rep_text(self, seg: Segment, n: int, rep: int = 1) -> str:
        """:func:`rep_text` with the message's repetition separator."""
        if rep == 1:
            raw = seg.raw_field(n)
            i = raw.find(self.rsep)
            return raw if i < 0 else raw[:i]
        reps = seg.raw_repetitions(n)  # split once per field, not once per repetition read
        return reps[rep - 1] if rep <= len(reps) else ""

    def rep(self, seg: Segment, n: int, rep: int, text: str) -> Rep:
        return Rep.of(seg, n, rep, text, self.seps)

    def segments_key(self, *names: str) -> tuple[str | None, ...] | None:
        """Memo key for a result that depends only on the named segments' text and the sender (MSH-3/4:
        the fallback identifier systems); ``None`` when results may not be reused (lineage on,
        non-standard delimiters, escape sequences)."""
        if not self.memo:
            return None
        msh = self.segment("MSH")
        assert msh is not None  # the parser guarantees MSH first
        key: list[str | None] = [msh.raw_field(3), msh.raw_field(4)]
        esc = self.esc
        for name in names:
            seg = self.segment(name)
            raw = None if seg is None else seg.raw
            if raw is not None and esc in raw:
                return None
            key.append(raw)
        return tuple(key)

    def segment(self, name: str) -> Segment | None:
        """The first ``name`` segment of the message (looked up once per message)."""
        found = self._segments.get(name, _MISS)
        if found is _MISS:
            found = self._segments[name] = self.msg.segment(name)
        return found  # type: ignore[return-value]

    def not_memoisable(self) -> None:
        """The result being read depends on more than the field's text (see :func:`memoised`)."""
        self.volatile = True

    # ----------------------------------------------------------------------------------------- lineage
    def add(self, source: str | None, target: str, rule: str) -> None:
        """Lineage of a non-coded field: the rules version is its table version."""
        self.rec.add(source, target, rule, table_version=self.rules.version)

    def add_coded(self, source: str, target: str, rule: CodedRule, how: str) -> None:
        if rule.concept_map_id is not None:
            self.rec.add(
                source,
                target,
                f"{rule.name}: {how}",
                table=rule.concept_map_id,
                table_version=rule.concept_map_version,
            )
        else:
            self.rec.add(source, target, f"{rule.name}: {how}", table_version=self.rules.version)

    # --------------------------------------------------------------------------------------- namespaces
    def _hd_system(self, seg_name: str, n: int, id_type: str | None) -> tuple[str, str] | None:
        msh = self.segment("MSH")
        if msh is None:
            return None
        system = self.authority_system(
            val(msh, n, 1, 1), val(msh, n, 1, 2), val(msh, n, 1, 3), id_type=id_type
        )
        return None if system is None else (system, f"{seg_name}-{n}")

    def facility(self, where: str, id_type: str | None = None) -> tuple[str, str]:
        """System for identifiers without an assigning authority: the sending facility's (MSH-4), else the
        sending application's (MSH-3), for identifier type ``id_type``. ``(system, source path)``."""
        found = self._facility.get(id_type)
        if found is None:
            found = self._hd_system("MSH", 4, id_type) or self._hd_system("MSH", 3, id_type)
            if found is None:
                raise MissingRequiredField(
                    "MSH-4", f"no assigning authority in {where} and no sending facility"
                )
            self._facility[id_type] = found
        return found

    def application(self, where: str, id_type: str | None = None) -> tuple[str, str]:
        """System for entity identifiers (order numbers) without a namespace: the sending application's
        (MSH-3), else the sending facility's (MSH-4)."""
        found = self._application.get(id_type)
        if found is None:
            found = self._hd_system("MSH", 3, id_type) or self._hd_system("MSH", 4, id_type)
            if found is None:
                raise MissingRequiredField("MSH-3", f"no namespace in {where} and no sending application")
            self._application[id_type] = found
        return found

    def authority_system(
        self, namespace: str | None, universal: str | None, utype: str | None, *, id_type: str | None = None
    ) -> str | None:
        """Identifier system of an HD (assigning authority / namespace): a registered URI when the name is
        a known authority (GMC, ODS...), else the Trust's configured URI for the authority and identifier
        type (``shared.identifiers.systems``), else the default ``urn:tie:authority:<namespace>``
        (percent-encoded; counted as unregistered), else ``urn:oid:``/``urn:uuid:`` from the universal
        id, else ``None``."""
        r = self.rules
        if namespace is not None:
            known = r.authority_systems.get(namespace.upper())
            if known is not None:
                return known
            configured = id_systems.configured().system(namespace, id_type)
            if configured is not None:
                return configured
            id_systems.record_unregistered(namespace)
            return r.local_system_prefix + _quoted(namespace)
        if universal is not None and utype is not None:
            prefix = r.universal_id_prefixes.get(utype.upper())
            if prefix is not None:
                return prefix + universal
        return None

    def system_rule(self, system: str) -> str:
        """Lineage rule of an identifier system: an unregistered authority's default URN is flagged."""
        if system.startswith(self.rules.local_system_prefix):
            return "identifier-system: UNREGISTERED authority, default urn:tie:authority (not configured)"
        return "identifier-system: registered or configured authority URI"

    # ------------------------------------------------------------------------------- explicit nulls
    def cleared(self, obj: str, empty: Callable[[str], bool], *segments: Segment | None) -> tuple[str, ...]:
        """The fields of ``obj`` (``patient`` / ``encounter``) that ``segments`` delete: a field the rules'
        ``explicit_null`` table lists, sent as the HL7 null ``""`` (the whole field), whose canonical field
        ``empty(name)`` says was left empty - a field that has a value (PID-29 ``""`` with PID-30 ``Y``)
        is stated, not deleted. Lineage: the field -> ``<obj>.cleared``."""
        out: list[str] = []
        for seg in segments:
            if seg is None or _NULL not in seg.raw:
                continue
            for n, owner, name in self.rules.null_fields.get(seg.name, ()):
                if owner != obj or seg.raw_field(n).strip() != _NULL:
                    continue
                if not empty(name):
                    continue
                if name not in out:
                    out.append(name)
                if self.lin:
                    self.add(
                        f"{seg.name}-{n}", f"{obj}.cleared", 'explicit null "": the source deleted the field'
                    )
        return tuple(out)

    # ------------------------------------------------------------------------------------------ readers
    def time(self, seg: Segment, n: int, src: str, rep: int = 1) -> ClinicalDateTime | None:
        raw = seg.get(n, rep)
        if raw is None:
            return None
        return _time(raw, src)

    def time_at(self, path: Path, src: str) -> ClinicalDateTime | None:
        seg = self.segment(path[0])
        if seg is None:
            return None
        return self.time(seg, path[1], src)

    def birth_date(self, seg: Segment, n: int, src: str) -> PartialDate | None:
        raw = seg.get(n)
        if raw is None:
            return None
        try:
            return birth_date_from_hl7(raw)
        except TimeFormatError:
            raise InvalidValue(src, "not a valid HL7 date") from None

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

    # ------------------------------------------------------------------------------------------- codes
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
        no patient data) and flagged in lineage."""
        self.not_memoisable()  # the system depends on the sender, and an unmapped code is counted
        msh = self.segment("MSH")
        facility = None if msh is None else (val(msh, 4, 1, 1) or val(msh, 3, 1, 1))
        uri, configured = local_systems.local_system(facility, table)
        if not mapped:
            local_systems.record_unmapped(rule.name)
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
