"""Reading HL7 v2 fields for the mappers: :func:`val` (a decoded, stripped leaf; the HL7 null is absent)
and :class:`Rep` (one repetition split into components once)."""

from __future__ import annotations

from shared.hl7v2 import Segment
from shared.hl7v2.validation import NHS_NUMBER_OID

__all__ = ["Rep", "rep_text", "val"]

_NULL = '""'


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
