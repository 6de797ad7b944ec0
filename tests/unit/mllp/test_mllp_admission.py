"""MLLP hardening: idle-socket floods, per-source and reserved connection caps, frame deadlines, fair use
of the worker pool, and a bounded stop.

Everything runs over loopback. Distinct senders are distinct loopback source addresses (127.0.0.2, ...:
the whole of 127.0.0.0/8 is the loopback interface on Linux); the server always listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from shared.config.settings import Settings
from shared.ingest.mllp_listener import build_mllp_server, trust_rule
from shared.mllp.framing import SB, Frame, FrameDecoder, frame
from shared.mllp.server import ConnectionInfo, MllpServer, Refusal, generic_nak
from shared.mllp.workers import WorkerPool
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.timeout(90)

IO_TIMEOUT = 5.0


def _loopback_aliases_work() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


# CI runs on Linux, where all of 127.0.0.0/8 is loopback: there the flood tests must run, never skip.
needs_loopback_aliases = pytest.mark.skipif(
    os.environ.get("CI") != "true" and not _loopback_aliases_work(),
    reason="this OS routes only 127.0.0.1 to loopback",
)


def run(coro: Coroutine[Any, Any, None], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def ack_handler(payload: bytes, info: ConnectionInfo) -> bytes:
    return b"ACK|" + payload


class Peer:
    """A raw MLLP peer from a chosen loopback source address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def request(self, payload: bytes) -> bytes:
        self.writer.write(frame(payload))
        await self.writer.drain()
        async with asyncio.timeout(IO_TIMEOUT):
            while True:
                chunk = await self.reader.read(65536)
                assert chunk, "the server closed the connection instead of replying"
                for event in self.decoder.feed(chunk):
                    assert isinstance(event, Frame), event
                    return event.payload

    async def closed_by_server(self) -> bool:
        """True once the server has closed (or reset) the connection; waits at most IO_TIMEOUT."""
        try:
            async with asyncio.timeout(IO_TIMEOUT):
                while await self.reader.read(65536):
                    pass
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.writer.transport.abort()


async def flood(port: int, count: int, sources: list[str]) -> list[Peer]:
    """Open ``count`` idle connections, round-robin over ``sources``, in batches (bounded SYN bursts)."""
    peers: list[Peer] = []
    for start in range(0, count, 50):
        batch = [Peer.open(port, sources[i % len(sources)]) for i in range(start, min(start + 50, count))]
        peers.extend(await asyncio.gather(*batch))
    return peers


async def settled(server: MllpServer, attempts: int) -> None:
    """Wait (bounded) until the server has decided on every one of ``attempts`` connections."""
    async with asyncio.timeout(IO_TIMEOUT * 2):
        while server.accepted + sum(server.refusals.values()) < attempts:
            await asyncio.sleep(0.01)


def make_server(
    handler: Callable[[bytes, ConnectionInfo], Awaitable[bytes | None]] = ack_handler, **kw: Any
) -> MllpServer:
    refused: list[Refusal] = kw.pop("refused", [])
    return MllpServer(
        handler, host="127.0.0.1", port=0, nak_builder=generic_nak, on_refused=refused.append, **kw
    )


# ----------------------------------------------------------------------------- connection caps


