from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.hl7v2 import Hl7ParseError, Message, parse_message
from shared.hl7v2 import ack as ack_module
from shared.hl7v2.ack import (
    HL7_ERROR_CODES,
    AckPlan,
    ack_mode,
    build_ack,
    build_ack_for_unparseable,
    choose_ack_codes,
    new_control_id,
)
from shared.hl7v2.validation import Issue, ValidationResult, validate

NOW = datetime(2024, 3, 5, 10, 15, 30, tzinfo=UTC)
BAD_NHS = "9434765918"


def _message(
    *,
    event: str = "ADT^A01^ADT_A01",
    version: str = "2.5.1",
    accept: str = "",
    application: str = "",
    processing: str = "T",
    extra_msh: str = "",
    body: tuple[str, ...] = (
        "EVN|A01|20240305101500",
        "PID|1||9434765919^^^NHS^NH||DOE^JANE||19800101|F",
        "PV1|1|I",
    ),
) -> Message:
    msh = (
        f"MSH|^~\\&|PAS^1.2.3^ISO|RXX|TIE|TRUST|20240305101500||{event}|CTRL-42|{processing}|{version}"
        f"|||{accept}|{application}{extra_msh}"
    )
    return parse_message("\r".join([msh, *body]) + "\r")


def _result(*issues: Issue) -> ValidationResult:
    return ValidationResult(tuple(issues))


CONTENT_ERROR = Issue("E", "102", "PID", 3, 7, 1, "PID-7 is not a valid TS", repetition=1, occurrence=1)
REJECTION = Issue("E", "100", "PV1", 5, text="Segment PV1 repeats")
WARNING = Issue("W", "100", "ZPD", 4, text="Z-segment ZPD ignored")


# --- mode and code selection ------------------------------------------------------------------------


def test_ack_mode() -> None:
    assert ack_mode(None) == "original"
    assert ack_mode(_message()) == "original"
    assert ack_mode(_message(accept="AL")) == "enhanced"
    assert ack_mode(_message(application="NE")) == "enhanced"
    assert ack_mode(_message(accept=" ", application=" ")) == "original"


@pytest.mark.parametrize(
    ("result", "committed", "expected"),
    [
        (None, True, "AA"),
        (_result(), True, "AA"),
        (_result(WARNING), True, "AA"),
        (_result(CONTENT_ERROR), True, "AE"),
        (_result(CONTENT_ERROR, REJECTION), True, "AR"),
        (_result(), False, "AR"),
    ],
)
def test_original_mode_codes(result: ValidationResult | None, committed: bool, expected: str) -> None:
    plan = choose_ack_codes(_message(), result, committed=committed)
    assert plan == AckPlan("original", None, expected)  # type: ignore[arg-type]
    assert plan.immediate == expected


def test_unparseable_original_is_rejected() -> None:
    assert choose_ack_codes(None) == AckPlan("original", None, "AR")


@pytest.mark.parametrize(
    ("accept", "application", "result", "committed", "commit", "app"),
    [
        ("AL", "AL", _result(), True, "CA", "AA"),
        ("AL", "AL", _result(CONTENT_ERROR), True, "CA", "AE"),  # content errors go in the application ACK
        ("AL", "AL", _result(REJECTION), True, "CR", "AR"),
        ("AL", "AL", _result(), False, "CE", "AR"),
        ("NE", "NE", _result(REJECTION), True, None, None),
        ("ER", "ER", _result(), True, None, None),
        ("ER", "ER", _result(REJECTION), True, "CR", "AR"),
        ("ER", "ER", _result(CONTENT_ERROR), True, None, "AE"),
        ("ER", "AL", _result(), False, "CE", "AR"),
        ("SU", "SU", _result(), True, "CA", "AA"),
        ("SU", "SU", _result(REJECTION), True, None, None),
        ("SU", "SU", _result(CONTENT_ERROR), True, "CA", None),
        ("", "AL", _result(), True, "CA", "AA"),  # empty condition in enhanced mode counts as AL
        ("AL", "", _result(CONTENT_ERROR), True, "CA", "AE"),
        ("ZZ", "NE", _result(), True, "CA", None),  # unknown condition counts as AL
    ],
)
def test_enhanced_mode_codes(
    accept: str,
    application: str,
    result: ValidationResult,
    committed: bool,
    commit: str | None,
    app: str | None,
) -> None:
    plan = choose_ack_codes(_message(accept=accept, application=application), result, committed=committed)
    assert plan.mode == "enhanced"
    assert (plan.commit, plan.application) == (commit, app)
    assert plan.immediate == commit


