"""Key encoding and validation shared by every storage backend.

The rules are the intersection of what SQLite and Azure Storage accept (see :mod:`shared.storage.ports`),
so code that passes validation here behaves the same on the embedded default and in Azure.

Exception text never echoes a partition/row key, blob name, metadata value or record value: those may
hold identifiers such as NHS numbers. Table and container names are configuration, not patient data, and
are shown.

:func:`safe_key` / :func:`restore_key`
    A reversible escaping of arbitrary strings into valid partition/row keys. The escape marker is ``!``
    (not ``%``: Azure Tables has documented failures for keys containing ``%``, and Azurite has had
    bugs with ``'``), followed by two upper-case hex digits for code points below U+0100, or ``u`` and
    four hex digits for a lone surrogate. Escaped: ``/ \\ # ? % ' !``, C0/C1 control characters and lone
    surrogates. Every other character passes through unchanged, so ``safe_key(a + b)`` always starts
    with ``safe_key(a)``: prefix queries on encoded keys find the encoded values with that prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from shared.errors import PermanentError
from shared.storage.errors import InvalidKey, StorageError

#: Longest partition/row key, in UTF-16 code units (Azure: 1 KiB of UTF-16 per key). A character
#: outside the Basic Multilingual Plane counts twice.
MAX_KEY_LENGTH: Final = 512
#: Largest record value, in bytes of compact UTF-8 JSON.
MAX_VALUE_BYTES: Final = 256 * 1024
#: Longest blob name, in characters (Azure's limit).
MAX_BLOB_NAME_LENGTH: Final = 1024
#: Most path segments in a blob name (Azure's limit).
MAX_BLOB_NAME_SEGMENTS: Final = 254
#: Largest total size of a blob's metadata names and values (Azure: 8 KiB).
MAX_METADATA_BYTES: Final = 8 * 1024

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_CONTAINER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]")
_METADATA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,127}")
_METADATA_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")

#: A non-empty ASCII key with none of ``/ \\ # ?`` and no control character, within the length limit.
_VALID_ASCII_KEY = re.compile(r"[^/\\#?\x00-\x1f\x7f]{1,512}")

_ESCAPE: Final = "!"
_KEY_FORBIDDEN: Final = frozenset("/\\#?")
_ESCAPED_PRINTABLE: Final = frozenset("/\\#?%'!")
#: Any character :func:`safe_key` escapes (most keys have none and are returned as they are).
_NEEDS_ESCAPE = re.compile("[/\\\\#?%'!\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class ValueTooLarge(StorageError, PermanentError):
    """A record value is larger than :data:`MAX_VALUE_BYTES` once serialised."""

    code = "value-too-large"


class InvalidValue(StorageError, PermanentError):
    """A record value is not a JSON object of JSON-serialisable data."""

    code = "invalid-value"


def _is_control(cp: int) -> bool:
    return cp < 0x20 or 0x7F <= cp <= 0x9F


def _is_surrogate(cp: int) -> bool:
    return 0xD800 <= cp <= 0xDFFF


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units (what Azure counts): astral characters count twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def safe_key(value: str) -> str:
    """Encode an arbitrary string (identifier, stage name, URL...) as a valid partition/row key.

    Reversible with :func:`restore_key`. ``""`` encodes to ``""`` (useful as a query prefix, although an
    empty key is itself invalid). Raises :class:`InvalidKey` if the encoded key would exceed
    :data:`MAX_KEY_LENGTH`.
    """
    if not isinstance(value, str):
        raise InvalidKey(f"key must be a string, not {type(value).__name__}")
    encoded = value if _NEEDS_ESCAPE.search(value) is None else _escaped(value)
    length = len(encoded) if encoded.isascii() else utf16_length(encoded)
    if length > MAX_KEY_LENGTH:
        raise InvalidKey(f"encoded key is {length} UTF-16 code units long; the limit is {MAX_KEY_LENGTH}")
    return encoded


def _escaped(value: str) -> str:
    parts: list[str] = []
    for ch in value:
        cp = ord(ch)
        if ch in _ESCAPED_PRINTABLE or _is_control(cp):
            parts.append(f"{_ESCAPE}{cp:02X}")
        elif _is_surrogate(cp):
            parts.append(f"{_ESCAPE}u{cp:04X}")
        else:
            parts.append(ch)
    return "".join(parts)


_HEX = frozenset("0123456789ABCDEF")


def restore_key(key: str) -> str:
    """Invert :func:`safe_key`. Raises :class:`InvalidKey` for text :func:`safe_key` cannot produce."""
    out: list[str] = []
    i = 0
    n = len(key)
    while i < n:
        ch = key[i]
        if ch != _ESCAPE:
            out.append(ch)
            i += 1
            continue
        if key.startswith("u", i + 1):
            digits, width = key[i + 2 : i + 6], 6
        else:
            digits, width = key[i + 1 : i + 3], 3
        if len(digits) != (4 if width == 6 else 2) or not set(digits) <= _HEX:
            raise InvalidKey(f"malformed escape at position {i}")
        cp = int(digits, 16)
        decoded = chr(cp)
        if width == 6 and not _is_surrogate(cp):
            raise InvalidKey(f"malformed escape at position {i}")
        if width == 3 and not (decoded in _ESCAPED_PRINTABLE or _is_control(cp)):
            raise InvalidKey(f"malformed escape at position {i}")
        out.append(decoded)
        i += width
    return "".join(out)


def validate_table_name(name: str) -> str:
    """Return ``name`` if it is a valid table name (``^[A-Za-z][A-Za-z0-9]{2,62}$``, not ``tables``).

    Table names are case-insensitive on every backend: ``Orders`` and ``orders`` are the same table.
    """
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise InvalidKey(f"invalid table name {name!r}: expected ^[A-Za-z][A-Za-z0-9]{{2,62}}$")
    if name.lower() == "tables":
        raise InvalidKey("invalid table name 'tables': reserved by Azure Table Storage")
    return name


def validate_key(key: str, *, what: str = "key", allow_empty: bool = False) -> str:
    """Return ``key`` if it is a valid partition/row key (or key prefix with ``allow_empty``).

    Valid: at most :data:`MAX_KEY_LENGTH` UTF-16 code units, none of ``/ \\ # ?``, no control characters,
    no lone surrogates, non-empty unless ``allow_empty``. ``what`` names the argument in the error.
    """
    if key.__class__ is str and key.isascii() and _VALID_ASCII_KEY.fullmatch(key):
        return key  # fast path: the common case, same rules (ASCII: one UTF-16 unit per character)
    if not isinstance(key, str):
        raise InvalidKey(f"{what} must be a string, not {type(key).__name__}")
    if not key and not allow_empty:
        raise InvalidKey(f"{what} is empty")
    for position, ch in enumerate(key):
        cp = ord(ch)
        if ch in _KEY_FORBIDDEN or _is_control(cp) or _is_surrogate(cp):
            raise InvalidKey(f"{what} contains a forbidden character at position {position} (use safe_key)")
    length = utf16_length(key)
    if length > MAX_KEY_LENGTH:
        raise InvalidKey(f"{what} is {length} UTF-16 code units long; the limit is {MAX_KEY_LENGTH}")
    return key


def validate_container_name(name: str) -> str:
    """Return ``name`` if it is a valid blob container name.

    ``^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$`` and, as Azure also requires, no ``--``.
    """
    if not isinstance(name, str) or not _CONTAINER_NAME.fullmatch(name) or "--" in name:
        raise InvalidKey(
            f"invalid container name {name!r}: expected ^[a-z0-9](?:[a-z0-9-]{{1,61}})[a-z0-9]$ without '--'"
        )
    return name


def validate_blob_name(name: str, *, allow_empty: bool = False) -> str:
    """Return ``name`` if it is a valid blob name (or listing prefix, with ``allow_empty``).

    Names may contain ``/`` (virtual directories) but must survive URL handling unchanged on every
    backend: at most :data:`MAX_BLOB_NAME_LENGTH` characters and :data:`MAX_BLOB_NAME_SEGMENTS`
    segments, no control characters, lone surrogates or ``\\``, no empty, ``.`` or ``..`` segments, and
    not ending in ``.`` or ``/``. A prefix is only checked for length and characters.
    """
    if not isinstance(name, str):
        raise InvalidKey(f"blob name must be a string, not {type(name).__name__}")
    if not name:
        if allow_empty:
            return name
        raise InvalidKey("blob name is empty")
    if len(name) > MAX_BLOB_NAME_LENGTH:
        raise InvalidKey(f"blob name is {len(name)} characters long; the limit is {MAX_BLOB_NAME_LENGTH}")
    for position, ch in enumerate(name):
        cp = ord(ch)
        if ch == "\\" or _is_control(cp) or _is_surrogate(cp):
            raise InvalidKey(f"blob name contains a forbidden character at position {position}")
    if allow_empty:
        return name
    segments = name.split("/")
    if len(segments) > MAX_BLOB_NAME_SEGMENTS:
        raise InvalidKey(f"blob name has {len(segments)} segments; the limit is {MAX_BLOB_NAME_SEGMENTS}")
    for index, segment in enumerate(segments):
        if segment in {"", ".", ".."}:
            raise InvalidKey(f"blob name segment {index} is empty, '.' or '..'")
    if name.endswith("."):
        raise InvalidKey("blob name must not end with '.'")
    return name


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Return a plain-dict copy of blob metadata if every backend can store it unchanged.

    Names are lower-case identifiers (``^[a-z_][a-z0-9_]*$``: Azure sends them as case-insensitive HTTP
    headers); values are non-empty printable ASCII without leading/trailing spaces; the total of names
    and values is at most :data:`MAX_METADATA_BYTES`.
    """
    if not metadata:
        return {}
    result: dict[str, str] = {}
    total = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name):
            raise InvalidKey(f"invalid metadata name {name!r}: expected ^[a-z_][a-z0-9_]*$")
        if not isinstance(value, str) or not _METADATA_VALUE.fullmatch(value):
            raise InvalidKey(
                f"metadata {name!r} value must be non-empty printable ASCII without leading/trailing spaces"
            )
        total += len(name) + len(value)
        result[name] = value
    if total > MAX_METADATA_BYTES:
        raise InvalidKey(f"metadata is {total} bytes; the limit is {MAX_METADATA_BYTES}")
    return result


