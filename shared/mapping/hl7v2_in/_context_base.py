"""The per-message mapping context's core (:class:`CtxBase`): the message, the compiled rules, lineage,
the sender's namespaces and explicit nulls. The readers build on it (``_codes``, ``_datatypes``); the
class the mappers use is :class:`shared.mapping.hl7v2_in._context.Ctx`."""

from __future__ import annotations

from collections.abc import Callable

from shared.canonical.model import ClinicalDateTime, PartialDate
from shared.hl7v2 import Message, Segment
from shared.identifiers import systems as id_systems
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.hl7v2_in._fields import _NULL, Rep, val
from shared.mapping.hl7v2_in._memo import _MISS, _quoted, _time
from shared.mapping.hl7v2_in.rules import CodedRule, Compiled, Path
from shared.mapping.lineage import LineageRecorder
from shared.mapping.timeutil import TimeFormatError, birth_date_from_hl7
from shared.terminology import local_systems

__all__ = ["CtxBase"]


class CtxBase:
    """One message being mapped: the message, the compiled rules, the lineage recorder and the sender's
    namespaces (computed on first use)."""

    __slots__ = (
        "_application",
        "_facility",
        "_segments",
        "_sender",
        "counted",
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
        #: Rules whose unmapped local code was counted while reading (see :func:`memoised`).
        self.counted: tuple[str, ...] = ()
        self._sender: object = _MISS
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

    def sender(self) -> str | None:
        """The sending facility's namespace (MSH-4.1), else the sending application's (MSH-3.1): the
        scope of the sender's local codes (read once per message)."""
        found = self._sender
        if found is _MISS:
            msh = self.segment("MSH")
            found = self._sender = None if msh is None else (val(msh, 4, 1, 1) or val(msh, 3, 1, 1))
        return found  # type: ignore[return-value]

    def count_unmapped(self, rule_name: str) -> None:
        """Count a code carried under a local code system because no map and no HL7 table knows it."""
        local_systems.record_unmapped(rule_name)
        self.counted += (rule_name,)

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
