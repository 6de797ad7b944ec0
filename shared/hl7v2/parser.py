"""HL7 v2 ER7 ("pipe and hat") parser, accessors, editor and serializer. Pure Python, no I/O.

See the package docstring (``shared/hl7v2/__init__.py``) for the public API and its semantics.

Implementation notes (performance): parsing decodes the bytes, splits the text into segment strings with
``str.split`` and checks each segment ID against a cache; nothing else. Fields are split the first time a
segment is read, a field's repetitions are split once (on the first read past repetition 1) and cached
until the segment is edited, components are split on demand per read, and escape decoding is skipped
unless the value contains the escape character. Segment objects are created lazily and cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import TypeAlias

from shared.hl7v2 import escape as _escape
from shared.hl7v2.charset import UTF8_BOM, codec_for_charset, decode_payload, header_charset, resolve_override
from shared.hl7v2.errors import Hl7EncodingError, Hl7ParseError, Hl7PathError

__all__ = [
    "ComponentValue",
    "FieldValue",
    "LeafValue",
    "Message",
    "Raw",
    "Repeated",
    "Segment",
    "Separators",
    "build_message",
    "parse_message",
]

#: Segments whose field 1 is the field separator and field 2 the encoding characters.
HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})
#: Segments that only make sense in a batch/file envelope (or start a new message).
ENVELOPE_SEGMENTS = frozenset({"MSH", "FHS", "BHS", "BTS", "FTS"})

_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_UPPER_DIGIT = _UPPER | frozenset("0123456789")
_MIXED_TERMINATORS = re.compile(r"(\r\n|\r|\n)")


@dataclass(frozen=True, slots=True)
class Separators:
    """Delimiters of one message, read from MSH-1/MSH-2 (never assumed).

    ``truncation`` is the optional fifth encoding character (v2.7+, usually ``#``); ``None`` when MSH-2 has
    four characters. ``segment_terminator`` is the first segment terminator seen in the input (``"\\r"``
    for built messages and single-segment input).
    """

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None
    segment_terminator: str = "\r"

    @property
    def encoding_characters(self) -> str:
        """The MSH-2 value: component, repetition, escape, sub-component (and truncation) characters."""
        return self.component + self.repetition + self.escape + self.subcomponent + (self.truncation or "")

    def validate(self) -> None:
        """Raise :class:`Hl7EncodingError` unless the delimiters are usable (distinct single characters)."""
        chars = [self.field, *self.encoding_characters]
        if any(len(c) != 1 for c in (self.field, self.component, self.repetition, self.escape)):
            raise Hl7EncodingError("separators must be single characters")
        if len(self.subcomponent) != 1 or (self.truncation is not None and len(self.truncation) != 1):
            raise Hl7EncodingError("separators must be single characters")
        if _bad_delimiters(chars):
            raise Hl7EncodingError("separators must be distinct, non-alphanumeric, non-whitespace characters")
        if self.segment_terminator not in ("\r", "\n", "\r\n"):
            raise Hl7EncodingError("segment terminator must be CR, LF or CRLF")


def _bad_delimiters(chars: Sequence[str]) -> bool:
    return len(set(chars)) != len(chars) or any(
        c.isalnum() or c.isspace() or not c.isprintable() for c in chars
    )


_separators_cache: dict[tuple[str, str, str], Separators] = {}


def _separators_from(fs: str, enc: str, terminator: str, segment: str) -> Separators:
    key = (fs, enc, terminator)
    seps = _separators_cache.get(key)
    if seps is not None:
        return seps
    if len(enc) not in (4, 5):
        raise Hl7ParseError(
            f"{segment}-2 must hold 4 or 5 encoding characters",
            error_code="102",
            segment=segment,
            segment_index=1,
            field=2,
        )
    if _bad_delimiters([fs, *enc]):
        raise Hl7ParseError(
            f"{segment}-2 encoding characters must be distinct, non-alphanumeric and differ from {segment}-1",
            error_code="102",
            segment=segment,
            segment_index=1,
            field=2,
        )
    seps = Separators(fs, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) == 5 else None, terminator)
    if len(_separators_cache) < 256:
        _separators_cache[key] = seps
    return seps


# --------------------------------------------------------------------------------------------- paths


@lru_cache(maxsize=2048)
def parse_path(path: str) -> tuple[str, int, int, int | None, int | None, int | None]:
    """Parse ``"OBX(2)-5[1].3.2"`` into ``(segment, occurrence, field, repetition, component, subcomponent)``.

    Omitted repetition/component/sub-component are ``None``; indices are 1-based. Raises
    :class:`Hl7PathError` for anything else.
    """
    match = _PATH.fullmatch(path)
    if match is None:
        raise Hl7PathError("invalid HL7 path; expected e.g. PID-3, PID-3[2].1, OBX(2)-5.1.2")
    name, occ, fld, rep, comp, sub = match.groups()
    numbers = [int(x) for x in (occ or "1", fld, rep or "1", comp or "1", sub or "1")]
    if min(numbers) < 1:
        raise Hl7PathError("HL7 path indices are 1-based")
    return (
        name,
        numbers[0],
        numbers[1],
        int(rep) if rep else None,
        int(comp) if comp else None,
        int(sub) if sub else None,
    )


_PATH = re.compile(r"([A-Z][A-Z0-9]{2})(?:\((\d+)\))?-(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?")


# ------------------------------------------------------------------------------------------ building


class Raw(str):
    """Pre-encoded ER7 text inserted verbatim by :func:`build_message` / ``append_segment`` (no escaping)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Repeated:
    """A repeating field value for :func:`build_message`: each item is one repetition."""

    values: Sequence[ComponentValue]


#: A leaf (sub-component) value: plain ``str`` (escaped on write), :class:`Raw` (a ``str`` subclass,
#: written verbatim) or ``None`` (empty).
LeafValue: TypeAlias = "str | None"
#: A repetition: a leaf, or a sequence of components each being a leaf or a sequence of sub-components.
ComponentValue: TypeAlias = "str | Sequence[str | Sequence[str | None] | None] | None"
#: A field: a repetition value or :class:`Repeated`.
FieldValue: TypeAlias = "str | Repeated | Sequence[str | Sequence[str | None] | None] | None"


def _encode_leaf(value: object, seps: Separators, forbidden: str) -> str:
    if value is None:
        return ""
    if isinstance(value, Raw):
        text = str(value)
        if "\r" in text or "\n" in text or any(c in text for c in forbidden):
            raise Hl7EncodingError("raw ER7 text contains a delimiter not allowed at this level")
        return text
    if isinstance(value, str):
        return _escape.encode(value, seps)
    raise Hl7EncodingError(f"unsupported value type {type(value).__name__}")


def _encode_repetition(value: object, seps: Separators) -> str:
    if value is None or isinstance(value, str):
        return _encode_leaf(value, seps, seps.field + seps.repetition)
    if isinstance(value, Sequence):
        comps: list[str] = []
        for comp in value:
            if comp is None or isinstance(comp, str):
                comps.append(_encode_leaf(comp, seps, seps.field + seps.repetition + seps.component))
            elif isinstance(comp, Sequence):
                forbidden = seps.field + seps.repetition + seps.component + seps.subcomponent
                comps.append(seps.subcomponent.join(_encode_leaf(s, seps, forbidden) for s in comp))
            else:
                raise Hl7EncodingError(f"unsupported component type {type(comp).__name__}")
        return seps.component.join(comps)
    raise Hl7EncodingError(f"unsupported value type {type(value).__name__}")


def encode_field(value: FieldValue | object, seps: Separators) -> str:
    """ER7 text of one field value (see :func:`build_message` for the accepted shapes)."""
    if isinstance(value, Repeated):
        return seps.repetition.join(_encode_repetition(v, seps) for v in value.values)
    if value is None or isinstance(value, str):
        return _encode_leaf(value, seps, seps.field)
    return _encode_repetition(value, seps)


def _segment_text(fields: Sequence[FieldValue], seps: Separators) -> str:
    if not fields or not isinstance(fields[0], str) or not _valid_name(fields[0]):
        raise Hl7EncodingError("segment must start with a valid segment ID (e.g. 'PID')")
    name = str(fields[0])
    if name in HEADER_SEGMENTS:
        given = list(fields[1:3])
        if (given and given[0] not in (None, seps.field)) or (
            len(given) > 1 and given[1] not in (None, seps.encoding_characters)
        ):
            raise Hl7EncodingError(f"{name}-1/{name}-2 must be None or match the message separators")
        rest = [encode_field(v, seps) for v in fields[3:]]
        return seps.field.join([name, seps.encoding_characters, *rest])
    encoded = [encode_field(v, seps) for v in fields[1:]]
    return seps.field.join([name, *encoded])


def _valid_name(name: str) -> bool:
    return len(name) == 3 and name[0] in _UPPER and name[1] in _UPPER_DIGIT and name[2] in _UPPER_DIGIT


# ------------------------------------------------------------------------------------------- segment


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
        if fields is None:
            fields = self._split()
        if n >= len(fields) or n < 1:
            if n < 1:
                raise Hl7PathError("field numbers are 1-based")
            return None
        value = fields[n]
        if not value:
            return None
        if n <= 2 and self._header:
            return value if rep == 1 and (comp or 1) == 1 and (sub or 1) == 1 else None
        seps = self._seps
        # Each level: index 1 via find/slice (no list), others via split.
        sep = seps.repetition
        if rep == 1:
            i = value.find(sep)
            if i >= 0:
                value = value[:i]
        else:
            parts = self.raw_repetitions(n)
            if rep > len(parts):
                return None
            value = parts[rep - 1]
        sep = seps.component
        if comp is None or comp == 1:
            i = value.find(sep)
            if i >= 0:
                value = value[:i]
        else:
            parts = value.split(sep)
            if comp > len(parts):
                return None
            value = parts[comp - 1]
        sep = seps.subcomponent
        if sub is None or sub == 1:
            i = value.find(sep)
            if i >= 0:
                value = value[:i]
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


# ------------------------------------------------------------------------------------------- message


class Message:
    """A parsed (or built) HL7 v2 message. Create with :func:`parse_message` or :func:`build_message`."""

    __slots__ = (
        "_bom",
        "_codec",
        "_declared",
        "_index",
        "_objs",
        "_prefixes",
        "_raws",
        "_seps",
        "_tail",
        "_terms",
    )

    def __init__(
        self,
        raws: list[str],
        terms: list[str],
        separators: Separators,
        *,
        codec: str = "utf-8",
        tail: str = "",
        bom: bytes = b"",
        declared_charset: str | None = None,
        prefixes: list[str] | None = None,
    ) -> None:
        """Low-level constructor: use :func:`parse_message` / :func:`build_message` instead.

        ``prefixes`` (optional) are the first 4 characters of every segment, all ``ID + field separator``;
        they let :meth:`segment` find the first occurrence with ``list.index`` instead of building an index.
        """
        self._raws = raws
        self._terms = terms
        self._seps = separators
        self._codec = codec
        self._tail = tail
        self._bom = bom
        self._declared = declared_charset
        self._objs: list[Segment | None] = [None] * len(raws)
        self._index: dict[str, list[int]] | None = None
        self._prefixes = prefixes

    @classmethod
    def from_segments(
        cls,
        segments: Sequence[Sequence[FieldValue]],
        *,
        separators: Separators | None = None,
        encoding: str | None = None,
    ) -> Message:
        """Same as :func:`build_message`."""
        return build_message(segments, separators=separators, encoding=encoding)

    def __repr__(self) -> str:
        kind = f"{self.message_type}^{self.trigger_event}"
        return f"<Message {kind} control_id={self.control_id!r} segments={len(self._raws)}>"

    # -------------------------------------------------------------------------------------- structure

    @property
    def separators(self) -> Separators:
        return self._seps

    @property
    def codec(self) -> str:
        """Python codec used to decode the input and used by :meth:`encode`."""
        return self._codec

    @property
    def bom(self) -> bytes:
        """UTF-8 byte-order mark that preceded the input (re-emitted by :meth:`encode`), or ``b""``."""
        return self._bom

    def _seg(self, i: int) -> Segment:
        obj = self._objs[i]
        if obj is None:
            obj = self._objs[i] = Segment(self._raws[i], self._seps, self._codec)
        return obj

    @property
    def segments(self) -> Sequence[Segment]:
        return tuple(self._seg(i) for i in range(len(self._raws)))

    def __len__(self) -> int:
        return len(self._raws)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def _name_index(self) -> dict[str, list[int]]:
        index = self._index
        if index is None:
            index = {}
            for i, raw in enumerate(self._raws):
                name = raw[:3]
                positions = index.get(name)
                if positions is None:
                    index[name] = [i]
                else:
                    positions.append(i)
            self._index = index
        return index

    def segment(self, name: str, occurrence: int = 1) -> Segment | None:
        """The ``occurrence``-th (1-based) segment called ``name``, or ``None``."""
        prefixes = self._prefixes
        if prefixes is not None and occurrence == 1:
            try:
                i = prefixes.index(name + self._seps.field)
            except ValueError:
                return None
            return self._objs[i] or self._seg(i)
        positions = self._name_index().get(name)
        if positions is None or occurrence < 1 or occurrence > len(positions):
            return None
        return self._seg(positions[occurrence - 1])

    def segments_named(self, name: str) -> list[Segment]:
        return [self._seg(i) for i in self._name_index().get(name, ())]

    # ---------------------------------------------------------------------------------------- reading

    def get(self, path: str, default: str | None = None) -> str | None:
        """Decoded leaf value at ``path`` (e.g. ``"PID-3[2].1"``), or ``default`` when absent or empty."""
        name, occ, n, rep, comp, sub = parse_path(path)
        prefixes = self._prefixes
        if prefixes is not None and occ == 1:  # inlined fast path of segment()
            try:
                i = prefixes.index(name + self._seps.field)
            except ValueError:
                return default
            seg = self._objs[i] or self._seg(i)
        else:
            found = self.segment(name, occ)
            if found is None:
                return default
            seg = found
        value = seg.get(n, rep or 1, comp, sub)
        return default if value is None else value

    def __getitem__(self, path: str) -> str:
        """Decoded leaf value at ``path``; ``""`` when absent or empty."""
        value = self.get(path)
        return "" if value is None else value

    def repetitions(self, path: str) -> list[str]:
        """Decoded leaf of each repetition of the field in ``path`` (a ``[n]`` in the path is ignored)."""
        name, occ, n, _rep, comp, sub = parse_path(path)
        seg = self.segment(name, occ)
        return [] if seg is None else seg.repetitions(n, comp, sub)

    def raw(self, path: str) -> str:
        """Encoded ER7 text of the element at ``path``; omitted levels mean the whole element
        (``raw("PID-3")`` is the whole field with all repetitions). ``""`` when absent."""
        name, occ, n, rep, comp, sub = parse_path(path)
        seg = self.segment(name, occ)
        return "" if seg is None else seg.raw_element(n, rep, comp, sub)

    # ------------------------------------------------------------------------------------ convenience

    @property
    def message_type(self) -> str | None:
        return self.get("MSH-9.1")

    @property
    def trigger_event(self) -> str | None:
        return self.get("MSH-9.2")

    @property
    def message_structure(self) -> str | None:
        """MSH-9.3; if absent, ``TYPE_EVENT`` (or ``ACK``) as a naive fallback. Use the validation
        package's structure table for the authoritative event -> structure mapping (A04 -> ADT_A01)."""
        value = self.get("MSH-9.3")
        if value is not None:
            return value
        mtype, event = self.message_type, self.trigger_event
        if mtype == "ACK" and event is None:
            return "ACK"
        return f"{mtype}_{event}" if mtype and event else None

    @property
    def control_id(self) -> str | None:
        return self.get("MSH-10")

    @property
    def processing_id(self) -> str | None:
        return self.get("MSH-11")

    @property
    def version(self) -> str | None:
        return self.get("MSH-12")

    @property
    def sending_application(self) -> str | None:
        return self.get("MSH-3")

    @property
    def sending_facility(self) -> str | None:
        return self.get("MSH-4")

    @property
    def receiving_application(self) -> str | None:
        return self.get("MSH-5")

    @property
    def receiving_facility(self) -> str | None:
        return self.get("MSH-6")

    @property
    def accept_ack_type(self) -> str | None:
        return self.get("MSH-15")

    @property
    def application_ack_type(self) -> str | None:
        return self.get("MSH-16")

    @property
    def charset(self) -> str | None:
        """MSH-18 (first repetition), or ``None``."""
        return self.get("MSH-18")

    # ---------------------------------------------------------------------------------------- editing

    def set(self, path: str, value: str | None) -> None:
        """Set the element at ``path`` to a plain value (escaped on write; ``None``/``""`` empties it).

        Omitted trailing levels mean the whole element (``set("MSH-9", "ACK")`` replaces the whole
        field). After ``set(p, v)``, ``get(p) == (v or None)``. Raises :class:`Hl7PathError` when the
        segment does not exist (use :meth:`append_segment`).
        """
        name, occ, n, rep, comp, sub = parse_path(path)
        seg = self.segment(name, occ)
        if seg is None:
            raise Hl7PathError("segment in path does not exist in the message")
        seg.set(n, value, rep, comp, sub)

    def set_raw(self, path: str, er7: str) -> None:
        """Set the element at ``path`` to pre-encoded ER7 text (e.g. copy ``raw("MSH-3")`` elsewhere)."""
        name, occ, n, rep, comp, sub = parse_path(path)
        seg = self.segment(name, occ)
        if seg is None:
            raise Hl7PathError("segment in path does not exist in the message")
        seg.set_raw(n, er7, rep, comp, sub)

    def append_segment(self, fields: Sequence[FieldValue]) -> Segment:
        """Append a segment built from ``[name, field1, field2, ...]`` (see :func:`build_message`)."""
        return self.insert_segment(len(self._raws), fields)

    def insert_segment(self, index: int, fields: Sequence[FieldValue]) -> Segment:
        """Insert a segment before position ``index`` (0-based); MSH must stay first."""
        if index < 1 or index > len(self._raws):
            raise Hl7PathError("segment index out of range (MSH must stay first)")
        text = _segment_text(fields, self._seps)
        if text[:3] in ENVELOPE_SEGMENTS:
            raise Hl7EncodingError("a message cannot contain another MSH or batch envelope segment")
        term = self._seps.segment_terminator
        if index == len(self._raws) and self._terms and self._terms[-1] == "":
            self._terms[-1] = term
            self._raws.append(text)
            self._terms.append("")
        else:
            self._raws.insert(index, text)
            self._terms.insert(index, term)
        self._objs.insert(index, None)
        self._index = None
        self._prefixes = None
        return self._seg(index)

    def remove_segment(self, segment: Segment) -> None:
        """Remove a segment (identity match) obtained from this message; MSH cannot be removed."""
        for i in range(1, len(self._raws)):
            if self._objs[i] is segment:
                was_last = i == len(self._raws) - 1
                final_term = self._terms[-1]
                del self._raws[i], self._objs[i], self._terms[i]
                if was_last:  # keep the original choice of terminating the last segment or not
                    self._terms[-1] = final_term
                self._index = None
                self._prefixes = None
                return
        raise Hl7PathError("segment is not part of this message")

    # ------------------------------------------------------------------------------------- serializing

    def _current_raws(self) -> list[str]:
        return [r if o is None else o.raw for r, o in zip(self._raws, self._objs, strict=True)]

    def to_er7(self, segment_terminator: str | None = None) -> str:
        """ER7 text. With no argument the original terminators (and trailing blank lines) are kept, so an
        unmodified parsed message reproduces its input exactly; with a terminator every segment is
        followed by it (standard form: ``"\\r"``)."""
        raws = self._current_raws()
        if segment_terminator is not None:
            return segment_terminator.join(raws) + segment_terminator
        out = [x for pair in zip(raws, self._terms, strict=True) for x in pair]
        out.append(self._tail)
        return "".join(out)

    def encode(self, segment_terminator: str | None = None) -> bytes:
        """Bytes in the original character set (plus original BOM); ``parse_message(b).encode() == b``."""
        text = self.to_er7(segment_terminator)
        try:
            return self._bom + text.encode(self._codec)
        except UnicodeEncodeError:
            raise Hl7EncodingError(
                f"message contains characters not representable in its character set ({self._codec})"
            ) from None


# ------------------------------------------------------------------------------------------- parsing

_name_ok: set[str] = set()  # cache of valid non-envelope segment IDs seen so far


_first4 = itemgetter(slice(0, 4))
_ok_prefixes: set[str] = set()  # "PID|"-style prefixes (ID + field separator) known valid, no envelopes


def _fast_check(parts: list[str], uniform: str, fs: str) -> tuple[list[str], list[str], list[str]] | None:
    """Common case: every segment (after the first) starts with a known-valid ``ID + fs`` prefix and there
    are no blank lines except one final terminator. Returns ``(segments, terminators, prefixes)``."""
    if parts[-1] == "":
        body = parts[:-1]
        if not body:
            return None
        terms = [uniform] * len(body)
    else:
        body = parts
        terms = [uniform] * len(body)
        terms[-1] = ""
    prefixes = list(map(_first4, body))
    if not _ok_prefixes.issuperset(prefixes[1:]):
        return None
    return body, terms, prefixes


def split_segments(text: str, fs: str | None, *, message: bool = False) -> tuple[list[str], list[str], str]:
    """Split ER7 text into ``(segments, terminators, tail)``.

    ``terminators[i]`` is the exact text that followed segment ``i`` (``\\r``, ``\\n``, ``\\r\\n``, plus any
    blank/whitespace-only lines, ``""`` for an unterminated last segment); ``tail`` holds whitespace-only
    text after the last terminator. Every segment must start with a valid ID followed by ``fs`` (or by
    any non-alphanumeric character when ``fs`` is None, for batches) or end right after the ID. With
    ``message=True`` an envelope segment (MSH/FHS/BHS/BTS/FTS) after the first segment is an error.
    """
    uniform: str | None
    seps_list: list[str] | None = None
    if "\n" not in text:
        parts = text.split("\r")
        uniform = "\r"
    elif "\r" not in text:
        parts = text.split("\n")
        uniform = "\n"
    elif text.count("\r\n") == text.count("\r") == text.count("\n"):
        parts = text.split("\r\n")
        uniform = "\r\n"
    else:
        pieces = _MIXED_TERMINATORS.split(text)
        parts = pieces[0::2]
        seps_list = pieces[1::2]
        uniform = None
    if uniform is not None and fs is not None:
        fast = _fast_check(parts, uniform, fs)
        if fast is not None:
            return fast[0], fast[1], ""
    return _split_slow(parts, seps_list, uniform, fs, message)


def _split_slow(
    parts: list[str], seps_list: list[str] | None, uniform: str | None, fs: str | None, message: bool
) -> tuple[list[str], list[str], str]:
    raws: list[str] = []
    terms: list[str] = []
    pending = ""  # blank lines seen since the last segment
    last = len(parts) - 1
    for k, p in enumerate(parts):
        sep = "" if k == last else (uniform if seps_list is None else seps_list[k])
        assert sep is not None
        if not p.strip():
            if not raws:
                raise Hl7ParseError("input is empty or starts with a blank line", error_code="100")
            pending += p + sep
            continue
        name = p[:3]
        if not (
            _valid_name(name) and (len(p) == 3 or (p[3] == fs if fs is not None else not p[3].isalnum()))
        ):
            raise Hl7ParseError(
                "segment does not start with a valid segment ID (3 upper-case letters/digits) "
                "followed by the field separator",
                error_code="100",
                segment_index=len(raws) + 1,
            )
        if name in ENVELOPE_SEGMENTS:
            if message and raws:
                raise Hl7ParseError(
                    "message contains a second MSH or a batch envelope segment; "
                    "use parse_batch or iter_messages",
                    error_code="100",
                    segment=name,
                    segment_index=len(raws) + 1,
                )
        else:
            _name_ok.add(name)
            if fs is not None and len(p) > 3 and len(_ok_prefixes) < 100_000:
                _ok_prefixes.add(p[:4])
        if raws:
            terms[-1] += pending
        pending = ""
        raws.append(p)
        terms.append(sep)
    if not raws:
        raise Hl7ParseError("no segments found", error_code="100")
    return raws, terms, pending


def _header_separators(raw: str, terminator: str, index: int = 1) -> Separators:
    name = raw[:3]
    if len(raw) < 4:
        raise Hl7ParseError(
            f"{name} segment has no field separator",
            error_code="102",
            segment=name,
            segment_index=index,
            field=1,
        )
    fs = raw[3]
    end = raw.find(fs, 4)
    enc = raw[4:] if end == -1 else raw[4:end]
    try:
        return _separators_from(fs, enc, terminator, name)
    except Hl7ParseError as exc:
        if index != 1:
            exc.segment_index = index
        raise


def _check_field_separator(text: str, name: str) -> str:
    if len(text) < 4:
        raise Hl7ParseError(
            f"{name} segment has no field separator", error_code="102", segment=name, segment_index=1, field=1
        )
    fs = text[3]
    if fs.isalnum() or fs.isspace() or not fs.isprintable():
        raise Hl7ParseError(
            f"{name}-1 field separator is not a valid delimiter",
            error_code="102",
            segment=name,
            segment_index=1,
            field=1,
        )
    return fs


def decode_input(
    data: bytes | bytearray | memoryview | str, encoding: str | None
) -> tuple[str, str, bytes, str | None]:
    """``(text, codec, bom, declared_charset)`` for bytes or text input."""
    if isinstance(data, str):
        bom = b""
        if data.startswith("\ufeff"):
            data = data[1:]
            bom = UTF8_BOM
        declared: str | None = None
        if encoding is not None:
            codec = resolve_override(encoding)
        else:  # text needs no decoding; MSH-18 only chooses the codec encode() will use
            declared = header_charset(data.encode("utf-8", "surrogatepass"))
            codec = (codec_for_charset(declared) if declared else None) or "utf-8"
        return data, codec, bom, declared
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("parse_message expects bytes or str")
    return decode_payload(data, encoding)


def parse_message(data: bytes | bytearray | memoryview | str, *, encoding: str | None = None) -> Message:
    """Parse one HL7 v2 message (ER7). Raises :class:`Hl7ParseError` for malformed input (only that).

    Batches/files (FHS/BHS first, or several MSH) must go through :func:`parse_batch`/:func:`iter_messages`.
    """
    codec: str | None
    declared: str | None = None
    bom = b""
    if type(data) is bytes and encoding is None and data.isascii():
        # Fast path: ASCII bytes decode identically in every supported charset; MSH-18 is checked below.
        text = data.decode("ascii")
        codec = None
    elif isinstance(data, str) and encoding is None:
        text = data
        codec = None
        if text.startswith("\ufeff"):
            text = text[1:]
            bom = UTF8_BOM
    else:
        text, codec, bom, declared = decode_input(data, encoding)
    fs = "|" if text.startswith("MSH|^~\\&|") else _check_message_start(text)
    # Split into segments (inlined fast path of split_segments).
    prefixes: list[str] | None = None
    if "\n" not in text:
        fast = _fast_check(text.split("\r"), "\r", fs)
    elif "\r" not in text:
        fast = _fast_check(text.split("\n"), "\n", fs)
    else:
        fast = None
    if fast is not None:
        raws, terms, prefixes = fast
        tail = ""
    else:
        raws, terms, tail = split_segments(text, fs, message=True)
    first = terms[0]
    term = "\r\n" if first.startswith("\r\n") else (first[:1] or "\r")
    msh = raws[0]
    seps = _header_cache.get(term + msh[3:10])
    if seps is None:
        seps = _header_separators(msh, term)
        if len(_header_cache) < 1024:
            _header_cache[term + msh[3:10]] = seps
    if codec is None:
        codec = "utf-8"
        if msh.count(fs) >= 17:
            msh18 = msh.split(fs, 18)[17]
            cached = _charset_cache.get(msh18)
            if cached is None:
                cached = _charset_of(msh18, seps)
                if len(_charset_cache) < 256:
                    _charset_cache[msh18] = cached
            declared, resolved = cached
            if resolved is not None:
                codec = resolved
            elif declared is not None and not isinstance(data, str):
                raise Hl7ParseError(
                    "MSH-18 names an unsupported character set", error_code="103", segment="MSH", field=18
                )
    # Equivalent to Message(...) without the keyword-argument call overhead (hot path).
    msg = _new_message(Message)
    msg._raws = raws
    msg._terms = terms
    msg._seps = seps
    msg._codec = codec
    msg._tail = tail
    msg._bom = bom
    msg._declared = declared
    msg._objs = [None] * len(raws)
    msg._index = None
    msg._prefixes = prefixes
    return msg


_new_message = object.__new__


_header_cache: dict[str, Separators] = {}
_charset_cache: dict[str, tuple[str | None, str | None]] = {}


def _charset_of(msh18: str, seps: Separators) -> tuple[str | None, str | None]:
    """``(declared name, python codec or None if unsupported)`` for a raw MSH-18 field."""
    declared = msh18.split(seps.repetition)[0].split(seps.component)[0].strip() or None
    return declared, (codec_for_charset(declared) if declared else None)


def _check_message_start(text: str) -> str:
    """Validate that ``text`` starts with an MSH segment and return its field separator."""
    if not text:
        raise Hl7ParseError("empty message", error_code="100")
    name = text[:3]
    if name != "MSH":
        if name in ("FHS", "BHS"):
            raise Hl7ParseError(
                "input is a batch/file (FHS/BHS); use parse_batch or iter_messages",
                error_code="100",
                segment=name,
                segment_index=1,
            )
        raise Hl7ParseError("first segment is not MSH", error_code="100", segment_index=1)
    return _check_field_separator(text, "MSH")


def _declared_charset(msh_raw: str, seps: Separators) -> str | None:
    fields = msh_raw.split(seps.field)
    if len(fields) < 18:
        return None
    value = fields[17].split(seps.repetition)[0].split(seps.component)[0].strip()
    return value or None


# ------------------------------------------------------------------------------------------ building


def build_message(
    segments: Sequence[Sequence[FieldValue]],
    *,
    separators: Separators | None = None,
    encoding: str | None = None,
) -> Message:
    """Build a message from ``[[name, field1, field2, ...], ...]``; list index = HL7 field number.

    Field values: ``str`` (a plain leaf, escaped), ``None`` (empty), :class:`Raw` (pre-encoded ER7, checked
    for delimiters that would break the structure), a list/tuple of components (each a leaf or a
    list/tuple of sub-component leaves) or :class:`Repeated` ``([rep1, rep2])``. For MSH, entries 1 and 2
    (separators) may be given as ``None`` or must match ``separators``. The first segment must be MSH.
    ``encoding`` (HL7 or Python name) sets the codec used by ``encode()``; default: from MSH-18, else UTF-8.
    """
    seps = separators or Separators()
    seps.validate()
    if not segments:
        raise Hl7EncodingError("a message needs at least an MSH segment")
    raws = [_segment_text(list(fields), seps) for fields in segments]
    if raws[0][:3] != "MSH":
        raise Hl7EncodingError("the first segment must be MSH")
    if any(r[:3] in ENVELOPE_SEGMENTS for r in raws[1:]):
        raise Hl7EncodingError("a message cannot contain another MSH or batch envelope segment")
    codec = "utf-8"
    declared = _declared_charset(raws[0], seps)
    if encoding is not None:
        try:
            codec = resolve_override(encoding)
        except Hl7ParseError:
            raise Hl7EncodingError("unknown encoding") from None
    elif declared:
        resolved = codec_for_charset(declared)
        if resolved is None:
            raise Hl7EncodingError("MSH-18 names an unsupported character set")
        codec = resolved
    terms = [seps.segment_terminator] * len(raws)
    return Message(raws, terms, seps, codec=codec, declared_charset=declared)
