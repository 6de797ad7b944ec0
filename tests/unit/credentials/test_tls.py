"""Real TLS on loopback with certificates generated in the test: mutual TLS for MLLP, rotation without a
restart, expiry and missing certificates failing the call with a clear error, per-call credential audit."""

from __future__ import annotations

import asyncio
import json
import ssl
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.trail import AuditTrail
from shared.credentials import pem
from shared.credentials.audit import RecordingCredentialAudit, TrailCredentialAudit
from shared.credentials.broker import CredentialBroker
from shared.credentials.errors import (
    CredentialExpired,
    CredentialNotFound,
    CredentialUnavailable,
)
from shared.credentials.model import CertificateInfo, CertificateMaterial, SecretValue
from shared.credentials.registry import parse_registry
from shared.errors import PermanentError, TransientError
from shared.mllp.client import MllpClient
from shared.mllp.errors import MllpConnectionError
from shared.mllp.framing import Frame, FrameDecoder, frame
from shared.observability.correlation import correlation_scope
from tests.unit.credentials.conftest import Clock, Store

ACK = b"MSH|^~\\&|PAS|T|TIE|T|20260601||ACK|1|P|2.5.1\rMSA|AA|1"


def registry() -> Any:
    def cert(name: str) -> dict[str, Any]:
        return {"kind": "certificate", "names": {"local": name}}

    common = {"message_format": "HL7 v2", "format_version": "2.5.1", "owner": "tests", "transport": "mllp"}
    return parse_registry(
        {
            "version": "1.0",
            "downstreams": [
                {
                    **common,
                    "name": "listener",
                    "direction": "inbound",
                    "auth": "mtls",
                    "credential": cert("server"),
                    "trust": cert("test-ca"),
                },
                {
                    **common,
                    "name": "pas",
                    "direction": "outbound",
                    "auth": "mtls",
                    "credential": cert("client"),
                    "trust": cert("test-ca"),
                },
                {
                    **common,
                    "name": "anon",
                    "direction": "outbound",
                    "auth": "network-only",
                    "trust": cert("test-ca"),
                },
                {
                    **common,
                    "name": "ghost",
                    "direction": "outbound",
                    "auth": "mtls",
                    "credential": cert("not-there"),
                    "trust": cert("test-ca"),
                },
            ],
        }
    )


class Listener:
    """An MLLP responder requiring client certificates (server TLS from the broker); records the client
    certificate common name of each message."""

    def __init__(self, broker: CredentialBroker) -> None:
        self.source = broker.server_tls("listener")
        self.peers: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert") or {}
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "")
        decoder = FrameDecoder(1_000_000)
        try:
            while chunk := await reader.read(65536):
                for event in decoder.feed(chunk):
                    if isinstance(event, Frame):
                        self.peers.append(cn)
                        writer.write(frame(ACK))
                        await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def start(self) -> tuple[asyncio.Server, int]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.source.context())
        return server, server.sockets[0].getsockname()[1]


@pytest.fixture
def broker(store: Store, clock: Clock) -> CredentialBroker:
    store.issue("server", days=365, cn="tie-listener")
    store.issue("client", days=365, cn="pas-client-1")
    return CredentialBroker(
        registry(),
        store.provider,
        environment="local",
        audit=RecordingCredentialAudit(),
        clock=clock,
        refresh_seconds=60,
    )


def send(
    broker: CredentialBroker, client_for: str, *, messages: int = 1, listener: Listener | None = None
) -> Listener:
    listener = listener or Listener(broker)

    async def run() -> None:
        server, port = await listener.start()
        try:
            client = MllpClient("127.0.0.1", port, tls=broker.client_tls(client_for), connect_timeout=5)
            try:
                for _ in range(messages):
                    assert await client.send(b"MSH|^~\\&|TIE|T|PAS|T|1||ADT^A01|1|P|2.5.1", timeout=5) == ACK
            finally:
                await client.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(run())
    return listener


