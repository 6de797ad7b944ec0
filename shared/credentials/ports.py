"""The credential provider port (no ``azure.*`` here).

Adapters: :class:`shared.adapters.embedded.local_credentials.LocalCredentialProvider` (embedded default:
PEM and secret files in a folder) and :class:`shared.adapters.azure.keyvault.KeyVaultCredentialProvider`
(Key Vault certificates through their backing secrets, managed identity). Both raise only the errors of
:mod:`shared.credentials.errors`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from shared.credentials.model import CertificateInfo, CertificateMaterial, SecretValue


@runtime_checkable
class CredentialProvider(Protocol):
    #: ``local`` or ``keyvault`` (shown by ``tie certs``).
    source: str

    def certificate(self, name: str) -> CertificateMaterial:
        """The current version of certificate ``name`` with its chain and private key (when it has one)."""
        ...

    def certificate_info(self, name: str) -> CertificateInfo:
        """Public facts about the current version (cheap: no private key is fetched where avoidable)."""
        ...

    def list_certificates(self) -> list[CertificateInfo]:
        """Every certificate the store holds (current versions)."""
        ...

    def secret(self, name: str) -> SecretValue: ...

    def close(self) -> None: ...


class TlsSource(Protocol):
    """What a transport (MLLP client, FHIR HTTP adapter) asks for: the TLS context for its next connection,
    and to record which credential a call is about to use (:class:`shared.credentials.broker.ClientTls`)."""

    def context(self) -> ssl.SSLContext: ...

    def record_use(self, operation: str) -> object: ...


class PlatformAlerts(Protocol):
    """Where the certificate expiry monitor announces a band crossed: one ``platform-events`` notification.
    Raises a :class:`shared.errors.TieError` when it was not published (the monitor retries next run).
    The composition root hands in :class:`shared.backbone.platform.BusPlatformEvents`."""

    def publish(
        self,
        event_type: Literal["certificate.expiring", "certificate.expired"],
        *,
        event_id: str,
        subject: str,
        severity: Literal["info", "warning", "error", "critical"],
        details: Mapping[str, str | int],
        time: datetime,
    ) -> None: ...
