"""Unit tests for shared.hl7v2 parsing, accessors, editing, building, charsets and batches."""

from __future__ import annotations

import pytest

from shared.errors import PermanentError
from shared.hl7v2 import (
    Hl7EncodingError,
    Hl7ParseError,
    Hl7PathError,
    Message,
    Raw,
    Repeated,
    Separators,
    build_message,
    iter_messages,
    parse_batch,
    parse_message,
)

MSH = "MSH|^~\\&|SENDAPP|SENDFAC^1.2.3^ISO|RECVAPP|RECVFAC|20240102030405||ADT^A01^ADT_A01|CTRL1|P|2.5"
PID = "PID|1||9434765919^^^NHS^NH~MRN001^^^RXX01^MR||SMITH^JOHN^Q~JONES^JACK||19800101|M"
PV1 = "PV1|1|I|WARD1^BAY2^BED3||||||||||||||||VISIT123"
OBX1 = "OBX|1|ST|CODE1||first"
OBX2 = "OBX|2|TX|CODE2||second\\T\\value&sub2"


def adt(term: str = "\r", trailing: bool = True) -> str:
    return term.join([MSH, PID, PV1, OBX1, OBX2]) + (term if trailing else "")


# ------------------------------------------------------------------------------------------ accessors


def test_msh_numbering_follows_hl7() -> None:
    msg = parse_message(adt())
    assert msg["MSH-1"] == "|"
    assert msg["MSH-2"] == "^~\\&"
    assert msg["MSH-3"] == "SENDAPP"
    assert msg["MSH-4.2"] == "1.2.3"
    assert msg["MSH-10"] == "CTRL1"
    msh = msg.segment("MSH")
    assert msh is not None
    assert msh.raw_field(1) == "|"
    assert msh.raw_field(2) == "^~\\&"
    assert msh.raw_field(9) == "ADT^A01^ADT_A01"
    assert len(msh) == 12


def test_convenience_properties() -> None:
    text = MSH + "|||AL|NE|GBR|UNICODE UTF-8\r" + PID + "\r"
    msg = parse_message(text)
    assert (msg.message_type, msg.trigger_event, msg.message_structure) == ("ADT", "A01", "ADT_A01")
    assert (msg.control_id, msg.processing_id, msg.version) == ("CTRL1", "P", "2.5")
    assert (msg.sending_application, msg.sending_facility) == ("SENDAPP", "SENDFAC")
    assert (msg.receiving_application, msg.receiving_facility) == ("RECVAPP", "RECVFAC")
    assert (msg.accept_ack_type, msg.application_ack_type, msg.charset) == ("AL", "NE", "UNICODE UTF-8")
    assert msg.separators == Separators()


def test_message_structure_fallback_when_msh_9_3_absent() -> None:
    msg = parse_message("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.3\r")
    assert msg.message_structure == "ORU_R01"
    ack = parse_message("MSH|^~\\&|A|B|C|D|20240101||ACK|X|P|2.3\r")
    assert ack.message_structure == "ACK"
    assert ack.trigger_event is None


def test_repetitions_components_subcomponents() -> None:
    msg = parse_message(adt())
    assert msg["PID-3"] == "9434765919"  # first repetition, first component
    assert msg["PID-3[1].4"] == "NHS"
    assert msg["PID-3[2]"] == "MRN001"
    assert msg["PID-3[2].4"] == "RXX01"
    assert msg["PID-3[2].5"] == "MR"
    assert msg.get("PID-3[3]") is None
    assert msg["PID-5.2"] == "JOHN"
    assert msg["PID-5[2].1"] == "JONES"
    assert msg.repetitions("PID-3") == ["9434765919", "MRN001"]
    assert msg.repetitions("PID-3.5") == ["NH", "MR"]
    assert msg.repetitions("PID-99") == []
    assert msg["OBX(2)-5"] == "second&value"  # \T\ decoded; the raw '&' splits sub-components
    assert msg["OBX(2)-5.1.2"] == "sub2"
    assert msg.get("OBX(2)-5.1.3") is None
    assert msg["OBX(1)-5"] == "first"
    assert msg.get("OBX(3)-5") is None
    assert msg["PV1-19"] == "VISIT123"