def test_mutual_tls_accepts_the_registered_client_certificate_and_audits_each_call(
    broker: CredentialBroker, store: Store
) -> None:
    with correlation_scope("corr-123"):
        listener = send(broker, "pas", messages=2)
    assert listener.peers == ["pas-client-1", "pas-client-1"]
    audit = broker.audit
    assert isinstance(audit, RecordingCredentialAudit)
    client_info = store.provider.certificate_info("client")
    assert [(u.downstream, u.operation, u.correlation_id) for u in audit.uses] == [
        ("pas", "mllp-send", "corr-123")
    ] * 2
    assert {u.identity for u in audit.uses} == {
        audit.uses[0].identity.__class__("certificate", "client", client_info.version, client_info.thumbprint)
    }


def test_a_listener_requiring_client_certificates_refuses_a_client_without_one(
    broker: CredentialBroker,
) -> None:
    with pytest.raises(MllpConnectionError):
        send(broker, "anon")


def test_rotation_swaps_the_client_certificate_without_a_restart(
    broker: CredentialBroker, store: Store, clock: Clock
) -> None:
    source = broker.client_tls("pas")
    first = source.context()
    store.issue("client", days=365, cn="pas-client-2")  # rotated in the store
    assert source.context() is first  # within the refresh interval: cached
    clock.advance(timedelta(seconds=60))
    assert source.context() is not first
    assert send(broker, "pas").peers == ["pas-client-2"]
    rotated = store.provider.certificate_info("client")
    assert source.identity().thumbprint == rotated.thumbprint


def test_rotation_swaps_the_listener_certificate_for_new_connections(
    broker: CredentialBroker, store: Store, clock: Clock
) -> None:
    listener = Listener(broker)
    first = listener.source.context()
    store.issue("server", days=365, cn="tie-listener-2")
    clock.advance(timedelta(minutes=5))
    assert listener.source.context() is not first
    assert send(broker, "pas", listener=listener).peers == ["pas-client-1"]


SECRET_MARKERS = ("PRIVATE KEY", "BEGIN CERTIFICATE", "MII")


def assert_no_secret(exc: BaseException) -> None:
    text = str(exc) + repr(exc.args)
    assert not any(marker in text for marker in SECRET_MARKERS)


def test_an_expired_client_certificate_fails_the_call_permanently_without_secret_material(
    broker: CredentialBroker, store: Store, clock: Clock
) -> None:
    store.issue("server", days=1000, cn="tie-listener")  # the listener outlives the client certificate
    source = broker.client_tls("pas")
    source.context()  # cached while valid
    version = store.provider.certificate_info("client").version
    clock.advance(timedelta(days=366))
    with pytest.raises(CredentialExpired) as caught:
        send(broker, "pas")
    assert isinstance(caught.value, PermanentError)
    assert str(caught.value) == f"certificate 'client' (version {version}) is expired"
    assert_no_secret(caught.value)
    with pytest.raises(CredentialExpired):
        source.context()  # the cached context is refused too
    assert broker.audit is not None and broker.audit.uses == []  # type: ignore[attr-defined]


def test_a_certificate_issued_already_expired_is_refused(broker: CredentialBroker, store: Store) -> None:
    store.issue("client", days=-1)
    with pytest.raises(CredentialExpired) as caught:
        broker.client_tls("pas").context()
    assert_no_secret(caught.value)


def test_a_missing_certificate_fails_the_call_as_a_configuration_error(broker: CredentialBroker) -> None:
    with pytest.raises(CredentialNotFound) as caught:
        send(broker, "ghost")
    assert isinstance(caught.value, PermanentError) and not isinstance(caught.value, TransientError)
    assert str(caught.value) == "credential 'not-there' not found in the credential store"
    with pytest.raises(CredentialNotFound):
        broker.client_tls("nobody")


