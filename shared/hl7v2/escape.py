"""HL7 v2 escape sequences (ER7 encoding rules, chapter 2.7).

Decoding (read path), with ``E`` the message's escape character (normally ``\\``):

========================  =====================================================================
``EFE`` ``ESE`` ``ETE``   field / component / sub-component separator
``ERE`` ``EEE``           repetition separator / escape character
``EPE``                   truncation character (v2.7+; kept verbatim when MSH-2 has none)
``EXhhhh..E``             bytes given in hex, decoded with the message's codec (kept verbatim if the
                          hex is malformed or the bytes do not decode)
``E.brE``                 line break, decoded to ``"\\n"`` (as FHIR-Converter does)
``E.spE`` ``E.sp nE``     ``n`` line breaks (default 1)
``EHE`` ``ENE``           highlight on / normal text: formatting hints only, removed
``EZ..E`` ``EC..E``       locally defined / character-set switches (ISO 2022): kept verbatim
``EM..E`` other ``E.xxE`` kept verbatim (``.in``, ``.ti``, ``.sk``, ``.ce``, ``.fi``, ``.nf``)
========================  =====================================================================

Anything unrecognised, an empty ``EE`` pair, and an unterminated escape are kept literally; decoding never
raises. Encoding (write path) escapes the five delimiters (and the truncation character when defined),
writes ``"\\n"`` as ``E.brE`` and ``"\\r"`` as ``EX0DE``, so ``decode(encode(s)) == s`` for every string.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.hl7v2.separators import Separators

_HEX = frozenset("0123456789abcdefABCDEF")

_encode_tables: dict[Separators, dict[int, str]] = {}
_simple_tables: dict[Separators, dict[str, str]] = {}


def _simple(seps: Separators) -> dict[str, str]:
    table = _simple_tables.get(seps)
    if table is None:
        table = {
            "F": seps.field,
            "S": seps.component,
            "T": seps.subcomponent,
            "R": seps.repetition,
            "E": seps.escape,
            "H": "",
            "N": "",
            ".br": "\n",
            ".sp": "\n",
        }
        if seps.truncation is not None:
            table["P"] = seps.truncation
        _simple_tables[seps] = table
    return table


def decode(value: str, seps: Separators, codec: str = "utf-8") -> str:
    """Resolve escape sequences in one leaf value (see the module docstring for the table)."""
    esc = seps.escape
    if esc not in value:
        return value
    table = _simple(seps)
    out: list[str] = []
    i = 0
    while True:
        j = value.find(esc, i)
        if j < 0:
            out.append(value[i:])
            break
        k = value.find(esc, j + 1)
        if k < 0:
            out.append(value[i:])
            break
        out.append(value[i:j])
        seq = value[j + 1 : k]
        resolved = table.get(seq)
        if resolved is None:
            resolved = _complex(seq, codec)
        out.append(value[j : k + 1] if resolved is None else resolved)
        i = k + 1
    return "".join(out)


def _complex(seq: str, codec: str) -> str | None:
    if len(seq) > 1 and seq[0] == "X":
        digits = seq[1:]
        if len(digits) % 2 or not _HEX.issuperset(digits):
            return None
        try:
            return bytes.fromhex(digits).decode(codec)
        except (UnicodeDecodeError, LookupError):
            return None
    if seq.startswith(".sp"):
        count = seq[3:].strip().lstrip("+")
        if count.isdigit() and count.isascii():
            return "\n" * min(int(count), 100)
    return None


def _encode_table(seps: Separators) -> dict[int, str]:
    table = _encode_tables.get(seps)
    if table is None:
        esc = seps.escape
        table = {
            ord(esc): f"{esc}E{esc}",
            ord(seps.field): f"{esc}F{esc}",
            ord(seps.component): f"{esc}S{esc}",
            ord(seps.repetition): f"{esc}R{esc}",
            ord(seps.subcomponent): f"{esc}T{esc}",
            ord("\r"): f"{esc}X0D{esc}",
            ord("\n"): f"{esc}.br{esc}",
        }
        if seps.truncation is not None:
            table[ord(seps.truncation)] = f"{esc}P{esc}"
        _encode_tables[seps] = table
    return table


def encode(value: str, seps: Separators) -> str:
    """Escape a plain value so it can be written as one leaf (sub-component) of an ER7 message."""
    return value.translate(_encode_table(seps))
