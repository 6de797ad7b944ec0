"""Property tests: round trips, and "parse succeeds or raises Hl7ParseError, never anything else"."""

from __future__ import annotations

import contextlib
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.hl7v2 import (
    Hl7ParseError,
    Separators,
    build_message,
    decode_escapes,
    encode_escapes,
    iter_messages,
    parse_batch,
    parse_message,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Delimiter sets: standard, v2.7 with truncation, and unusual ones.
SEPARATOR_SETS = [
    Separators(),
    Separators(truncation="#"),
    Separators("*", "@", "!", "%", "#"),
    Separators("$", "%", "~", "\\", "&"),
]
TERMINATORS = ["\r", "\n", "\r\n"]
SEGMENT_IDS = ["PID", "PV1", "OBX", "NK1", "ZX1", "NTE", "AL1", "EVN"]

# Any text, including delimiters, escapes, line breaks and non-ASCII (no surrogates: not encodable).
values = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
leaf_values = st.one_of(st.none(), values)
components = st.lists(
    st.one_of(leaf_values, st.lists(leaf_values, min_size=1, max_size=3)), min_size=1, max_size=4
)
field_values = st.one_of(leaf_values, components)


@st.composite
def built_messages(draw: st.DrawFn) -> tuple[Separators, list[list[object]]]:
    seps = draw(st.sampled_from(SEPARATOR_SETS))
    seps = Separators(
        seps.field,
        seps.component,
        seps.repetition,
        seps.escape,
        seps.subcomponent,
        seps.truncation,
        draw(st.sampled_from(TERMINATORS)),
    )
    msh: list[object] = ["MSH", None, None, *draw(st.lists(values, max_size=6))]
    body = [
        [draw(st.sampled_from(SEGMENT_IDS)), *draw(st.lists(field_values, max_size=6))]
        for _ in range(draw(st.integers(0, 5)))
    ]
    return seps, [msh, *body]


@SETTINGS
@given(built_messages())
def test_build_parse_values_equal(case: tuple[Separators, list[list[object]]]) -> None:
    seps, segments = case
    msg = build_message(segments, separators=seps)  # type: ignore[arg-type]
    parsed = parse_message(msg.encode())
    assert parsed.separators == seps
    assert parsed.encode() == msg.encode()
    assert [s.name for s in parsed.segments] == [s[0] for s in segments]
    for index, fields in enumerate(segments):
        segment = parsed.segments[index]
        for n, value in enumerate(fields[1:], start=1):
            if segment.name == "MSH" and n <= 2:
                continue
            if value is None or isinstance(value, str):
                assert segment.get(n) == (value or None)
            else:
                assert isinstance(value, list)
                for c, comp in enumerate(value, start=1):
                    subs = comp if isinstance(comp, list) else [comp]
                    for s, sub in enumerate(subs, start=1):
                        assert segment.get(n, 1, c, s) == (sub or None)


# Raw well-formed ER7 text from a safe alphabet: exercises the parser's own splitting and round trip.
safe_text = st.text(alphabet=string.ascii_letters + string.digits + " .-/:'\"()", max_size=8)


@st.composite
def raw_messages(draw: st.DrawFn) -> bytes:
    seps = draw(st.sampled_from(SEPARATOR_SETS))
    fs, cs, rs, ss = seps.field, seps.component, seps.repetition, seps.subcomponent

    def field() -> str:
        reps = draw(
            st.lists(
                st.lists(st.lists(safe_text, min_size=1, max_size=2), min_size=1, max_size=3),
                min_size=1,
                max_size=2,
            )
        )
        return rs.join(cs.join(ss.join(sub) for sub in rep) for rep in reps)

    segments = [
        f"MSH{fs}{seps.encoding_characters}{fs}" + fs.join(field() for _ in range(draw(st.integers(0, 10))))
    ]
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(SEGMENT_IDS))
        count = draw(st.integers(0, 6))
        segments.append(name + "".join(fs + field() for _ in range(count)))
    terms = [draw(st.sampled_from(["\r", "\n", "\r\n", "\r\n\r\n", "\n \n"])) for _ in segments]
    if draw(st.booleans()):
        terms[-1] = ""
    text = "".join(s + t for s, t in zip(segments, terms, strict=True))
    if terms[-1] and draw(st.booleans()):  # whitespace-only tail after the final terminator
        text += draw(st.sampled_from(["\r\n", "  ", "\n\t\n", ""]))
    prefix = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return prefix + text.encode()


