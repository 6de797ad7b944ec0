"""MLLP framing and the incremental decoder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import PermanentError
from shared.mllp.errors import MllpPayloadError
from shared.mllp.framing import (
    CR,
    EB,
    OVERSIZE_HEAD_BYTES,
    SB,
    BrokenFrame,
    DecodeEvent,
    Frame,
    FrameDecoder,
    Garbage,
    Oversize,
    TruncatedFrame,
    frame,
)

pytestmark = pytest.mark.timeout(30)

MSG = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|CTRL1|P|2.5\rPID|1||X\r"


def decode(data: bytes, max_bytes: int = 1024) -> list[DecodeEvent]:
    dec = FrameDecoder(max_bytes)
    return dec.feed(data) + dec.finish()


def test_constants() -> None:
    assert (SB, EB, CR) == (0x0B, 0x1C, 0x0D)


def test_frame_wraps_payload() -> None:
    assert frame(b"abc") == b"\x0babc\x1c\r"
    assert frame(b"") == b"\x0b\x1c\r"


@pytest.mark.parametrize("bad", [b"a\x0bb", b"a\x1cb", b"\x1c\r"])
def test_frame_rejects_control_bytes(bad: bytes) -> None:
    with pytest.raises(MllpPayloadError) as info:
        frame(bad)
    assert isinstance(info.value, PermanentError)
    assert "offset 1" in str(info.value) or "offset 0" in str(info.value)


def test_single_and_multiple_frames() -> None:
    assert decode(frame(MSG)) == [Frame(MSG)]
    assert decode(frame(b"one") + frame(b"") + frame(b"three")) == [
        Frame(b"one"),
        Frame(b""),
        Frame(b"three"),
    ]


def test_garbage_before_and_between_frames_is_counted_once_per_run() -> None:
    data = b"xyz" + frame(b"a") + b"\r\n" + frame(b"b") + b"tail"
    assert decode(data) == [Garbage(3), Frame(b"a"), Garbage(2), Frame(b"b"), Garbage(4)]


def test_garbage_run_split_across_feeds_is_one_event() -> None:
    dec = FrameDecoder()
    assert dec.feed(b"junk") == []
    assert dec.feed(b"more") == []
    assert dec.feed(b"\x0bp\x1c\r") == [Garbage(8), Frame(b"p")]


def test_oversize_reported_once_then_resync() -> None:
    big = b"0123456789" * 3
    data = frame(b"ok") + frame(big) + frame(b"after")
    events = decode(data, max_bytes=10)
    assert events == [Frame(b"ok"), Oversize(10, big[:10]), Frame(b"after")]


def test_payload_exactly_at_limit_is_accepted() -> None:
    assert decode(frame(b"x" * 10), max_bytes=10) == [Frame(b"x" * 10)]
    assert decode(frame(b"x" * 11), max_bytes=10) == [Oversize(10, b"x" * 10)]


def test_oversize_head_is_capped() -> None:
    limit = OVERSIZE_HEAD_BYTES * 2
    payload = bytes(range(256)).replace(b"\x0b", b"").replace(b"\x1c", b"") * (limit // 200)
    assert len(payload) > limit
    (event,) = decode(frame(payload), max_bytes=limit)
    assert isinstance(event, Oversize)
    assert event.head == payload[:OVERSIZE_HEAD_BYTES]


def test_oversize_frame_ended_by_new_start_block_is_not_reported_twice() -> None:
    data = b"\x0b" + b"y" * 20 + frame(b"next")
    assert decode(data, max_bytes=5) == [Oversize(5, b"yyyyy"), Frame(b"next")]


def test_oversize_frame_ended_by_eb_without_cr() -> None:
    data = b"\x0b" + b"y" * 20 + b"\x1cZ" + frame(b"next")
    assert decode(data, max_bytes=5) == [Oversize(5, b"yyyyy"), Garbage(1), Frame(b"next")]


def test_eb_without_cr_is_broken_frame() -> None:
    data = b"\x0bpart\x1cX" + frame(b"good")
    assert decode(data) == [BrokenFrame(b"part"), Garbage(1), Frame(b"good")]


def test_eb_followed_by_sb_is_broken_frame_and_next_frame_decodes() -> None:
    data = b"\x0bpart\x1c" + frame(b"good")
    assert decode(data) == [BrokenFrame(b"part"), Frame(b"good")]


def test_eb_split_from_cr_across_feeds() -> None:
    dec = FrameDecoder()
    assert dec.feed(b"\x0babc\x1c") == []
    assert dec.feed(b"\r") == [Frame(b"abc")]


def test_start_block_inside_frame_truncates_previous() -> None:
    data = b"\x0babandoned" + frame(b"retry")
    assert decode(data) == [TruncatedFrame(b"abandoned"), Frame(b"retry")]


def test_finish_reports_unfinished_frame_and_resets() -> None:
    dec = FrameDecoder()
    assert dec.feed(b"\x0bhalf") == []
    assert dec.in_frame
    assert dec.finish() == [TruncatedFrame(b"half")]
    assert not dec.in_frame
    assert dec.finish() == []
    assert dec.feed(frame(b"z")) == [Frame(b"z")]


def test_finish_with_pending_eb_is_truncated() -> None:
    dec = FrameDecoder()
    assert dec.feed(b"\x0bhalf\x1c") == []
    assert dec.finish() == [TruncatedFrame(b"half")]


def test_finish_while_discarding_oversize_reports_nothing_more() -> None:
    dec = FrameDecoder(3)
    assert dec.feed(b"\x0babcdef") == [Oversize(3, b"abc")]
    assert dec.finish() == []


def test_event_reprs_do_not_include_payload() -> None:
    secret = b"SECRET-NAME"
    for event in (Frame(secret), Oversize(1, secret), BrokenFrame(secret), TruncatedFrame(secret)):
        assert "SECRET" not in repr(event)


def test_rejects_non_positive_limit() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(0)


# ----------------------------------------------------------------------------- properties

_pieces = st.sampled_from([b"\x0b", b"\x1c", b"\r", b"\x1c\r", b"a", b"MSH|", b"\n", b"xyz", b"\x00"])
_streams = st.one_of(
    st.binary(max_size=200),
    st.lists(_pieces, max_size=60).map(b"".join),
    st.lists(st.one_of(_pieces, st.binary(max_size=8)), max_size=40).map(b"".join),
)


def _chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, start = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[start:p])
        start = p
    return chunks


@settings(max_examples=400, deadline=None)
@given(
    data=_streams,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    limit=st.integers(1, 12),
)
def test_chunking_does_not_change_events(data: bytes, cuts: list[int], limit: int) -> None:
    whole = FrameDecoder(limit)
    expected = whole.feed(data) + whole.finish()
    chunked = FrameDecoder(limit)
    got: list[DecodeEvent] = []
    for piece in _chunk(data, cuts):
        got.extend(chunked.feed(piece))
    got.extend(chunked.finish())
    assert got == expected
    bytewise = FrameDecoder(limit)
    one: list[DecodeEvent] = []
    for i in range(len(data)):
        one.extend(bytewise.feed(data[i : i + 1]))
    assert one + bytewise.finish() == expected


@settings(max_examples=300, deadline=None)
@given(data=_streams, limit=st.integers(1, 12))
def test_events_account_for_every_byte(data: bytes, limit: int) -> None:
    """Garbage counts plus frame/partial payloads never exceed the input; frames are bounded."""
    events = decode(data, limit)
    for event in events:
        if isinstance(event, Frame):
            assert len(event.payload) <= limit
            assert b"\x0b" not in event.payload
            assert b"\x1c" not in event.payload
    assert sum(e.nbytes for e in events if isinstance(e, Garbage)) <= len(data)


@settings(max_examples=300, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), max_size=5))
def test_framed_payloads_roundtrip(payloads: list[bytes]) -> None:
    clean = [p.replace(b"\x0b", b"").replace(b"\x1c", b"") for p in payloads]
    stream = b"".join(frame(p) for p in clean)
    assert decode(stream, max_bytes=300) == [Frame(p) for p in clean]
