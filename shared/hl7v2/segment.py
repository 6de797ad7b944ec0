"""One HL7 v2 segment: decoded and encoded reads by field/repetition/component, and editing.

Fields are split the first time the segment is read; a field's repetitions are split once (on the first
read past repetition 1) and kept until the segment is edited; components are split on demand per read;
escape decoding is skipped unless the value contains the escape character.
"""

from __future__ import annotations

from shared.hl7v2 import escape as _escape
from shared.hl7v2.errors import Hl7EncodingError, Hl7PathError
from shared.hl7v2.separators import HEADER_SEGMENTS, Separators
from shared.hl7v2.values import FieldValue, Raw, encode_field

__all__ = ["Segment"]


class Segment:
    """One segment. Fields are numbered as in the HL7 standard (``MSH-1`` is the field separator).

    * :meth:`get` returns a DECODED leaf value (``None`` when absent or empty);
    * :meth:`raw_field` returns the ENCODED ER7 text of a whole field (``""`` when absent);
    * ``len(segment)`` is the number of fields present (trailing empty fields included as sent).
    """

    __slots__ = ("_codec", "_dirty", "_fields", "_raw", "_reps", "_seps", "name")

    def __init__(self, raw: str, separators: Separators, codec: str = "utf-8") -> None:
        self._raw = raw
        self._seps = separators
        self._codec = codec
        self.name = raw[:3]
        self._fields: list[str] | None = None
        #: Encoded repetitions of each field read by repetition (split once: reading repetition k of a
        #: field must not re-split the whole field, or iterating a field's repetitions is quadratic).
        self._reps: dict[int, list[str]] | None = None
        self._dirty = False

    @property
    def _header(self) -> bool:
        return self.name in HEADER_SEGMENTS

    def __repr__(self) -> str:
        return f"<Segment {self.name} fields={len(self)}>"

    @property
    def separators(self) -> Separators:
        return self._seps

    @property
    def raw(self) -> str:
        """The segment as ER7 text (without terminator)."""
        if self._dirty:
            fields = self._fields
            assert fields is not None
            fs = self._seps.field
            self._raw = fs.join(fields[:1] + fields[2:]) if self._header else fs.join(fields)
            self._dirty = False
        return self._raw

    def _split(self) -> list[str]:
        parts = self._raw.split(self._seps.field)
        if self.name in HEADER_SEGMENTS:
            parts.insert(1, self._seps.field)
        self._fields = parts
        return parts

    def __len__(self) -> int:
        fields = self._fields or self._split()
        return len(fields) - 1

    def raw_field(self, n: int) -> str:
        """Encoded ER7 text of field ``n`` (1-based), ``""`` when absent."""
        if n < 1:
            raise Hl7PathError("field numbers are 1-based")
        fields = self._fields or self._split()
        return fields[n] if n < len(fields) else ""

    #: Alias of :meth:`raw_field` (encoded text). Use :meth:`get` for decoded values.
    field = raw_field

    def raw_repetitions(self, n: int) -> list[str]:
        """Encoded text of each repetition of field ``n`` (``[]`` when absent or empty).

        The field is split once and the list cached until the segment is edited, so reading repetition
        after repetition costs O(size of the field) in all. The list is shared: do not modify it.
        """
        cache = self._reps
        if cache is None:
            cache = self._reps = {}
        parts = cache.get(n)
        if parts is None:
            value = self.raw_field(n)
            if not value:
                parts = []
            elif self._header and n <= 2:
                parts = [value]
            else:
                parts = value.split(self._seps.repetition)
            cache[n] = parts
        return parts

    def get(self, n: int, rep: int = 1, comp: int | None = None, sub: int | None = None) -> str | None:
        """Decoded leaf value at field ``n``, repetition ``rep``, component ``comp``, sub-component ``sub``.

        Omitted ``comp``/``sub`` mean the first one (HAPI Terser semantics: ``PID-3`` is ``PID-3[1].1.1``).
        Returns ``None`` when the element is absent or empty. MSH-1/MSH-2 are returned verbatim.
        """
        fields = self._fields
        if fields is None:  # inlined _split() (the first read of a segment)
            fs = self._seps.field
            fields = self._fields = self._raw.split(fs)
            if self.name in HEADER_SEGMENTS:
                fields.insert(1, fs)
        if n < 1:
            raise Hl7PathError("field numbers are 1-based")
        try:
            value = fields[n]
        except IndexError:
            return None
        if not value:
            return None
        if n <= 2 and self._header:
            return value if rep == 1 and (comp or 1) == 1 and (sub or 1) == 1 else None
        seps = self._seps
        # Each level: index 1 via partition (one C call, no list), others via split.
        if rep == 1:
            value = value.partition(seps.repetition)[0]
        else:
            parts = self.raw_repetitions(n)
            if rep > len(parts):
                return None
            value = parts[rep - 1]
        sep = seps.component
        if comp is None or comp == 1:
            value = value.partition(sep)[0]
        else:
            parts = value.split(sep)
            if comp > len(parts):
                return None
            value = parts[comp - 1]
        sep = seps.subcomponent
        if sub is None or sub == 1:
            value = value.partition(sep)[0]
        else:
            parts = value.split(sep)
            if sub > len(parts):
                return None
            value = parts[sub - 1]
        if seps.escape in value:
            value = _escape.decode(value, seps, self._codec)
        return value or None

    def repetition_count(self, n: int) -> int:
        """Number of repetitions in field ``n`` (0 when absent or empty)."""
        value = self.raw_field(n)
        if not value:
            return 0
        if self._header and n <= 2:
            return 1
        return value.count(self._seps.repetition) + 1

    def repetitions(self, n: int, comp: int | None = None, sub: int | None = None) -> list[str]:
        """Decoded leaf value of each repetition of field ``n`` (``""`` for empty repetitions)."""
        return [self.get(n, r, comp, sub) or "" for r in range(1, self.repetition_count(n) + 1)]

    def raw_element(
        self, n: int, rep: int | None = None, comp: int | None = None, sub: int | None = None
    ) -> str:
        """Encoded ER7 text of the addressed element; omitted trailing levels mean the whole element."""
        value = self.raw_field(n)
        if rep is None and comp is None and sub is None:
            return value
        if self._header and n <= 2:
            return value if (rep or 1) == 1 and (comp or 1) == 1 and (sub or 1) == 1 else ""
        seps = self._seps
        parts = self.raw_repetitions(n)
        r = rep or 1
        value = parts[r - 1] if r <= len(parts) else ""
        if comp is None and sub is None:
            return value
        parts = value.split(seps.component)
        c = comp or 1
        value = parts[c - 1] if c <= len(parts) else ""
        if sub is None:
            return value
        parts = value.split(seps.subcomponent)
        return parts[sub - 1] if sub <= len(parts) else ""

    # ---------------------------------------------------------------------------------------- editing

    def set(
        self,
        n: int,
        value: str | None,
        rep: int | None = None,
        comp: int | None = None,
        sub: int | None = None,
    ) -> None:
        """Set the addressed element to a plain value (escaped on write); ``None`` empties it.

        Omitted trailing levels mean the whole element: ``set(3, "x")`` replaces all of field 3,
        ``set(3, "x", comp=1)`` replaces only component 1 of repetition 1.
        """
        self.set_raw(n, Raw(_escape.encode(value, self._seps)) if value else Raw(""), rep, comp, sub)

    def set_raw(
        self, n: int, er7: str, rep: int | None = None, comp: int | None = None, sub: int | None = None
    ) -> None:
        """Set the addressed element to pre-encoded ER7 text (checked not to break the structure)."""
        seps = self._seps
        if n < 1:
            raise Hl7PathError("field numbers are 1-based")
        if self._header and n <= 2:
            raise Hl7PathError(f"{self.name}-1/{self.name}-2 (separators) cannot be changed")
        forbidden = seps.field + "\r\n"
        if rep is not None or comp is not None or sub is not None:
            forbidden += seps.repetition
        if comp is not None or sub is not None:
            forbidden += seps.component
        if sub is not None:
            forbidden += seps.subcomponent
        if any(c in er7 for c in forbidden):
            raise Hl7EncodingError("ER7 text contains a delimiter not allowed at this level")
        fields = self._fields or self._split()
        if n >= len(fields):
            fields.extend([""] * (n + 1 - len(fields)))
        if rep is None and comp is None and sub is None:
            fields[n] = er7
        else:
            reps = fields[n].split(seps.repetition)
            r = rep or 1
            _pad(reps, r)
            if comp is None and sub is None:
                reps[r - 1] = er7
            else:
                comps = reps[r - 1].split(seps.component)
                c = comp or 1
                _pad(comps, c)
                if sub is None:
                    comps[c - 1] = er7
                else:
                    subs = comps[c - 1].split(seps.subcomponent)
                    _pad(subs, sub)
                    subs[sub - 1] = er7
                    comps[c - 1] = seps.subcomponent.join(subs)
                reps[r - 1] = seps.component.join(comps)
            fields[n] = seps.repetition.join(reps)
        self._reps = None
        self._dirty = True

    def set_field(self, n: int, value: FieldValue) -> None:
        """Replace field ``n`` with a structured value (same shapes as :func:`build_message`)."""
        self.set_raw(n, encode_field(value, self._seps))


def _pad(parts: list[str], n: int) -> None:
    if len(parts) < n:
        parts.extend([""] * (n - len(parts)))