@needs_loopback_aliases
def test_idle_flood_from_one_address_does_not_lock_out_a_real_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The finding: 500 idle sockets used to fill the 256 slots and reset real senders."""
    flood_size = 500

    async def main() -> None:
        refused: list[Refusal] = []
        # The production defaults (settings): 256 in all, 32 reserved, 16 per source, 15 s first frame.
        server = make_server(
            max_connections=256,
            reserved_connections=32,
            max_connections_per_source=16,
            first_frame_timeout=15,
            idle_timeout=60,
            trusted=lambda info: False,
            refused=refused,
        )
        async with server:
            peers = await flood(server.port, flood_size, ["127.0.0.1"])
            await settled(server, flood_size)
            assert server.accepted == 16 and server.active_connections == 16
            assert server.refusals == {Refusal.PER_SOURCE: flood_size - 16}
            assert len(refused) == flood_size - 16  # the metric saw every refusal

            real = await Peer.open(server.port, "127.0.0.2")
            assert await real.request(b"MSH|real") == b"ACK|MSH|real"
            assert server.active_connections == 17  # the flood's idle sockets are still there
            real.close()
            for peer in peers:
                peer.close()

    with caplog.at_level("WARNING", logger="shared.mllp.server"):
        run(main())
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1, "refusals are logged at most once per interval and reason"
    assert "reason=per-source" in lines[0] and "127.0.0" not in lines[0]


@needs_loopback_aliases
def test_full_listener_keeps_room_for_allow_listed_senders() -> None:
    async def main() -> None:
        settings = Settings(TIE_MLLP_TRUSTED_CIDRS="127.0.0.2/32")
        server = make_server(
            max_connections=40,
            reserved_connections=8,
            max_connections_per_source=10,
            first_frame_timeout=30,
            trusted=trust_rule(settings),
        )
        async with server:
            sources = [f"127.0.0.{n}" for n in range(10, 16)]  # six hosts, 60 idle sockets
            peers = await flood(server.port, 60, sources)
            await settled(server, 60)
            assert server.active_connections == 32  # 40 - 8 reserved

            stranger = await Peer.open(server.port, "127.0.0.20")
            assert await stranger.closed_by_server()
            assert server.refusals[Refusal.RESERVED] >= 1

            trusted = await Peer.open(server.port, "127.0.0.2")
            assert await trusted.request(b"MSH|partner") == b"ACK|MSH|partner"
            trusted.close()
            for peer in peers:
                peer.close()

    run(main())


def test_listener_wires_the_caps_from_settings() -> None:
    async def main() -> None:
        settings = Settings(
            TIE_MLLP_MAX_CONNECTIONS_PER_SOURCE=2, TIE_MLLP_MAX_CONNECTIONS=8, TIE_MLLP_RESERVED_CONNECTIONS=0
        )
        server = build_mllp_server(None, None, settings, host="127.0.0.1", port=0)  # type: ignore[arg-type]
        async with server:
            first, second = await Peer.open(server.port), await Peer.open(server.port)
            third = await Peer.open(server.port)
            assert await third.closed_by_server()
            assert server.refusals == {Refusal.PER_SOURCE: 1}
            first.close()
            second.close()

    run(main())


def test_trust_rule_by_cidr_and_client_certificate() -> None:
    def info(host: str, *, tls: bool = False, cns: tuple[str, ...] = ()) -> ConnectionInfo:
        return ConnectionInfo("c", host, 1, tls, peer_cert_common_names=cns)

    assert trust_rule(Settings()) is None
    rule = trust_rule(Settings(TIE_MLLP_TRUSTED_CIDRS="10.1.0.0/16, 2001:db8::/32"))
    assert rule is not None
    assert rule(info("10.1.2.3")) and rule(info("::ffff:10.1.2.3")) and rule(info("2001:db8::7"))
    assert not rule(info("10.2.0.1")) and not rule(info("not-an-address"))
    by_cert = trust_rule(Settings(TIE_MLLP_TRUSTED_CLIENT_CNS="PAS RGT01, LAB-RGT01"))
    assert by_cert is not None
    assert by_cert(info("192.0.2.1", tls=True, cns=("PAS RGT01",)))
    assert not by_cert(info("192.0.2.1", tls=False, cns=("PAS RGT01",)))
    assert not by_cert(info("192.0.2.1", tls=True, cns=("SOMEONE",)))


def test_settings_reject_bad_cidrs_and_reserving_every_slot() -> None:
    with pytest.raises(ValueError):
        Settings(TIE_MLLP_TRUSTED_CIDRS="10.1.0.0/16, nonsense")
    with pytest.raises(ValueError):
        Settings(TIE_MLLP_MAX_CONNECTIONS=4, TIE_MLLP_RESERVED_CONNECTIONS=4)


# ----------------------------------------------------------------------------- deadlines


def test_first_frame_timeout_closes_a_silent_connection() -> None:
    async def main() -> None:
        async with make_server(first_frame_timeout=0.3, idle_timeout=60) as server:
            peer = await Peer.open(server.port)
            assert await peer.closed_by_server()
            assert server.closes["first-frame-timeout"] == 1

    run(main())


def test_trickled_bytes_do_not_extend_the_first_frame_deadline() -> None:
    """A slowloris sender (a byte now and then, never a whole frame) is still cut at the deadline."""

    async def main() -> None:
        async with make_server(first_frame_timeout=0.5, idle_timeout=60) as server:
            peer = await Peer.open(server.port)
            closed = asyncio.create_task(peer.closed_by_server())
            peer.writer.write(bytes([SB]))
            for _ in range(100):  # at most 5 s of trickling; the deadline is 0.5 s
                if closed.done():
                    break
                with contextlib.suppress(ConnectionError):
                    peer.writer.write(b"x")
                    await peer.writer.drain()
                await asyncio.sleep(0.05)
            assert closed.done() and closed.result()
            assert server.closes["first-frame-timeout"] == 1

    run(main())


def test_between_frames_deadline_closes_after_the_last_reply() -> None:
    async def main() -> None:
        async with make_server(first_frame_timeout=60, idle_timeout=0.3) as server:
            peer = await Peer.open(server.port)
            assert await peer.request(b"a") == b"ACK|a"
            assert await peer.closed_by_server()
            assert server.closes["idle-timeout"] == 1

    run(main())


def test_trusted_sender_gets_the_idle_timeout_for_its_first_frame() -> None:
    async def main() -> None:
        server = make_server(first_frame_timeout=60, idle_timeout=0.3, trusted=lambda info: True)
        async with server:
            peer = await Peer.open(server.port)
            assert await peer.closed_by_server()

    run(main())


# ----------------------------------------------------------------------------- workers and stop


@needs_loopback_aliases
def test_a_sender_of_slow_messages_cannot_take_every_worker() -> None:
    async def main() -> None:
        pool = WorkerPool(2)
        release = threading.Event()
        slow_started = threading.Event()

        def work(payload: bytes) -> bytes:
            if payload.startswith(b"slow"):
                slow_started.set()
                release.wait(30)
            return b"ACK|" + payload

        async def handler(payload: bytes, info: ConnectionInfo) -> bytes:
            return await asyncio.get_running_loop().run_in_executor(pool, work, payload)

        server = make_server(handler, max_handlers_per_source=1, on_stopped=pool.shutdown)
        async with server:
            heavy = [await Peer.open(server.port, "127.0.0.1") for _ in range(3)]
            pending = [asyncio.create_task(p.request(b"slow%d" % i)) for i, p in enumerate(heavy)]
            assert await asyncio.to_thread(slow_started.wait, IO_TIMEOUT)
            await asyncio.sleep(0.2)  # let the other slow frames reach the server (pacing only)
            other = await Peer.open(server.port, "127.0.0.2")
            assert await other.request(b"fast") == b"ACK|fast"
            release.set()
            assert sorted(await asyncio.gather(*pending)) == [b"ACK|slow0", b"ACK|slow1", b"ACK|slow2"]
            for peer in [*heavy, other]:
                peer.close()

    run(main())


def test_worker_pool_runs_work_and_shuts_down_without_waiting() -> None:
    pool = WorkerPool(1, name="t-pool")
    assert pool.submit(lambda a, b: a + b, 2, b=3).result(IO_TIMEOUT) == 5
    gate, started = threading.Event(), threading.Event()

    def blocked() -> bool:
        started.set()
        return gate.wait(30)

    running = pool.submit(blocked)
    assert started.wait(IO_TIMEOUT)
    queued = pool.submit(lambda: "never")
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("t-pool"))
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    gate.set()
    assert running.result(IO_TIMEOUT) is True


_STUCK_LISTENER = textwrap.dedent(
    """
    import asyncio, signal, sys, threading
    from shared.config.settings import Settings
    from shared.ingest import mllp_listener

    class StuckIngest:  # storage that never answers
        def __init__(self, bus, records): pass
        def handle(self, payload, *, source, correlation_id):
            print("STUCK", flush=True)
            threading.Event().wait()

    mllp_listener.Hl7Ingest = StuckIngest

    async def main():
        settings = Settings(TIE_MLLP_DRAIN_SECONDS=0.5)
        server = mllp_listener.build_mllp_server(None, None, settings, host="127.0.0.1", port=0)
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("PORT", server.port, flush=True)
        await stop.wait()
        await server.stop()
        print("STOPPED", flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_stops_within_bounds_even_with_a_stuck_handler() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK_LISTENER], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(frame(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5\r"))
            assert proc.stdout.readline().strip() == b"STUCK"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, "the process must exit despite the stuck worker"
        assert proc.stdout.read().strip() == b"STOPPED"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