def test_ack_messages_are_never_acknowledged() -> None:
    ack = _message(event="ACK^A01^ACK", body=("MSA|AA|X1",))
    assert choose_ack_codes(ack) == AckPlan("original", None, None)
    assert choose_ack_codes(ack).immediate is None
    enhanced_ack = _message(event="ACK^A01^ACK", accept="AL", body=("MSA|CA|X1",))
    assert choose_ack_codes(enhanced_ack).immediate is None


# --- build_ack ----------------------------------------------------------------------------------------


def _fields(ack: Message, name: str, occurrence: int = 1) -> list[str]:
    segment = ack.segment(name, occurrence)
    assert segment is not None
    return [segment.raw_field(n) for n in range(1, len(segment) + 1)]


@pytest.mark.parametrize("code", ["AA", "AE", "AR", "CA", "CE", "CR"])
def test_ack_header_and_msa(code: str) -> None:
    original = _message(version="2.4", processing="T")
    ack = build_ack(
        original,
        code=code,  # type: ignore[arg-type]
        sending_application="TIE",
        sending_facility="RYY",
        control_id="ACK-1",
        now=NOW,
    )
    reparsed = parse_message(ack.encode())
    assert reparsed.sending_application == "TIE"
    assert reparsed.sending_facility == "RYY"
    assert reparsed.raw("MSH-5") == "PAS^1.2.3^ISO"  # echoed verbatim, components intact
    assert reparsed.receiving_facility == "RXX"
    assert reparsed.raw("MSH-7") == "20240305101530+0000"
    assert reparsed.raw("MSH-9") == "ACK^A01^ACK"
    assert reparsed.control_id == "ACK-1"
    assert reparsed.processing_id == "T"
    assert reparsed.version == "2.4"
    assert reparsed.get("MSA-1") == code
    assert reparsed.get("MSA-2") == "CTRL-42"
    assert reparsed.get("MSA-3") is None
    assert reparsed.segments_named("ERR") == []
    assert [s.name for s in reparsed.segments] == ["MSH", "MSA"]


def test_ack_defaults_to_how_we_were_addressed_and_new_control_ids() -> None:
    original = _message()
    first = build_ack(original, code="AA", now=NOW)
    second = build_ack(original, code="AA", now=NOW)
    assert first.sending_application == "TIE"
    assert first.sending_facility == "TRUST"
    assert first.control_id != second.control_id
    assert first.control_id is not None
    assert len(first.control_id) == 20
    assert len(new_control_id()) == 20


def test_ack_timestamp_offsets() -> None:
    original = _message()
    bst = timezone(timedelta(hours=1))
    assert build_ack(original, code="AA", now=datetime(2024, 7, 1, 9, 0, 0, tzinfo=bst)).raw("MSH-7") == (
        "20240701090000+0100"
    )
    assert build_ack(original, code="AA", now=datetime(2024, 7, 1, 9, 0, 0)).raw("MSH-7") == "20240701090000"


def test_ack_validates_as_an_ack() -> None:
    original = _message()
    result = validate(_message(body=("EVN|A01|x", f"PID|1||{BAD_NHS}^^^NHS^NH||DOE^JANE", "PV1|1|I")))
    ack = build_ack(original, code=result.ack_code, issues=result.issues, now=NOW)
    reparsed = parse_message(ack.encode())
    assert validate(reparsed).issues == ()
    assert choose_ack_codes(reparsed).immediate is None


