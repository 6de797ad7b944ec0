"""The MLLP listener with its server certificate and client CA from the downstream registry
(``TIE_MLLP_TLS``): real TLS on loopback with certificates generated in the test, the real ingest core
behind it (persist-before-ACK), rotation for new connections without a restart, refusals at the
handshake, nothing secret in logs or errors."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.config.settings import Settings, get_settings, reset_settings
from shared.credentials import selfsigned
from shared.credentials.broker import CredentialBroker
from shared.credentials.errors import CredentialExpired, CredentialNotFound
from shared.credentials.registry import parse_registry
from shared.errors import ConfigurationError
from shared.hl7v2 import parse_message
from shared.ingest.mllp_listener import build_mllp_server
from shared.mllp.client import MllpClient
from shared.mllp.errors import MllpConnectionError
from shared.wiring import build_container, set_container
from tests.unit.credentials.conftest import Clock, Store
from tests.unit.ingest.hl7_ingest_support import oru

SECRET_MARKERS = ("PRIVATE KEY", "BEGIN CERTIFICATE", "MII")
MUTUAL = Settings(TIE_MLLP_TLS="mutual")


def registry_document(trust: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "mllp-listener",
        "direction": "inbound",
        "transport": "mllp",
        "message_format": "HL7 v2",
        "format_version": "2.5.1",
        "auth": "mtls",
        "owner": "tests",
        "credential": {"kind": "certificate", "names": {"local": "server"}},
    }
    if trust:
        entry["trust"] = {"kind": "certificate", "names": {"local": "test-ca"}}
    return {"version": "1.0", "downstreams": [entry]}


class Peer:
    """TLS client contexts: one trusting the test CA (and presenting ``identity`` when given)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def context(self, identity: selfsigned.Issued | None = None, *, tls12: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.store.ca.cert_pem.decode("ascii"))
        if tls12:  # the server's verdict on the client certificate arrives inside the handshake
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        if identity is not None:
            path = self.store.root / "peer-identity.pem"
            path.write_bytes(identity.pem)
            context.load_cert_chain(str(path))
            path.unlink()
        return context


@pytest.fixture
def peer(store: Store) -> Peer:
    return Peer(store)


@pytest.fixture
def clock() -> Clock:
    """Starts now: the TLS library checks the peer's validity against the wall clock; the broker's own
    expiry checks use this clock, which the tests move."""
    return Clock(datetime.now(UTC))


