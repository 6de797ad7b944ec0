"""Service Bus SQL filter subset (shared/messaging/filters.py)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from shared.errors import PermanentError
from shared.messaging.errors import InvalidFilter
from shared.messaging.filters import SystemProps, compile_filter
from shared.messaging.ports import PropertyValue

PROPS: Mapping[str, PropertyValue] = {
    "kind": "ADT",
    "event": "A01",
    "priority": 3,
    "weight": 2.5,
    "urgent": True,
    "archived": False,
    "site": "RX1_MAIN",
    "pct": "100%",
    "quote": "O'Brien",
    "my-prop": "dash",
    "Case": "upper",
}
SYSTEM = SystemProps(
    message_id="msg-1",
    correlation_id="corr-9",
    content_type="x-application/hl7-v2+er7",
    subject="ADT^A01",
    session_id="patient-42",
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # constants / TrueFilter / FalseFilter
        ("1=1", True),
        ("1 = 0", False),
        ("TRUE = TRUE", True),
        ("'a' = 'a'", True),
        # equality and inequality on strings, numbers and booleans
        ("kind = 'ADT'", True),
        ("kind = 'adt'", False),  # string comparison is case-sensitive
        ("kind <> 'ORU'", True),
        ("kind != 'ADT'", False),
        ("priority = 3", True),
        ("priority = 3.0", True),  # int and float compare numerically
        ("weight > 2", True),
        ("weight >= 2.5", True),
        ("weight < 2.5", False),
        ("priority <= -1", False),
        ("priority > -4", True),
        ("urgent = TRUE", True),
        ("urgent = true", True),
        ("archived = FALSE", True),
        ("urgent <> FALSE", True),
        ("urgent > FALSE", False),  # booleans only support = and <>
        ("'b' > 'a'", True),
        ("1.5e1 = 15", True),
        # type mismatches are unknown, so neither = nor <> matches
        ("priority = '3'", False),
        ("priority <> '3'", False),
        ("urgent = 1", False),
        # logic and precedence (NOT > AND > OR)
        ("kind = 'ADT' AND event = 'A01'", True),
        ("kind = 'ADT' AND event = 'A02'", False),
        ("kind = 'ORU' OR event = 'A01'", True),
        ("kind = 'ORU' OR kind = 'ADT' AND event = 'A02'", False),
        ("(kind = 'ORU' OR kind = 'ADT') AND event = 'A01'", True),
        ("NOT kind = 'ORU'", True),
        ("NOT NOT kind = 'ADT'", True),
        ("not (kind = 'ADT' and priority = 3)", False),
        # IN / NOT IN
        ("event IN ('A01', 'A04', 'A08')", True),
        ("event IN ('A02')", False),
        ("event NOT IN ('A02', 'A03')", True),
        ("event not in ('A01')", False),
        ("priority IN (1, 2, 3)", True),
        ("priority IN ('3')", False),
        # LIKE with % and _, ESCAPE
        ("site LIKE 'RX1%'", True),
        ("site LIKE 'RX_\\_MAIN'", False),  # backslash is not an escape unless declared
        ("site LIKE 'R__%'", True),
        ("site LIKE 'RX1'", False),  # whole-string match
        ("site NOT LIKE 'RX2%'", True),
        ("site LIKE 'RX1!_MAIN' ESCAPE '!'", True),
        ("site LIKE 'RX1!_M%' ESCAPE '!'", True),
        ("site LIKE 'RX1!%' ESCAPE '!'", False),
        ("pct LIKE '100!%' ESCAPE '!'", True),
        ("pct LIKE '1!%' ESCAPE '!'", False),
        ("kind LIKE 'a%'", False),
        ("priority LIKE '3'", False),  # LIKE on a number is unknown
        # string literal escaping
        ("quote = 'O''Brien'", True),
        # IS NULL / IS NOT NULL / EXISTS
        ("missing IS NULL", True),
        ("kind IS NULL", False),
        ("kind IS NOT NULL", True),
        ("missing is not null", False),
        ("EXISTS(kind)", True),
        ("EXISTS (missing)", False),
        ("NOT EXISTS(missing)", True),
        ("exists(sys.SessionId)", True),
        # scopes and bracketed names
        ("user.kind = 'ADT'", True),
        ("USER.kind = 'ADT'", True),
        ("[my-prop] = 'dash'", True),
        ("user.[my-prop] = 'dash'", True),
        ("Case = 'upper'", True),
        ("case = 'upper'", False),  # application property names match exactly
        # system properties
        ("sys.Label = 'ADT^A01'", True),
        ("sys.Subject = 'ADT^A01'", True),
        ("sys.label LIKE 'ADT^%'", True),
        ("sys.ContentType = 'x-application/hl7-v2+er7'", True),
        ("sys.CorrelationId = 'corr-9'", True),
        ("sys.MessageId = 'msg-1'", True),
        ("sys.SessionId IN ('patient-41', 'patient-42')", True),
        ("sys.SessionId = 'patient-1'", False),
        # three-valued logic with missing properties
        ("missing = 'x'", False),
        ("missing <> 'x'", False),
        ("NOT missing = 'x'", False),
        ("missing IN ('x')", False),
        ("missing NOT IN ('x')", False),
        ("missing LIKE '%'", False),
        ("missing NOT LIKE 'x'", False),
        ("missing = 'x' OR kind = 'ADT'", True),
        ("missing = 'x' AND kind = 'ADT'", False),
        ("NOT (missing = 'x' AND kind = 'ORU')", True),  # unknown AND false = false
        ("NOT (missing = 'x' OR kind = 'ADT')", False),
        ("NOT (missing = 'x' OR kind = 'ORU')", False),  # unknown OR false = unknown
        ("kind IN ('ORU', missing)", False),
        ("kind IN ('ADT', missing)", True),
        ("kind NOT IN ('ORU', missing)", False),  # unknown, not true
        ("NULL = NULL", False),
        ("NULL IS NULL", True),
    ],
)
def test_filter_evaluation(expr: str, expected: bool) -> None:
    assert compile_filter(expr)(PROPS, SYSTEM) is expected


def test_none_matches_everything() -> None:
    matches = compile_filter(None)
    assert matches({}) is True
    assert matches(PROPS, SYSTEM) is True


def test_missing_system_properties_are_null() -> None:
    matches = compile_filter("sys.SessionId IS NULL AND NOT EXISTS(sys.Label)")
    assert matches({}, SystemProps()) is True
    assert matches({}) is True
    assert matches({}, SystemProps(session_id="s")) is False


def test_compiled_filter_is_reusable_across_messages() -> None:
    matches = compile_filter("kind = 'ADT' AND priority > 2")
    assert matches({"kind": "ADT", "priority": 3})
    assert not matches({"kind": "ADT", "priority": 2})
    assert not matches({"kind": "ORU", "priority": 3})
    assert not matches({})


def test_keywords_are_case_insensitive() -> None:
    lower = compile_filter("kind in ('ADT') and not missing is not null or sys.label like 'x'")
    upper = compile_filter("kind IN ('ADT') AND NOT missing IS NOT NULL OR sys.Label LIKE 'x'")
    cases: list[Mapping[str, PropertyValue]] = [PROPS, {"kind": "ORU"}, {"kind": "ADT", "missing": 1}]
    for props in cases:
        assert lower(props, SYSTEM) == upper(props, SYSTEM)
    assert lower(PROPS, SYSTEM) is True


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "   ",
        "kind",
        "kind =",
        "= 'ADT'",
        "kind = 'ADT' AND",
        "kind = 'ADT' kind = 'ORU'",
        "(kind = 'ADT'",
        "kind = 'ADT')",
        "kind = 'unterminated",
        "kind IN ()",
        "kind IN ('a',)",
        "kind IN 'a'",
        "kind LIKE kind",
        "kind LIKE 'a' ESCAPE 'ab'",
        "kind LIKE 'a!' ESCAPE '!'",
        "kind IS 'ADT'",
        "kind IS NOT",
        "EXISTS kind",
        "EXISTS('kind')",
        "sys.Unknown = 1",
        "sys.To = 'x'",
        "priority + 1 = 4",
        "priority * 2 = 6",
        "priority = @param",
        "newid() = 'x'",
        "[unterminated = 1",
        "[] = 1",
        "12abc = 1",
        "kind == 'ADT'",
        "kind ; DROP TABLE x",
        "NOT",
        "sys. = 1",
    ],
)
def test_invalid_syntax_raises_invalid_filter(expr: str) -> None:
    with pytest.raises(InvalidFilter):
        compile_filter(expr)


def test_invalid_filter_is_permanent() -> None:
    with pytest.raises(PermanentError):
        compile_filter("kind =")
