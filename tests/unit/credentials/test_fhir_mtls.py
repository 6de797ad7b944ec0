"""The FHIR HTTP adapter with a client certificate from the registry: real HTTPS on loopback requiring
client certificates; rotation rebuilds the connection pool; one credential-use record per request."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.azure.ahds_fhir import AhdsFhirRepository
from shared.credentials.audit import RecordingCredentialAudit
from shared.credentials.broker import CredentialBroker
from shared.credentials.errors import CredentialExpired
from shared.credentials.registry import parse_registry
from shared.fhirstore.errors import StoreUnavailable
from shared.observability.correlation import correlation_scope
from tests.unit.credentials.conftest import Clock, Store


def registry(auth: str = "mtls") -> Any:
    entry: dict[str, Any] = {
        "name": "fhir",
        "direction": "outbound",
        "transport": "http-fhir",
        "message_format": "FHIR",
        "format_version": "R4",
        "auth": auth,
        "owner": "tests",
        "trust": {"kind": "certificate", "names": {"local": "test-ca"}},
    }
    if auth == "mtls":
        entry["credential"] = {"kind": "certificate", "names": {"local": "client"}}
    return parse_registry({"version": "1.0", "downstreams": [entry]})


class Handler(BaseHTTPRequestHandler):
    peers: list[str]

    def do_GET(self) -> None:
        cert = self.connection.getpeercert() or {}  # type: ignore[attr-defined]
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "")
        self.server.peers.append(cn)  # type: ignore[attr-defined]
        body = json.dumps({"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("ETag", 'W/"1"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def https(store: Store, clock: Clock) -> Iterator[tuple[str, list[str]]]:
    store.issue("server", days=1000, cn="fhir.local")
    server_broker = CredentialBroker(
        parse_registry(
            {
                "version": "1.0",
                "downstreams": [
                    {
                        "name": "srv",
                        "direction": "inbound",
                        "transport": "http-fhir",
                        "message_format": "FHIR",
                        "format_version": "R4",
                        "auth": "mtls",
                        "owner": "tests",
                        "credential": {"kind": "certificate", "names": {"local": "server"}},
                        "trust": {"kind": "certificate", "names": {"local": "test-ca"}},
                    }
                ],
            }
        ),
        store.provider,
        environment="local",
        clock=clock,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.peers = []  # type: ignore[attr-defined]
    server.socket = server_broker.server_tls("srv").context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/fhir", server.peers  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def repo(url: str, broker: CredentialBroker, downstream: str = "fhir") -> AhdsFhirRepository:
    return AhdsFhirRepository(
        url, tls=broker.client_tls(downstream), max_retries=0, connect_timeout=5, read_timeout=5
    )


def test_reads_over_mutual_tls_rotate_and_are_audited(
    https: tuple[str, list[str]], store: Store, clock: Clock
) -> None:
    url, peers = https
    store.issue("client", days=365, cn="fhir-client-1")
    audit = RecordingCredentialAudit()
    broker = CredentialBroker(registry(), store.provider, environment="local", audit=audit, clock=clock)
    fhir = repo(url, broker)
    assert fhir.read("Patient", "p1").id == "p1"
    store.issue("client", days=365, cn="fhir-client-2")
    clock.advance(timedelta(minutes=5))
    assert fhir.read("Patient", "p1").id == "p1"
    assert peers == ["fhir-client-1", "fhir-client-2"]
    assert [u.operation for u in audit.uses] == ["fhir-get", "fhir-get"]
    assert audit.uses[0].identity.thumbprint != audit.uses[1].identity.thumbprint
    fhir.close()


def test_a_server_requiring_client_certificates_refuses_the_adapter_without_one(
    https: tuple[str, list[str]], store: Store, clock: Clock
) -> None:
    url, peers = https
    broker = CredentialBroker(registry("network-only"), store.provider, environment="local", clock=clock)
    fhir = repo(url, broker)
    with pytest.raises(StoreUnavailable):
        fhir.read("Patient", "p1")
    assert peers == []
    fhir.close()


def test_an_expired_client_certificate_fails_before_anything_is_sent(
    https: tuple[str, list[str]], store: Store, clock: Clock
) -> None:
    url, peers = https
    store.issue("client", days=10)
    audit = RecordingCredentialAudit()
    broker = CredentialBroker(registry(), store.provider, environment="local", audit=audit, clock=clock)
    fhir = repo(url, broker)
    clock.advance(timedelta(days=11))
    with pytest.raises(CredentialExpired):
        fhir.read("Patient", "p1")
    assert peers == [] and audit.uses == []
    fhir.close()


def test_tls_and_ssl_contexts_default_to_tls_1_2_or_later(store: Store, clock: Clock) -> None:
    store.issue("client", days=30)
    broker = CredentialBroker(registry(), store.provider, environment="local", clock=clock)
    assert broker.client_tls("fhir").context().minimum_version >= ssl.TLSVersion.TLSv1_2


def test_fhir_write_back_from_the_registry_uses_mutual_tls_and_audits(
    https: tuple[str, list[str]], store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.wiring as wiring
    from shared.config.settings import get_settings, reset_settings

    url, peers = https
    store.issue("client", days=365, cn="writeback-client")
    registry_file = tmp_path / "downstreams.json"
    entry = registry().get("fhir").model_dump()
    entry["endpoints"] = {"local": url}
    registry_file.write_text(json.dumps({"version": "1.0", "downstreams": [entry]}))
    monkeypatch.setenv("TIE_DOWNSTREAMS_FILE", str(registry_file))
    monkeypatch.setenv("TIE_CREDENTIALS_DIR", str(store.root))
    monkeypatch.setenv("TIE_WRITEBACK_FHIR_DOWNSTREAM", "fhir")
    reset_settings()
    container = wiring.build_container(get_settings())
    wiring.set_container(container)
    remote = wiring.build_writeback_fhir(get_settings())
    assert remote is not None
    with correlation_scope("wb-1"):
        assert remote.read("Patient", "p1").id == "p1"
    assert peers == ["writeback-client"]
    [entry_record] = [json.loads(e.body) for e in container.audit.log.entries()]
    assert entry_record["detail"]["credential_name"] == "client"
    assert entry_record["correlation_id"] == "wb-1"
    remote.close()
