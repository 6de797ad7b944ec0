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
