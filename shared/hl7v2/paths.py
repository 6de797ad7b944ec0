"""HL7 paths (``"OBX(2)-5[1].3.2"``) parsed into their parts."""

from __future__ import annotations

import re
from functools import lru_cache

from shared.hl7v2.errors import Hl7PathError

__all__ = ["parse_path"]


@lru_cache(maxsize=2048)
def parse_path(path: str) -> tuple[str, int, int, int | None, int | None, int | None]:
    """Parse ``"OBX(2)-5[1].3.2"`` into ``(segment, occurrence, field, repetition, component, subcomponent)``.

    Omitted repetition/component/sub-component are ``None``; indices are 1-based. Raises
    :class:`Hl7PathError` for anything else.
    """
    match = _PATH.fullmatch(path)
    if match is None:
        raise Hl7PathError("invalid HL7 path; expected e.g. PID-3, PID-3[2].1, OBX(2)-5.1.2")
    name, occ, fld, rep, comp, sub = match.groups()
    numbers = [int(x) for x in (occ or "1", fld, rep or "1", comp or "1", sub or "1")]
    if min(numbers) < 1:
        raise Hl7PathError("HL7 path indices are 1-based")
    return (
        name,
        numbers[0],
        numbers[1],
        int(rep) if rep else None,
        int(comp) if comp else None,
        int(sub) if sub else None,
    )


_PATH = re.compile(r"([A-Z][A-Z0-9]{2})(?:\((\d+)\))?-(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?")


#: A read path with ``|`` after its segment ID: ``("PID|", occurrence, field, repetition, component,
#: sub-component)``; ``"PID|"`` is the prefix :class:`~shared.hl7v2.message.Message` finds segments by.
ReadKey = tuple[str, int, int, int | None, int | None, int | None]

#: :func:`read_key` results by path text (a dict lookup costs less than the ``lru_cache`` wrapper on the
#: read path); pure, bounded.
_READ_KEYS: dict[str, ReadKey] = {}


def read_key(path: str) -> ReadKey:
    """:func:`parse_path` with ``|`` after the segment ID, kept in ``_READ_KEYS`` (the read path tries
    ``_READ_KEYS.get`` first)."""
    name, occ, n, rep, comp, sub = parse_path(path)
    found = (name + "|", occ, n, rep, comp, sub)
    if len(_READ_KEYS) < 2048:
        _READ_KEYS[path] = found
    return found
