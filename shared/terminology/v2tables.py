"""Codes of the HL7 v2 tables the engine labels codings with (``data/hl7-v2-tables.json``).

A code sent in a table field is labelled ``http://terminology.hl7.org/CodeSystem/v2-NNNN`` only when it IS a
code of that table; :func:`is_table_code` says so (``False`` also for a table whose code list is not held:
nothing is claimed that cannot be checked). Senders' own codes go under their local code system
(:mod:`shared.terminology.local_systems`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import MappingProxyType

from shared.terminology import _data
from shared.terminology.systems import V2_TABLE_BASE

__all__ = ["is_table_code", "table_codes", "table_of", "tables_version"]

_TABLE = re.compile(r"\d{4}")


def _parse(doc: object) -> tuple[str, Mapping[str, frozenset[str]]]:
    r = _data.Reader("hl7-v2-tables.json", doc)
    r.only({"version", "description", "source", "tables"})
    version = r.semver("version")
    raw = r.opt_object("tables")
    if raw is None:
        raise r.fail("tables", "is required")
    tables: dict[str, frozenset[str]] = {}
    for table, spec in raw.obj.items():
        if not _TABLE.fullmatch(table):
            raise r.fail("tables", f"{table[:10]!r} is not an HL7 table number")
        t = _data.Reader("hl7-v2-tables.json", spec, f"$.tables.{table}")
        t.only({"codeSystem", "version", "title", "codes"})
        if t.string("codeSystem") != V2_TABLE_BASE + table:
            raise t.fail("codeSystem", "is not the table's HL7 v2 code system")
        codes = t.strings("codes")
        if not codes or len(set(codes)) != len(codes):
            raise t.fail("codes", "must be a non-empty list without repeats")
        tables[table] = frozenset(codes)
    return version, MappingProxyType(tables)


@functools.cache
def _tables() -> tuple[str, Mapping[str, frozenset[str]]]:
    return _parse(_data.read_package_json("hl7-v2-tables"))


def tables_version() -> str:
    return _tables()[0]


def table_codes(table: str) -> frozenset[str] | None:
    """The codes of HL7 table ``table`` (``"0069"``), ``None`` when its code list is not held."""
    return _tables()[1].get(table)


def table_of(system: str | None) -> str | None:
    """``"0069"`` for ``http://terminology.hl7.org/CodeSystem/v2-0069``; ``None`` for any other system."""
    if system is None or not system.startswith(V2_TABLE_BASE):
        return None
    rest = system[len(V2_TABLE_BASE) :]
    return rest if _TABLE.fullmatch(rest) else None


def is_table_code(table: str, code: str) -> bool:
    """True only when ``code`` is listed for ``table`` (a table not held: ``False``)."""
    codes = table_codes(table)
    return codes is not None and code in codes


def clear_caches() -> None:
    _tables.cache_clear()
