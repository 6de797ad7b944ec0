"""One typed settings object, read once.

Azure Functions exposes app settings as environment variables; locally the host loads
``local.settings.json`` (``Values``) into the environment first. Every setting name read here appears in
``local.settings.sample.json`` with a safe placeholder (enforced by ``tests/unit/config/test_settings.py``).

Azure services use identity-based connections (``<Name>__fullyQualifiedNamespace`` /
``<Name>__serviceUri``): no connection strings with keys in code or samples. The only connection string
accepted is for the Azurite emulator (``UseDevelopmentStorage=true``) in local development.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigurationError


class Backend(StrEnum):
    EMBEDDED = "embedded"
    AZURE = "azure"


class Settings(BaseSettings):
    """Every app setting the code reads. Field aliases are the exact app-setting names."""

    # hide_input_in_errors: a rejected value (a secret, a connection string) never reaches an error text.
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, frozen=True, hide_input_in_errors=True
    )

    environment: Literal["local", "dev", "test", "prod"] = Field("local", validation_alias="TIE_ENVIRONMENT")
    #: Root for the embedded defaults' files (SQLite bus, record store, blobs). Created on demand.
    local_dir: Path = Field(Path(".local"), validation_alias="TIE_LOCAL_DIR")
    bus_backend: Backend = Field(Backend.EMBEDDED, validation_alias="TIE_BUS_BACKEND")
    storage_backend: Backend = Field(Backend.EMBEDDED, validation_alias="TIE_STORAGE_BACKEND")

    # Azure Service Bus (identity-based). The trigger decorators use the prefix "ServiceBusConnection".
    service_bus_namespace: str | None = Field(
        None, validation_alias="ServiceBusConnection__fullyQualifiedNamespace"
    )
    # Azure Storage for the app's records and blobs (identity-based service URIs).
    table_service_uri: str | None = Field(None, validation_alias="TieStorage__tableServiceUri")
    blob_service_uri: str | None = Field(None, validation_alias="TieStorage__blobServiceUri")
    #: Local development against Azurite only; must be ``UseDevelopmentStorage=true`` or an Azurite string.
    storage_emulator_connection: str | None = Field(
        None, validation_alias="TieStorage__emulatorConnectionString"
    )
    #: Client id of a user-assigned managed identity (empty: system-assigned / developer credential).
    managed_identity_client_id: str | None = Field(None, validation_alias="AZURE_CLIENT_ID")
    key_vault_uri: str | None = Field(None, validation_alias="TIE_KEY_VAULT_URI")

    applicationinsights_connection_string: str | None = Field(
        None, validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", validation_alias="TIE_LOG_LEVEL")
    service_name: str = Field("serverless-tie", validation_alias=AliasChoices("OTEL_SERVICE_NAME"))

    #: Largest request body accepted by HTTP functions (bytes); larger -> 413.
    http_max_body_bytes: int = Field(1_048_576, ge=1024, validation_alias="TIE_HTTP_MAX_BODY_BYTES")

    # FHIR API (functions/fhir_*.py, shared/fhirapi). The repository is the embedded SQLite store
    # (``<TIE_LOCAL_DIR>/fhir.sqlite3``) or an Azure Health Data Services FHIR service (managed identity).
    fhir_backend: Backend = Field(Backend.EMBEDDED, validation_alias="TIE_FHIR_BACKEND")
    #: Base URL of the AHDS FHIR service (``https://<workspace>-<service>.fhir.azurehealthcareapis.com``).
    fhir_service_url: str | None = Field(None, validation_alias="TieFhir__serviceUrl")
    #: Public base URL of our FHIR API (Location, Bundle fullUrl and paging links), e.g. the API Management
    #: address ``https://<apim>.azure-api.net/tie/fhir``; empty: derived from each request's URL.
    fhir_base_url: str | None = Field(None, validation_alias="TIE_FHIR_BASE_URL")
    #: Most entries in one batch or transaction Bundle (more: 413 OperationOutcome, nothing processed);
    #: never above the repository's own limit (AHDS and the embedded store: 500).
    fhir_max_bundle_entries: int = Field(
        500, ge=1, le=100_000, validation_alias="TIE_FHIR_MAX_BUNDLE_ENTRIES"
    )
    #: Refuse FHIR requests that lack the header API Management injects (401 OperationOutcome).
    require_apim_header: bool = Field(False, validation_alias="TIE_REQUIRE_APIM_HEADER")
    apim_header_name: str = Field(
        "X-TIE-Gateway", min_length=1, max_length=64, validation_alias="TIE_APIM_HEADER_NAME"
    )
    #: The value API Management puts in that header (a Key Vault reference in Azure). With the check on
    #: and no secret set, every gated request is refused (fail closed).
    apim_shared_secret: SecretStr | None = Field(None, validation_alias="TIE_APIM_SHARED_SECRET")

    # Write-back (functions/events.py, shared/backbone). FHIR: empty URL = the platform's FHIR repository
    # (TIE_FHIR_BACKEND); a URL = that FHIR R4 server over REST (managed identity token). HL7 v2 over MLLP:
    # empty host = not configured (events are journaled as skipped for that downstream).
    writeback_fhir_url: str | None = Field(None, validation_alias="TIE_WRITEBACK_FHIR_URL")
    #: A downstream registry name (``fhir-writeback``): the FHIR write-back takes its endpoint (unless
    #: TIE_WRITEBACK_FHIR_URL is set), client certificate and trust CA from the registry (mutual TLS, no
    #: bearer token), and audits each call's credential. Empty: TIE_WRITEBACK_FHIR_URL alone.
    writeback_fhir_downstream: str | None = Field(None, validation_alias="TIE_WRITEBACK_FHIR_DOWNSTREAM")
    writeback_mllp_host: str | None = Field(None, validation_alias="TIE_WRITEBACK_MLLP_HOST")
    writeback_mllp_port: int = Field(2575, ge=1, le=65535, validation_alias="TIE_WRITEBACK_MLLP_PORT")
    writeback_hl7_receiving_application: str = Field(
        "", max_length=180, validation_alias="TIE_WRITEBACK_HL7_RECEIVING_APPLICATION"
    )
    writeback_hl7_receiving_facility: str = Field(
        "", max_length=180, validation_alias="TIE_WRITEBACK_HL7_RECEIVING_FACILITY"
    )
    #: A downstream registry name (``hl7-writeback``): the HL7 v2 write-back takes its endpoint (unless
    #: TIE_WRITEBACK_MLLP_HOST is set) and, when the entry names a credential or trust CA, TLS with the
    #: client certificate from the registry (each send audited). Empty: TIE_WRITEBACK_MLLP_* alone.
    writeback_hl7_downstream: str | None = Field(None, validation_alias="TIE_WRITEBACK_HL7_DOWNSTREAM")
    #: The HL7 v2 downstream's outbound profile (JSON: version, MSH-3/4/17/18, trigger events, ACK mode;
    #: shared/backbone/hl7_profile.py). Empty: v2.5.1, UTF-8, events collapsed to A08/A31.
    writeback_hl7_profile_file: str | None = Field(None, validation_alias="TIE_WRITEBACK_HL7_PROFILE_FILE")
    #: Per downstream call: FHIR read timeout / MLLP ACK timeout (seconds).
    writeback_timeout_seconds: float = Field(
        10.0, gt=0, le=120, validation_alias="TIE_WRITEBACK_TIMEOUT_SECONDS"
    )
    #: Downstream calls per delivery (1 = no in-delivery retry); backoff = full jitter from this base.
    writeback_max_attempts: int = Field(3, ge=1, le=10, validation_alias="TIE_WRITEBACK_MAX_ATTEMPTS")
    writeback_backoff_base_seconds: float = Field(
        0.5, ge=0, le=30, validation_alias="TIE_WRITEBACK_BACKOFF_BASE_SECONDS"
    )
    #: Consecutive "downstream unavailable" failures that open a downstream's circuit (work is parked).
    writeback_breaker_failure_threshold: int = Field(
        5, ge=1, le=1000, validation_alias="TIE_WRITEBACK_BREAKER_FAILURE_THRESHOLD"
    )
    #: First wait before a half-open probe; doubles after each failed probe (up to 20x).
    writeback_breaker_cooldown_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias="TIE_WRITEBACK_BREAKER_COOLDOWN_SECONDS"
    )

    #: A message still in flight this long after a subscriber became due is *stuck*: announced once as a
    #: ``message.stuck`` platform event, gauge ``tie.messages.stuck`` (shared/backbone/stuck.py).
    stuck_after_seconds: int = Field(900, ge=1, le=7 * 86_400, validation_alias="TIE_STUCK_AFTER_SECONDS")
    # Reconciliation (shared/reconcile, docs/reconciliation.md): the timer runs once a day at this UK
    # local hour over the last TIE_RECONCILE_WINDOW_HOURS; a count of one variance category on one
    # interface above TIE_RECONCILE_THRESHOLD raises reconcile.variance; a share of the resources written
    # to the FHIR destination is read back.
    reconcile_hour: int = Field(2, ge=0, le=23, validation_alias="TIE_RECONCILE_HOUR")
    reconcile_window_hours: int = Field(24, ge=1, le=24 * 31, validation_alias="TIE_RECONCILE_WINDOW_HOURS")
    reconcile_threshold: int = Field(0, ge=0, validation_alias="TIE_RECONCILE_THRESHOLD")
    reconcile_sample_percent: float = Field(
        100.0, gt=0, le=100, validation_alias="TIE_RECONCILE_SAMPLE_PERCENT"
    )
    #: Share of FHIR write-backs mapped once more with lineage, so a mismatch names its source field.
    reconcile_lineage_percent: float = Field(
        10.0, ge=0, le=100, validation_alias="TIE_RECONCILE_LINEAGE_PERCENT"
    )

    # Credentials (shared/credentials, docs/credentials.md). The downstream registry (JSON; empty: the
    # packaged sample), and where credentials live: "embedded" = PEM/secret files in TIE_CREDENTIALS_DIR
    # (default <TIE_LOCAL_DIR>/credentials), "azure" = Key Vault TIE_KEY_VAULT_URI, managed identity.
    downstreams_file: Path | None = Field(None, validation_alias="TIE_DOWNSTREAMS_FILE")
    credentials_backend: Backend = Field(Backend.EMBEDDED, validation_alias="TIE_CREDENTIALS_BACKEND")
    credentials_dir: Path | None = Field(None, validation_alias="TIE_CREDENTIALS_DIR")
    #: How often a TLS source asks the store for a new certificate version (rotation without restart).
    credentials_refresh_seconds: float = Field(
        300.0, ge=1, le=86_400, validation_alias="TIE_CREDENTIALS_REFRESH_SECONDS"
    )

    # National services (shared/pds, shared/mesh; docs/pds-and-mesh.md). PDS: "stub" = the local stand-in
    # serving the PDS sandbox responses (embedded default), "http" = the PDS FHIR API at TIE_PDS_BASE_URL.
    pds_backend: Literal["stub", "http"] = Field("stub", validation_alias="TIE_PDS_BACKEND")
    pds_base_url: str | None = Field(None, validation_alias="TIE_PDS_BASE_URL")
    #: The PDS corpus the stand-in serves (default ../shared/corpora/nhs-pds-fhir-api beside the repo).
    pds_corpus_dir: Path | None = Field(None, validation_alias="TIE_PDS_CORPUS_DIR")
    #: Bearer token until the downstream credential registry provides the signed-JWT flow (empty: none).
    pds_access_token: SecretStr | None = Field(None, validation_alias="TIE_PDS_ACCESS_TOKEN")
    pds_timeout_seconds: float = Field(10.0, gt=0, le=60, validation_alias="TIE_PDS_TIMEOUT_SECONDS")
    #: In-memory cache of PDS retrievals (0 = off); never holds restricted records (README "PDS").
    pds_cache_ttl_seconds: float = Field(300.0, ge=0, le=86_400, validation_alias="TIE_PDS_CACHE_TTL_SECONDS")
    #: Write-back downstreams (``fhir``, ``hl7v2``) that require a PDS-verified identity (empty: none).
    pds_verify_downstreams: str = Field("", max_length=256, validation_alias="TIE_PDS_VERIFY_DOWNSTREAMS")
    #: MESH: "local" = mailboxes as folders under TIE_LOCAL_DIR/mesh (embedded default), "sandbox" = NHS
    #: mesh-sandbox started on loopback by ``tie run``, "mesh" = the MESH API at TIE_MESH_URL.
    mesh_backend: Literal["local", "sandbox", "mesh"] = Field("local", validation_alias="TIE_MESH_BACKEND")
    mesh_url: str | None = Field(None, validation_alias="TIE_MESH_URL")
    #: Mailboxes the inbound timer polls (comma-separated mailbox ids; empty: polling does nothing).
    mesh_mailboxes: str = Field("", max_length=1024, validation_alias="TIE_MESH_MAILBOXES")
    mesh_sandbox_port: int = Field(8700, ge=1, le=65535, validation_alias="TIE_MESH_SANDBOX_PORT")
    mesh_mailbox_secret: SecretStr | None = Field(None, validation_alias="TIE_MESH_MAILBOX_SECRET")
    mesh_shared_key: SecretStr | None = Field(None, validation_alias="TIE_MESH_SHARED_KEY")
    #: Client certificate and key (PEM paths) and CA bundle for the real MESH service (mutual TLS).
    mesh_client_cert: str | None = Field(None, validation_alias="TIE_MESH_CLIENT_CERT")
    mesh_client_key: str | None = Field(None, validation_alias="TIE_MESH_CLIENT_KEY")
    mesh_ca_cert: str | None = Field(None, validation_alias="TIE_MESH_CA_CERT")
    #: Outbound results: sending mailbox, recipient mailbox and workflow id (empty sender: not configured).
    mesh_outbound_mailbox: str = Field("", max_length=64, validation_alias="TIE_MESH_OUTBOUND_MAILBOX")
    mesh_outbound_recipient: str = Field("", max_length=64, validation_alias="TIE_MESH_OUTBOUND_RECIPIENT")
    mesh_outbound_workflow: str = Field(
        "PATH_MEDRPT_V3", max_length=64, validation_alias="TIE_MESH_OUTBOUND_WORKFLOW"
    )

    #: HL7 v2 senders whose suspected unescaped delimiters are errors (AE / CR) instead of ACK warnings:
    #: comma-separated ``MSH-3|MSH-4`` namespace ids, ``*`` for any (``LAB|RGT01,PAS|*``; ``*`` = all).
    hl7_strict_senders: str = Field("", max_length=4096, validation_alias="TIE_HL7_STRICT_SENDERS")

    # MLLP listener (not a Function: runs beside the host; see README).
    mllp_host: str = Field("127.0.0.1", validation_alias="TIE_MLLP_HOST")
    mllp_port: int = Field(2575, ge=0, le=65535, validation_alias="TIE_MLLP_PORT")
    mllp_max_message_bytes: int = Field(1_048_576, ge=1024, validation_alias="TIE_MLLP_MAX_MESSAGE_BYTES")
    #: Deadline for the next complete frame after a reply (between frames); trusted senders get it for
    #: their first frame too. Partial bytes do not extend it.
    mllp_idle_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, validation_alias="TIE_MLLP_IDLE_TIMEOUT_SECONDS"
    )
    #: Deadline for the first complete frame of a new connection (TLS handshake included).
    mllp_first_frame_timeout_seconds: float = Field(
        15.0, gt=0, le=300, validation_alias="TIE_MLLP_FIRST_FRAME_TIMEOUT_SECONDS"
    )
    #: All connections; ``TIE_MLLP_RESERVED_CONNECTIONS`` of them only for allow-listed senders.
    mllp_max_connections: int = Field(256, ge=1, le=10_000, validation_alias="TIE_MLLP_MAX_CONNECTIONS")
    mllp_reserved_connections: int = Field(32, ge=0, validation_alias="TIE_MLLP_RESERVED_CONNECTIONS")
    #: Connections one peer address may hold (allow-listed senders are exempt).
    mllp_max_connections_per_source: int = Field(
        16, ge=1, validation_alias="TIE_MLLP_MAX_CONNECTIONS_PER_SOURCE"
    )
    #: Allow-listed senders: comma-separated CIDRs (``10.1.0.0/16,192.0.2.7/32``) and, with mutual TLS,
    #: client-certificate common names.
    mllp_trusted_cidrs: str = Field("", max_length=4096, validation_alias="TIE_MLLP_TRUSTED_CIDRS")
    mllp_trusted_client_cns: str = Field("", max_length=4096, validation_alias="TIE_MLLP_TRUSTED_CLIENT_CNS")
    #: Worker threads parsing, validating and persisting MLLP messages (off the event loop).
    mllp_workers: int = Field(8, ge=1, le=64, validation_alias="TIE_MLLP_WORKERS")
    #: On SIGTERM: how long in-flight messages may take to finish before their connections are cut.
    mllp_drain_seconds: float = Field(10.0, ge=0, le=120, validation_alias="TIE_MLLP_DRAIN_SECONDS")
    #: Optional TLS for MLLP: PEM certificate chain and key; a client CA file turns on mutual TLS.
    mllp_tls_cert_file: str | None = Field(None, validation_alias="TIE_MLLP_TLS_CERT_FILE")
    mllp_tls_key_file: str | None = Field(None, validation_alias="TIE_MLLP_TLS_KEY_FILE")
    mllp_tls_client_ca_file: str | None = Field(None, validation_alias="TIE_MLLP_TLS_CLIENT_CA_FILE")
    #: MLLP listener TLS from the downstream registry's ``mllp-listener`` entry (docs/credentials.md):
    #: ``off`` (default: plain TCP, or the PEM files above), ``tls`` (server certificate), ``mutual``
    #: (server certificate + client certificates issued by the entry's trust CA). Rotates without restart.
    mllp_tls: Literal["off", "tls", "mutual"] = Field("off", validation_alias="TIE_MLLP_TLS")
    #: The Trust's identifier systems per assigning authority (JSON, docs/identifier-systems.md); empty:
    #: the packaged file, which configures none (every local authority keeps urn:tie:authority:<ns>).
    identifier_systems_file: Path | None = Field(None, validation_alias="TIE_IDENTIFIER_SYSTEMS_FILE")
    #: Senders' local code systems per sending facility and HL7 table (JSON, docs/conformance.md); empty:
    #: the packaged file, which configures none (local codes keep urn:tie:codesystem:<facility>:<table>).
    local_code_systems_file: Path | None = Field(None, validation_alias="TIE_LOCAL_CODE_SYSTEMS_FILE")

    # FHIR Bulk Data export (shared/bulkexport, docs/bulk-export.md).
    #: Who may export: ``<client id>:identified|pseudonymised`` entries, comma-separated (``*`` = any
    #: client). Empty: nobody (fail closed).
    export_clients: str = Field("", max_length=4096, validation_alias="TIE_EXPORT_CLIENTS")
    #: HMAC key of pseudonymised exports (a Key Vault reference in Azure; at least 32 characters). Unset:
    #: pseudonymised exports are refused. There is no default.
    export_pseudonym_key: SecretStr | None = Field(None, validation_alias="TIE_EXPORT_PSEUDONYM_KEY")
    #: An export file is closed and a new one started at this size (bytes).
    export_max_file_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024, validation_alias="TIE_EXPORT_MAX_FILE_BYTES"
    )

    # Audit (docs/audit.md).
    #: Days each class of audited body is kept in the payload store (``0`` or left out: not kept); the
    #: audit records themselves keep their digests for as long as the audit is retained.
    audit_payload_retention_days: str = Field(
        "received=90,canonical=90,outbound=90,reply=90",
        max_length=200,
        validation_alias="TIE_AUDIT_PAYLOAD_RETENTION_DAYS",
    )

    @field_validator(
        "service_bus_namespace",
        "table_service_uri",
        "blob_service_uri",
        "storage_emulator_connection",
        "managed_identity_client_id",
        "key_vault_uri",
        "fhir_service_url",
        "fhir_base_url",
        "applicationinsights_connection_string",
        "mllp_tls_cert_file",
        "mllp_tls_key_file",
        "mllp_tls_client_ca_file",
        "identifier_systems_file",
        "downstreams_file",
        "credentials_dir",
        "local_code_systems_file",
        "writeback_fhir_url",
        "writeback_fhir_downstream",
        "writeback_hl7_downstream",
        "writeback_mllp_host",
        "apim_shared_secret",
        "export_pseudonym_key",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("apim_shared_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("TIE_APIM_SHARED_SECRET must be at least 16 characters")
        return value

    @field_validator("export_pseudonym_key")
    @classmethod
    def _export_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        text = value.get_secret_value() if value is not None else ""
        if value is not None and len(text) < 32 and not text.startswith("@Microsoft.KeyVault("):
            raise ValueError("TIE_EXPORT_PSEUDONYM_KEY must be at least 32 characters")
        return value

    @field_validator("audit_payload_retention_days")
    @classmethod
    def _audit_payload_retention_parse(cls, value: str) -> str:
        from shared.audit.payloads import InvalidRetention, Retention

        try:
            Retention.parse(value)
        except InvalidRetention as exc:
            raise ValueError(f"TIE_AUDIT_PAYLOAD_RETENTION_DAYS: {exc}") from None
        return value

    @field_validator("export_clients")
    @classmethod
    def _export_clients_parse(cls, value: str) -> str:
        for entry in _split_list(value):
            client, _, mode = entry.rpartition(":")
            if not client.strip() or mode not in ("identified", "pseudonymised"):
                raise ValueError("TIE_EXPORT_CLIENTS entries are <client id>:identified|pseudonymised")
        return value

    @field_validator("mllp_trusted_cidrs")
    @classmethod
    def _cidrs_parse(cls, value: str) -> str:
        for item in _split_list(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError("TIE_MLLP_TRUSTED_CIDRS: each entry must be an IP network (CIDR)") from None
        return value

    @field_validator("storage_emulator_connection")
    @classmethod
    def _emulator_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        lowered = value.lower()
        if (
            lowered.startswith("usedevelopmentstorage=true")
            or "127.0.0.1" in lowered
            or "localhost" in lowered
        ):
            return value
        raise ValueError(
            "TieStorage__emulatorConnectionString is for the Azurite emulator only; "
            "use TieStorage__tableServiceUri / __blobServiceUri with a managed identity for Azure"
        )

    @field_validator("hl7_strict_senders")
    @classmethod
    def _sender_list(cls, value: str) -> str:
        parse_sender_list(value)
        return value

    @model_validator(mode="after")
    def _azure_backends_need_endpoints(self) -> Settings:
        if self.mllp_reserved_connections >= self.mllp_max_connections:
            raise ValueError("TIE_MLLP_RESERVED_CONNECTIONS must be below TIE_MLLP_MAX_CONNECTIONS")
        if self.bus_backend is Backend.AZURE and not self.service_bus_namespace:
            raise ValueError("TIE_BUS_BACKEND=azure needs ServiceBusConnection__fullyQualifiedNamespace")
        if self.storage_backend is Backend.AZURE and not (
            self.storage_emulator_connection or (self.table_service_uri and self.blob_service_uri)
        ):
            raise ValueError(
                "TIE_STORAGE_BACKEND=azure needs TieStorage__tableServiceUri and TieStorage__blobServiceUri "
                "(or TieStorage__emulatorConnectionString for Azurite)"
            )
        if self.fhir_backend is Backend.AZURE and not self.fhir_service_url:
            raise ValueError("TIE_FHIR_BACKEND=azure needs TieFhir__serviceUrl")
        if self.credentials_backend is Backend.AZURE and not self.key_vault_uri:
            raise ValueError("TIE_CREDENTIALS_BACKEND=azure needs TIE_KEY_VAULT_URI")
        if self.mllp_tls != "off" and (self.mllp_tls_cert_file or self.mllp_tls_client_ca_file):
            raise ValueError(
                "TIE_MLLP_TLS takes the listener certificate from the downstream registry; "
                "leave TIE_MLLP_TLS_CERT_FILE / TIE_MLLP_TLS_CLIENT_CA_FILE empty"
            )
        for name, url in (
            ("TieFhir__serviceUrl", self.fhir_service_url),
            ("TIE_FHIR_BASE_URL", self.fhir_base_url),
        ):
            if url is not None and not url.startswith(("https://", "http://")):
                raise ValueError(f"{name} must be an absolute http(s) URL")
        return self

    # Derived locations of the embedded defaults ---------------------------------------------------------
    @property
    def bus_path(self) -> Path:
        return self.local_dir / "bus.sqlite3"

    @property
    def records_path(self) -> Path:
        return self.local_dir / "records.sqlite3"

    @property
    def blobs_root(self) -> Path:
        return self.local_dir / "blobs"

    @property
    def fhir_path(self) -> Path:
        return self.local_dir / "fhir.sqlite3"

    @property
    def credentials_path(self) -> Path:
        return self.credentials_dir or self.local_dir / "credentials"

    @property
    def mllp_trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        items = _split_list(self.mllp_trusted_cidrs)
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)

    @property
    def mllp_trusted_client_cn_set(self) -> frozenset[str]:
        return frozenset(_split_list(self.mllp_trusted_client_cns))

    @property
    def pds_verify_downstream_set(self) -> frozenset[str]:
        return frozenset(_split_list(self.pds_verify_downstreams))

    @property
    def mesh_mailbox_list(self) -> tuple[str, ...]:
        return tuple(_split_list(self.mesh_mailboxes))

    @property
    def mesh_root(self) -> Path:
        return self.local_dir / "mesh"

    @property
    def hl7_strict_sender_set(self) -> frozenset[tuple[str, str]]:
        """:attr:`hl7_strict_senders` as (MSH-3, MSH-4) pairs, upper case, ``*`` = any."""
        return parse_sender_list(self.hl7_strict_senders)


def parse_sender_list(text: str) -> frozenset[tuple[str, str]]:
    """``"LAB|RGT01, PAS"`` -> ``{("LAB", "RGT01"), ("PAS", "*")}``; raises ValueError when malformed."""
    pairs: set[tuple[str, str]] = set()
    for entry in text.split(","):
        if not entry.strip():
            continue
        parts = [p.strip().upper() for p in entry.split("|")]
        if len(parts) > 2 or not all(parts):
            raise ValueError("TIE_HL7_STRICT_SENDERS entries are MSH-3|MSH-4 (or MSH-3, or *)")
        pairs.add((parts[0], parts[1] if len(parts) == 2 else "*"))
    return frozenset(pairs)


def _split_list(value: str) -> list[str]:
    """``"a, b c,,d"`` -> ``["a", "b c", "d"]`` (comma-separated setting values, blanks dropped)."""
    return [item.strip() for item in value.split(",") if item.strip()]


#: App-setting names (aliases) of every field, for the sample-file consistency test and docs.
def setting_names() -> list[str]:
    names: list[str] = []
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        if isinstance(alias, str):
            names.append(alias)
        elif isinstance(alias, AliasChoices):
            names.extend(str(choice) for choice in alias.choices)
    return names


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    try:
        return Settings()
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise ConfigurationError(f"invalid settings: {exc}") from exc


def reset_settings() -> None:
    """Forget cached settings (tests and the local host after loading local.settings.json)."""
    get_settings.cache_clear()
