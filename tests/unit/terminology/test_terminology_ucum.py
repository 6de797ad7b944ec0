"""UCUM unit table: case-insensitive lookup to the case-sensitive code; the table is unambiguous."""

from __future__ import annotations

import pytest

from shared.terminology.errors import InvalidTerminologyData
from shared.terminology.ucum import parse_table, ucum_code, ucum_table


@pytest.mark.parametrize(
    ("spelling", "code"),
    [
        ("mmol/L", "mmol/L"),
        ("mmol/l", "mmol/L"),
        ("MMOL/L", "mmol/L"),
        (" mmol/l ", "mmol/L"),
        ("ml", "mL"),
        ("cel", "Cel"),
        ("MM[HG]", "mm[Hg]"),
        ("[IU]/L", "[iU]/L"),
        ("IU/L", None),
        ("x10^9/L", None),
        ("µmol/L", None),
        ("beats/min", None),
    ],
)
def test_lookup(spelling: str, code: str | None) -> None:
    assert ucum_code(spelling) == code


def test_shipped_table_is_case_insensitively_unique() -> None:
    table = ucum_table()
    assert len(table) >= 40
    assert table.version.count(".") == 2


@pytest.mark.parametrize(
    ("units", "problem"),
    [
        ([{"code": "mg", "display": "a"}, {"code": "Mg", "display": "b"}], "equal ignoring case"),
        ([{"code": "mmol / L", "display": "a"}], "spaces"),
        ([{"code": "mg", "display": "a", "extra": 1}], "unknown member"),
    ],
)
def test_table_rejects(units: list[dict[str, object]], problem: str) -> None:
    with pytest.raises(InvalidTerminologyData, match=problem):
        parse_table({"id": "ucum-units", "version": "1.0.0", "units": units})
