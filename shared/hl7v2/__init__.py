"""HL7 v2 (ER7) parser, accessors, editor and serializer. Pure Python, no I/O.

Parsing
-------
``parse_message(data: bytes | str, *, encoding=None) -> Message`` parses one message. Delimiters are read
from MSH-1/MSH-2 (4 encoding characters, or 5 with the v2.7 truncation character); segments may be
separated by CR, LF or CRLF (even mixed); blank lines between segments and trailing whitespace are
tolerated and remembered, so ``parse_message(b).encode() == b`` byte for byte. A leading UTF-8 BOM is
stripped and re-emitted. Character set: ``encoding=`` override, else MSH-18, else UTF-8 with Windows-1252 and
then ISO 8859-1 fallback (details in ``shared/hl7v2/charset.py``).

``parse_message`` raises :class:`Hl7ParseError` (and nothing else) for malformed input, with an HL7 table
0357 ``error_code`` and a position (``segment``, 1-based ``segment_index``, ``field``): empty input; first
segment not MSH (FHS/BHS: use ``parse_batch``); MSH-1/MSH-2 missing, too short/long, duplicated or
alphanumeric; a segment not starting with a valid ID (``[A-Z][A-Z0-9]{2}`` then the field separator, or
nothing); a second MSH or a BHS/BTS/FHS/FTS inside one message; undecodable bytes in a declared charset
(``"102"``); unsupported MSH-18 (``"103"``). Missing MSH-9/MSH-12 etc. are NOT parse errors (validation).

``parse_batch(data) -> Batch`` handles ``[FHS] {[BHS] {MSH...} [BTS]} [FTS]`` (see ``batch.py``);
``iter_messages(data)`` returns the messages of a single message, bare sequence, batch or file.

Reading
-------
Paths use HL7 notation: ``"PID-3"``, ``"PID-3[2]"`` (2nd repetition), ``"PID-3[2].1"``, ``"PID-3.1.2"``
(sub-component), ``"OBX(2)-5"`` (2nd OBX), ``"MSH-9.2"``. MSH-1 is the field separator and MSH-2 the
encoding characters (returned verbatim). A path names a LEAF: omitted repetition/component/sub-component
mean the first (HAPI Terser semantics), so ``msg["PID-3"] == msg["PID-3[1].1.1"]``.

* ``msg.get(path, default=None)`` -> decoded value, or ``default`` when absent or empty;
* ``msg[path]`` -> decoded value, ``""`` when absent or empty;
* ``msg.raw(path)`` -> ENCODED ER7 text of the addressed element, where omitted levels mean the whole
  element (``msg.raw("PID-3")`` is the whole field with all repetitions);
* ``msg.repetitions("PID-3.1")`` -> decoded leaf of every repetition;
* ``msg.segment(name, occurrence=1)``, ``msg.segments_named(name)``, ``msg.segments``;
  ``Segment.get(n, rep=1, comp=None, sub=None)`` (decoded), ``Segment.raw_field(n)`` (encoded, alias
  ``field``), ``len(segment)`` = number of fields;
* properties ``message_type`` (MSH-9.1), ``trigger_event``, ``message_structure`` (MSH-9.3 or naive
  ``TYPE_EVENT``), ``control_id``, ``processing_id``, ``version``, ``sending_application`` (MSH-3.1),
  ``sending_facility``, ``receiving_application``, ``receiving_facility``, ``accept_ack_type``,
  ``application_ack_type``, ``charset``; ``separators``, ``codec``.

Values are decoded on read (see ``escape.py``): ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\``, ``\\Xhh..\\``
(bytes in the message charset), ``\\.br\\`` -> ``"\\n"``, ``\\.sp\\`` -> newline(s); ``\\H\\``/``\\N\\``
removed; ``\\Z..\\ \\C..\\ \\M..\\`` and other formatting commands kept verbatim; unterminated or unknown
escapes kept literally. HL7 null (``""``) is returned as the two-character string ``'""'``.

Writing
-------
* ``msg.set(path, value)`` escapes ``value``; omitted levels mean the whole element (``set("MSH-9",
  "ACK")`` replaces the field); ``msg.set_raw(path, er7)`` writes pre-encoded text (e.g. ``raw()`` of
  another field); ``msg.append_segment([...])`` / ``insert_segment`` / ``remove_segment``.
* ``build_message(segments, *, separators=None, encoding=None)`` (also ``Message.from_segments``):
  ``segments`` is ``[[name, field1, field2, ...], ...]`` with list index = HL7 field number. A field value
  is ``str`` (escaped leaf), ``None`` (empty), ``Raw("a^b")`` (pre-encoded ER7), a list of components
  (each a leaf or a list of sub-component leaves), or ``Repeated([...])``. For MSH, entries 1 and 2 are
  ``None`` (filled from ``separators``). Example ACK::

      build_message([
          ["MSH", None, None, "TIE", "TRUST", Raw(orig.raw("MSH-3")), Raw(orig.raw("MSH-4")),
           "20240101120000", None, ["ACK", "A01", "ACK"], "ACK123", "P", "2.5"],
          ["MSA", "AA", orig.control_id],
      ])

* ``msg.to_er7(segment_terminator=None)``: original terminators when ``None``, else every segment followed
  by the given one; ``msg.encode()`` -> bytes in the message's codec (raises :class:`Hl7EncodingError` for
  unrepresentable characters).
"""

from __future__ import annotations

from shared.hl7v2.batch import Batch, BatchGroup, iter_messages, parse_batch
from shared.hl7v2.errors import Hl7EncodingError, Hl7Error, Hl7ParseError, Hl7PathError
from shared.hl7v2.escape import decode as decode_escapes
from shared.hl7v2.escape import encode as encode_escapes
from shared.hl7v2.parser import (
    ComponentValue,
    FieldValue,
    LeafValue,
    Message,
    Raw,
    Repeated,
    Segment,
    Separators,
    build_message,
    parse_message,
    parse_path,
)

__all__ = [
    "Batch",
    "BatchGroup",
    "ComponentValue",
    "FieldValue",
    "Hl7EncodingError",
    "Hl7Error",
    "Hl7ParseError",
    "Hl7PathError",
    "LeafValue",
    "Message",
    "Raw",
    "Repeated",
    "Segment",
    "Separators",
    "build_message",
    "decode_escapes",
    "encode_escapes",
    "iter_messages",
    "parse_batch",
    "parse_message",
    "parse_path",
]