def test_raw_returns_encoded_elements() -> None:
    msg = parse_message(adt())
    assert msg.raw("PID-3") == "9434765919^^^NHS^NH~MRN001^^^RXX01^MR"
    assert msg.raw("PID-3[2]") == "MRN001^^^RXX01^MR"
    assert msg.raw("PID-3[2].4") == "RXX01"
    assert msg.raw("OBX(2)-5") == "second\\T\\value&sub2"
    assert msg.raw("OBX(2)-5.1.1") == "second\\T\\value"
    assert msg.raw("ZZZ-1") == ""
    assert msg.raw("PID-40") == ""


def test_absent_and_empty_values() -> None:
    msg = parse_message(adt())
    assert msg.get("PID-2") is None  # present but empty
    assert msg["PID-2"] == ""
    assert msg.get("PID-40", "dflt") == "dflt"  # beyond the last field
    assert msg.get("ZZZ-1") is None  # no such segment
    assert msg["ZZZ-1"] == ""
    assert msg.get("PID-5.9") is None
    assert msg.get("PID-5.2.2") is None


def test_segment_api() -> None:
    msg = parse_message(adt())
    assert [s.name for s in msg.segments] == ["MSH", "PID", "PV1", "OBX", "OBX"]
    assert len(msg) == 5
    assert [s.get(1) for s in msg.segments_named("OBX")] == ["1", "2"]
    assert msg.segments_named("NK1") == []
    obx2 = msg.segment("OBX", 2)
    assert obx2 is not None
    assert msg.segment("OBX", 3) is None
    assert msg.segment("OBX", 0) is None
    assert obx2.get(5) == "second&value"
    assert obx2.get(5, sub=2) == "sub2"
    assert obx2.raw_field(5) == obx2.field(5) == "second\\T\\value&sub2"
    assert obx2.raw_field(50) == ""
    pid = msg.segment("PID")
    assert pid is not None
    assert pid.get(3, rep=2, comp=4) == "RXX01"
    assert pid.repetition_count(3) == 2
    assert pid.repetition_count(2) == 0
    assert len(pid) == 8
    with pytest.raises(Hl7PathError):
        pid.get(0)


def test_segment_with_only_its_name() -> None:
    msg = parse_message(MSH + "\rPV1\rPID|1\r")
    pv1 = msg.segment("PV1")
    assert pv1 is not None
    assert len(pv1) == 0
    assert pv1.get(1) is None
    assert msg["PID-1"] == "1"
    assert msg.encode() == (MSH + "\rPV1\rPID|1\r").encode()


@pytest.mark.parametrize(
    "path", ["PID", "PID-", "PID-0", "pid-3", "PID-3[0]", "PID-3.0", "PID(0)-3", "PID-3..1", "P1-3"]
)
def test_invalid_paths(path: str) -> None:
    msg = parse_message(adt())
    with pytest.raises(Hl7PathError):
        msg.get(path)
    with pytest.raises(ValueError):  # Hl7PathError is also a ValueError
        msg.get(path)


# -------------------------------------------------------------------------------------- separators


def test_non_standard_separators() -> None:
    text = "MSH*@!%#*APP*FAC*R*RF*2024**ADT@A01*C9*P*2.4\rPID***123@@@NHS!456@@@MR**DOE@JANE%JO\r"
    msg = parse_message(text)
    assert msg.separators == Separators("*", "@", "!", "%", "#", None, "\r")
    assert msg["MSH-1"] == "*"
    assert msg["MSH-2"] == "@!%#"
    assert msg.message_type == "ADT"
    assert msg["PID-3[2].4"] == "MR"
    assert msg.repetitions("PID-3") == ["123", "456"]
    assert msg["PID-5.2"] == "JANE%JO"  # '%' is the escape char here: unterminated sequence kept literally
    assert msg.to_er7() == text