def encode_value(value: Mapping[str, Any]) -> str:
    """Serialise a record value to compact JSON, enforcing :data:`MAX_VALUE_BYTES`.

    Raises :class:`InvalidValue` for a non-mapping, non-JSON data (including NaN/infinity and strings
    that are not valid Unicode) and :class:`ValueTooLarge` when the UTF-8 encoding is too big.
    """
    if not isinstance(value, Mapping):
        raise InvalidValue(f"record value must be a JSON object (dict), not {type(value).__name__}")
    try:
        text = json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidValue(f"record value is not JSON-serialisable ({type(exc).__name__})") from None
    if size > MAX_VALUE_BYTES:
        raise ValueTooLarge(f"record value is {size} bytes as JSON; the limit is {MAX_VALUE_BYTES}")
    return text


def decode_value(text: str) -> dict[str, Any]:
    """Parse a value written by :func:`encode_value`."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise InvalidValue("stored record value is not a JSON object")
    return value


def prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix`` (code-point order).

    ``None`` when there is none (empty prefix, or one made only of U+10FFFF). Lets backends turn a
    prefix match into the index-friendly range ``prefix <= s < bound``. Surrogates are skipped so the
    bound stays encodable.
    """
    chars = list(prefix)
    while chars:
        cp = ord(chars.pop())
        if cp < 0x10FFFF:
            nxt = cp + 1
            if _is_surrogate(nxt):
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None
