"""MllpServer behaviour over loopback TCP (raw sockets, so every byte on the wire is under test control)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from shared.mllp.client import AckOutcome, MllpClient, classify_ack
from shared.mllp.errors import MllpConnectionError
from shared.mllp.framing import Frame, FrameDecoder, frame
from shared.mllp.server import ConnectionInfo, MllpServer, NakReason, fallback_nak

pytestmark = pytest.mark.timeout(30)

IO_TIMEOUT = 5.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 25))


async def ack_handler(payload: bytes, info: ConnectionInfo) -> bytes:
    return b"ACK|" + payload


class NakRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[NakReason, bytes | None]] = []

    def __call__(self, reason: NakReason, partial: bytes | None) -> bytes:
        self.calls.append((reason, partial))
        return b"NAK|" + reason.value.encode()


class RawConn:
    """A bare MLLP peer: writes arbitrary bytes, reads reply frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.pending: list[bytes] = []

    @classmethod
    async def open(cls, port: int, ssl_ctx: ssl.SSLContext | None = None) -> RawConn:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl_ctx, server_hostname="localhost" if ssl_ctx else None
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> bytes:
        async with asyncio.timeout(IO_TIMEOUT):
            while not self.pending:
                chunk = await self.reader.read(65536)
                assert chunk, "server closed the connection instead of replying"
                for event in self.decoder.feed(chunk):
                    assert isinstance(event, Frame), event
                    self.pending.append(event.payload)
        return self.pending.pop(0)

    async def request(self, payload: bytes) -> bytes:
        await self.send(frame(payload))
        return await self.reply()

    async def expect_closed(self) -> None:
        async with asyncio.timeout(IO_TIMEOUT):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass
        await self.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


def make_server(
    handler: Callable[[bytes, ConnectionInfo], Awaitable[bytes]] = ack_handler,
    nak: Callable[[NakReason, bytes | None], bytes] | None = None,
    **kwargs: Any,
) -> MllpServer:
    return MllpServer(handler, host="127.0.0.1", port=0, nak_builder=nak or NakRecorder(), **kwargs)


def test_port_zero_binds_ephemeral_and_stop_releases() -> None:
    async def main() -> None:
        server = make_server()
        with pytest.raises(RuntimeError):
            _ = server.port
        await server.start()
        port = server.port
        assert port > 0
        conn = await RawConn.open(port)
        assert await conn.request(b"x") == b"ACK|x"
        await conn.close()
        await server.stop()
        with pytest.raises(OSError):
            await RawConn.open(port)

    run(main())


def test_many_messages_on_one_connection_in_order() -> None:
    async def main() -> None:
        seen: list[ConnectionInfo] = []

        async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
            seen.append(info)
            return b"ACK|" + payload

        async with make_server(handler) as server:
            conn = await RawConn.open(server.port)
            # Pipeline three frames in one write: replies must come back one per frame, in order.
            await conn.send(frame(b"m1") + frame(b"m2") + frame(b"m3"))
            assert [await conn.reply() for _ in range(3)] == [b"ACK|m1", b"ACK|m2", b"ACK|m3"]
            assert await conn.request(b"m4") == b"ACK|m4"
            await conn.close()
        assert len({i.connection_id for i in seen}) == 1
        info = seen[0]
        assert info.peer_host == "127.0.0.1"
        assert info.peer_port > 0
        assert info.tls is False
        assert info.peer_cert_subject is None

    run(main())


@pytest.mark.timeout(60)
def test_concurrent_connections_each_in_order() -> None:
    n_conn, n_msg = 16, 50

    async def main() -> None:
        active = 0
        peak = 0

        async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0)  # let other connections interleave
            active -= 1
            return b"ACK|" + payload

        async def one_client(c: int) -> list[bytes]:
            conn = await RawConn.open(server.port)
            replies = [await conn.request(f"conn{c}-msg{i}".encode()) for i in range(n_msg)]
            await conn.close()
            return replies

        async with make_server(handler) as server:
            results = await asyncio.gather(*(one_client(c) for c in range(n_conn)))
        for c, replies in enumerate(results):
            assert replies == [f"ACK|conn{c}-msg{i}".encode() for i in range(n_msg)]
        assert peak > 1, "connections were not served concurrently"

    run(main())


def test_oversize_gets_nak_and_connection_stays_usable() -> None:
    async def main() -> None:
        nak = NakRecorder()
        async with make_server(nak=nak, max_message_bytes=100) as server:
            conn = await RawConn.open(server.port)
            big = b"MSH|^~\\&|" + b"x" * 500
            assert await conn.request(big) == b"NAK|oversize"
            assert await conn.request(b"small") == b"ACK|small"
            await conn.close()
        assert len(nak.calls) == 1
        reason, partial = nak.calls[0]
        assert reason is NakReason.OVERSIZE
        assert partial == big[:100]

    run(main())


