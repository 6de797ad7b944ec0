"""HL7 v2 write-back over mutual TLS with the client certificate and server CA from the downstream registry
(``TIE_WRITEBACK_HL7_DOWNSTREAM``): a TLS MLLP receiver on loopback that requires client certificates,
certificates generated in the test, the real subscriber, journal and idempotency over the embedded ports.

A certificate refused on either side is a link fault, not the message's: ``downstream-unavailable``
(transient, counts for the circuit breaker), journaled with ``detail`` ``tls <OpenSSL reason>``."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.backbone.errors import DownstreamUnavailable
from shared.backbone.hl7_writeback import Hl7MllpDownstream
from shared.backbone.runtime import WriteBackOptions, hl7_sender
from shared.config.settings import Settings
from shared.credentials import pem, selfsigned
from shared.credentials.audit import RecordingCredentialAudit
from shared.credentials.broker import CredentialBroker
from shared.credentials.registry import parse_registry
from shared.errors import ConfigurationError
from shared.journal import FAILED, RETRIED, WRITTEN_BACK
from shared.messaging.topology import SUB_WRITEBACK_HL7V2
from shared.mllp.server import ConnectionInfo, MllpServer, generic_nak
from tests.unit.backbone.support import FakeHl7Receiver, backbone, embedded, event, nhs_numbers, publish, pump
from tests.unit.credentials.conftest import Clock, Store

NHS = nhs_numbers(1)[0]
SECRET_MARKERS = ("PRIVATE KEY", "BEGIN CERTIFICATE", "MII")


@pytest.fixture
def clock() -> Clock:
    """Starts now: the TLS library checks certificate validity against the wall clock."""
    return Clock(datetime.now(UTC))


class TlsReceiver(FakeHl7Receiver):
    """The scripted MLLP receiver of the backbone tests behind TLS (``context`` decides who it trusts);
    records the client certificate common name of each message."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context
        self.peers: list[tuple[str, ...]] = []

    async def _handle(self, payload: bytes, info: ConnectionInfo) -> bytes | None:
        self.peers.append(info.peer_cert_common_names)
        return await super()._handle(payload, info)

    def start(self) -> TlsReceiver:
        self._thread.start()

        async def boot() -> None:
            self._server = MllpServer(
                self._handle, host="127.0.0.1", port=0, ssl=self.context, nak_builder=generic_nak
            )
            await self._server.start()

        asyncio.run_coroutine_threadsafe(boot(), self._loop).result(10)
        assert self._server is not None
        self.port = self._server.port
        return self


def registry(port: int, trust: str = "test-ca") -> Any:
    return parse_registry(
        {
            "version": "1.0",
            "downstreams": [
                {
                    "name": "pas",
                    "direction": "outbound",
                    "transport": "mllp",
                    "message_format": "HL7 v2",
                    "format_version": "2.5.1",
                    "auth": "mtls",
                    "owner": "tests",
                    "credential": {"kind": "certificate", "names": {"local": "tie-mllp-client"}},
                    "trust": {"kind": "certificate", "names": {"local": trust}},
                    "endpoints": {"local": f"mllps://127.0.0.1:{port}"},
                }
            ],
        }
    )


@dataclass
class Case:
    """What the receiver trusts for client certificates, and the CA the registry trusts for its server."""

    name: str
    receiver_client_ca: str
    registry_trust: str
    #: The journal ``detail`` the failure may carry: what the TLS library could read (the peer's alert is
    #: often lost when it closes at once - then the failure is a plain connection failure, same class).
    details: frozenset[str | None]


@pytest.fixture
def pki(store: Store) -> Store:
    store.issue("tie-mllp-client", cn="tie-mllp-client")
    store.issue("pas-server", cn="pas.local")
    other = selfsigned.make_ca("Another CA", now=store.clock())
    selfsigned.write(store.root, "other-ca", other, with_key=False)
    return store


def receiver_context(store: Store, client_ca: str) -> ssl.SSLContext:
    return pem.server_context(
        store.provider.certificate("pas-server"), store.provider.certificate(client_ca), now=store.clock()
    )


@pytest.fixture
def tls_receiver(request: pytest.FixtureRequest, pki: Store) -> Iterator[TlsReceiver]:
    client_ca = getattr(request, "param", "test-ca")
    with TlsReceiver(receiver_context(pki, client_ca)) as rx:
        yield rx  # type: ignore[misc]


def broker_for(store: Store, clock: Clock, port: int, trust: str = "test-ca") -> CredentialBroker:
    return CredentialBroker(
        registry(port, trust),
        store.provider,
        environment="local",
        audit=RecordingCredentialAudit(),
        clock=clock,
    )


SETTINGS = Settings(TIE_WRITEBACK_HL7_DOWNSTREAM="pas")


