"""HL7 v2 delimiters: :class:`Separators` read from MSH-1/MSH-2 (never assumed), segment-ID rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.hl7v2.errors import Hl7EncodingError, Hl7ParseError

__all__ = ["ENVELOPE_SEGMENTS", "HEADER_SEGMENTS", "Separators"]

#: Segments whose field 1 is the field separator and field 2 the encoding characters.
HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})
#: Segments that only make sense in a batch/file envelope (or start a new message).
ENVELOPE_SEGMENTS = frozenset({"MSH", "FHS", "BHS", "BTS", "FTS"})

_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_UPPER_DIGIT = _UPPER | frozenset("0123456789")


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


def _valid_name(name: str) -> bool:
    return len(name) == 3 and name[0] in _UPPER and name[1] in _UPPER_DIGIT and name[2] in _UPPER_DIGIT
