"""The MLLP listener wired to the HL7 v2 ingest core (persist-before-ACK, same path as HTTP).

Runs beside the functions host (``tie run``), not as a Function: Functions cannot accept raw TCP. Every
frame gets its own correlation ID; the core runs in a worker thread so slow storage never blocks other
connections' I/O. Framing faults get an AR built from whatever MSH could be read.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from shared.config.settings import Settings
from shared.hl7v2 import Hl7ParseError
from shared.hl7v2.ack import build_ack_for_unparseable
from shared.messaging.ports import MessageBus
from shared.mllp.server import ConnectionInfo, MllpServer, NakReason
from shared.observability.correlation import correlation_scope, new_correlation_id
from shared.pipeline.hl7v2 import Hl7Ingest
from shared.storage.ports import RecordStore

_NAK_TEXT = {
    NakReason.OVERSIZE: ("207", "Message exceeds the maximum size accepted by this listener"),
    NakReason.BROKEN_FRAME: ("100", "Malformed MLLP frame (end block not followed by carriage return)"),
    NakReason.INTERNAL_ERROR: ("207", "Application internal error; resend later"),
}


def build_nak(reason: NakReason, partial: bytes | None) -> bytes:
    code, text = _NAK_TEXT.get(reason, ("207", "Application internal error"))
    return build_ack_for_unparseable(partial or b"", Hl7ParseError(text, error_code=code))


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Server TLS from PEM files in settings (Key Vault-sourced certificates arrive as files/secrets)."""
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


def build_mllp_server(
    bus: MessageBus,
    records: RecordStore,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
) -> MllpServer:
    ingest = Hl7Ingest(bus, records)

    def handle_sync(payload: bytes, connection_id: str) -> bytes | None:
        with correlation_scope(new_correlation_id()) as correlation_id:
            return ingest.handle(payload, source=f"mllp:{connection_id}", correlation_id=correlation_id).ack

    async def handler(payload: bytes, info: ConnectionInfo) -> bytes | None:
        return await asyncio.to_thread(handle_sync, payload, info.connection_id)

    return MllpServer(
        handler,
        host=host or settings.mllp_host,
        port=settings.mllp_port if port is None else port,
        ssl=tls_context(settings),
        max_message_bytes=settings.mllp_max_message_bytes,
        idle_timeout=settings.mllp_idle_timeout_seconds,
        nak_builder=build_nak,
    )


async def start_mllp_listener(
    bus: MessageBus,
    records: RecordStore,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
) -> MllpServer:
    server = build_mllp_server(bus, records, settings, host=host, port=port)
    await server.start()
    return server
