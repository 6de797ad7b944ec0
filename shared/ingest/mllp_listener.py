"""The MLLP listener wired to the HL7 v2 ingest core (persist-before-ACK, same path as HTTP).

Runs beside the functions host (``tie run``), not as a Function: Functions cannot accept raw TCP. Every
frame gets its own correlation ID; the core (parse, validate, persist) runs on a bounded pool of
``TIE_MLLP_WORKERS`` daemon threads (:class:`~shared.mllp.workers.WorkerPool`), never on the event loop,
and one peer address may occupy at most half of them, so slow storage or a sender of heavy messages
never stalls other senders. Framing faults get an AR built from whatever MSH could be read.

Admission (docs/hardening.md, section A): ``TIE_MLLP_MAX_CONNECTIONS`` in all, of which
``TIE_MLLP_RESERVED_CONNECTIONS`` only for allow-listed senders (``TIE_MLLP_TRUSTED_CIDRS``, or with
mutual TLS ``TIE_MLLP_TRUSTED_CLIENT_CNS``), ``TIE_MLLP_MAX_CONNECTIONS_PER_SOURCE`` per other peer
address, and deadlines for the first frame and between frames. :meth:`MllpServer.stop` drains for
``TIE_MLLP_DRAIN_SECONDS`` and then shuts the worker pool down without waiting for stuck work.

TLS: ``TIE_MLLP_TLS=tls|mutual`` takes the server certificate (and for ``mutual`` the client CA) from the
downstream registry entry ``mllp-listener`` through the credential broker; each new connection gets the
current certificate version (docs/credentials.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from shared.config.settings import Settings
from shared.errors import ConfigurationError, TieError
from shared.hl7v2 import Hl7ParseError
from shared.hl7v2.ack import build_ack_for_unparseable
from shared.ingest.hl7v2 import Hl7Ingest, oversize_ack
from shared.messaging.ports import MessageBus
from shared.mllp.server import ConnectionInfo, MllpServer, NakReason, TrustRule
from shared.mllp.workers import WorkerPool
from shared.observability.correlation import correlation_scope, new_correlation_id
from shared.storage.ports import RecordStore

if TYPE_CHECKING:
    from shared.credentials.broker import CredentialBroker

_log = logging.getLogger("tie.mllp")

#: Framing faults other than oversize: (HL7 table 0357 code, text). Only a handler failure is ``207``.
_NAK_TEXT = {
    NakReason.BROKEN_FRAME: ("100", "Malformed MLLP frame (end block not followed by carriage return)"),
    NakReason.INTERNAL_ERROR: ("207", "Application internal error; resend later"),
}


def build_nak(reason: NakReason, partial: bytes | None) -> bytes:
    """The NAK for a frame the ingest core never saw. An oversize frame gets the answer ``POST
    /api/hl7v2`` gives an oversize body (:func:`~shared.ingest.hl7v2.oversize_ack`: ERR ``102``). The
    NAK's MSH-10 is a new correlation ID, logged with the reason so the sender can quote it."""
    correlation_id = new_correlation_id()
    _log.warning("mllp nak", extra={"correlation_id": correlation_id, "reason": reason.value})
    if reason is NakReason.OVERSIZE:
        return oversize_ack(partial or b"", correlation_id=correlation_id)
    code, text = _NAK_TEXT.get(reason, ("207", "Application internal error"))
    error = Hl7ParseError(text, error_code=code)
    return build_ack_for_unparseable(partial or b"", error, control_id=correlation_id)


#: The registry entry holding the listener's server certificate and client CA (``TIE_MLLP_TLS``).
LISTENER_ENTRY = "mllp-listener"


class ServerTlsSource(Protocol):
    """The current server context (:class:`shared.credentials.broker.ServerTls`): rebuilt when the store
    holds a new certificate version; raises a credential error when the certificate cannot be used."""

    def context(self) -> ssl.SSLContext: ...