@SETTINGS
@given(raw_messages())
def test_parse_encode_round_trip(data: bytes) -> None:
    msg = parse_message(data)
    assert msg.encode() == data
    assert parse_message(msg.to_er7("\r")).to_er7("\r") == msg.to_er7("\r")
    batch = parse_batch(data)
    assert batch.encode() == data
    assert [[s.raw for s in m.segments] for m in iter_messages(data)] == [[s.raw for s in msg.segments]]


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_hl7_parse_error(data: bytes) -> None:
    for parse in (parse_message, parse_batch):
        with contextlib.suppress(Hl7ParseError):
            parse(data)


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_parse_or_hl7_parse_error(text: str) -> None:
    for parse in (parse_message, parse_batch):
        with contextlib.suppress(Hl7ParseError):
            parse(text)


header_like = st.sampled_from(["MSH|^~\\&|", "MSH|^~\\&#|", "BHS|^~\\&|", "FHS|^~\\&|", "MSH*@!%#*", "MSH|"])
line_breaks = st.sampled_from(["\r", "\n", "\r\n", ""])
noisy_lines = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["PID|", "MSH|^~\\&|", "BTS|", "FTS|", "BHS|^~\\&", "pid|", "PV1", " "]),
            st.text(max_size=4),
        ),
        st.text(alphabet="|^~\\&#*@!%abcXYZ019 \u00e9\x00", max_size=20),
        line_breaks,
    ),
    max_size=6,
)


@SETTINGS
@given(
    header_like,
    st.text(alphabet="|^~\\&#*@!%abcXYZ019 \u00e9\r\n", max_size=60),
    noisy_lines,
    st.sampled_from(["utf-8", "latin-1"]),
)
def test_near_miss_messages_parse_or_hl7_parse_error(
    header: str, rest: str, lines: list[tuple[str, str, str]], codec: str
) -> None:
    text = header + rest + "".join(a + b + c for a, b, c in lines)
    for data in (text, text.encode(codec, errors="replace")):
        for parse in (parse_message, parse_batch):
            try:
                result = parse(data)
            except Hl7ParseError:
                continue
            # Whatever parsed must serialize back to its input and answer reads without crashing.
            assert result.encode() == (data if isinstance(data, bytes) else result.encode())
            for message in getattr(result, "messages", [result]):
                for segment in message.segments:
                    for n in range(1, len(segment) + 1):
                        segment.get(n)
                        segment.get(n, 2, 2, 2)


@SETTINGS
@given(st.sampled_from(SEPARATOR_SETS), st.text(alphabet=st.characters(exclude_categories=("Cs",))))
def test_escape_round_trip(seps: Separators, value: str) -> None:
    encoded = encode_escapes(value, seps)
    assert not any(
        c in encoded for c in (seps.field, seps.component, seps.repetition, seps.subcomponent, "\r", "\n")
    )
    assert decode_escapes(encoded, seps, "utf-8") == value


@SETTINGS
@given(
    st.sampled_from(["PID-3", "PID-3[2]", "PID-3[2].4", "PID-5.1.2", "OBX(2)-5", "PV1-19[3].2", "PID-30"]),
    st.one_of(st.none(), values),
)
def test_set_then_get(path: str, value: str | None) -> None:
    msg = parse_message(
        "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||X^^^NHS~Y||N^G\rOBX|1\rOBX|2\rPV1|1\r"
    )
    msg.set(path, value)
    assert msg.get(path) == (value or None)
    assert parse_message(msg.encode()).get(path) == (value or None)
