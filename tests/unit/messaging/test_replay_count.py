"""replay_count: the one reading of ``tie_replay_count`` shared by both bus adapters and the backbone."""

from __future__ import annotations

import pytest

from shared.messaging.ports import REPLAY_COUNT_PROPERTY, replay_count

# (property value, or "absent") -> count
_CASES: list[tuple[object, int]] = [
    ("absent", 0),
    (1, 1),
    (7, 7),
    ("2", 2),
    (" 3 ", 3),
    (True, 0),  # a bool is not a count
    ("two", 0),
    ("-1", 0),
    (2.0, 0),
    (None, 0),
]


@pytest.mark.parametrize(("value", "expected"), _CASES)
def test_replay_count(value: object, expected: int) -> None:
    properties: dict[str, object] = {"other": 5}
    if value != "absent":
        properties[REPLAY_COUNT_PROPERTY] = value
    assert replay_count(properties) == expected