def rotating_context(source: ServerTlsSource) -> ssl.SSLContext:
    """A server context that hands every new connection the source's *current* context (rotation without a
    restart; open connections keep their session). It is swapped in from the handshake's server-name
    callback, which OpenSSL calls for every ClientHello (with or without SNI). A certificate that can no
    longer be used (expired, store unreadable with nothing cached) refuses the handshake; the log line
    names the credential and its error code only."""
    base = source.context()

    def pick(
        connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        del server_name
        try:
            current = source.context()
        except TieError as exc:
            _log.warning("mllp tls refused: no usable server certificate", extra={"error_code": exc.code})
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        if current is not base:
            connection.context = current
        return None

    base.sni_callback = pick
    return base


def server_tls(settings: Settings, credentials: CredentialBroker | None) -> ssl.SSLContext | None:
    """The listener's TLS: ``TIE_MLLP_TLS=tls|mutual`` from the registry entry ``mllp-listener`` (``mutual``
    needs its trust CA: clients must present a certificate it issued); ``off``: the legacy PEM files of
    :func:`tls_context`, or plain TCP."""
    if settings.mllp_tls == "off":
        return tls_context(settings)
    if credentials is None:
        raise ConfigurationError(f"TIE_MLLP_TLS={settings.mllp_tls} needs the credential registry")
    source = credentials.server_tls(LISTENER_ENTRY, client_auth=settings.mllp_tls == "mutual")
    return rotating_context(source)


def tls_label(settings: Settings) -> str:
    """How the listener talks, for start-up banners (no credential names)."""
    if settings.mllp_tls == "mutual":
        return "mutual TLS"
    if settings.mllp_tls == "tls":
        return "TLS"
    if settings.mllp_tls_cert_file:
        return "mutual TLS (files)" if settings.mllp_tls_client_ca_file else "TLS (files)"
    return "plain TCP"


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Server TLS from PEM files in settings (legacy; ``TIE_MLLP_TLS`` takes it from the registry)."""
    if not settings.mllp_tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(
        str(Path(settings.mllp_tls_cert_file)),
        str(Path(settings.mllp_tls_key_file)) if settings.mllp_tls_key_file else None,
    )
    if settings.mllp_tls_client_ca_file:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(Path(settings.mllp_tls_client_ca_file)))
    return context


def trust_rule(settings: Settings) -> TrustRule | None:
    """Allow-listed senders: peer address in ``TIE_MLLP_TRUSTED_CIDRS``, or a verified client certificate
    whose common name is in ``TIE_MLLP_TRUSTED_CLIENT_CNS``. ``None`` when neither is configured."""
    networks = settings.mllp_trusted_networks
    names = settings.mllp_trusted_client_cn_set
    if not networks and not names:
        return None

    def trusted(info: ConnectionInfo) -> bool:
        if names and info.tls and any(cn in names for cn in info.peer_cert_common_names):
            return True
        if not networks:
            return False
        try:
            address = ipaddress.ip_address(info.peer_host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in networks)

    return trusted


def build_mllp_server(
    bus: MessageBus,
    records: RecordStore,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    credentials: CredentialBroker | None = None,
) -> MllpServer:
    """The listener over the ingest core; ``credentials``: the broker ``TIE_MLLP_TLS`` takes the server
    certificate from (a credential error raises here, before anything listens)."""
    context = server_tls(settings, credentials)
    ingest = Hl7Ingest(bus, records)
    pool = WorkerPool(settings.mllp_workers)

    def handle_sync(payload: bytes, connection_id: str) -> bytes | None:
        with correlation_scope(new_correlation_id()) as correlation_id:
            return ingest.handle(payload, source=f"mllp:{connection_id}", correlation_id=correlation_id).ack

    async def handler(payload: bytes, info: ConnectionInfo) -> bytes | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, handle_sync, payload, info.connection_id)

    try:
        return MllpServer(
            handler,
            host=host or settings.mllp_host,
            port=settings.mllp_port if port is None else port,
            ssl=context,
            max_message_bytes=settings.mllp_max_message_bytes,
            idle_timeout=settings.mllp_idle_timeout_seconds,
            first_frame_timeout=settings.mllp_first_frame_timeout_seconds,
            max_connections=settings.mllp_max_connections,
            max_connections_per_source=settings.mllp_max_connections_per_source,
            reserved_connections=settings.mllp_reserved_connections,
            trusted=trust_rule(settings),
            max_handlers_per_source=max(1, settings.mllp_workers // 2),
            stop_grace=settings.mllp_drain_seconds,
            on_stopped=lambda: pool.shutdown(wait=False, cancel_futures=True),
            nak_builder=build_nak,
        )
    except (ValueError, OSError):
        pool.shutdown(wait=False)
        raise


async def start_mllp_listener(
    bus: MessageBus,
    records: RecordStore,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    credentials: CredentialBroker | None = None,
) -> MllpServer:
    server = build_mllp_server(bus, records, settings, host=host, port=port, credentials=credentials)
    await server.start()
    return server
