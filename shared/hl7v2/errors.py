"""Exceptions for the HL7 v2 package.

:class:`Hl7ParseError` carries an HL7 table 0357 error code and a position (segment name, 1-based segment
index, field, component) so an ACK builder can fill ERR-1/ERR-2/ERR-3 without reading the message text.
Exception text never contains field values: only positions, segment IDs and descriptions of what was wrong.

Error codes used by the parser (HL7 table 0357):

* ``"100"`` segment sequence error: empty input, first segment not MSH (or FHS/BHS for batches), a segment
  that does not start with a valid segment ID, a second MSH in one message, batch structure errors.
* ``"102"`` data type error: invalid field separator / encoding characters (MSH-1/MSH-2), bytes that cannot
  be decoded in the declared character set, a non-numeric or wrong BTS-1/FTS-1 count.
* ``"103"`` table value not found: MSH-18 names a character set this parser does not support (HL7 table 0211).
* ``"207"`` application internal error: the caller passed an unknown ``encoding=`` override.
"""

from __future__ import annotations

from shared.errors import PermanentError


class Hl7Error(Exception):
    """Marker mixin for every HL7 v2 error."""


class Hl7ParseError(Hl7Error, PermanentError):
    """The input is not a well-formed HL7 v2 message (or batch).

    ``error_code`` is an HL7 table 0357 code; ``segment`` the segment ID (``None`` when unknown or not a
    valid ID), ``segment_index`` the 1-based position of the segment in the message (or batch),
    ``field``/``component`` 1-based positions when the problem is inside a field.
    """

    code = "hl7-parse"

    def __init__(
        self,
        message: str,
        *,
        error_code: str = "100",
        segment: str | None = None,
        segment_index: int | None = None,
        field: int | None = None,
        component: int | None = None,
    ) -> None:
        location = _location(segment, segment_index, field, component)
        super().__init__(f"{message} ({location})" if location else message)
        self.description = message
        self.error_code = error_code
        self.segment = segment
        self.segment_index = segment_index
        self.field = field
        self.component = component


class Hl7EncodingError(Hl7Error, PermanentError):
    """A value or structure cannot be written as ER7 (bad separators, unencodable character, bad raw text)."""

    code = "hl7-encoding"


class Hl7PathError(Hl7Error, PermanentError, ValueError):
    """A field path such as ``"PID-3[2].1"`` is syntactically invalid or addresses nothing settable."""

    code = "hl7-path"


def _location(
    segment: str | None, segment_index: int | None, field: int | None, component: int | None
) -> str:
    parts: list[str] = []
    if segment is not None:
        parts.append(f"segment {segment}")
    if segment_index is not None:
        parts.append(f"segment #{segment_index}")
    if field is not None:
        parts.append(f"field {field}")
    if component is not None:
        parts.append(f"component {component}")
    return ", ".join(parts)