@pytest.fixture
def mutual_container(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The embedded container configured as ``tie run`` would be: TIE_MLLP_TLS=mutual, the registry and
    the credentials folder from settings."""
    store.issue("server", cn="tie-listener")
    registry_file = tmp_path / "downstreams.json"
    registry_file.write_text(json.dumps(registry_document()))
    monkeypatch.setenv("TIE_MLLP_TLS", "mutual")
    monkeypatch.setenv("TIE_DOWNSTREAMS_FILE", str(registry_file))
    monkeypatch.setenv("TIE_CREDENTIALS_DIR", str(store.root))
    reset_settings()
    built = build_container(get_settings())
    set_container(built)
    return built


async def _send(port: int, context: ssl.SSLContext, message: bytes) -> bytes:
    client = MllpClient("127.0.0.1", port, ssl=context, server_hostname="localhost", connect_timeout=10)
    try:
        return await client.send(message, timeout=20)
    finally:
        await client.close()


def run_listener(
    container: Any,
    scenario: Any,
    *,
    credentials: CredentialBroker | None = None,
    settings: Settings | None = None,
) -> Any:
    async def main() -> Any:
        server = build_mllp_server(
            container.bus,
            container.records,
            settings or container.settings,
            host="127.0.0.1",
            port=0,
            credentials=credentials if credentials is not None else container.credentials,
        )
        await server.start()
        try:
            return await scenario(server)
        finally:
            await server.stop(grace=5)

    return asyncio.run(main())


def assert_no_secret(text: str) -> None:
    assert not any(marker in text for marker in SECRET_MARKERS), text[:200]


def test_mutual_tls_acks_a_trusted_client_and_refuses_others_at_the_handshake(
    mutual_container: Any, store: Store, peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    trusted = selfsigned.issue(store.ca, "PAS RGT01", now=store.clock())
    stranger_ca = selfsigned.make_ca("Another CA", now=store.clock())
    stranger = selfsigned.issue(stranger_ca, "PAS RGT01", now=store.clock())
    refused: list[tuple[str, str]] = []

    async def scenario(server: Any) -> bytes:
        ack = await _send(server.port, peer.context(trusted), oru("LAB0042"))
        assert server.accepted == 1
        for label, context in (
            ("no certificate", peer.context()),
            ("another CA", peer.context(stranger)),
        ):
            with pytest.raises(MllpConnectionError) as caught:  # TLS 1.3: refused before any reply
                await _send(server.port, context, oru("LAB0043"))
            refused.append((label, str(caught.value)))
        for label, context in (
            ("no certificate, TLS 1.2", peer.context(tls12=True)),
            ("another CA, TLS 1.2", peer.context(stranger, tls12=True)),
        ):
            # The handshake itself fails: the server's alert, or its reset when it closes first.
            with pytest.raises((ssl.SSLError, ConnectionResetError)) as handshake:
                await asyncio.open_connection(
                    "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
                )
            refused.append((label, str(handshake.value)))
        assert server.accepted == 1  # no refused peer ever reached the MLLP layer
        return ack

    ack = run_listener(mutual_container, scenario)
    assert parse_message(ack).get("MSA-1") == "AA"
    assert parse_message(ack).get("MSA-2") == "LAB0042"
    assert [label for label, _ in refused] == [
        "no certificate",
        "another CA",
        "no certificate, TLS 1.2",
        "another CA, TLS 1.2",
    ]
    for _, text in refused:
        assert_no_secret(text)
    assert_no_secret(caplog.text)
    for record in caplog.records:
        assert_no_secret(repr(record.__dict__))


def test_server_authentication_only_accepts_a_client_without_a_certificate(
    mutual_container: Any, store: Store, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIE_MLLP_TLS", "tls")
    reset_settings()
    container = build_container(get_settings())
    set_container(container)

    async def scenario(server: Any) -> bytes:
        return await _send(server.port, peer.context(), oru("LAB0050"))

    assert parse_message(run_listener(container, scenario)).get("MSA-1") == "AA"


@pytest.fixture
def broker(store: Store, clock: Clock) -> CredentialBroker:
    store.issue("server", days=30, cn="tie-listener-1")
    return CredentialBroker(
        parse_registry(registry_document()),
        store.provider,
        environment="local",
        clock=clock,
        refresh_seconds=60,
    )


async def _server_cn(port: int, context: ssl.SSLContext) -> tuple[str, asyncio.StreamWriter]:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    cert = writer.get_extra_info("peercert") or {}
    cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "")
    return cn, writer


def test_rotation_serves_the_new_certificate_to_new_connections_without_a_restart(
    container: Any,
    broker: CredentialBroker,
    store: Store,
    clock: Clock,
    peer: Peer,
) -> None:
    client = peer.context(selfsigned.issue(store.ca, "PAS RGT01", now=clock()))

    async def scenario(server: Any) -> list[str]:
        first, old = await _server_cn(server.port, client)
        store.issue("server", days=365, cn="tie-listener-2")  # rotated in the store
        cached, writer = await _server_cn(server.port, client)
        writer.close()
        clock.advance(timedelta(seconds=60))  # the next refresh sees the new version
        rotated, writer = await _server_cn(server.port, client)
        writer.close()
        assert not old.is_closing()  # the connection opened before the rotation is untouched
        old.close()
        ack = await _send(server.port, client, oru("LAB0060"))
        assert parse_message(ack).get("MSA-1") == "AA"
        return [first, cached, rotated]

    assert run_listener(container, scenario, credentials=broker, settings=MUTUAL) == [
        "tie-listener-1",
        "tie-listener-1",
        "tie-listener-2",
    ]


def test_an_expired_listener_certificate_refuses_new_handshakes_naming_only_the_credential(
    container: Any,
    broker: CredentialBroker,
    store: Store,
    clock: Clock,
    peer: Peer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = peer.context(selfsigned.issue(store.ca, "PAS RGT01", now=clock(), days=400))

    async def scenario(server: Any) -> None:
        cn, writer = await _server_cn(server.port, client)
        assert cn == "tie-listener-1"
        writer.close()
        clock.advance(timedelta(days=31))
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await _server_cn(server.port, client)

    with caplog.at_level(logging.WARNING, logger="tie.mllp"):
        run_listener(container, scenario, credentials=broker, settings=MUTUAL)
    [refusal] = [r for r in caplog.records if r.name == "tie.mllp"]
    assert refusal.getMessage() == "mllp tls refused: no usable server certificate"
    assert refusal.__dict__["error_code"] == "credential-expired"
    assert_no_secret(caplog.text)
    with pytest.raises(CredentialExpired):  # and a restart would not start with it either
        build_mllp_server(None, None, MUTUAL, port=0, credentials=broker)  # type: ignore[arg-type]


def test_mutual_needs_a_client_ca_and_the_registry(store: Store, clock: Clock) -> None:
    store.issue("server", cn="tie-listener")
    without_ca = CredentialBroker(
        parse_registry(registry_document(trust=False)), store.provider, environment="local", clock=clock
    )
    with pytest.raises(CredentialNotFound, match="no client CA"):
        build_mllp_server(None, None, MUTUAL, port=0, credentials=without_ca)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs the credential registry"):
        build_mllp_server(None, None, Settings(TIE_MLLP_TLS="tls"), port=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leave TIE_MLLP_TLS_CERT_FILE"):
        Settings(TIE_MLLP_TLS="mutual", TIE_MLLP_TLS_CERT_FILE="/tmp/x.pem")