def write_back(tmp_path: Path, downstream: Hl7MllpDownstream, correlation_id: str) -> tuple[Any, Any]:
    """Publish one admission, pump the HL7 v2 subscription; (pump stats, journal trace)."""
    with embedded(tmp_path / "env", lock_seconds=30) as env:
        bb = backbone(
            env,
            {SUB_WRITEBACK_HL7V2: downstream},
            options=WriteBackOptions(
                timeout_seconds=5, max_attempts=2, backoff_base_seconds=0, breaker_failure_threshold=10
            ),
        )
        publish(env.bus, event("TLS1", nhs=NHS, visit="V1", correlation_id=correlation_id))
        stats = pump(
            env.bus,
            SUB_WRITEBACK_HL7V2,
            bb.subscriber(SUB_WRITEBACK_HL7V2).handle,
            idle_rounds=1,
            settle=lambda _message, _ok: "complete",  # one delivery: no redelivery loop in the test
        )
        return stats, bb.journal.trace(correlation_id)


def test_write_back_over_mutual_tls_is_delivered_acked_and_audited(
    tls_receiver: TlsReceiver, pki: Store, clock: Clock, tmp_path: Path
) -> None:
    broker = broker_for(pki, clock, tls_receiver.port)
    sender = hl7_sender(SETTINGS, broker, connect_timeout=5)
    assert sender is not None and (sender.host, sender.port) == ("127.0.0.1", tls_receiver.port)
    downstream = Hl7MllpDownstream(sender, ack_timeout=5)
    try:
        stats, trace = write_back(tmp_path, downstream, "corr-tls-ok")
    finally:
        downstream.close()
    assert stats.statuses == {"applied": 1}
    [written] = [e for e in trace if e.stage == WRITTEN_BACK]
    assert written.attributes["status"] == "AA"
    assert list(tls_receiver.applied.values()) == [1]
    assert tls_receiver.peers == [("tie-mllp-client",)]
    audit = broker.audit
    assert isinstance(audit, RecordingCredentialAudit)
    info = pki.provider.certificate_info("tie-mllp-client")
    assert [(u.downstream, u.operation, u.identity.version) for u in audit.uses] == [
        ("pas", "mllp-send", info.version)
    ]


REFUSALS = [
    # The receiver does not trust the CA that issued our client certificate: it refuses it (TLS 1.3: after
    # our side of the handshake completed, so we see its alert, or - an asyncio receiver - EOF or a reset).
    Case(
        "receiver trusts another CA", "other-ca", "test-ca", frozenset({None, "tls TLSV13_ALERT_UNKNOWN_CA"})
    ),
    # The registry trusts another CA than the one that issued the receiver's server certificate.
    Case("registry trusts another CA", "test-ca", "other-ca", frozenset({"tls CERTIFICATE_VERIFY_FAILED"})),
]


@pytest.mark.parametrize(
    ("case", "tls_receiver"),
    [(c, c.receiver_client_ca) for c in REFUSALS],
    ids=[c.name for c in REFUSALS],
    indirect=["tls_receiver"],
)
def test_a_refused_certificate_is_a_transient_link_failure_journaled_with_its_tls_reason(
    case: Case, tls_receiver: TlsReceiver, pki: Store, clock: Clock, tmp_path: Path
) -> None:
    broker = broker_for(pki, clock, tls_receiver.port, trust=case.registry_trust)
    downstream = Hl7MllpDownstream(hl7_sender(SETTINGS, broker, connect_timeout=5), ack_timeout=5)
    try:
        with pytest.raises(DownstreamUnavailable) as direct:
            downstream.apply(event("TLS2", nhs=NHS, visit="V2"))
        stats, trace = write_back(tmp_path, downstream, "corr-tls-refused")
    finally:
        downstream.close()
    assert direct.value.code == "downstream-unavailable" and direct.value.detail in case.details
    assert not any(marker in str(direct.value) for marker in SECRET_MARKERS)
    assert stats.statuses == {"error:downstream-unavailable": 1}  # the host abandons it: redelivered
    retried = [e.attributes for e in trace if e.stage == RETRIED]
    failed = [e.attributes for e in trace if e.stage == FAILED]
    assert [r["error_code"] for r in retried] == ["downstream-unavailable"]
    assert [(f["error_code"], f["final"]) for f in failed] == [("downstream-unavailable", False)]
    assert {r.get("detail") for r in retried + failed} <= case.details
    assert not any(e.stage == WRITTEN_BACK for e in trace)
    assert tls_receiver.applied == {}


def test_registry_wiring_rules(pki: Store, clock: Clock) -> None:
    broker = broker_for(pki, clock, 2576)
    assert hl7_sender(Settings(), broker, connect_timeout=1) is None  # neither registry nor host: off
    overridden = hl7_sender(
        Settings(
            TIE_WRITEBACK_HL7_DOWNSTREAM="pas",
            TIE_WRITEBACK_MLLP_HOST="10.0.0.9",
            TIE_WRITEBACK_MLLP_PORT=2999,
        ),
        broker,
        connect_timeout=1,
    )
    assert overridden is not None and (overridden.host, overridden.port) == ("10.0.0.9", 2999)
    overridden.close()
    with pytest.raises(ConfigurationError, match="needs the downstream registry"):
        hl7_sender(SETTINGS, None, connect_timeout=1)
