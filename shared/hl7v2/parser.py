"""HL7 v2 ER7 ("pipe and hat") parsing: bytes or text -> :class:`Message`. Pure Python, no I/O.

See the package docstring (``shared/hl7v2/__init__.py``) for the public API and its semantics. The message,
segment, separators, paths and building values live in their own modules; their public names are
importable from here too.

Implementation notes (performance): parsing decodes the bytes, splits the text into segment strings with
``str.split`` and checks each segment ID against a cache; nothing else. Fields are split the first time a
segment is read (:mod:`shared.hl7v2.segment`). Segment objects are created lazily and cached.
"""

from __future__ import annotations

import re
from operator import itemgetter

from shared.hl7v2.charset import UTF8_BOM, codec_for_charset, decode_payload, header_charset, resolve_override
from shared.hl7v2.errors import Hl7ParseError
from shared.hl7v2.message import Message, build_message
from shared.hl7v2.paths import parse_path
from shared.hl7v2.segment import Segment
from shared.hl7v2.separators import ENVELOPE_SEGMENTS, Separators, _separators_from, _valid_name
from shared.hl7v2.values import ComponentValue, FieldValue, LeafValue, Raw, Repeated

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
    "parse_path",
]

_MIXED_TERMINATORS = re.compile(r"(\r\n|\r|\n)")


# ------------------------------------------------------------------------------------------- parsing

_first4 = itemgetter(slice(0, 4))
#: ``ID|`` prefixes known to start a valid non-envelope segment when the field separator is ``|``: a
#: bounded memo of that pure check (filled by the slow path), so the fast path below only ever takes
#: ``|`` messages and what it accepts never depends on the messages parsed before.
_ok_prefixes: set[str] = set()


def _fast_check(parts: list[str], uniform: str) -> tuple[list[str], list[str], list[str]] | None:
    """Common case, field separator ``|``: every segment (after the first) starts with a known-valid
    ``ID|`` prefix and there are no blank lines except one final terminator. Returns ``(segments,
    terminators, prefixes)``."""
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
    if uniform is not None and fs == "|":
        fast = _fast_check(parts, uniform)
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
        elif fs == "|" and len(p) > 3 and len(_ok_prefixes) < 100_000:
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
    if type(data) is bytes and encoding is None:
        try:
            # Fast path: ASCII bytes decode identically in every supported charset; MSH-18 is checked below.
            text = data.decode("ascii")
            codec = None
        except UnicodeDecodeError:
            text, codec, bom, declared = decode_input(data, None)
    elif isinstance(data, str) and encoding is None:
        text = data
        codec = None
        if text.startswith("\ufeff"):
            text = text[1:]
            bom = UTF8_BOM
    else:
        text, codec, bom, declared = decode_input(data, encoding)
    standard = text.startswith("MSH|^~\\&|")
    fs = "|" if standard else _check_message_start(text)
    # Split into segments (inlined fast path of split_segments).
    prefixes: list[str] | None = None
    fast = None
    if fs == "|" and "\n" not in text:
        term = "\r"
        fast = _fast_check(text.split("\r"), term)
    elif fs == "|" and "\r" not in text:
        term = "\n"
        fast = _fast_check(text.split("\n"), term)
    if fast is not None:
        raws, terms, prefixes = fast
        tail = ""
    else:
        raws, terms, tail, term = _split_message(text, fs)
    msh = raws[0]
    seps = _STANDARD[term] if standard else (_header_cache.get(term + msh[3:10]) or _new_header(msh, term))
    if codec is None:
        codec = "utf-8"
        count = msh.count(fs)
        if count >= 17:
            # MSH-18 is often the last field: no need to split the header then.
            msh18 = msh[msh.rfind(fs) + 1 :] if count == 17 else msh.split(fs, 18)[17]
            declared, resolved = _charset_cache.get(msh18) or _charset_of(msh18, seps)
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


def _split_message(text: str, fs: str) -> tuple[list[str], list[str], str, str]:
    """:func:`split_segments` of a message, plus its first segment terminator (``"\\r"`` when none)."""
    raws, terms, tail = split_segments(text, fs, message=True)
    first = terms[0]
    return raws, terms, tail, "\r\n" if first.startswith("\r\n") else (first[:1] or "\r")


_header_cache: dict[str, Separators] = {}
#: The separators of an MSH starting ``MSH|^~\&|``, by segment terminator.
_STANDARD = {term: Separators(segment_terminator=term) for term in ("\r", "\n", "\r\n")}
_charset_cache: dict[str, tuple[str | None, str | None]] = {}


def _new_header(msh: str, term: str) -> Separators:
    """:func:`_header_separators` of a message's MSH, kept in ``_header_cache``."""
    seps = _header_separators(msh, term)
    if len(_header_cache) < 1024:
        _header_cache[term + msh[3:10]] = seps
    return seps


def _charset_of(msh18: str, seps: Separators) -> tuple[str | None, str | None]:
    """``(declared name, python codec or None if unsupported)`` for a raw MSH-18 field, kept in
    ``_charset_cache``."""
    declared = msh18.split(seps.repetition)[0].split(seps.component)[0].strip() or None
    found = declared, (codec_for_charset(declared) if declared else None)
    if len(_charset_cache) < 256:
        _charset_cache[msh18] = found
    return found


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
