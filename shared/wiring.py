"""Composition root: the one place that chooses an adapter for each port.

Functions, the local host, the MLLP listener and the ``tie`` CLI all call :func:`get_container`. With no
settings at all it builds the embedded defaults under ``TIE_LOCAL_DIR`` (``./.local``), so the app runs
without a cloud account. Azure adapters are imported lazily, only when selected, which keeps this module
free of ``azure.*`` imports.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.audit.background import BackgroundAuditLog
from shared.audit.group_commit import GroupCommitLog
from shared.audit.payloads import PayloadStore
from shared.audit.ports import AuditLog
from shared.audit.trail import AuditTrail
from shared.config.settings import Backend, Settings, get_settings
from shared.errors import ConfigurationError
from shared.fhirstore.ports import FhirRepository
from shared.messaging.ports import MessageBus
from shared.storage.ports import BlobStore, RecordStore

if TYPE_CHECKING:  # imported where used: most processes never open a TLS connection
    from shared.credentials.broker import CredentialBroker
    from shared.credentials.expiry import CertificateExpiryMonitor
    from shared.credentials.ports import CredentialProvider
    from shared.credentials.registry import DownstreamRegistry

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.backbone.runtime import Backbone
    from shared.backbone.writeback import Downstream
    from shared.fhirapi import FhirApi
    from shared.mesh.inbound import PollReport
    from shared.mesh.ports import MeshMailbox
    from shared.messaging.topology import TopicSpec
    from shared.observability.telemetry import TelemetryExporter
    from shared.outbox import CommittedBatchRelay
    from shared.pds.ports import PdsClient, TokenSource
    from shared.pds.trace import IdentityResolver
    from shared.reconcile.replay import Replayer as ReconcileReplayer
    from shared.reconcile.service import Reconciler


@dataclass
class Container:
    """Every object the process builds, each built once per container on first use; a new container (tests,
    the local host: :func:`set_container`) means fresh objects. See docs/adr/0010-one-composition-root.md."""

    settings: Settings
    bus: MessageBus
    records: RecordStore
    blobs: BlobStore
    #: The FHIR repository when supplied up front; otherwise :attr:`fhir` builds it from ``settings`` on
    #: first use (most processes - the MLLP listener, bus triggers, the CLI - never open it).
    fhir_repository: FhirRepository | None = field(default=None, repr=False)
    #: The audit log when supplied up front; otherwise :attr:`audit` builds it on first use.
    audit_log: AuditLog | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)
    #: Reentrant: building one object may use another (the backbone takes the audit trail).
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    _audit: AuditTrail | None = field(default=None, repr=False, compare=False)
    _credentials: CredentialBroker | None = field(default=None, repr=False, compare=False)
    _topology: tuple[TopicSpec, ...] | None = field(default=None, repr=False, compare=False)
    _backbone: Backbone | None = field(default=None, repr=False, compare=False)
    _fhir_api: FhirApi | None = field(default=None, repr=False, compare=False)

    @property
    def fhir(self) -> FhirRepository:
        """The FHIR repository (:func:`build_fhir` on first use)."""
        repo = self.fhir_repository
        if repo is not None:
            return repo
        with self._lock:
            if self.fhir_repository is None:
                self.fhir_repository = build_fhir(self.settings)
            return self.fhir_repository

    @property
    def audit(self) -> AuditTrail:
        """The audit trail over :func:`build_audit_log` (on first use)."""
        with self._lock:
            if self._audit is None:
                if self.audit_log is None:
                    self.audit_log = build_audit_log(self.settings)
                # Writes: concurrent callers share one transaction; reads and searches: a background
                # writer (docs/audit.md: cost).
                self._audit = AuditTrail(
                    GroupCommitLog(self.audit_log),
                    deferred=BackgroundAuditLog(self.audit_log),
                    payloads=build_payload_store(self.settings),
                )
            return self._audit

    @property
    def credentials(self) -> CredentialBroker:
        """Registry + credential provider + per-call audit (:func:`build_credentials`, on first use)."""
        with self._lock:
            if self._credentials is None:
                self._credentials = build_credentials(self.settings, audit=self.audit)
            return self._credentials

    @property
    def topology(self) -> tuple[TopicSpec, ...]:
        """The topology the bus delivers with (``MessageBus.topic_specs``): lock durations size leases."""
        with self._lock:
            if self._topology is None:
                self._topology = self.bus.topic_specs()
            return self._topology

    @property
    def backbone(self) -> Backbone:
        """Write-back subscribers, relays and monitors (:func:`build_process_backbone`)."""
        with self._lock:
            if self._backbone is None:
                self._backbone = build_process_backbone(self)
            return self._backbone

    @property
    def fhir_api(self) -> FhirApi:
        """The FHIR HTTP API over :attr:`fhir`, the bus and the records (:func:`build_fhir_api`)."""
        with self._lock:
            if self._fhir_api is None:
                self._fhir_api = build_fhir_api(self)
            return self._fhir_api

    def use_backbone(self, backbone: Backbone) -> None:
        """Install a backbone built another way (the benchmark's one without idempotency); the container
        closes it. Refused once :attr:`backbone` has been built."""
        with self._lock:
            if self._backbone is not None:
                raise ConfigurationError("this container has built its backbone already")
            self._backbone = backbone

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._backbone is not None:
            self._backbone.close()  # its downstreams; the bus and stores are closed below
        if self._credentials is not None:
            self._credentials.close()
        for closable in (self.bus, self.records, self.blobs):
            closable.close()
        if self._audit is not None:
            self._audit.close()  # writes what the background writer still holds
        if self.audit_log is not None:
            self.audit_log.close()
        if self.fhir_repository is not None:
            self.fhir_repository.close()


_lock = threading.Lock()
_container: Container | None = None


def _credential(settings: Settings) -> Any:
    """An azure-core ``TokenCredential`` (typed ``Any`` here: the core names no azure types)."""
    from shared.adapters.azure.identity import build_credential

    return build_credential(settings.managed_identity_client_id)


def telemetry_exporter(settings: Settings) -> TelemetryExporter | None:
    """Azure Monitor when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, else none (OpenTelemetry's
    no-op); :func:`shared.observability.telemetry.configure_telemetry` installs it."""
    connection_string = settings.applicationinsights_connection_string
    if not connection_string:
        return None
    from shared.adapters.azure.monitor import configure_azure_monitor_exporter
    from shared.observability.telemetry import TelemetryExporter

    def install(service_name: str) -> None:
        configure_azure_monitor_exporter(connection_string, service_name=service_name)

    return TelemetryExporter("azure-monitor", install)


def build_bus(settings: Settings) -> MessageBus:
    if settings.bus_backend is Backend.AZURE:
        from shared.adapters.azure.servicebus import ServiceBusMessageBus

        assert settings.service_bus_namespace is not None  # checked by Settings
        return ServiceBusMessageBus.from_namespace(settings.service_bus_namespace, _credential(settings))
    from shared.adapters.embedded.sqlite_bus import SqliteBus

    return SqliteBus(settings.bus_path)


def build_records(settings: Settings) -> RecordStore:
    if settings.storage_backend is Backend.AZURE:
        from shared.adapters.azure.tables import AzureTableRecordStore

        if settings.storage_emulator_connection:
            return AzureTableRecordStore.from_connection_string(settings.storage_emulator_connection)
        assert settings.table_service_uri is not None
        return AzureTableRecordStore.from_endpoint(settings.table_service_uri, _credential(settings))
    from shared.adapters.embedded.sqlite_records import SqliteRecordStore

    return SqliteRecordStore(settings.records_path)


def build_blobs(settings: Settings) -> BlobStore:
    if settings.storage_backend is Backend.AZURE:
        from shared.adapters.azure.blobs import AzureBlobStore

        if settings.storage_emulator_connection:
            return AzureBlobStore.from_connection_string(settings.storage_emulator_connection)
        assert settings.blob_service_uri is not None
        return AzureBlobStore.from_endpoint(settings.blob_service_uri, _credential(settings))
    from shared.adapters.embedded.sqlite_blobs import SqliteBlobStore

    return SqliteBlobStore(settings.blobs_root)


def build_fhir(settings: Settings) -> FhirRepository:
    if settings.fhir_backend is Backend.AZURE:
        from shared.adapters.azure.ahds_fhir import AhdsFhirRepository

        assert settings.fhir_service_url is not None  # checked by Settings
        return AhdsFhirRepository(settings.fhir_service_url, credential=_credential(settings))
    from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository

    return SqliteFhirRepository(settings.fhir_path)


def build_audit_log(settings: Settings) -> AuditLog:
    """Append blobs in the WORM ``audit`` container on Azure Storage; else the embedded hash-chained SQLite
    log ``<TIE_LOCAL_DIR>/audit.sqlite3`` with its checkpoint key beside it (see docs/audit.md)."""
    if settings.storage_backend is Backend.AZURE:
        from shared.adapters.azure.audit_blobs import AppendBlobAuditLog

        if settings.storage_emulator_connection:
            return AppendBlobAuditLog.from_connection_string(settings.storage_emulator_connection)
        assert settings.blob_service_uri is not None
        return AppendBlobAuditLog.from_endpoint(settings.blob_service_uri, _credential(settings))
    from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
    from shared.audit.keyfile import local_key

    return SqliteAuditLog(
        settings.local_dir / "audit.sqlite3", key=local_key(settings.local_dir / "audit.key")
    )


def build_payload_store(settings: Settings) -> PayloadStore:
    """The bodies behind the audit digests: block blobs in the ``audit-payloads`` container on Azure
    Storage; else files 0600 under ``<TIE_LOCAL_DIR>/payloads`` (see docs/audit.md)."""
    from shared.audit.payloads import LocalPayloadStore, Retention

    retention = Retention.parse(settings.audit_payload_retention_days)
    if settings.storage_backend is Backend.AZURE:
        from shared.adapters.azure.audit_payloads import BlobPayloadStore

        if settings.storage_emulator_connection:
            return BlobPayloadStore.from_connection_string(settings.storage_emulator_connection, retention)
        assert settings.blob_service_uri is not None
        return BlobPayloadStore.from_endpoint(settings.blob_service_uri, _credential(settings), retention)
    return LocalPayloadStore(settings.local_dir / "payloads", retention)


def build_registry(settings: Settings) -> DownstreamRegistry:
    """The downstream registry (``TIE_DOWNSTREAMS_FILE`` or the packaged sample), validated."""
    from shared.credentials.registry import load_registry

    return load_registry(settings.downstreams_file)


def build_credential_provider(settings: Settings) -> CredentialProvider:
    """Key Vault (managed identity) when ``TIE_CREDENTIALS_BACKEND=azure``; else PEM files in
    ``TIE_CREDENTIALS_DIR`` (default ``<TIE_LOCAL_DIR>/credentials``; see docs/credentials.md)."""
    if settings.credentials_backend is Backend.AZURE:
        from shared.adapters.azure.keyvault import KeyVaultCredentialProvider

        assert settings.key_vault_uri is not None  # checked by Settings
        return KeyVaultCredentialProvider.from_vault(settings.key_vault_uri, _credential(settings))
    from shared.adapters.embedded.local_credentials import LocalCredentialProvider

    return LocalCredentialProvider(settings.credentials_path)


def build_credentials(settings: Settings, *, audit: AuditTrail | None = None) -> CredentialBroker:
    """TLS sources per downstream; each outbound call's credential is recorded in ``audit``."""
    from shared.credentials.audit import TrailCredentialAudit
    from shared.credentials.broker import CredentialBroker

    return CredentialBroker(
        build_registry(settings),
        build_credential_provider(settings),
        environment=settings.environment,
        audit=TrailCredentialAudit(audit) if audit is not None else None,
        refresh_seconds=settings.credentials_refresh_seconds,
    )


def build_certificate_monitor(container: Container) -> CertificateExpiryMonitor:
    """The certificate expiry monitor over the container's credentials and records, announcing on its bus."""
    from shared.backbone.platform import BusPlatformEvents
    from shared.credentials.expiry import CertificateExpiryMonitor

    broker = container.credentials
    return CertificateExpiryMonitor(
        broker.provider,
        container.records,
        BusPlatformEvents(container.bus),
        referenced=broker.registry.certificate_names(container.settings.environment),
    )


def record_sent(container: Container, fhir: FhirRepository) -> FhirRepository:
    """The FHIR write-back target, recording what it writes for reconciliation (shared.reconcile.fhir)."""
    from shared.messaging.topology import SUB_WRITEBACK_FHIR
    from shared.reconcile.fhir import SentRecorder

    return SentRecorder(fhir, container.records, downstream=SUB_WRITEBACK_FHIR)


def sample_lineage(container: Container, downstreams: dict[str, Downstream]) -> dict[str, Downstream]:
    """The FHIR write-back records, for ``TIE_RECONCILE_LINEAGE_PERCENT`` of events, which canonical field
    each element it writes came from (shared.reconcile.lineage); the other downstreams are unchanged."""
    from shared.messaging.topology import SUB_WRITEBACK_FHIR
    from shared.reconcile.lineage import LineageSampler

    percent = container.settings.reconcile_lineage_percent
    if percent <= 0 or SUB_WRITEBACK_FHIR not in downstreams:
        return downstreams
    return {
        sub: LineageSampler(d, percent=percent) if sub == SUB_WRITEBACK_FHIR else d
        for sub, d in downstreams.items()
    }


def build_reconciler(container: Container) -> Reconciler:
    """The reconciler over the container's records and bus; the FHIR destination it reads back is the
    write-back target (``TIE_WRITEBACK_FHIR_URL``, else the platform's own repository - shared with the
    FHIR API, so resources the engine never wrote are only looked for at a remote one)."""
    from datetime import timedelta

    from shared.messaging.topology import SUB_WRITEBACK_FHIR
    from shared.reconcile.service import ReconcileOptions, Reconciler, destinations_for

    settings = container.settings
    remote = build_writeback_fhir(settings, container)
    return Reconciler(
        container.records,
        container.bus,
        destinations=destinations_for(remote if remote is not None else container.fhir),
        exclusive=[SUB_WRITEBACK_FHIR] if remote is not None else [],
        options=ReconcileOptions(
            window=timedelta(hours=settings.reconcile_window_hours),
            stuck_after=timedelta(seconds=settings.stuck_after_seconds),
            threshold=settings.reconcile_threshold,
            sample_percent=settings.reconcile_sample_percent,
            hour=settings.reconcile_hour,
        ),
    )


def build_reconcile_replayer(container: Container) -> ReconcileReplayer:
    """``tie reconcile replay``: dead letters back to their subscription, lost resources restored at the
    write-back's FHIR destination."""
    from shared.reconcile.replay import Replayer
    from shared.reconcile.service import destinations_for

    remote = build_writeback_fhir(container.settings, container)
    destination = remote if remote is not None else container.fhir
    return Replayer(container.records, container.bus, destinations=destinations_for(destination))


def build_writeback_fhir(settings: Settings, container: Container | None = None) -> FhirRepository | None:
    """The FHIR server write-back targets when ``TIE_WRITEBACK_FHIR_URL`` or
    ``TIE_WRITEBACK_FHIR_DOWNSTREAM`` names one (a REST client with no retries of its own: the write-back
    subscriber retries, backs off and trips its circuit breaker); ``None``: write back to the platform's
    own repository (:attr:`Container.fhir`).

    With a registry downstream, the endpoint (unless the URL setting is given), the client certificate and
    the trust CA come from the registry (mutual TLS, no bearer token) and every call's credential is
    audited (docs/credentials.md)."""
    from shared.adapters.azure.ahds_fhir import AhdsFhirRepository

    name = settings.writeback_fhir_downstream
    if name:
        broker = (container or get_container()).credentials
        url = settings.writeback_fhir_url or broker.endpoint(name)
        if not url:
            raise ConfigurationError(f"downstream {name!r} has no endpoint for {settings.environment}")
        timeout = broker.registry.get(name).timeout_seconds
        return AhdsFhirRepository(
            url,
            tls=broker.client_tls(name),
            read_timeout=timeout,
            connect_timeout=min(5.0, timeout),
            max_retries=0,
        )
    if not settings.writeback_fhir_url:
        return None
    url = settings.writeback_fhir_url
    local = url.startswith(("http://127.0.0.1", "http://localhost"))
    return AhdsFhirRepository(
        url,
        credential=None if local else _credential(settings),
        read_timeout=settings.writeback_timeout_seconds,
        connect_timeout=min(5.0, settings.writeback_timeout_seconds),
        max_retries=0,
    )


def build_pds_client(settings: Settings, token_source: Callable[[], TokenSource] | None = None) -> PdsClient:
    """PDS: the local stand-in in process (embedded default) or the PDS FHIR API over HTTPS. Token:
    ``TIE_PDS_ACCESS_TOKEN`` when set, else ``token_source()`` for the real API (the credential broker's
    signed-JWT client-credentials source for the ``pds`` downstream), else none."""
    from shared.pds.auth import NoToken, StaticTokenSource
    from shared.pds.client import PdsFhirClient, Transport, Urllib3Transport

    tokens: TokenSource = NoToken()
    transport: Transport
    if settings.pds_backend == "http":
        if not settings.pds_base_url:
            raise ConfigurationError("TIE_PDS_BACKEND=http needs TIE_PDS_BASE_URL")
        transport = Urllib3Transport(settings.pds_base_url, timeout=settings.pds_timeout_seconds)
    else:
        from shared.adapters.embedded.pds_stub import PdsStub, StubTransport

        transport = StubTransport(PdsStub(settings.pds_corpus_dir))
    if settings.pds_access_token is not None and settings.pds_access_token.get_secret_value():
        tokens = StaticTokenSource(settings.pds_access_token.get_secret_value())
    elif settings.pds_backend == "http" and token_source is not None:
        tokens = token_source()
    return PdsFhirClient(transport, tokens)


def build_identity_resolver(
    settings: Settings, token_source: Callable[[], TokenSource] | None = None
) -> IdentityResolver:
    from shared.pds.cache import PdsCache
    from shared.pds.trace import IdentityResolver

    client = build_pds_client(settings, token_source)
    return IdentityResolver(client, PdsCache(settings.pds_cache_ttl_seconds))


def build_national_downstreams(
    container: Container, downstreams: dict[str, Downstream]
) -> dict[str, Downstream]:
    """The backbone's hook for the national services: HL7 v2 write-back over MESH when
    ``TIE_MESH_OUTBOUND_RECIPIENT`` is set and no MLLP host is (results to a MESH mailbox, tracked), then the
    PDS identity gates (:func:`build_identity_gates`)."""
    settings = container.settings
    if (
        settings.mesh_outbound_recipient
        and settings.mesh_outbound_mailbox
        and not settings.writeback_mllp_host
    ):
        from shared.messaging.topology import SUB_WRITEBACK_HL7V2

        if SUB_WRITEBACK_HL7V2 in downstreams:
            from shared.mesh.outbound import MeshOutbound
            from shared.mesh.writeback import MeshHl7Downstream

            previous = downstreams[SUB_WRITEBACK_HL7V2]
            downstreams = {
                **downstreams,
                SUB_WRITEBACK_HL7V2: MeshHl7Downstream(
                    lambda: build_mesh_mailbox(settings, settings.mesh_outbound_mailbox),
                    MeshOutbound(container.records),
                    recipient=settings.mesh_outbound_recipient,
                    workflow_id=settings.mesh_outbound_workflow,
                    name=previous.name,
                ),
            }
            previous.close()
    return build_identity_gates(container, downstreams)


def build_identity_gates(container: Container, downstreams: dict[str, Downstream]) -> dict[str, Downstream]:
    """Wrap each write-back downstream named in ``TIE_PDS_VERIFY_DOWNSTREAMS`` in the PDS identity gate
    (one resolver and cache shared by all of them); the others are returned as they are."""
    wanted = container.settings.pds_verify_downstream_set
    if not wanted or not any(d.name in wanted for d in downstreams.values()):
        return downstreams
    from shared.journal import Journal
    from shared.pds.gate import IdentityGate
    from shared.pds.review import ReviewQueue

    resolver = build_identity_resolver(container.settings, lambda: container.credentials.token_source("pds"))
    review = ReviewQueue(container.records, container.blobs, bus=container.bus)
    journal = Journal(container.records)
    return {
        sub: IdentityGate(d, resolver, review, journal, subscription=sub) if d.name in wanted else d
        for sub, d in downstreams.items()
    }


def build_mesh_mailbox(settings: Settings, mailbox: str) -> MeshMailbox:
    """MESH: a folder mailbox under ``TIE_LOCAL_DIR/mesh`` (embedded default), NHS mesh-sandbox on
    loopback (``sandbox``), or the MESH API (``mesh``), the last two through NHS England's mesh-client."""
    if settings.mesh_backend == "local":
        from shared.adapters.embedded.local_mesh import LocalFilesMailbox

        return LocalFilesMailbox(settings.mesh_root, mailbox)
    from shared.mesh.client_adapter import MeshClientMailbox, SettingsCredentials

    url = settings.mesh_url or f"http://127.0.0.1:{settings.mesh_sandbox_port}"
    if settings.mesh_backend == "mesh" and not settings.mesh_url:
        raise ConfigurationError("TIE_MESH_BACKEND=mesh needs TIE_MESH_URL")
    return MeshClientMailbox(url, mailbox, SettingsCredentials(settings))


def poll_mesh(container: Container) -> list[PollReport]:
    """Poll every configured MESH mailbox (``TIE_MESH_MAILBOXES``) into the container's bus and stores."""
    from shared.mesh.service import poll_mailboxes

    settings = container.settings
    return poll_mailboxes(
        settings.mesh_mailbox_list,
        lambda name: build_mesh_mailbox(settings, name),
        bus=container.bus,
        records=container.records,
        blobs=container.blobs,
    )


def build_process_backbone(container: Container) -> Backbone:
    """The backbone over a container: the default downstreams (the FHIR one recording what it sends, with
    lineage sampled), MESH out and the PDS gates, the bus's topology, the settings' options."""
    from datetime import timedelta

    from shared.backbone.runtime import WriteBackOptions, build_backbone, default_downstreams
    from shared.messaging.topology import SUB_WRITEBACK_HL7V2

    settings = container.settings
    remote = build_writeback_fhir(settings, container)
    fhir = record_sent(container, remote if remote is not None else container.fhir)
    downstreams = default_downstreams(
        settings,
        fhir,
        fhir_is_platform_store=remote is None,
        credentials=container.credentials if settings.writeback_hl7_downstream else None,
    )
    downstreams = sample_lineage(container, downstreams)  # reconciliation names source fields
    downstreams = build_national_downstreams(container, downstreams)  # MESH out, PDS trace first
    backbone = build_backbone(
        bus=container.bus,
        records=container.records,
        downstreams=downstreams,
        options=WriteBackOptions.from_settings(settings),
        topology=container.topology,
        stuck_after=timedelta(seconds=settings.stuck_after_seconds),
        audit=container.audit,
    )
    backbone._closables.append(downstreams[SUB_WRITEBACK_HL7V2].close)
    if remote is not None:
        backbone._closables.append(remote.close)
    return backbone


def build_fhir_api(container: Container) -> FhirApi:
    """The FHIR API over a container's FHIR repository, bus and record store, configured from its settings."""
    from shared.audit.fhir_access import FhirAccessAuditor
    from shared.fhirapi import FhirApi, FhirApiConfig

    settings = container.settings
    config = FhirApiConfig(
        max_body_bytes=settings.http_max_body_bytes,
        base_url=settings.fhir_base_url,
        require_gateway_header=settings.require_apim_header,
        gateway_header=settings.apim_header_name,
        max_bundle_entries=settings.fhir_max_bundle_entries,
    )
    audit = FhirAccessAuditor(container.audit, gateway_verified=settings.require_apim_header)
    return FhirApi(container.fhir, container.bus, container.records, config=config, audit=audit)


def build_fhir_event_relay(
    container: Container, *, grace: timedelta = timedelta(seconds=2)
) -> CommittedBatchRelay | None:
    """The relay for clinical events the container's FHIR store committed but did not publish
    (:func:`shared.fhirapi.event_relay`). None when the store commits no events (AHDS: see the ADR in
    ``docs/adr``)."""
    from shared.fhirapi import event_relay
    from shared.journal import Journal
    from shared.outbox import CommittedOutbox

    if container.fhir_repository is None and container.settings.fhir_backend is Backend.AZURE:
        return None  # do not open a remote client just to find it has no outbox
    repository = container.fhir
    if not isinstance(repository, CommittedOutbox):
        return None
    return event_relay(repository, container.bus, Journal(container.records), grace=grace)


def build_container(settings: Settings) -> Container:
    return Container(
        settings=settings,
        bus=build_bus(settings),
        records=build_records(settings),
        blobs=build_blobs(settings),
    )


def get_container() -> Container:
    """The process-wide container, built on first use from :func:`get_settings`."""
    global _container
    with _lock:
        if _container is None:
            _container = build_container(get_settings())
        return _container


def set_container(container: Container | None) -> Container | None:
    """Replace the process-wide container (tests, the local host). Returns the previous one."""
    global _container
    with _lock:
        previous, _container = _container, container
        return previous