def test_err_segments_v25_layout() -> None:
    original = _message(
        body=(
            "EVN|A01|20240305101500",
            f"PID|1||H1^^^RXX^MR~{BAD_NHS}^^^NHS^NH||DOE^JANE||19800101|F",
            "PV1|1|I",
        )
    )
    result = validate(original)
    assert result.ack_code == "AE"
    ack = parse_message(build_ack(original, code="AE", issues=result.issues, now=NOW).encode())
    errs = ack.segments_named("ERR")
    assert len(errs) == 1
    err = errs[0]
    assert err.raw_field(1) == ""  # no ELD for v2.5+
    assert err.raw_field(2) == "PID^1^3^2^1"
    assert err.raw_field(3) == "102^Data type error^HL70357"
    assert err.raw_field(4) == "E"
    assert err.get(8) == "NHS number fails Modulus 11 check"
    assert BAD_NHS not in ack.to_er7()
    assert ack.get("MSA-3") == "NHS number fails Modulus 11 check"


def test_err_locations_for_various_issues() -> None:
    original = _message()
    issues = [
        Issue("E", "100", "EVN", text="Required segment EVN is missing"),  # missing segment: ID only
        Issue("W", "100", "ZPD", 4, text="ignored", occurrence=1),  # segment only
        Issue("E", "101", "PID", 3, 3, text="missing", occurrence=1),  # field -> repetition 1
        Issue("E", "102", "PV1", 4, 45, 1, text="bad", repetition=2),  # occurrence computed from original
        Issue("E", "200", None, None, text="type"),  # no location
        Issue("I", "999", "PID", 3, text="odd code", occurrence=1),  # unknown code -> 207
    ]
    ack = parse_message(build_ack(original, code="AR", issues=issues, now=NOW).encode())
    errs = ack.segments_named("ERR")
    assert [e.raw_field(2) for e in errs] == ["EVN", "ZPD^1", "PID^1^3^1", "PV1^1^45^2^1", "", "PID^1"]
    assert [e.get(3) for e in errs] == ["100", "100", "101", "102", "200", "207"]
    assert [e.get(3, comp=2) for e in errs] == [
        HL7_ERROR_CODES[c] for c in ("100", "100", "101", "102", "200", "207")
    ]
    assert [e.get(4) for e in errs] == ["E", "W", "E", "E", "E", "I"]


def test_err_eld_for_pre_v25_receivers() -> None:
    original = _message(version="2.3")
    issue = Issue("E", "102", "PID", 3, 7, 1, "bad date", repetition=1, occurrence=1)
    ack = parse_message(build_ack(original, code="AE", issues=[issue], now=NOW).encode())
    err = ack.segment("ERR")
    assert err is not None
    assert err.raw_field(1) == "PID^1^7^102&Data type error&HL70357"
    assert err.raw_field(2) == "PID^1^7^1^1"


@pytest.mark.parametrize(
    "header",
    [
        "MSH|^~\\&|",
        "MSH#$%\\*#",  # non-standard delimiters
        "MSH|^~\\&#|",  # v2.7 truncation character
    ],
)
def test_ack_uses_original_delimiters_and_escapes_text(header: str) -> None:
    fs = header[3]
    enc = header[4 : header.index(fs, 4)]
    raw = f"{header}PAS{fs}RXX{fs}TIE{fs}TRUST{fs}20240305101500{fs}{fs}ADT{enc[0]}A01{fs}C1{fs}P{fs}2.5.1\r"
    raw += f"EVN{fs}A01{fs}20240305101500\rPID{fs}1{fs}{fs}H1{fs}{fs}DOE\rPV1{fs}1{fs}I\r"
    original = parse_message(raw)
    nasty = "a|b^c~d\\e&f#g*h$i%j\nnext line"
    issue = Issue("E", "102", "PID", 3, 7, 1, nasty, repetition=1, occurrence=1)
    ack = build_ack(original, code="AE", issues=[issue], text=nasty, now=NOW)
    er7 = ack.to_er7()
    assert er7.startswith(header[:-1] if header.endswith("|") else header[:8])
    assert ack.separators.field == fs
    assert ack.separators.encoding_characters == original.separators.encoding_characters
    reparsed = parse_message(ack.encode())
    assert [s.name for s in reparsed.segments] == ["MSH", "MSA", "ERR"]
    flattened = "a|b^c~d\\e&f#g*h$i%j next line"
    assert reparsed.get("MSA-3") == flattened
    assert reparsed.get("ERR-8") == flattened
    assert reparsed.get("MSA-2") == "C1"


