"""safe_key returns a key with nothing to escape as it is and escapes everything else per character: the
same result as the per-character definition for every input, and restore_key inverts it."""

from __future__ import annotations

import random

import pytest

from shared.storage.errors import InvalidKey
from shared.storage.keys import MAX_KEY_LENGTH, restore_key, safe_key

_ALPHABET = "aZ09-_.:|~ é€😀/\\#?%'!\x00\x1f\x7f\x80\x9f\xa0\ud800\udfff"


def _reference(value: str) -> str:
    out = []
    for ch in value:
        cp = ord(ch)
        if ch in "/\\#?%'!" or cp < 0x20 or 0x7F <= cp <= 0x9F:
            out.append(f"!{cp:02X}")
        elif 0xD800 <= cp <= 0xDFFF:
            out.append(f"!u{cp:04X}")
        else:
            out.append(ch)
    return "".join(out)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ""),
        ("corr-123", "corr-123"),
        ("Patient/1", "Patient!2F1"),
        ("a!b", "a!21b"),
        ("tab\there", "tab!09here"),
        ("\x85", "!85"),
        ("\ud800", "!uD800"),
        ("é😀", "é😀"),
    ],
)
def test_examples(value: str, expected: str) -> None:
    assert safe_key(value) == expected
    assert restore_key(expected) == value


def test_same_as_the_per_character_definition() -> None:
    rng = random.Random(18)
    for _ in range(5000):
        value = "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 40)))
        assert safe_key(value) == _reference(value)
        assert restore_key(safe_key(value)) == value


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("a" * MAX_KEY_LENGTH, True),
        ("a" * (MAX_KEY_LENGTH + 1), False),
        ("😀" * (MAX_KEY_LENGTH // 2), True),  # two UTF-16 code units each
        ("😀" * (MAX_KEY_LENGTH // 2) + "a", False),
        ("/" * (MAX_KEY_LENGTH // 3), True),  # escaped: three characters each
        ("/" * (MAX_KEY_LENGTH // 3 + 1), False),
    ],
)
def test_length_limit_counts_the_encoded_utf16_length(value: str, fits: bool) -> None:
    if fits:
        assert safe_key(value)
    else:
        with pytest.raises(InvalidKey):
            safe_key(value)
