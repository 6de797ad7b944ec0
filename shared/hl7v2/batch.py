"""HL7 v2 batches and files: ``[FHS] { [BHS] { MSH ... } [BTS] } [FTS]``.

:func:`parse_batch` accepts a file (FHS ... FTS), a batch (BHS ... BTS), several bare messages, or a single
message, and checks the envelope structure:

* the first segment must be MSH, FHS or BHS; FHS only first; nothing after FTS;
* a second BHS while a batch is still open (no BTS yet) is an error;
* any segment other than MSH/BHS/BTS/FHS/FTS outside a message ("segment received before message
  header") is an error;
* when BTS-1 (batch message count) or FTS-1 (file batch count) is present it must equal the counted number
  (error code ``"102"``). Messages not preceded by a BHS form an implicit batch.

Each message keeps its own separators (from its MSH) and terminators, so ``Batch.encode()`` reproduces the
input bytes. The whole payload is decoded with the charset of the first MSH (see ``charset.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from shared.hl7v2.errors import Hl7EncodingError, Hl7ParseError
from shared.hl7v2.message import Message
from shared.hl7v2.parser import _check_field_separator, _header_separators, decode_input, split_segments
from shared.hl7v2.segment import Segment
from shared.hl7v2.separators import ENVELOPE_SEGMENTS, Separators

__all__ = ["Batch", "BatchGroup", "iter_messages", "parse_batch"]


@dataclass(eq=False)
class BatchGroup:
    """One batch: optional BHS, its messages, optional BTS."""

    header: Segment | None = None
    messages: list[Message] = field(default_factory=list)
    trailer: Segment | None = None


class Batch:
    """A parsed batch or file. ``messages`` flattens all batches in order."""

    def __init__(
        self,
        separators: Separators,
        items: list[tuple[Segment | Message, str]],
        groups: list[BatchGroup],
        file_header: Segment | None,
        file_trailer: Segment | None,
        *,
        codec: str,
        bom: bytes = b"",
        tail: str = "",
    ) -> None:
        self.separators = separators
        self.groups = groups
        self.file_header = file_header
        self.file_trailer = file_trailer
        self.codec = codec
        self.bom = bom
        self._items = items
        self._tail = tail

    def __repr__(self) -> str:
        return f"<Batch batches={len(self.groups)} messages={len(self.messages)}>"

    @property
    def messages(self) -> list[Message]:
        return [m for g in self.groups for m in g.messages]

    @property
    def header(self) -> Segment | None:
        """BHS of the first batch, if any."""
        return self.groups[0].header if self.groups else None

    @property
    def trailer(self) -> Segment | None:
        """BTS of the last batch, if any."""
        return self.groups[-1].trailer if self.groups else None

    @property
    def header_segments(self) -> Sequence[Segment]:
        """FHS and the first BHS, those present."""
        return tuple(s for s in (self.file_header, self.header) if s is not None)

    @property
    def trailer_segments(self) -> Sequence[Segment]:
        """The last BTS and FTS, those present."""
        return tuple(s for s in (self.trailer, self.file_trailer) if s is not None)

    def to_er7(self, segment_terminator: str | None = None) -> str:
        out: list[str] = []
        for item, term in self._items:
            if isinstance(item, Message):
                out.append(item.to_er7(segment_terminator))
            else:
                out.append(item.raw)
                out.append(term if segment_terminator is None else segment_terminator)
        if segment_terminator is None:
            out.append(self._tail)
        return "".join(out)

    def encode(self, segment_terminator: str | None = None) -> bytes:
        try:
            return self.bom + self.to_er7(segment_terminator).encode(self.codec)
        except UnicodeEncodeError:
            raise Hl7EncodingError(
                f"batch contains characters not representable in its character set ({self.codec})"
            ) from None


def _terminator(terms: list[str]) -> str:
    first = terms[0]
    return "\r\n" if first.startswith("\r\n") else (first[:1] or "\r")


def _check_count(segment: Segment, counted: int, index: int) -> None:
    value = segment.get(1)
    if value is None:
        return
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or int(value) != counted:
        raise Hl7ParseError(
            f"{segment.name}-1 count does not match the number of "
            f"{'messages' if segment.name == 'BTS' else 'batches'}",
            error_code="102",
            segment=segment.name,
            segment_index=index,
            field=1,
        )


def _message(raws: list[str], terms: list[str], codec: str, index: int) -> Message:
    fs = _check_field_separator(raws[0], "MSH")
    seps = _header_separators(raws[0], _terminator(terms), index)
    for k in range(1, len(raws)):
        raw = raws[k]
        if len(raw) > 3 and raw[3] != fs:
            raise Hl7ParseError(
                "segment does not use its message's field separator",
                error_code="100",
                segment_index=index + k,
            )
    return Message(raws, terms, seps, codec=codec)


def parse_batch(data: bytes | bytearray | memoryview | str, *, encoding: str | None = None) -> Batch:
    """Parse a file/batch (or bare messages); raises :class:`Hl7ParseError` on malformed input."""
    text, codec, bom, _declared = decode_input(data, encoding)
    if not text:
        raise Hl7ParseError("empty batch", error_code="100")
    first = text[:3]
    if first not in ("MSH", "FHS", "BHS"):
        raise Hl7ParseError("first segment must be one of MSH, FHS or BHS", error_code="100", segment_index=1)
    _check_field_separator(text, first)
    raws, terms, tail = split_segments(text, None)
    term = _terminator(terms)
    seps = _header_separators(raws[0], term)
    items: list[tuple[Segment | Message, str]] = []
    groups: list[BatchGroup] = []
    file_header: Segment | None = None
    file_trailer: Segment | None = None
    current: BatchGroup | None = None
    i, n = 0, len(raws)
    while i < n:
        raw, index = raws[i], i + 1
        name = raw[:3]
        if file_trailer is not None:
            raise Hl7ParseError("segment after FTS", error_code="100", segment=name, segment_index=index)
        if name == "MSH":
            j = i + 1
            while j < n and raws[j][:3] not in ENVELOPE_SEGMENTS:
                j += 1
            message = _message(raws[i:j], terms[i:j], codec, index)
            if current is None or current.trailer is not None:
                current = BatchGroup()
                groups.append(current)
            current.messages.append(message)
            items.append((message, ""))
            i = j
            continue
        if name in ("BTS", "FTS") and len(raw) > 3 and raw[3] != seps.field:
            raise Hl7ParseError(
                "segment does not use the batch field separator",
                error_code="100",
                segment=name,
                segment_index=index,
            )
        if name == "FHS":
            if i != 0:
                raise Hl7ParseError(
                    "File cannot have more than one FHS segment"
                    if file_header
                    else "FHS must be the first segment",
                    error_code="100",
                    segment=name,
                    segment_index=index,
                )
            file_header = Segment(raw, _header_separators(raw, term, index), codec)
            items.append((file_header, terms[i]))
        elif name == "BHS":
            if current is not None and current.header is not None and current.trailer is None:
                raise Hl7ParseError(
                    "Batch cannot have more than one BHS segment (previous batch has no BTS)",
                    error_code="100",
                    segment=name,
                    segment_index=index,
                )
            current = BatchGroup(header=Segment(raw, _header_separators(raw, term, index), codec))
            groups.append(current)
            items.append((current.header, terms[i]))  # type: ignore[arg-type]
        elif name == "BTS":
            if current is None or current.trailer is not None:
                current = BatchGroup()
                groups.append(current)
            current.trailer = Segment(raw, seps, codec)
            _check_count(current.trailer, len(current.messages), index)
            items.append((current.trailer, terms[i]))
        elif name == "FTS":
            file_trailer = Segment(raw, seps, codec)
            _check_count(file_trailer, len(groups), index)
            items.append((file_trailer, terms[i]))
        else:
            raise Hl7ParseError(
                "Segment received before message header (MSH)",
                error_code="100",
                segment=name,
                segment_index=index,
            )
        i += 1
    return Batch(seps, items, groups, file_header, file_trailer, codec=codec, bom=bom, tail=tail)


def iter_messages(
    data: bytes | bytearray | memoryview | str, *, encoding: str | None = None
) -> Iterator[Message]:
    """Messages of a single message, bare message sequence, batch or file (envelope checked up front)."""
    return iter(parse_batch(data, encoding=encoding).messages)