def test_long_text_is_clipped() -> None:
    issue = Issue("E", "102", "PID", 3, 7, 1, "x" * 1000, occurrence=1)
    ack = build_ack(_message(), code="AE", issues=[issue], now=NOW)
    msa3 = ack.get("MSA-3")
    err8 = ack.get("ERR-8")
    assert msa3 is not None
    assert len(msa3) == 80
    assert msa3.endswith("...")
    assert err8 is not None
    assert len(err8) == 250


def test_ack_keeps_character_set() -> None:
    raw = (
        "MSH|^~\\&|PAS|H\u00f4pital|TIE|TRUST|20240305101500||ADT^A01|C1|P|2.5.1||||||8859/1\r"
        "EVN|A01|20240305101500\rPID|1||H1||DOE\rPV1|1|I\r"
    ).encode("latin-1")
    original = parse_message(raw)
    ack = build_ack(original, code="AA", now=NOW)
    encoded = ack.encode()
    assert "H\u00f4pital".encode("latin-1") in encoded
    assert ack.get("MSH-18") == "8859/1"
    assert parse_message(encoded).receiving_facility == "H\u00f4pital"


def test_build_ack_without_original() -> None:
    ack = build_ack(None, code="AR", issues=[Issue("E", "100", text="unparseable")], now=NOW, control_id="Z1")
    reparsed = parse_message(ack.encode())
    assert reparsed.sending_application == "TIE"
    assert reparsed.raw("MSH-9") == "ACK^^ACK"
    assert reparsed.version == "2.5.1"
    assert reparsed.processing_id == "P"
    assert reparsed.get("MSA-1") == "AR"
    assert reparsed.get("MSA-2") is None


def test_build_ack_rejects_unknown_code() -> None:
    with pytest.raises(ValueError):
        build_ack(_message(), code="OK")  # type: ignore[arg-type]


# --- build_ack_for_unparseable ----------------------------------------------------------------------


def _error(**kwargs: object) -> Hl7ParseError:
    description = str(kwargs.pop("description", "segment does not start with a valid segment ID"))
    return Hl7ParseError(description, **kwargs)  # type: ignore[arg-type]


def test_unparseable_echoes_what_it_can() -> None:
    raw = (
        b"\x0b\xef\xbb\xbfMSH|^~\\&|PAS|RXX|TIE|TRUST|20240305||ADT^A08|CTRL-77|T|2.4\r"
        b"EVN|A08|20240305\rPID|1||H1\rbad segment\r"
    )
    with pytest.raises(Hl7ParseError) as excinfo:
        parse_message(raw)
    out = build_ack_for_unparseable(raw, excinfo.value, now=NOW, control_id="ACK-9")
    ack = parse_message(out)
    assert ack.get("MSA-1") == "AR"
    assert ack.get("MSA-2") == "CTRL-77"
    assert ack.raw("MSH-9") == "ACK^A08^ACK"
    assert ack.control_id == "ACK-9"
    assert ack.sending_application == "TIE"
    assert ack.sending_facility == "TRUST"
    assert ack.receiving_application == "PAS"
    assert ack.receiving_facility == "RXX"
    assert ack.processing_id == "T"
    assert ack.version == "2.4"
    assert ack.raw("MSH-7") == "20240305101530+0000"
    err = ack.segment("ERR")
    assert err is not None
    assert err.get(3) == excinfo.value.error_code
    assert err.get(4) == "E"
    assert err.get(8) == excinfo.value.description


def test_unparseable_our_identity_overrides() -> None:
    raw = b"MSH|^~\\&|PAS|RXX|TIE|TRUST|20240305||ADT^A01|C1|P|2.5.1\rPID\x01|bad\r"
    ack = parse_message(
        build_ack_for_unparseable(raw, _error(), sending_application="ENGINE", sending_facility="R1H")
    )
    assert (ack.sending_application, ack.sending_facility) == ("ENGINE", "R1H")


