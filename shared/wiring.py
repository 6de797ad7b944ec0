"""Composition root: the one place that chooses an adapter for each port.

Functions, the local host, the MLLP listener and the ``tie`` CLI all call :func:`get_container`. With no
settings at all it builds the embedded defaults under ``TIE_LOCAL_DIR`` (``./.local``), so the app runs
without a cloud account. Azure adapters are imported lazily, only when selected, which keeps this module
free of ``azure.*`` imports.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from shared.audit.ports import AuditLog
from shared.audit.trail import AuditTrail
from shared.config.settings import Backend, Settings, get_settings
from shared.fhirstore.ports import FhirRepository
from shared.messaging.ports import MessageBus
from shared.storage.ports import BlobStore, RecordStore


@dataclass
class Container:
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
    _fhir_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _audit: AuditTrail | None = field(default=None, repr=False, compare=False)

    @property
    def fhir(self) -> FhirRepository:
        """The FHIR repository (:func:`build_fhir` on first use)."""
        repo = self.fhir_repository
        if repo is not None:
            return repo
        with self._fhir_lock:
            if self.fhir_repository is None:
                self.fhir_repository = build_fhir(self.settings)
            return self.fhir_repository

    @property
    def audit(self) -> AuditTrail:
        """The audit trail over :func:`build_audit_log` (on first use)."""
        with self._fhir_lock:
            if self._audit is None:
                if self.audit_log is None:
                    self.audit_log = build_audit_log(self.settings)
                self._audit = AuditTrail(self.audit_log)
            return self._audit

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for closable in (self.bus, self.records, self.blobs):
            closable.close()
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


def build_bus(settings: Settings) -> MessageBus:
    if settings.bus_backend is Backend.AZURE:
        from shared.adapters.azure.servicebus import ServiceBusMessageBus

        assert settings.service_bus_namespace is not None  # checked by Settings
        return ServiceBusMessageBus.from_namespace(settings.service_bus_namespace, _credential(settings))
    from shared.messaging.sqlite_bus import SqliteBus

    return SqliteBus(settings.bus_path)


def build_records(settings: Settings) -> RecordStore:
    if settings.storage_backend is Backend.AZURE:
        from shared.adapters.azure.tables import AzureTableRecordStore

        if settings.storage_emulator_connection:
            return AzureTableRecordStore.from_connection_string(settings.storage_emulator_connection)
        assert settings.table_service_uri is not None
        return AzureTableRecordStore.from_endpoint(settings.table_service_uri, _credential(settings))
    from shared.storage.sqlite_records import SqliteRecordStore

    return SqliteRecordStore(settings.records_path)


def build_blobs(settings: Settings) -> BlobStore:
    if settings.storage_backend is Backend.AZURE:
        from shared.adapters.azure.blobs import AzureBlobStore

        if settings.storage_emulator_connection:
            return AzureBlobStore.from_connection_string(settings.storage_emulator_connection)
        assert settings.blob_service_uri is not None
        return AzureBlobStore.from_endpoint(settings.blob_service_uri, _credential(settings))
    from shared.storage.sqlite_blobs import SqliteBlobStore

    return SqliteBlobStore(settings.blobs_root)


def build_fhir(settings: Settings) -> FhirRepository:
    if settings.fhir_backend is Backend.AZURE:
        from shared.adapters.azure.ahds_fhir import AhdsFhirRepository

        assert settings.fhir_service_url is not None  # checked by Settings
        return AhdsFhirRepository(settings.fhir_service_url, credential=_credential(settings))
    from shared.fhirstore.sqlite_store import SqliteFhirRepository

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
    from shared.audit.keyfile import local_key
    from shared.audit.sqlite_log import SqliteAuditLog

    return SqliteAuditLog(
        settings.local_dir / "audit.sqlite3", key=local_key(settings.local_dir / "audit.key")
    )


def build_writeback_fhir(settings: Settings) -> FhirRepository | None:
    """The FHIR server write-back targets when ``TIE_WRITEBACK_FHIR_URL`` names one (a REST client with no
    retries of its own: the write-back subscriber retries, backs off and trips its circuit breaker);
    ``None``: write back to the platform's own repository (:attr:`Container.fhir`)."""
    if not settings.writeback_fhir_url:
        return None
    from shared.adapters.azure.ahds_fhir import AhdsFhirRepository

    url = settings.writeback_fhir_url
    local = url.startswith(("http://127.0.0.1", "http://localhost"))
    return AhdsFhirRepository(
        url,
        credential=None if local else _credential(settings),
        read_timeout=settings.writeback_timeout_seconds,
        connect_timeout=min(5.0, settings.writeback_timeout_seconds),
        max_retries=0,
    )


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