def test_truncation_character_v27() -> None:
    msg = parse_message("MSH|^~\\&#|A|B|C|D|2024||ACK^A01^ACK|1|P|2.7\rMSA|AA|1|a\\P\\b\r")
    assert msg.separators.truncation == "#"
    assert msg["MSH-2"] == "^~\\&#"
    assert msg["MSA-3"] == "a#b"
    plain = parse_message("MSH|^~\\&|A|B|C|D|2024||ACK^A01^ACK|1|P|2.5\rMSA|AA|1|a\\P\\b\r")
    assert plain.separators.truncation is None
    assert plain["MSA-3"] == "a\\P\\b"  # no truncation char: kept verbatim


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        (b"", "100", None),
        (b"PID|1||x\r", "100", None),
        (b"MSH", "102", 1),
        (b"MSHA^~\\&A\r", "102", 1),
        (b"MSH ^~\\& \r", "102", 1),
        (b"MSH\t^~\\&\t\r", "102", 1),
        (b"MSH||A|B\r", "102", 2),
        (b"MSH|^~\\|A|B\r", "102", 2),
        (b"MSH|^~\\&#$|A|B\r", "102", 2),
        (b"MSH|^^\\&|A|B\r", "102", 2),
        (b"MSH|^~|&|A|B\r", "102", 2),
        (b"MSH|^~\\A|A|B\r", "102", 2),
    ],
)
def test_malformed_headers(data: bytes, code: str, field: int | None) -> None:
    with pytest.raises(Hl7ParseError) as info:
        parse_message(data)
    assert info.value.error_code == code
    assert info.value.field == field
    assert isinstance(info.value, PermanentError)


def test_header_without_fields_after_encoding_characters_parses() -> None:
    msg = parse_message(b"MSH|^~\\&")
    assert msg["MSH-2"] == "^~\\&"
    assert msg.message_type is None
    assert msg.encode() == b"MSH|^~\\&"


@pytest.mark.parametrize(
    ("text", "index"),
    [
        (MSH + "\rpid|1\r", 2),
        (MSH + "\rPI|1\r", 2),
        (MSH + "\rPIDX|1\r", 2),
        (MSH + "\rPID^1\r", 2),
        (MSH + "\rPID|1\r999|continued\r", 3),
        (MSH + "\r PID|1\r", 2),
        (MSH + "\rPID|1\rMSH|^~\\&|A\r", 3),
        (MSH + "\rPID|1\rBTS|1\r", 3),
    ],
)
def test_bad_segments_are_rejected_with_position(text: str, index: int) -> None:
    with pytest.raises(Hl7ParseError) as info:
        parse_message(text)
    assert info.value.error_code == "100"
    assert info.value.segment_index == index


@pytest.mark.parametrize("term", ["\r", "\n", "\r\n"])
def test_segment_start_is_checked_against_this_messages_field_separator(term: str) -> None:
    # A segment whose ID is followed by another message's field separator: rejected, whatever was
    # parsed before (the fast path once accepted it after a "|" message had shown the same prefix).
    hash_msh = "MSH#^~\\&#SENDAPP#SENDFAC#RECVAPP#RECVFAC#20240102030405##ADT^A01#CTRL1#P#2.5"
    odd = term.join([hash_msh, "PID|1||9434765919", ""])
    assert parse_message(adt(term))["PID-1"] == "1"  # "PID|" seen first, in a "|" message
    for _ in range(2):
        with pytest.raises(Hl7ParseError) as info:
            parse_message(odd)
        assert (info.value.error_code, info.value.segment_index) == ("100", 2)
    assert parse_message(odd.replace("|", "#"))["PID-3"] == "9434765919"


def test_batch_header_is_pointed_to_parse_batch() -> None:
    with pytest.raises(Hl7ParseError, match="parse_batch"):
        parse_message("BHS|^~\\&\r" + adt())


def test_error_text_never_contains_values() -> None:
    secret = "SECRETNAME9434765919"
    cases = [
        MSH + f"\rPID|1||{secret}\rXyz|{secret}\r",
        f"PID|{secret}\r",
        f"MSH|^^\\&|{secret}\r",
        MSH + f"||||||UNICODE UTF-16\rPID|{secret}\r",
    ]
    for text in cases:
        with pytest.raises(Hl7ParseError) as info:
            parse_message(text.encode("ascii"))
        assert secret not in str(info.value)
        assert "Xyz" not in str(info.value)


