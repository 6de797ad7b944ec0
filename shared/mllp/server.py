"""Asyncio MLLP listener.

Azure Functions cannot accept raw TCP, so this server runs next to the local host (in Azure, on Container
Apps). It knows nothing about HL7: frames go to an injected ``handler``, framing faults to ``nak_builder``;
strictly request/response per connection. Replies, admission and timeouts: ``docs/mllp-listener.md``
(settings: ``docs/hardening.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any, Final

from opentelemetry import metrics as otel_metrics

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
#: At most one "connections refused" log line per reason in this many seconds (a flood must not flood logs).
REFUSAL_LOG_INTERVAL: Final = 10.0
#: OpenTelemetry counter of refused connections (dimension ``reason``).
REFUSED_METRIC: Final = "tie.mllp.connections_refused"


class Refusal(enum.Enum):
    """Why a new connection was closed at once."""

    CLOSING = "closing"
    #: Every connection slot is taken.
    FULL = "full"
    #: Only slots reserved for trusted senders are left.
    RESERVED = "reserved"
    #: The peer address already holds ``max_connections_per_source`` connections.
    PER_SOURCE = "per-source"


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
    #: The common name(s) of a verified TLS client certificate's subject (empty without one).
    peer_cert_common_names: tuple[str, ...] = ()


#: Returns the reply payload, or ``None`` for "send no reply" (enhanced-mode NE/ER/SU accept ACKs).
Handler = Callable[[bytes, ConnectionInfo], Awaitable[bytes | None]]
NakBuilder = Callable[[NakReason, bytes | None], bytes]
#: Says whether a connection comes from an allow-listed sender (address or client certificate).
TrustRule = Callable[[ConnectionInfo], bool]
#: Told about every refused connection (the default adds 1 to :data:`REFUSED_METRIC`).
RefusalSink = Callable[[Refusal], None]


def otel_refusal_sink() -> RefusalSink:
    """A :data:`RefusalSink` counting on the OpenTelemetry counter :data:`REFUSED_METRIC` (a no-op until
    telemetry is configured)."""
    counter = otel_metrics.get_meter("tie").create_counter(
        REFUSED_METRIC, unit="{connection}", description="MLLP connections closed at once (caps)"
    )

    def add(reason: Refusal) -> None:
        counter.add(1, {"reason": reason.value})

    return add


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


def _common_names(peercert: Any) -> tuple[str, ...]:
    if not isinstance(peercert, dict):
        return ()
    return tuple(str(v) for rdn in peercert.get("subject") or () for (k, v) in rdn if k == "commonName")


@dataclass(slots=True)
class _Connection:
    info: ConnectionInfo
    writer: asyncio.StreamWriter
    trusted: bool = False
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

    ``ssl`` enables TLS; configure the context with ``verify_mode = CERT_REQUIRED`` and a CA to demand
    client certificates (mutual TLS). Admission caps and timeouts are described in the module docs; the
    constructor's defaults are permissive (no per-source caps, one timeout) for tests and benchmarks, and
    :func:`shared.ingest.mllp_listener.build_mllp_server` wires the hardened values from settings.
    ``stop_grace`` is what :meth:`stop` allows in-flight handlers when called without a grace;
    ``on_stopped`` runs once :meth:`stop` has closed everything (e.g. to shut a worker pool down).
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
        first_frame_timeout: float | None = None,
        max_connections: int = 256,
        max_connections_per_source: int | None = None,
        reserved_connections: int = 0,
        trusted: TrustRule | None = None,
        max_handlers_per_source: int | None = None,
        stop_grace: float = 10.0,
        on_refused: RefusalSink | None = None,
        on_stopped: Callable[[], None] | None = None,
        nak_builder: NakBuilder,
    ) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        if idle_timeout <= 0 or (first_frame_timeout is not None and first_frame_timeout <= 0):
            raise ValueError("timeouts must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if max_connections_per_source is not None and max_connections_per_source < 1:
            raise ValueError("max_connections_per_source must be at least 1")
        if not 0 <= reserved_connections < max_connections:
            raise ValueError("reserved_connections must be at least 0 and below max_connections")
        if max_handlers_per_source is not None and max_handlers_per_source < 1:
            raise ValueError("max_handlers_per_source must be at least 1")
        if stop_grace < 0:
            raise ValueError("stop_grace must not be negative")
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._ssl = ssl
        self._max_message_bytes = max_message_bytes
        self._idle_timeout = idle_timeout
        self._first_frame_timeout = first_frame_timeout if first_frame_timeout is not None else idle_timeout
        self._max_connections = max_connections
        self._max_per_source = max_connections_per_source
        # Room is kept for trusted senders only when there is a way to recognise them.
        self._reserved = reserved_connections if trusted is not None else 0
        self._trusted = trusted
        self._max_handlers_per_source = max_handlers_per_source
        self._stop_grace = stop_grace
        self._on_refused = on_refused if on_refused is not None else otel_refusal_sink()
        self._on_stopped = on_stopped
        self._nak_builder = nak_builder
        self._server: asyncio.Server | None = None
        self._connections: dict[str, _Connection] = {}
        self._per_source: Counter[str] = Counter()
        self._handler_slots: dict[str, asyncio.Semaphore] = {}
        self._ids = itertools.count(1)
        self._instance = secrets.token_hex(3)
        self._closing = False
        self._stopped: asyncio.Event | None = None
        self._accepted = 0
        #: Refused connections by reason, and closed connections by close reason (for tests, health).
        self.refusals: Counter[Refusal] = Counter()
        self.closes: Counter[str] = Counter()
        self._refusal_log: dict[Refusal, tuple[float, int]] = {}

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
            # The handshake counts towards the first frame: a peer that never finishes it is dropped.
            kwargs["ssl_handshake_timeout"] = min(60.0, self._first_frame_timeout)
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

    @property
    def accepted(self) -> int:
        return self._accepted

    async def serve_forever(self) -> None:
        """Start if never started, then wait until :meth:`stop` has completed (returns at once if it has)."""
        if self._stopped is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, close idle connections, give in-flight handlers up to ``grace`` seconds
        (default: ``stop_grace``) to finish and have their replies written, then close everything
        (cancelling handlers still running). Returns within about ``grace`` + 6 seconds.
        """
        grace = self._stop_grace if grace is None else grace
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
        logger.info("mllp server stopped accepted=%d refused=%d", self._accepted, sum(self.refusals.values()))
        if self._on_stopped is not None:
            self._on_stopped()
        assert self._stopped is not None
        self._stopped.set()

    async def __aenter__(self) -> MllpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ admission

    def _admit(self, info: ConnectionInfo, trusted: bool) -> Refusal | None:
        """Why this connection must be refused, or ``None`` to accept it (no await: no races)."""
        if self._closing:
            return Refusal.CLOSING
        active = len(self._connections)
        if active >= self._max_connections:
            return Refusal.FULL
        if trusted:
            return None
        if active >= self._max_connections - self._reserved:
            return Refusal.RESERVED
        if self._max_per_source is not None and self._per_source[info.peer_host] >= self._max_per_source:
            return Refusal.PER_SOURCE
        return None

    def _is_trusted(self, info: ConnectionInfo) -> bool:
        if self._trusted is None:
            return False
        try:
            return bool(self._trusted(info))
        except (ValueError, TypeError) as exc:  # a broken rule must not take the listener down
            logger.error("mllp trust rule failed error=%s", type(exc).__name__)
            return False

    def _refused(self, reason: Refusal) -> None:
        self.refusals[reason] += 1
        self._on_refused(reason)
        now = time.monotonic()
        last, suppressed = self._refusal_log.get(reason, (float("-inf"), 0))
        if now - last < REFUSAL_LOG_INTERVAL:
            self._refusal_log[reason] = (last, suppressed + 1)
            return
        self._refusal_log[reason] = (now, 0)
        logger.warning(
            "mllp connections refused reason=%s count=%d active=%d max=%d",
            reason.value,
            suppressed + 1,
            len(self._connections),
            self._max_connections,
        )

    # ------------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = f"{self._instance}-{next(self._ids)}"
        info = _connection_info(conn_id, writer)
        trusted = self._is_trusted(info)
        refusal = self._admit(info, trusted)
        if refusal is not None:
            self._refused(refusal)
            _abort(writer)
            return
        self._accepted += 1
        conn = _Connection(info=info, writer=writer, trusted=trusted)
        conn.task = asyncio.current_task()
        self._connections[conn_id] = conn
        self._per_source[info.peer_host] += 1
        logger.info(
            "mllp connection open conn=%s tls=%s trusted=%s active=%d",
            conn_id,
            info.tls,
            trusted,
            len(self._connections),
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
            self._per_source[info.peer_host] -= 1
            if self._per_source[info.peer_host] <= 0:
                del self._per_source[info.peer_host]
                self._handler_slots.pop(info.peer_host, None)
            self.closes[reason.split(":", 1)[0]] += 1
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
        loop = asyncio.get_running_loop()
        first = self._idle_timeout if conn.trusted else self._first_frame_timeout
        # A deadline, not an inactivity timer: only a reply (a complete exchange) moves it.
        deadline = loop.time() + first
        exchanges = 0
        decoder = FrameDecoder(self._max_message_bytes)
        while not self._closing:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await reader.read(_READ_CHUNK)
            except TimeoutError:
                return "idle-timeout" if exchanges else "first-frame-timeout"
            conn.busy = True  # set before any await: stop() must not cancel us from here on
            try:
                if not data:
                    for event in decoder.finish():
                        await self._on_event(conn, event)
                    return "eof"
                for event in decoder.feed(data):
                    if await self._on_event(conn, event):
                        exchanges += 1
                        deadline = loop.time() + self._idle_timeout
                    if self._closing:
                        return "stopped"
            finally:
                conn.busy = False
        return "stopped"

    async def _on_event(self, conn: _Connection, event: DecodeEvent) -> bool:
        """Handle one decoder event; True when it was answered (or deliberately left unanswered)."""
        cid = conn.info.connection_id
        if isinstance(event, Frame):
            conn.frames += 1
            await self._reply_to_frame(conn, event.payload)
            return True
        if isinstance(event, Oversize):
            logger.warning("mllp oversize frame conn=%s limit=%d", cid, event.limit)
            await self._send_nak(conn, NakReason.OVERSIZE, event.head)
            return True
        if isinstance(event, BrokenFrame):
            logger.warning("mllp broken frame (EB without CR) conn=%s bytes=%d", cid, len(event.partial))
            await self._send_nak(conn, NakReason.BROKEN_FRAME, event.partial)
            return True
        if isinstance(event, Garbage):
            conn.garbage_bytes += event.nbytes
            logger.warning("mllp bytes outside a frame skipped conn=%s bytes=%d", cid, event.nbytes)
        elif isinstance(event, TruncatedFrame):
            conn.truncated += 1
            logger.warning("mllp truncated frame discarded conn=%s bytes=%d", cid, len(event.partial))
        return False

    @contextlib.asynccontextmanager
    async def _handler_slot(self, conn: _Connection) -> AsyncIterator[None]:
        """Hold one of the peer address's ``max_handlers_per_source`` handler slots."""
        if self._max_handlers_per_source is None:
            yield
            return
        source = conn.info.peer_host
        slot = self._handler_slots.get(source)
        if slot is None:
            slot = self._handler_slots[source] = asyncio.Semaphore(self._max_handlers_per_source)
        async with slot:
            yield

    async def _reply_to_frame(self, conn: _Connection, payload: bytes) -> None:
        try:
            async with self._handler_slot(conn):
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
    peercert = writer.get_extra_info("peercert") if tls else None
    return ConnectionInfo(
        connection_id=conn_id,
        peer_host=host,
        peer_port=port,
        tls=tls,
        peer_cert_subject=_format_subject(peercert),
        peer_cert_common_names=_common_names(peercert),
    )


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop a refused connection at once (no lingering close handshake to wait for)."""
    writer.transport.abort()


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)
