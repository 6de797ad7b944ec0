"""Asyncio MLLP listener.

Azure Functions cannot accept raw TCP, so this server runs in-process next to the local functions host
(and, in production, in a small container). It knows nothing about HL7: every complete frame is handed to
an injected ``handler`` that returns the ACK payload, and every framing fault that deserves a reply is
answered with whatever the injected ``nak_builder`` returns.

Per connection the exchange is strictly request/response, in order: a frame's reply is written (and the
socket drained, which gives backpressure) before the next frame is handed to the handler. Bytes that
arrive meanwhile stay buffered (in the decoder, the stream reader and the kernel).

Replies:

* complete frame -> ``frame(await handler(payload, info))``;
* :class:`~shared.mllp.framing.Oversize` -> NAK(``OVERSIZE``, first bytes of the frame), sent as soon as
  the limit is crossed; the rest of that frame is discarded;
* :class:`~shared.mllp.framing.BrokenFrame` -> NAK(``BROKEN_FRAME``, payload before the bad end block);
* handler raised, or returned something that cannot be framed -> NAK(``INTERNAL_ERROR``, payload);
* garbage between frames -> logged, no reply (there is no request to answer);
* truncated frame (a new start block before the end block) -> logged, no reply: the sender abandoned it
  (typically a timed-out sender retransmitting), and a reply would be paired with the *next* message.

If ``nak_builder`` raises, a minimal generic NAK (MSH + ``MSA|AR``, nothing echoed) is sent instead, so a
request never goes unanswered while the connection is up. The connection is only closed on peer EOF,
idle timeout, I/O error or :meth:`MllpServer.stop`.

Logs carry the connection id, counts and exception type names only, never payload bytes or peer data.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any, Final

from shared.mllp.framing import (
    DEFAULT_MAX_MESSAGE_BYTES,
    BrokenFrame,
    DecodeEvent,
    Frame,
    FrameDecoder,
    Garbage,
    Oversize,
    TruncatedFrame,
    frame,
)

logger = logging.getLogger(__name__)

_READ_CHUNK: Final = 65_536
_CLOSE_TIMEOUT: Final = 2.0


class NakReason(enum.Enum):
    """Why the server is answering with a NAK instead of the handler's ACK."""

    OVERSIZE = "oversize"
    BROKEN_FRAME = "broken-frame"
    INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the handler may know about the connection a message arrived on."""

    connection_id: str
    peer_host: str
    peer_port: int
    tls: bool
    #: RFC 4514-style subject (``CN=...,O=...``) of a verified TLS client certificate, else ``None``.
    peer_cert_subject: str | None = None


#: Returns the reply payload, or ``None`` for "send no reply" (enhanced-mode NE/ER/SU accept ACKs).
Handler = Callable[[bytes, ConnectionInfo], Awaitable[bytes | None]]
NakBuilder = Callable[[NakReason, bytes | None], bytes]


def fallback_nak() -> bytes:
    """A minimal, always-valid application reject (``MSH`` + ``MSA|AR``) that echoes nothing.

    Used when the configured ``nak_builder`` fails. Only the current UTC time varies.
    """
    ts = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    return f"MSH|^~\\&|TIE|TIE|||{ts}||ACK|TIE-NAK-{ts}|P|2.5\rMSA|AR|\r".encode("ascii")


def generic_nak(reason: NakReason, partial: bytes | None) -> bytes:
    """A ``nak_builder`` that ignores its arguments and returns :func:`fallback_nak` (tests, benchmarks)."""
    del reason, partial
    return fallback_nak()


_RDN_SHORT: Final = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "domainComponent": "DC",
}


def _format_subject(peercert: Any) -> str | None:
    if not isinstance(peercert, dict):
        return None
    subject = peercert.get("subject")
    if not subject:
        return None
    parts = [f"{_RDN_SHORT.get(str(k), str(k))}={v}" for rdn in subject for (k, v) in rdn]
    return ",".join(parts) or None


@dataclass(slots=True)
class _Connection:
    info: ConnectionInfo
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None
    #: True from the moment a read returned until the replies for it are written (handler in flight).
    busy: bool = False
    frames: int = 0
    acks: int = 0
    naks: int = 0
    handler_errors: int = 0
    silent: int = 0
    garbage_bytes: int = 0
    truncated: int = 0
    opened: float = field(default_factory=time.monotonic)


class MllpServer:
    """An MLLP listener handing each complete frame to ``handler`` and writing back its reply.

    ``max_connections`` bounds concurrent connections: one more is accepted and closed at once.
    ``idle_timeout`` closes a connection on which nothing arrived for that many seconds (time spent in
    the handler does not count). ``ssl`` enables TLS; configure the context with
    ``verify_mode = CERT_REQUIRED`` and a CA to demand client certificates (mutual TLS).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 2575,
        ssl: SSLContext | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float = 300.0,
        max_connections: int = 256,
        nak_builder: NakBuilder,
    ) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._ssl = ssl
        self._max_message_bytes = max_message_bytes
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._nak_builder = nak_builder
        self._server: asyncio.Server | None = None
        self._connections: dict[str, _Connection] = {}
        self._ids = itertools.count(1)
        self._instance = secrets.token_hex(3)
        self._closing = False
        self._stopped: asyncio.Event | None = None
        self._accepted = 0
        self._rejected = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start accepting connections. Raises ``OSError`` if the address cannot be bound."""
        if self._server is not None:
            raise RuntimeError("MllpServer already started")
        self._closing = False
        self._stopped = asyncio.Event()
        kwargs: dict[str, Any] = {}
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
            kwargs["ssl_handshake_timeout"] = min(60.0, self._idle_timeout)
        self._server = await asyncio.start_server(
            self._on_connect, host=self._host, port=self._requested_port, **kwargs
        )
        logger.info("mllp server listening port=%d tls=%s", self.port, self._ssl is not None)

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one chosen by the OS when constructed with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("MllpServer is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    async def serve_forever(self) -> None:
        """Start if never started, then wait until :meth:`stop` has completed (returns at once if it has)."""
        if self._stopped is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, close idle connections, give in-flight handlers up to ``grace`` seconds to
        finish and have their replies written, then close everything (cancelling handlers still running).
        """
        server = self._server
        if server is None or self._closing:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self._closing = True
        server.close()
        for conn in list(self._connections.values()):
            if not conn.busy and conn.task is not None:
                conn.task.cancel()
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                logger.warning("mllp stop: grace expired, cancelling %d connection(s)", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT * 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), _CLOSE_TIMEOUT)
        self._server = None
        logger.info("mllp server stopped accepted=%d rejected=%d", self._accepted, self._rejected)
        assert self._stopped is not None
        self._stopped.set()

    async def __aenter__(self) -> MllpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = f"{self._instance}-{next(self._ids)}"
        if self._closing or len(self._connections) >= self._max_connections:
            self._rejected += 1
            logger.warning(
                "mllp connection rejected conn=%s active=%d closing=%s",
                conn_id,
                len(self._connections),
                self._closing,
            )
            await _close_writer(writer)
            return
        self._accepted += 1
        conn = _Connection(info=_connection_info(conn_id, writer), writer=writer)
        conn.task = asyncio.current_task()
        self._connections[conn_id] = conn
        logger.info(
            "mllp connection open conn=%s tls=%s active=%d", conn_id, conn.info.tls, len(self._connections)
        )
        reason = "eof"
        try:
            reason = await self._serve(conn, reader)
        except asyncio.CancelledError:
            reason = "cancelled" if conn.busy else "stopped"
            # Closing below is the whole point of the cancellation; do not propagate it into the
            # streams machinery, which would log it as an unhandled error.
        except OSError as exc:
            reason = f"io-error:{type(exc).__name__}"
        finally:
            del self._connections[conn_id]
            logger.info(
                "mllp connection closed conn=%s reason=%s frames=%d acks=%d naks=%d handler_errors=%d "
                "garbage_bytes=%d truncated=%d seconds=%.1f",
                conn_id,
                reason,
                conn.frames,
                conn.acks,
                conn.naks,
                conn.handler_errors,
                conn.garbage_bytes,
                conn.truncated,
                time.monotonic() - conn.opened,
            )
            await _close_writer(writer)

    async def _serve(self, conn: _Connection, reader: asyncio.StreamReader) -> str:
        decoder = FrameDecoder(self._max_message_bytes)
        while not self._closing:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    data = await reader.read(_READ_CHUNK)
            except TimeoutError:
                return "idle-timeout"
            conn.busy = True  # set before any await: stop() must not cancel us from here on
            try:
                if not data:
                    for event in decoder.finish():
                        await self._on_event(conn, event)
                    return "eof"
                for event in decoder.feed(data):
                    await self._on_event(conn, event)
                    if self._closing:
                        return "stopped"
            finally:
                conn.busy = False
        return "stopped"

    async def _on_event(self, conn: _Connection, event: DecodeEvent) -> None:
        cid = conn.info.connection_id
        if isinstance(event, Frame):
            conn.frames += 1
            await self._reply_to_frame(conn, event.payload)
        elif isinstance(event, Oversize):
            logger.warning("mllp oversize frame conn=%s limit=%d", cid, event.limit)
            await self._send_nak(conn, NakReason.OVERSIZE, event.head)
        elif isinstance(event, BrokenFrame):
            logger.warning("mllp broken frame (EB without CR) conn=%s bytes=%d", cid, len(event.partial))
            await self._send_nak(conn, NakReason.BROKEN_FRAME, event.partial)
        elif isinstance(event, Garbage):
            conn.garbage_bytes += event.nbytes
            logger.warning("mllp bytes outside a frame skipped conn=%s bytes=%d", cid, event.nbytes)
        elif isinstance(event, TruncatedFrame):
            conn.truncated += 1
            logger.warning("mllp truncated frame discarded conn=%s bytes=%d", cid, len(event.partial))

    async def _reply_to_frame(self, conn: _Connection, payload: bytes) -> None:
        try:
            answer = await self._handler(payload, conn.info)
            if answer is None:
                # Enhanced acknowledgement mode can ask for no accept ACK (MSH-15 NE, or ER/SU when the
                # outcome does not qualify): the handler says so by returning None.
                conn.silent += 1
                return
            reply = frame(answer)
        except Exception as exc:  # noqa: BLE001 - any handler failure must become a NAK, never a hang-up
            conn.handler_errors += 1
            logger.error(
                "mllp handler failed conn=%s error=%s code=%s",
                conn.info.connection_id,
                type(exc).__name__,
                getattr(exc, "code", "-"),
            )
            await self._send_nak(conn, NakReason.INTERNAL_ERROR, payload)
            return
        conn.acks += 1
        await _write(conn.writer, reply)

    async def _send_nak(self, conn: _Connection, reason: NakReason, partial: bytes | None) -> None:
        try:
            reply = frame(self._nak_builder(reason, partial))
        except Exception as exc:  # noqa: BLE001 - a broken builder still owes the peer a reply
            logger.error(
                "mllp nak_builder failed conn=%s reason=%s error=%s",
                conn.info.connection_id,
                reason.value,
                type(exc).__name__,
            )
            reply = frame(fallback_nak())
        conn.naks += 1
        await _write(conn.writer, reply)


def _connection_info(conn_id: str, writer: asyncio.StreamWriter) -> ConnectionInfo:
    peer = writer.get_extra_info("peername")
    host, port = ("", 0)
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = str(peer[0]), int(peer[1])
    tls = writer.get_extra_info("ssl_object") is not None
    subject = _format_subject(writer.get_extra_info("peercert")) if tls else None
    return ConnectionInfo(
        connection_id=conn_id, peer_host=host, peer_port=port, tls=tls, peer_cert_subject=subject
    )


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)