# ------------------------------------------------------------------------------------- terminators


@pytest.mark.parametrize("term", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("trailing", [True, False])
def test_segment_terminators_round_trip(term: str, trailing: bool) -> None:
    text = adt(term, trailing)
    msg = parse_message(text.encode())
    assert msg.separators.segment_terminator == term
    assert [s.name for s in msg.segments] == ["MSH", "PID", "PV1", "OBX", "OBX"]
    assert msg["PV1-19"] == "VISIT123"
    assert msg.encode() == text.encode()
    assert msg.to_er7() == text
    assert msg.to_er7("\r") == adt("\r", True)


def test_mixed_terminators_blank_lines_and_trailing_whitespace() -> None:
    text = MSH + "\r\n" + PID + "\n\n" + PV1 + "\r  \r" + OBX1 + "\r\n\r\n  \n"
    msg = parse_message(text.encode())
    assert [s.name for s in msg.segments] == ["MSH", "PID", "PV1", "OBX"]
    assert msg.separators.segment_terminator == "\r\n"
    assert msg.encode() == text.encode()
    assert msg.to_er7("\r") == "\r".join([MSH, PID, PV1, OBX1]) + "\r"


def test_leading_blank_line_is_rejected() -> None:
    with pytest.raises(Hl7ParseError):
        parse_message("\r" + adt())


# ----------------------------------------------------------------------------------------- charsets


def test_latin1_declared() -> None:
    data = (MSH + "||||||8859/1\rPID|1||1||M\xfcller^Ren\xe9\\XE9\\\r").encode("latin-1")
    msg = parse_message(data)
    assert msg.codec == "latin-1"
    assert msg["PID-5"] == "Müller"
    assert msg["PID-5.2"] == "Renéé"
    assert msg.encode() == data


def test_utf8_declared_and_hex_escape_in_utf8() -> None:
    data = (MSH + "||||||UNICODE UTF-8\rPID|1||1||Zo\u00eb^\\XC3A9\\\r").encode("utf-8")
    msg = parse_message(data)
    assert msg.codec == "utf-8"
    assert msg["PID-5"] == "Zoë"
    assert msg["PID-5.2"] == "é"
    assert msg.encode() == data


def test_utf8_declared_but_invalid_bytes() -> None:
    data = (MSH + "||||||UNICODE UTF-8\rPID|1\rNK1|1|M\xfcller\r").encode("latin-1")
    with pytest.raises(Hl7ParseError) as info:
        parse_message(data)
    assert info.value.error_code == "102"
    assert info.value.segment_index == 3


def test_undeclared_charset_policy() -> None:
    utf8 = (MSH + "\rPID|1||1||Zo\u00eb\r").encode("utf-8")
    assert parse_message(utf8)["PID-5"] == "Zoë"
    cp1252 = (MSH + "\rPID|1||1||O\x92Brien\r").encode("latin-1")
    msg = parse_message(cp1252)
    assert msg.codec == "cp1252"
    assert msg["PID-5"] == "O\u2019Brien"
    assert msg.encode() == cp1252
    undefined_in_cp1252 = (MSH + "\rPID|1||1||A\x81B\r").encode("latin-1")
    msg = parse_message(undefined_in_cp1252)
    assert msg.codec == "latin-1"
    assert msg.encode() == undefined_in_cp1252


def test_ascii_declared_but_8bit_is_tolerated() -> None:
    data = (MSH + "||||||ASCII\rPID|1||1||M\xfcller\r").encode("latin-1")
    msg = parse_message(data)
    assert msg["PID-5"] == "Müller"
    assert msg.encode() == data
    pure = parse_message((MSH + "||||||ASCII\rPID|1\r").encode())
    assert pure.codec == "ascii"


@pytest.mark.parametrize("charset", ["UNICODE UTF-16", "KLINGON", "ISO IR87"])
def test_unsupported_charset(charset: str) -> None:
    with pytest.raises(Hl7ParseError) as info:
        parse_message((MSH + f"||||||{charset}\rPID|1\r").encode())
    assert (info.value.error_code, info.value.segment, info.value.field) == ("103", "MSH", 18)


def test_encoding_override() -> None:
    data = (MSH + "||||||UNICODE UTF-8\rPID|1||1||M\xfcller\r").encode("latin-1")
    msg = parse_message(data, encoding="8859/1")
    assert msg["PID-5"] == "Müller"
    assert parse_message(data, encoding="latin-1")["PID-5"] == "Müller"
    with pytest.raises(Hl7ParseError) as info:
        parse_message(data, encoding="no-such-codec")
    assert info.value.error_code == "207"


def test_bom_round_trip() -> None:
    data = b"\xef\xbb\xbf" + adt().encode()
    msg = parse_message(data)
    assert msg.bom == b"\xef\xbb\xbf"
    assert msg.message_type == "ADT"
    assert msg.encode() == data
    from_text = parse_message("\ufeff" + adt())
    assert from_text.message_type == "ADT"
    assert from_text.encode() == data
    latin_text = parse_message("\ufeff" + MSH + "||||||8859/1\rPID|1||1||é\r")
    assert latin_text.codec == "latin-1"
    assert latin_text.encode() == b"\xef\xbb\xbf" + (MSH + "||||||8859/1\rPID|1||1||\xe9\r").encode("latin-1")


def test_str_input_and_bytes_like() -> None:
    assert parse_message(adt())["PID-3"] == "9434765919"
    assert parse_message(bytearray(adt().encode()))["PID-3"] == "9434765919"
    assert parse_message(memoryview(adt().encode()))["PID-3"] == "9434765919"


def test_encode_unrepresentable_character() -> None:
    msg = parse_message((MSH + "||||||ASCII\rPID|1\r").encode())
    msg.set("PID-5", "Zoë")
    with pytest.raises(Hl7EncodingError):
        msg.encode()


# ------------------------------------------------------------------------------------------ editing


def test_set_escapes_and_reads_back() -> None:
    msg = parse_message(adt())
    msg.set("PID-5.1", "O'Brien|A^B~C&D\\E\nF")
    assert msg["PID-5.1"] == "O'Brien|A^B~C&D\\E\nF"
    assert msg["PID-5.2"] == "JOHN"  # siblings untouched
    assert msg.raw("PID-5[1].1") == "O'Brien\\F\\A\\S\\B\\R\\C\\T\\D\\E\\E\\.br\\F"
    reparsed = parse_message(msg.encode())
    assert reparsed["PID-5.1"] == "O'Brien|A^B~C&D\\E\nF"
    assert reparsed["PID-5[2]"] == "JONES"


def test_set_whole_element_and_padding() -> None:
    msg = parse_message(adt())
    msg.set("MSH-9", "ACK")
    assert msg.raw("MSH-9") == "ACK"
    msg.set("PID-3[3].4", "NEW")
    assert msg.raw("PID-3") == "9434765919^^^NHS^NH~MRN001^^^RXX01^MR~^^^NEW"
    msg.set("PID-20.2.3", "x")
    assert msg.raw("PID-20") == "^&&x"
    assert len(msg.segment("PID") or ()) == 20
    msg.set("PID-3", None)
    assert msg.get("PID-3") is None
    msg.set("PV1-19[2]", "V2")
    assert msg.repetitions("PV1-19") == ["VISIT123", "V2"]


def test_set_raw_and_copy_fields() -> None:
    msg = parse_message(adt())
    msg.set_raw("MSH-5", msg.raw("MSH-4"))
    assert msg.raw("MSH-5") == "SENDFAC^1.2.3^ISO"
    with pytest.raises(Hl7EncodingError):
        msg.set_raw("PID-3.1", "a^b")
    with pytest.raises(Hl7EncodingError):
        msg.set_raw("PID-3", "a|b")
    with pytest.raises(Hl7EncodingError):
        msg.set_raw("PID-3", "a\rb")
    with pytest.raises(Hl7PathError):
        msg.set("MSH-2", "@@@@")
    with pytest.raises(Hl7PathError):
        msg.set("ZZZ-1", "x")


def test_append_insert_remove_segments_round_trip() -> None:
    msg = parse_message(adt("\n", trailing=False))
    msg.append_segment(["NTE", "1", None, "a|b"])
    assert msg.to_er7() == adt("\n", trailing=False) + "\nNTE|1||a\\F\\b"
    assert msg["NTE-3"] == "a|b"
    evn = msg.insert_segment(1, ["EVN", "A01"])
    assert [s.name for s in msg.segments][:3] == ["MSH", "EVN", "PID"]
    assert msg["EVN-1"] == "A01"
    msg.remove_segment(evn)
    nte = msg.segment("NTE")
    assert nte is not None
    msg.remove_segment(nte)
    assert msg.to_er7() == adt("\n", trailing=False)
    with pytest.raises(Hl7PathError):
        msg.insert_segment(0, ["EVN"])
    with pytest.raises(Hl7EncodingError):
        msg.append_segment(["MSH"])
    with pytest.raises(Hl7EncodingError):
        msg.append_segment(["bad"])


# ----------------------------------------------------------------------------------------- building


def test_build_message_shapes_and_escaping() -> None:
    msg = build_message(
        [
            [
                "MSH",
                None,
                None,
                "TIE",
                Raw("TRUST^1.2^ISO"),
                "APP",
                "FAC",
                "20240101",
                None,
                ["ACK", "A01", "ACK"],
                "ACK1",
                "P",
                "2.5",
            ],
            ["MSA", "AA", "CTRL|1"],
            [
                "ERR",
                None,
                None,
                ["207", "Application internal error", "HL70357"],
                "E",
                None,
                None,
                None,
                "line1\nline2",
            ],
            ["PID", None, None, Repeated([["1", None, None, ["NHS", "x&y"]], "2"]), None, "A^B"],
        ]
    )
    text = msg.to_er7()
    assert text.startswith("MSH|^~\\&|TIE|TRUST^1.2^ISO|APP|FAC|20240101||ACK^A01^ACK|ACK1|P|2.5\r")
    assert "MSA|AA|CTRL\\F\\1\r" in text
    assert "ERR|||207^Application internal error^HL70357|E||||line1\\.br\\line2\r" in text
    assert "PID|||1^^^NHS&x\\T\\y~2||A\\S\\B\r" in text
    reparsed = parse_message(msg.encode())
    assert reparsed["MSA-2"] == "CTRL|1"
    assert reparsed["ERR-3.2"] == "Application internal error"
    assert reparsed["ERR-8"] == "line1\nline2"
    assert reparsed["PID-3[1].4.2"] == "x&y"
    assert reparsed["PID-3[2]"] == "2"
    assert reparsed["PID-5"] == "A^B"
    assert reparsed["MSH-4.2"] == "1.2"
    assert Message.from_segments([["MSH"], ["MSA", "AA"]]).to_er7() == "MSH|^~\\&\rMSA|AA\r"


def test_build_with_custom_separators_and_charset() -> None:
    seps = Separators("*", "@", "!", "%", "#", None, "\n")
    msg = build_message(
        [["MSH", "*", "@!%#", "A", None, None, None, None, None, ["ADT", "A01"]], ["PID", "x*y"]],
        separators=seps,
    )
    assert msg.to_er7() == "MSH*@!%#*A******ADT@A01\nPID*x%F%y\n"
    assert parse_message(msg.to_er7())["PID-1"] == "x*y"
    latin = build_message([["MSH", None, None, "A"] + [None] * 14 + ["8859/1"], ["PID", "é"]])
    assert latin.codec == "latin-1"
    assert latin.encode().endswith(b"PID|\xe9\r")


@pytest.mark.parametrize(
    "segments",
    [
        [],
        [["PID", "1"]],
        [["MSH"], ["MSH"]],
        [["MSH", "$"]],
        [["MSH"], ["pid"]],
        [["MSH"], ["PID", Raw("a|b")]],
        [["MSH"], ["PID", ["a", Raw("b^c")]]],
        [["MSH"], ["PID", 5]],
    ],
)
def test_build_rejects_bad_input(segments: list[list[object]]) -> None:
    with pytest.raises(Hl7EncodingError):
        build_message(segments)  # type: ignore[arg-type]


def test_build_rejects_bad_separators() -> None:
    with pytest.raises(Hl7EncodingError):
        build_message([["MSH"]], separators=Separators("|", "^", "^", "\\", "&"))
    with pytest.raises(Hl7EncodingError):
        build_message([["MSH"]], separators=Separators("|", "A", "~", "\\", "&"))


# ------------------------------------------------------------------------------------------ batches

BHS = "BHS|^~\\&|SENDAPP|SENDFAC|||20240101||||B1"
FHS = "FHS|^~\\&|SENDAPP|SENDFAC|||20240101|||F1"


def two_messages() -> list[str]:
    return [adt(), adt().replace("CTRL1", "CTRL2")]


def test_file_with_batches_round_trips() -> None:
    text = (
        FHS + "\r" + BHS + "\r" + "".join(two_messages()) + "BTS|2\r" + BHS + "\r" + adt() + "BTS|1\rFTS|2\r"
    )
    batch = parse_batch(text.encode())
    assert [len(g.messages) for g in batch.groups] == [2, 1]
    assert [m.control_id for m in batch.messages] == ["CTRL1", "CTRL2", "CTRL1"]
    assert batch.file_header is not None and batch.file_header.get(10) == "F1"
    assert batch.header is not None and batch.header.get(11) == "B1"
    assert [s.name for s in batch.header_segments] == ["FHS", "BHS"]
    assert [s.name for s in batch.trailer_segments] == ["BTS", "FTS"]
    assert batch.encode() == text.encode()
    assert [m.control_id for m in iter_messages(text)] == ["CTRL1", "CTRL2", "CTRL1"]
    assert batch.messages[1].encode() == two_messages()[1].encode()


def test_bare_messages_and_single_message_via_iter_messages() -> None:
    assert [m.control_id for m in iter_messages("".join(two_messages()))] == ["CTRL1", "CTRL2"]
    assert [m.control_id for m in iter_messages(adt())] == ["CTRL1"]
    batch = parse_batch("".join(two_messages()) + "\r\n")
    assert batch.header is None and batch.trailer is None
    assert batch.encode() == ("".join(two_messages()) + "\r\n").encode()


def test_batch_charset_from_first_msh() -> None:
    text = BHS + "\r" + MSH + "||||||8859/1\rPID|1||1||é\rBTS|1\r"
    data = text.encode("latin-1")
    assert parse_batch(data).messages[0]["PID-5"] == "é"
    assert parse_batch(data).encode() == data
    assert parse_batch(text).encode() == data  # str input: MSH-18 picks the codec used by encode()


def test_messages_in_a_batch_keep_their_own_separators() -> None:
    other = "MSH*@!%#*A*B*C*D*2024**ORU@R01*X9*P*2.4\rOBX*1*ST*C**v1@v2\r"
    batch = parse_batch(BHS + "\r" + adt() + other + "BTS|2\r")
    assert batch.messages[1].separators.field == "*"
    assert batch.messages[1]["OBX-5.2"] == "v2"


@pytest.mark.parametrize(
    ("text", "fragment", "code"),
    [
        (BHS + "\rEVN|A01\r", "before message header", "100"),
        (BHS + "\r" + adt() + BHS + "\r", "more than one BHS", "100"),
        (FHS + "\r" + adt() + FHS + "\r", "more than one FHS", "100"),
        (BHS + "\r" + adt() + "BTS|2\r", "count", "102"),
        (BHS + "\r" + adt() + "BTS|one\r", "count", "102"),
        (FHS + "\r" + adt() + "FTS|3\r", "count", "102"),
        (adt() + "FTS|1\r" + adt(), "after FTS", "100"),
        ("PID|1\r", "MSH, FHS or BHS", "100"),
        ("", "empty", "100"),
        (BHS + "\r" + adt() + "PIDD|1\r", "segment ID", "100"),
    ],
)
def test_malformed_batches(text: str, fragment: str, code: str) -> None:
    with pytest.raises(Hl7ParseError, match=fragment) as info:
        parse_batch(text)
    assert info.value.error_code == code


def test_bhs_after_implicit_batch_is_allowed() -> None:
    batch = parse_batch(adt() + "BHS|^~\\&\r" + adt() + "BTS|1\r")
    assert [len(g.messages) for g in batch.groups] == [1, 1]
