"""MllpClient against scripted raw asyncio servers, send_message, and classify_ack."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import PermanentError, TransientError
from shared.mllp.client import AckOutcome, MllpClient, classify_ack, read_msa, send_message
from shared.mllp.errors import MllpAckTimeout, MllpConnectionError, MllpPayloadError, MllpProtocolError
from shared.mllp.framing import Frame, FrameDecoder, frame

pytestmark = pytest.mark.timeout(30)

T = 5.0

Behaviour = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 25))


async def read_frames(reader: asyncio.StreamReader, decoder: FrameDecoder) -> list[bytes]:
    """Read until at least one complete frame arrived; [] on EOF."""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return []
        frames = [e.payload for e in decoder.feed(chunk) if isinstance(e, Frame)]
        if frames:
            return frames


async def echo(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    decoder = FrameDecoder()
    while frames := await read_frames(reader, decoder):
        for payload in frames:
            writer.write(frame(b"ACK|" + payload))
        await writer.drain()


async def silent(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


@contextlib.asynccontextmanager
async def raw_server(*behaviours: Behaviour) -> AsyncIterator[tuple[int, list[int]]]:
    """Connection i runs behaviours[i] (the last one repeats). Yields (port, connection indexes seen)."""
    seen: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(seen)
        seen.append(index)
        try:
            await behaviours[min(index, len(behaviours) - 1)](index, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


def test_send_returns_ack_and_reuses_connection() -> None:
    async def main() -> None:
        async with raw_server(echo) as (port, seen), MllpClient("127.0.0.1", port) as client:
            assert client.connected
            for i in range(5):
                assert await client.send(f"m{i}".encode(), timeout=T) == f"ACK|m{i}".encode()
            assert client.connections_made == 1
        assert not client.connected
        assert seen == [0]

    run(main())


def test_timeout_when_server_never_replies_then_reconnects() -> None:
    async def main() -> None:
        async with raw_server(silent, echo) as (port, seen):
            client = MllpClient("127.0.0.1", port)
            with pytest.raises(MllpAckTimeout) as info:
                await client.send(b"first", timeout=0.2)
            assert isinstance(info.value, TransientError)
            assert not client.connected
            assert await client.send(b"second", timeout=T) == b"ACK|second"
            assert client.connections_made == 2
            assert seen == [0, 1]
            await client.close()

    run(main())


def test_connection_dropped_before_reply_then_reconnects() -> None:
    async def hang_up(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frames(reader, FrameDecoder())

    async def main() -> None:
        async with raw_server(hang_up, echo) as (port, _):
            client = MllpClient("127.0.0.1", port)
            with pytest.raises(MllpConnectionError) as info:
                await client.send(b"lost", timeout=T)
            assert isinstance(info.value, TransientError)
            assert await client.send(b"retry", timeout=T) == b"ACK|retry"
            assert client.connections_made == 2
            await client.close()

    run(main())


def test_idle_connection_closed_by_server_is_replaced_before_sending() -> None:
    async def reply_once_then_close(
        index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        (payload,) = await read_frames(reader, FrameDecoder())
        writer.write(frame(b"ACK|" + payload))
        await writer.drain()

    async def main() -> None:
        async with raw_server(reply_once_then_close) as (port, _):
            client = MllpClient("127.0.0.1", port)
            assert await client.send(b"a", timeout=T) == b"ACK|a"
            reader = client._reader
            assert reader is not None
            async with asyncio.timeout(T):
                while not reader.at_eof():  # wait until the server's FIN has been seen
                    await asyncio.sleep(0.01)
            assert await client.send(b"b", timeout=T) == b"ACK|b"
            assert client.connections_made == 2
            await client.close()

    run(main())


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connecting is refused

        async def main() -> None:
            client = MllpClient("127.0.0.1", port, connect_timeout=T)
            with pytest.raises(MllpConnectionError):
                await client.send(b"x", timeout=T)
            with pytest.raises(MllpConnectionError):
                await client.connect()

        run(main())


@pytest.mark.parametrize(
    "reply",
    [
        b"\x0bACK\x1cX",  # end block without CR
        frame(b"ACK1") + frame(b"ACK2"),  # two replies to one message
        frame(b"ACK") + b"\x0bmore",  # start of an unsolicited frame
        b"\x0bACK\x0bACK\x1c\r",  # restarted frame
    ],
)
def test_garbled_reply_is_protocol_error_and_connection_replaced(reply: bytes) -> None:
    async def garbled(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frames(reader, FrameDecoder())
        writer.write(reply)
        await writer.drain()
        await silent(index, reader, writer)

    async def main() -> None:
        async with raw_server(garbled, echo) as (port, _):
            client = MllpClient("127.0.0.1", port)
            with pytest.raises(MllpProtocolError) as info:
                await client.send(b"m", timeout=T)
            assert isinstance(info.value, PermanentError)
            assert await client.send(b"n", timeout=T) == b"ACK|n"
            assert client.connections_made == 2
            await client.close()

    run(main())


def test_oversize_reply_is_protocol_error() -> None:
    async def huge(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frames(reader, FrameDecoder())
        writer.write(frame(b"A" * 200))
        await writer.drain()

    async def main() -> None:
        async with raw_server(huge) as (port, _):
            client = MllpClient("127.0.0.1", port, max_message_bytes=100)
            with pytest.raises(MllpProtocolError):
                await client.send(b"m", timeout=T)
            await client.close()

    run(main())


def test_reply_in_tiny_pieces_with_leading_noise() -> None:
    async def dribble(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while frames := await read_frames(reader, decoder):
            for payload in frames:
                for byte in b"\n" + frame(b"ACK|" + payload):
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0)

    async def main() -> None:
        async with raw_server(dribble) as (port, _), MllpClient("127.0.0.1", port) as client:
            assert await client.send(b"x", timeout=T) == b"ACK|x"
            assert await client.send(b"y", timeout=T) == b"ACK|y"

    run(main())


def test_concurrent_sends_on_one_client_are_serialised() -> None:
    async def main() -> None:
        async with raw_server(echo) as (port, _), MllpClient("127.0.0.1", port) as client:
            replies = await asyncio.gather(*(client.send(f"c{i}".encode(), timeout=T) for i in range(20)))
            assert replies == [f"ACK|c{i}".encode() for i in range(20)]
            assert client.connections_made == 1

    run(main())


def test_unframeable_message_rejected_before_sending() -> None:
    async def main() -> None:
        async with raw_server(echo) as (port, seen):
            client = MllpClient("127.0.0.1", port)
            with pytest.raises(MllpPayloadError):
                await client.send(b"bad\x0bbyte", timeout=T)
            assert seen == []
            await client.close()

    run(main())


def test_send_message_sync() -> None:
    ready = threading.Event()
    port_box: list[int] = []

    def serve() -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(T)
            port_box.append(listener.getsockname()[1])
            ready.set()
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(T)
                decoder = FrameDecoder()
                while True:
                    events = decoder.feed(conn.recv(4096))
                    if events:
                        break
                assert isinstance(events[0], Frame)
                conn.sendall(frame(b"ACK|" + events[0].payload))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(T)
    assert send_message("127.0.0.1", port_box[0], b"sync", T) == b"ACK|sync"
    thread.join(T)


# ----------------------------------------------------------------------------- classify_ack


def ack(code: str, fs: str = "|", enc: str = "^~\\&", seg: str = "\r", control: str = "CTRL42") -> bytes:
    msh = fs.join(
        ["MSH", enc, "RCV", "FAC", "TIE", "TIE", "20240101120000", "", f"ACK{enc[0]}A01", "A1", "P", "2.5"]
    )
    msa = fs.join(["MSA", code, control])
    return seg.join([msh, msa, ""]).encode()


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("AA", AckOutcome.ACCEPT),
        ("CA", AckOutcome.ACCEPT),
        ("AE", AckOutcome.ERROR),
        ("CE", AckOutcome.ERROR),
        ("AR", AckOutcome.REJECT),
        ("CR", AckOutcome.REJECT),
        ("aa", AckOutcome.ACCEPT),
        (" AE ", AckOutcome.ERROR),
        ("AR^extra", AckOutcome.REJECT),
    ],
)
def test_classify_ack_codes(code: str, outcome: AckOutcome) -> None:
    assert classify_ack(ack(code)) is outcome


@pytest.mark.parametrize(
    ("fs", "enc", "seg"),
    [
        ("|", "^~\\&", "\r"),
        ("#", "$~\\&", "\r"),
        ("!", "@*\\%", "\n"),
        ("|", "^~\\&", "\r\n"),
        ("|", "^~\\&#", "\r"),
    ],
)
def test_classify_ack_uses_the_acks_own_separators(fs: str, enc: str, seg: str) -> None:
    assert classify_ack(ack("AE", fs, enc, seg)) is AckOutcome.ERROR
    code_with_component = f"AA{enc[0]}ignored"
    assert classify_ack(ack(code_with_component, fs, enc, seg)) is AckOutcome.ACCEPT
    # With other separators, a '|' inside MSA-1 is data, not a field boundary.
    if fs != "|":
        with pytest.raises(MllpProtocolError):
            classify_ack(ack("AA|x", fs, enc, seg))


def test_msa_found_after_other_segments_and_control_id_read() -> None:
    payload = b"MSH|^~\\&|A|B|C|D|20240101||ACK|1|P|2.5\rSFT|x\rMSA|AR|ORIG-77^x\rERR|||207\r"
    summary = read_msa(payload)
    assert summary.outcome is AckOutcome.REJECT
    assert summary.code == "AR"
    assert summary.control_id == "ORIG-77"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"MSH",
        b"PID|1\rMSA|AA|1\r",  # no leading MSH
        b"MSH|^~\\&|A|B\rPID|1\r",  # no MSA
        b"MSH|^~\\&|A|B\rMSA|XX|1\r",  # unknown code
        b"MSH|^~\\&|A|B\rMSA\r",  # empty MSA
        b"MSHA^~\\&|A\rMSA|AA|1\r",  # alphanumeric field separator
        b"MSH|^~\\&|A|B\rMSA#AA#1\r",  # MSA not using the ACK's field separator
    ],
)
def test_classify_ack_rejects_non_acks(payload: bytes) -> None:
    with pytest.raises(MllpProtocolError):
        classify_ack(payload)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200), st.binary(max_size=100).map(lambda b: b"MSH|^~\\&|" + b + b"\rMSA|" + b)
    )
)
def test_classify_ack_only_ever_raises_protocol_error(payload: bytes) -> None:
    try:
        outcome = classify_ack(payload)
    except MllpProtocolError:
        return
    assert isinstance(outcome, AckOutcome)
