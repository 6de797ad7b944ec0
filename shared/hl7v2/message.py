"""A parsed or built HL7 v2 message (:class:`Message`: read and edit by HL7 path, serialize) and
:func:`build_message`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from shared.hl7v2.charset import codec_for_charset, resolve_override
from shared.hl7v2.errors import Hl7EncodingError, Hl7ParseError, Hl7PathError
from shared.hl7v2.paths import _READ_KEYS, parse_path, read_key
from shared.hl7v2.segment import Segment
from shared.hl7v2.separators import ENVELOPE_SEGMENTS, Separators
from shared.hl7v2.values import FieldValue, _segment_text

__all__ = ["Message", "build_message"]


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

        ``prefixes`` (optional) are the first 4 characters of every segment, all ``ID|`` (taken only when the
        field separator is ``|``); they let :meth:`segment` find the first occurrence with ``list.index``
        instead of building an index.
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
        self._prefixes = prefixes if separators.field == "|" else None

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
                i = prefixes.index(name + "|")
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
        try:
            key, occ, n, rep, comp, sub = _READ_KEYS[path]
        except KeyError:
            key, occ, n, rep, comp, sub = read_key(path)
        prefixes = self._prefixes
        if prefixes is not None and occ == 1:  # inlined fast path of segment()
            try:
                i = prefixes.index(key)
            except ValueError:
                return default
            seg = self._objs[i]
            if seg is None:
                seg = self._objs[i] = Segment(self._raws[i], self._seps, self._codec)
        else:
            found = self.segment(key[:3], occ)
            if found is None:
                return default
            seg = found
        value = seg.get(n, rep or 1, comp, sub)
        return default if value is None else value

    def __getitem__(self, path: str) -> str:
        """Decoded leaf value at ``path``; ``""`` when absent or empty."""
        # Same as get(path) or "" (one call less on the read path).
        try:
            key, occ, n, rep, comp, sub = _READ_KEYS[path]
        except KeyError:
            key, occ, n, rep, comp, sub = read_key(path)
        prefixes = self._prefixes
        if prefixes is not None and occ == 1:
            try:
                i = prefixes.index(key)
            except ValueError:
                return ""
            seg = self._objs[i]
            if seg is None:
                seg = self._objs[i] = Segment(self._raws[i], self._seps, self._codec)
        else:
            found = self.segment(key[:3], occ)
            if found is None:
                return ""
            seg = found
        return seg.get(n, rep or 1, comp, sub) or ""

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


def _declared_charset(msh_raw: str, seps: Separators) -> str | None:
    fields = msh_raw.split(seps.field)
    if len(fields) < 18:
        return None
    value = fields[17].split(seps.repetition)[0].split(seps.component)[0].strip()
    return value or None


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
