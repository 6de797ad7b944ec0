"""Character-set handling: HL7 table 0211 (MSH-18) names to Python codecs, and the decode policy.

Policy (documented in the package docstring too):

* ``encoding=`` passed by the caller wins. It may be an HL7 name (``"8859/1"``) or a Python codec name.
  Bytes that do not decode raise :class:`Hl7ParseError` ``"102"``; an unknown name raises ``"207"``.
* Otherwise the first repetition/component of MSH-18 (of the first MSH in a batch) is looked up in
  :data:`HL7_CHARSETS`. Unknown or non-ASCII-compatible sets (UTF-16/32, JIS) raise ``"103"`` at MSH-18.
  Declared sets are decoded strictly (undecodable bytes raise ``"102"`` with the segment position),
  except ``ASCII``: senders that declare ASCII and then send 8-bit text are common, so ASCII is decoded
  with the default policy below (the codec actually used is recorded and reused by ``encode()``).
* No MSH-18: UTF-8 if the bytes are valid UTF-8 (this includes pure ASCII), else Windows-1252, else
  ISO 8859-1 (which decodes any byte). Every step is reversible, so ``encode()`` reproduces the input bytes.
* A UTF-8 byte-order mark at the start is stripped before parsing and written back by ``encode()``.
"""

from __future__ import annotations

import codecs

from shared.hl7v2.errors import Hl7ParseError

UTF8_BOM = b"\xef\xbb\xbf"

#: HL7 table 0211 values (plus the common non-standard ``UTF-8``) -> Python codec; ``None`` = unsupported.
HL7_CHARSETS: dict[str, str | None] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "8859/2": "iso8859_2",
    "ISO IR101": "iso8859_2",
    "8859/3": "iso8859_3",
    "ISO IR109": "iso8859_3",
    "8859/4": "iso8859_4",
    "ISO IR110": "iso8859_4",
    "8859/5": "iso8859_5",
    "ISO IR144": "iso8859_5",
    "8859/6": "iso8859_6",
    "ISO IR127": "iso8859_6",
    "8859/7": "iso8859_7",
    "ISO IR126": "iso8859_7",
    "8859/8": "iso8859_8",
    "ISO IR138": "iso8859_8",
    "8859/9": "iso8859_9",
    "ISO IR148": "iso8859_9",
    "8859/15": "iso8859_15",
    "ISO IR203": "iso8859_15",
    "UNICODE UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "GB 18030-2000": "gb18030",
    "BIG-5": "big5",
    "KS X 1001": "euc_kr",
    # Not ASCII-compatible on the wire (delimiters would not be single bytes) or no faithful codec:
    "UNICODE": None,
    "UNICODE UTF-16": None,
    "UNICODE UTF-32": None,
    "ISO IR14": None,
    "ISO IR87": None,
    "ISO IR159": None,
    "CNS 11643-1992": None,
}


def codec_for_charset(name: str) -> str | None:
    """Python codec for an MSH-18 value (case-insensitive, spaces stripped); None if unsupported."""
    return HL7_CHARSETS.get(name.strip().upper())


def resolve_override(name: str) -> str:
    """Python codec for a caller-supplied ``encoding=`` (HL7 table 0211 name or Python codec name)."""
    codec = HL7_CHARSETS.get(name.strip().upper())
    if codec is not None:
        return codec
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise Hl7ParseError("unknown encoding override", error_code="207") from None


def header_charset(data: bytes) -> str | None:
    """The MSH-18 value (first repetition, first component) of the first MSH in ``data``, or None.

    Works on bytes so the declared charset is known before decoding; assumes the header itself is ASCII,
    which every supported charset guarantees.
    """
    if data.startswith(b"MSH"):
        start = 0
    else:
        start = -1
        for marker in (b"\rMSH", b"\nMSH"):
            pos = data.find(marker)
            if pos != -1 and (start == -1 or pos + 1 < start):
                start = pos + 1
        if start == -1:
            return None
    fs = data[start + 3 : start + 4]
    if not fs or fs in (b"\r", b"\n"):
        return None
    end = len(data)
    for term in (b"\r", b"\n"):
        pos = data.find(term, start)
        if pos != -1 and pos < end:
            end = pos
    fields = data[start:end].split(fs)
    if len(fields) < 18:
        return None
    value = fields[17]
    enc = fields[1]
    if len(enc) >= 2:
        value = value.split(enc[1:2])[0]
    if enc:
        value = value.split(enc[0:1])[0]
    text = value.decode("ascii", errors="replace").strip()
    return text or None


def decode_payload(data: bytes, encoding: str | None) -> tuple[str, str, bytes, str | None]:
    """Decode raw bytes: returns ``(text, codec, bom, declared_charset)``; see the module docstring."""
    bom = b""
    if data.startswith(UTF8_BOM):
        bom = UTF8_BOM
        data = data[3:]
    if encoding is not None:
        codec = resolve_override(encoding)
        return _strict(data, codec), codec, bom, None
    declared = header_charset(data)
    if declared is not None:
        codec_or_none = codec_for_charset(declared)
        if codec_or_none is None:
            raise Hl7ParseError(
                "MSH-18 names an unsupported character set", error_code="103", segment="MSH", field=18
            )
        if codec_or_none != "ascii":
            return _strict(data, codec_or_none), codec_or_none, bom, declared
        if data.isascii():
            return data.decode("ascii"), "ascii", bom, declared
    elif bom:
        return _strict(data, "utf-8"), "utf-8", bom, None
    text, codec = _default_decode(data)
    return text, codec, bom, declared


def _default_decode(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _strict(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        index = _segment_index_at(data, exc.start)
        raise Hl7ParseError(
            "bytes cannot be decoded in the message character set",
            error_code="102",
            segment_index=index,
        ) from None


def _segment_index_at(data: bytes, offset: int) -> int:
    """1-based index of the segment containing byte ``offset`` (blank lines are not counted)."""
    prefix = data[:offset].replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return sum(1 for part in prefix.split(b"\r")[:-1] if part.strip()) + 1
