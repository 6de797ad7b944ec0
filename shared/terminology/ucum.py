"""UCUM unit codes: a unit as a sender spells it -> the case-sensitive UCUM code, from a data table.

``data/ucum-units.json`` lists the UCUM codes senders use (case-sensitive form). :func:`ucum_code` finds a
spelling case-insensitively (``mmol/l``, ``MMOL/L`` -> ``mmol/L``): for every listed unit the UCUM
case-insensitive form differs from the case-sensitive one only by case, and the loader refuses a table
with two codes equal ignoring case. A spelling that is not in the table is not UCUM as far as we know:
``None`` (the caller keeps the text without a system - never a guessed code).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from shared.terminology import _data

__all__ = ["UcumTable", "parse_table", "ucum_code", "ucum_table"]

_FILE = "ucum-units"


class UcumTable:
    """The loaded table: case-folded spelling -> (case-sensitive code, display)."""

    def __init__(self, version: str, units: Mapping[str, tuple[str, str]]) -> None:
        self.version = version
        self._units = dict(units)

    def code(self, spelling: str) -> str | None:
        hit = self._units.get(spelling.strip().casefold())
        return None if hit is None else hit[0]

    def __len__(self) -> int:
        return len(self._units)


def parse_table(doc: object, where: str = f"{_FILE}.json") -> UcumTable:
    r = _data.Reader(where, doc)
    r.only({"id", "version", "title", "description", "references", "units"})
    version = r.semver("version")
    units: dict[str, tuple[str, str]] = {}
    for u in r.objects("units"):
        u.only({"code", "display"})
        code, display = u.string("code"), u.string("display")
        if code != code.strip() or " " in code:
            raise u.fail("code", "must not contain spaces")
        key = code.casefold()
        if key in units:
            raise u.fail("code", "is equal ignoring case to an earlier code (the lookup would be ambiguous)")
        units[key] = (code, display)
    return UcumTable(version, units)


@functools.cache
def ucum_table() -> UcumTable:
    return parse_table(_data.read_package_json(_FILE))


def ucum_code(spelling: str) -> str | None:
    """The case-sensitive UCUM code for ``spelling`` (matched ignoring case), or ``None`` if not listed."""
    return ucum_table().code(spelling)