def test_unparseable_enhanced_mode_gives_commit_reject() -> None:
    raw = b"MSH|^~\\&|PAS|RXX|TIE|TRUST|20240305||ORU^R01|C2|P|2.5.1|||AL|NE\r\x00\x00"
    ack = parse_message(build_ack_for_unparseable(raw, _error(error_code="100", segment_index=2)))
    assert ack.get("MSA-1") == "CR"
    assert ack.get("MSA-2") == "C2"


def test_unparseable_with_custom_delimiters() -> None:
    raw = b"MSH!@~\\&!PAS!RXX!TIE!TRUST!20240305!!ADT@A01!C3!P!2.3\rPID!1\r???\r"
    error = _error(error_code="100", segment="PID", segment_index=2, field=3, component=2)
    out = build_ack_for_unparseable(raw, error, now=NOW)
    assert out.startswith(b"MSH!@~\\&!")
    ack = parse_message(out)
    assert ack.get("MSA-2") == "C3"
    err = ack.segment("ERR")
    assert err is not None
    assert err.raw_field(2) == "PID@1@3@1@2"
    assert err.raw_field(1) == "PID@1@3@100&Segment sequence error&HL70357"  # v2.3: ELD too


def test_unparseable_occurrence_of_repeated_segment() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20240305||ADT^A40|C4|P|2.5.1\rEVN|A40\rPID|1\rMRG|1\rPID|2\rMRG\x7f|x\r"
    error = _error(error_code="100", segment="MRG", segment_index=6)
    ack = parse_message(build_ack_for_unparseable(raw, error))
    err = ack.segment("ERR")
    assert err is not None
    assert err.raw_field(2) == "MRG^2"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"MSH",
        b"MSH|",
        b"MSH|^~",
        b"MSH|^^\\&|A|B",  # duplicate encoding characters
        b"MSHA^~\\&|A",  # alphanumeric field separator
        b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|\x01\x02|P|2.5.1\r",  # control characters in MSH-10
        b"\xff\xfe\x00M\x00S\x00H",  # UTF-16
        b"PID|1||x\rMSH|^~\\&|A",
    ],
)
def test_unparseable_garbage_still_gets_a_valid_ack(raw: bytes) -> None:
    out = build_ack_for_unparseable(raw, _error(error_code="102", segment="MSH", segment_index=1, field=2))
    ack = parse_message(out)
    assert ack.separators.field == "|"
    assert ack.get("MSA-1") == "AR"
    assert ack.get("MSA-2") is None  # nothing trustworthy to echo
    assert ack.version == "2.5.1"
    assert ack.get("ERR-3") == "102"


def test_unparseable_never_raises_even_if_building_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object) -> str:
        raise RuntimeError("internal failure")

    monkeypatch.setattr(ack_module, "_unparseable_er7", boom)
    out = build_ack_for_unparseable(b"MSH|^~\\&|x", _error())
    ack = parse_message(out)
    assert ack.get("MSA-1") == "AR"
    assert ack.get("ERR-3") == "100"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda tail: b"MSH|^~\\&|" + tail,
            st.binary(max_size=200),
        ),
    ),
    st.sampled_from(["100", "101", "102", "103", "207", "999"]),
    st.sampled_from([None, "MSH", "PID", "ZZ1", "bad name"]),
    st.one_of(st.none(), st.integers(min_value=-3, max_value=50)),
    st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
)
def test_unparseable_property(
    raw: bytes, code: str, segment: str | None, index: int | None, field: int | None
) -> None:
    error = Hl7ParseError("broken", error_code=code, segment=segment, segment_index=index, field=field)
    out = build_ack_for_unparseable(raw, error)
    ack = parse_message(out)
    assert ack.message_type == "ACK"
    assert ack.get("MSA-1") in ("AR", "CR")
    err3 = ack.get("ERR-3")
    assert err3 in HL7_ERROR_CODES