class FlakyProvider:
    """Delegates to the local provider until ``down`` is set: then the store is unreachable."""

    source = "local"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False

    def _check(self, name: str) -> None:
        if self.down:
            raise CredentialUnavailable(name, "store unreachable (test)")

    def certificate(self, name: str) -> CertificateMaterial:
        self._check(name)
        return self.inner.certificate(name)  # type: ignore[no-any-return]

    def certificate_info(self, name: str) -> CertificateInfo:
        self._check(name)
        return self.inner.certificate_info(name)  # type: ignore[no-any-return]

    def list_certificates(self) -> list[CertificateInfo]:
        return self.inner.list_certificates()  # type: ignore[no-any-return]

    def secret(self, name: str) -> SecretValue:
        return self.inner.secret(name)  # type: ignore[no-any-return]

    def close(self) -> None:
        return None


def test_an_unreachable_store_is_transient_and_a_cached_credential_keeps_working(
    store: Store, clock: Clock
) -> None:
    store.issue("client", days=365)
    provider = FlakyProvider(store.provider)
    broker = CredentialBroker(registry(), provider, environment="local", clock=clock, refresh_seconds=60)
    cold = broker.client_tls("pas")
    warm = broker.client_tls("pas")
    context = warm.context()
    provider.down = True
    clock.advance(timedelta(minutes=2))
    assert warm.context() is context
    with pytest.raises(CredentialUnavailable) as caught:
        cold.context()
    assert isinstance(caught.value, TransientError)


def test_the_audit_trail_records_name_version_and_thumbprint_never_the_key(
    tmp_path: Path, store: Store, clock: Clock
) -> None:
    store.issue("server", days=365)
    store.issue("client", days=365)
    log = SqliteAuditLog(tmp_path / "audit.sqlite3", key=b"k" * 32)
    broker = CredentialBroker(
        registry(),
        store.provider,
        environment="local",
        audit=TrailCredentialAudit(AuditTrail(log)),
        clock=clock,
    )
    with correlation_scope("corr-9"):
        send(broker, "pas")
    [entry] = list(log.entries())
    body = json.loads(entry.body)
    info = store.provider.certificate_info("client")
    assert body["correlation_id"] == "corr-9"
    assert body["interaction"] == "credential-use"
    assert body["entities"] == [{"type": "Endpoint", "id": "pas"}]
    assert body["detail"] == {
        "downstream": "pas",
        "operation": "mllp-send",
        "credential_kind": "certificate",
        "credential_name": "client",
        "credential_version": info.version,
        "credential_thumbprint": info.thumbprint,
    }
    assert not any(m in entry.body for m in SECRET_MARKERS)
    log.close()


def test_contexts_are_never_built_from_a_certificate_outside_its_validity(store: Store, clock: Clock) -> None:
    store.issue("client", days=-1)
    material = store.provider.certificate("client")
    with pytest.raises(CredentialExpired):
        pem.client_context(material, None, now=clock())
    with pytest.raises(CredentialExpired):
        pem.server_context(material, None, now=clock())
    store.issue("client", days=30)
    with pytest.raises(CredentialExpired, match="not yet valid"):
        pem.client_context(store.provider.certificate("client"), None, now=clock() - timedelta(days=2))
    context = pem.client_context(store.provider.certificate("client"), None, now=clock())
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


class BrokenAudit:
    def credential_used(self, use: Any) -> None:
        raise AuditUnavailable("audit log down")


class AuditUnavailable(TransientError):
    code = "audit-unavailable"


def test_a_call_whose_credential_cannot_be_audited_is_not_sent(store: Store, clock: Clock) -> None:
    store.issue("server", days=365)
    store.issue("client", days=365)
    broker = CredentialBroker(
        registry(), store.provider, environment="local", audit=BrokenAudit(), clock=clock
    )
    listener = Listener(broker)
    with pytest.raises(AuditUnavailable):
        send(broker, "pas", listener=listener)
    assert listener.peers == []
