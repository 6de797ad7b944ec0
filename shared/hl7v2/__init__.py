"""HL7 v2 (ER7) parser, accessors, editor and serializer. Pure Python, no I/O.

``parse_message`` / ``parse_batch`` / ``iter_messages`` read, ``Message`` reads and edits by HL7 path
(``"PID-3[2].1"``), ``build_message`` writes; a parsed message re-encodes byte for byte. Parse errors are
:class:`Hl7ParseError` with a table 0357 code and a position. Paths, decoding, writing and errors in
detail: ``docs/hl7v2-parser.md``.
"""

from __future__ import annotations

from shared.hl7v2.batch import Batch, BatchGroup, iter_messages, parse_batch
from shared.hl7v2.errors import Hl7EncodingError, Hl7Error, Hl7ParseError, Hl7PathError
from shared.hl7v2.escape import decode as decode_escapes
from shared.hl7v2.escape import encode as encode_escapes
from shared.hl7v2.message import Message, build_message
from shared.hl7v2.parser import parse_message
from shared.hl7v2.paths import parse_path
from shared.hl7v2.segment import Segment
from shared.hl7v2.separators import Separators
from shared.hl7v2.values import ComponentValue, FieldValue, LeafValue, Raw, Repeated

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