def test_broken_frame_gets_nak() -> None:
    async def main() -> None:
        nak = NakRecorder()
        async with make_server(nak=nak) as server:
            conn = await RawConn.open(server.port)
            await conn.send(b"\x0bMSH|broken\x1cX")
            assert await conn.reply() == b"NAK|broken-frame"
            assert await conn.request(b"next") == b"ACK|next"
            await conn.close()
        assert nak.calls == [(NakReason.BROKEN_FRAME, b"MSH|broken")]

    run(main())


def test_garbage_between_frames_is_skipped_without_reply(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        nak = NakRecorder()
        async with make_server(nak=nak) as server:
            conn = await RawConn.open(server.port)
            await conn.send(b"noise" + frame(b"a") + b"\r\n\r\n" + frame(b"b"))
            assert await conn.reply() == b"ACK|a"
            assert await conn.reply() == b"ACK|b"
            # A truncated frame (sender restarted it) is dropped silently too.
            await conn.send(b"\x0babandoned" + frame(b"c"))
            assert await conn.reply() == b"ACK|c"
            await conn.close()
        assert nak.calls == []

    with caplog.at_level(logging.WARNING, logger="shared.mllp.server"):
        run(main())
    assert "bytes outside a frame" in caplog.text
    assert "truncated frame" in caplog.text
    assert "noise" not in caplog.text
    assert "abandoned" not in caplog.text


def test_handler_exception_gets_nak_not_disconnect(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        nak = NakRecorder()

        async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
            if b"BOOM" in payload:
                raise ValueError(f"bad value {payload!r}")
            return b"ACK|" + payload

        async with make_server(handler, nak=nak) as server:
            conn = await RawConn.open(server.port)
            assert await conn.request(b"PID|SMITH^JOHN|BOOM") == b"NAK|internal-error"
            assert await conn.request(b"fine") == b"ACK|fine"
            await conn.close()
        assert nak.calls == [(NakReason.INTERNAL_ERROR, b"PID|SMITH^JOHN|BOOM")]

    with caplog.at_level(logging.INFO, logger="shared.mllp.server"):
        run(main())
    assert "ValueError" in caplog.text
    assert "SMITH" not in caplog.text


def test_unframeable_ack_gets_nak() -> None:
    async def main() -> None:
        nak = NakRecorder()

        async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
            return b"bad\x1cack"

        async with make_server(handler, nak=nak) as server:
            conn = await RawConn.open(server.port)
            assert await conn.request(b"m") == b"NAK|internal-error"
            await conn.close()

    run(main())


def test_failing_nak_builder_falls_back_to_generic_nak() -> None:
    async def main() -> None:
        def broken_builder(reason: NakReason, partial: bytes | None) -> bytes:
            raise RuntimeError("builder bug")

        async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
            raise KeyError("x")

        async with make_server(handler, nak=broken_builder) as server:
            conn = await RawConn.open(server.port)
            reply = await conn.request(b"MSH|^~\\&|SECRET")
            assert reply.startswith(b"MSH|^~\\&|")
            assert classify_ack(reply) is AckOutcome.REJECT
            assert b"SECRET" not in reply
            second = await conn.request(b"again")
            assert classify_ack(second) is AckOutcome.REJECT
            await conn.close()

    run(main())


def test_fallback_nak_is_a_reject_without_echo() -> None:
    nak = fallback_nak()
    assert nak.startswith(b"MSH|^~\\&|")
    assert b"\rMSA|AR|" in nak
    assert classify_ack(nak) is AckOutcome.REJECT
    frame(nak)  # frameable


def test_idle_timeout_closes_connection() -> None:
    async def main() -> None:
        async with make_server(idle_timeout=0.2, first_frame_timeout=30) as server:
            conn = await RawConn.open(server.port)
            assert await conn.request(b"a") == b"ACK|a"
            await conn.expect_closed()
            assert server.active_connections == 0

    run(main())


def test_max_connections_rejects_extra_connection() -> None:
    async def main() -> None:
        async with make_server(max_connections=1) as server:
            first = await RawConn.open(server.port)
            assert await first.request(b"a") == b"ACK|a"
            second = await RawConn.open(server.port)
            await second.expect_closed()
            assert await first.request(b"b") == b"ACK|b"
            await first.close()

    run(main())


def test_graceful_stop_waits_for_in_flight_handler() -> None:
    async def main() -> None:
        started = asyncio.Event()
        release = asyncio.Event()

        async def slow(payload: bytes, info: ConnectionInfo) -> bytes:
            started.set()
            await release.wait()
            return b"ACK|" + payload

        server = make_server(slow)
        await server.start()
        port = server.port
        busy = await RawConn.open(port)
        idle = await RawConn.open(port)
        await busy.send(frame(b"persist-me"))
        await asyncio.wait_for(started.wait(), IO_TIMEOUT)
        stopping = asyncio.create_task(server.stop(grace=10))
        # The idle connection is closed promptly, the listener no longer accepts...
        await idle.expect_closed()
        with pytest.raises(OSError):
            await RawConn.open(port)
        assert not stopping.done()
        # ...and the in-flight message still gets its ACK before the connection closes.
        release.set()
        assert await busy.reply() == b"ACK|persist-me"
        await busy.expect_closed()
        await asyncio.wait_for(stopping, IO_TIMEOUT)
        await server.serve_forever()  # returns at once: already stopped

    run(main())


def test_stop_cancels_handler_after_grace() -> None:
    async def main() -> None:
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def stuck(payload: bytes, info: ConnectionInfo) -> bytes:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return b""

        server = make_server(stuck)
        await server.start()
        conn = await RawConn.open(server.port)
        await conn.send(frame(b"m"))
        await asyncio.wait_for(started.wait(), IO_TIMEOUT)
        await asyncio.wait_for(server.stop(grace=0.1), IO_TIMEOUT)
        assert cancelled.is_set()
        await conn.expect_closed()

    run(main())


def test_serve_forever_returns_after_stop() -> None:
    async def main() -> None:
        server = make_server()
        serving = asyncio.create_task(server.serve_forever())
        while True:
            try:
                port = server.port
                break
            except RuntimeError:
                await asyncio.sleep(0.01)
        conn = await RawConn.open(port)
        assert await conn.request(b"x") == b"ACK|x"
        await conn.close()
        await server.stop()
        await asyncio.wait_for(serving, IO_TIMEOUT)

    run(main())


# ----------------------------------------------------------------------------- TLS


def _write_cert(tmp: Path, name: str, key: Any, cert: Any, serialization: Any) -> tuple[Path, Path]:
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA with a server certificate (localhost / 127.0.0.1) and a client certificate."""
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tmp = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("test-ca"))
        .issuer_name(name("test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server_cert = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key, client_cert = leaf("test-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    ca_path = tmp / "ca.crt"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_crt, server_key_path = _write_cert(tmp, "server", server_key, server_cert, serialization)
    client_crt, client_key_path = _write_cert(tmp, "client", client_key, client_cert, serialization)
    return {
        "ca": ca_path,
        "server_crt": server_crt,
        "server_key": server_key_path,
        "client_crt": client_crt,
        "client_key": client_key_path,
    }


def _server_ctx(pki: dict[str, Path], *, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["server_crt"], pki["server_key"])
    if require_client_cert:
        ctx.load_verify_locations(pki["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_ctx(pki: dict[str, Path], *, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
    if with_cert:
        ctx.load_cert_chain(pki["client_crt"], pki["client_key"])
    return ctx


def test_tls_round_trip(pki: dict[str, Path]) -> None:
    async def main() -> None:
        infos: list[ConnectionInfo] = []

        async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
            infos.append(info)
            return b"ACK|" + payload

        async with make_server(handler, ssl=_server_ctx(pki, require_client_cert=False)) as server:
            async with MllpClient("127.0.0.1", server.port, ssl=_client_ctx(pki, with_cert=False)) as client:
                assert await client.send(b"over-tls", timeout=IO_TIMEOUT) == b"ACK|over-tls"
                assert await client.send(b"again", timeout=IO_TIMEOUT) == b"ACK|again"
            # A plaintext peer cannot talk to the TLS listener.
            plain = MllpClient("127.0.0.1", server.port, connect_timeout=IO_TIMEOUT)
            with pytest.raises(MllpConnectionError):
                await plain.send(b"plain", timeout=IO_TIMEOUT)
            await plain.close()
        assert len(infos) == 2
        assert infos[0].tls is True
        assert infos[0].peer_cert_subject is None

    run(main())


def test_mutual_tls_requires_client_certificate(pki: dict[str, Path]) -> None:
    async def main() -> None:
        infos: list[ConnectionInfo] = []

        async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
            infos.append(info)
            return b"ACK|" + payload

        async with make_server(handler, ssl=_server_ctx(pki, require_client_cert=True)) as server:
            good = MllpClient("127.0.0.1", server.port, ssl=_client_ctx(pki, with_cert=True))
            assert await good.send(b"mtls", timeout=IO_TIMEOUT) == b"ACK|mtls"
            await good.close()

            anonymous = MllpClient(
                "127.0.0.1", server.port, ssl=_client_ctx(pki, with_cert=False), connect_timeout=IO_TIMEOUT
            )
            with pytest.raises(MllpConnectionError):
                await anonymous.send(b"no-cert", timeout=IO_TIMEOUT)
            await anonymous.close()
        assert len(infos) == 1
        assert infos[0].tls is True
        assert infos[0].peer_cert_subject == "CN=test-client"

    run(main())
