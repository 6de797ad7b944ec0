"""HL7 v2 escape sequences, both directions (shared.hl7v2.escape and through the message API)."""

from __future__ import annotations

import pytest

from shared.hl7v2 import Separators, build_message, decode_escapes, encode_escapes, parse_message

STD = Separators()
TRUNC = Separators(truncation="#")
CUSTOM = Separators("*", "@", "!", "%", "#", None, "\r")


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b", "a^b"),
        ("a\\T\\b", "a&b"),
        ("a\\R\\b", "a~b"),
        ("a\\E\\b", "a\\b"),
        ("\\F\\\\S\\\\T\\\\R\\\\E\\", "|^&~\\"),
        ("line1\\.br\\line2", "line1\nline2"),
        ("a\\.sp\\b", "a\nb"),
        ("a\\.sp 2\\b", "a\n\nb"),
        ("a\\.sp+3\\b", "a\n\n\nb"),
        ("\\H\\bold\\N\\ text", "bold text"),
        ("caf\\X63\\\\X65\\", "cafce"),
        ("\\X0D0A\\", "\r\n"),
        ("\\X0D\\", "\r"),
        ("\\Xc3a9\\", "é"),  # lower-case hex accepted
        ("no escapes here", "no escapes here"),
        ("", ""),
    ],
)
def test_decode_standard_sequences(raw: str, decoded: str) -> None:
    assert decode_escapes(raw, STD, "utf-8") == decoded


@pytest.mark.parametrize(
    "raw",
    [
        "\\Zlocal\\",  # locally defined
        "\\C2842\\",  # ISO 2022 single-byte switch
        "\\M244041\\",  # ISO 2022 multi-byte switch
        "\\.in+4\\",
        "\\.ti-2\\",
        "\\.sk3\\",
        "\\.ce\\",
        "\\.fi\\",
        "\\.nf\\",
        "C:\\MIME\\qld28373.pdf",  # Windows path seen in a real lab feed: unknown sequence
        "\\Q\\",
        "\\\\",  # empty sequence
        "\\X\\",  # no hex digits
        "\\X4\\",  # odd number of hex digits
        "\\XZZ\\",  # not hex
        "\\P\\",  # truncation escape without a truncation char in MSH-2
        "trailing \\F",  # unterminated
        "\\",
        "a\\b",
    ],
)
def test_unknown_unsupported_and_unterminated_kept_verbatim(raw: str) -> None:
    assert decode_escapes(raw, STD, "utf-8") == raw


def test_mixed_known_and_unknown() -> None:
    assert decode_escapes("\\Zx\\|\\F\\|\\Cab\\", STD) == "\\Zx\\|||\\Cab\\"
    assert decode_escapes("a\\F\\b\\unterminated", STD) == "a|b\\unterminated"


def test_hex_is_decoded_with_message_charset() -> None:
    assert decode_escapes("\\XE9\\", STD, "latin-1") == "é"
    assert decode_escapes("\\XE9\\", STD, "utf-8") == "\\XE9\\"  # invalid UTF-8: kept verbatim
    assert decode_escapes("\\XC3A9\\", STD, "utf-8") == "é"
    assert decode_escapes("\\XC3A9\\", STD, "latin-1") == "Ã©"
    assert decode_escapes("\\X80\\", STD, "ascii") == "\\X80\\"


def test_truncation_escape() -> None:
    assert decode_escapes("a\\P\\b", TRUNC) == "a#b"
    assert encode_escapes("a#b", TRUNC) == "a\\P\\b"
    assert encode_escapes("a#b", STD) == "a#b"


@pytest.mark.parametrize(
    ("plain", "encoded"),
    [
        ("a|b", "a\\F\\b"),
        ("a^b", "a\\S\\b"),
        ("a&b", "a\\T\\b"),
        ("a~b", "a\\R\\b"),
        ("a\\b", "a\\E\\b"),
        ("a\nb", "a\\.br\\b"),
        ("a\rb", "a\\X0D\\b"),
        ("a\r\nb", "a\\X0D\\\\.br\\b"),
        ("\\F\\", "\\E\\F\\E\\"),  # a literal escape sequence is itself escaped
        ("plain text 123", "plain text 123"),
        ("é", "é"),
    ],
)
def test_encode(plain: str, encoded: str) -> None:
    assert encode_escapes(plain, STD) == encoded
    assert decode_escapes(encoded, STD) == plain


def test_custom_escape_character() -> None:
    assert encode_escapes("x*y@z!w%v#u", CUSTOM) == "x%F%y%S%z%R%w%E%v%T%u"
    assert decode_escapes("x%F%y%S%z%R%w%E%v%T%u", CUSTOM) == "x*y@z!w%v#u"
    assert decode_escapes("x\\F\\y", CUSTOM) == "x\\F\\y"  # backslash is not special here


def test_message_api_decodes_on_read_and_keeps_raw() -> None:
    text = (
        "MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rOBX|1|FT|C||Hb \\T\\ MCV\\.br\\\\H\\High\\N\\ \\Zlocal\\\r"
    )
    msg = parse_message(text)
    assert msg["OBX-5"] == "Hb & MCV\nHigh \\Zlocal\\"
    assert msg.raw("OBX-5") == "Hb \\T\\ MCV\\.br\\\\H\\High\\N\\ \\Zlocal\\"
    assert msg.encode() == text.encode()


def test_message_api_escapes_on_write() -> None:
    msg = build_message([["MSH"], ["NTE", "1", None, "5 < 6 & 7 | 8 ^ 9 ~ \\ done\r\nnext"]])
    raw = msg.raw("NTE-3")
    assert all(c not in raw for c in "|^~&\r\n")
    assert parse_message(msg.encode())["NTE-3"] == "5 < 6 & 7 | 8 ^ 9 ~ \\ done\r\nnext"
