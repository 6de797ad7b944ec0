"""Key Vault credential provider: certificates (with their private key) and secrets, managed identity.

A Key Vault *certificate* keeps its private key in a *backing secret* of the same name and version
(``application/x-pkcs12``, base64, or ``application/x-pem-file``). Reading that secret with
``azure-keyvault-secrets`` gives the chain, the key and the version in one call, so this adapter needs
no ``azure-keyvault-certificates`` dependency: certificate metadata (expiry, subject, thumbprint) is read
from the certificate itself. The identity needs the **Key Vault Secrets User** role (``get``, ``list``)
- see ``docs/credentials.md``. Key material stays in memory (:mod:`shared.credentials.pem` builds
``SSLContext`` s through an anonymous in-memory file); nothing is written to disk.

Parsed certificates are cached per (name, version): the broker asks for the current version every few
minutes, and only a new version is parsed again.

Error mapping: 404 -> :class:`CredentialNotFound`; 401/403 (identity or role missing, possibly still
propagating), 429, 5xx and connection failures -> :class:`CredentialUnavailable` (transient). Messages
carry the credential name and the status, never a value.

There is no Key Vault emulator: ``tests/unit/credentials/test_keyvault_adapter.py`` drives this adapter
through fakes of the SDK's ``SecretClient`` (``create_autospec``) returning the SDK's own model objects.
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import KeyVaultSecret, SecretClient

from shared.adapters.embedded.local_credentials import check_name
from shared.credentials import pem
from shared.credentials.errors import CredentialInvalid, CredentialNotFound, CredentialUnavailable
from shared.credentials.model import CertificateInfo, CertificateMaterial, SecretValue

PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"


class KeyVaultCredentialProvider:
    source = "keyvault"

    def __init__(self, client: Any) -> None:
        """``client``: an ``azure.keyvault.secrets.SecretClient`` (or a fake with its interface)."""
        self._client = client
        self._cache: dict[tuple[str, str], CertificateMaterial] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_vault(cls, vault_url: str, credential: Any) -> KeyVaultCredentialProvider:
        return cls(SecretClient(vault_url=vault_url, credential=credential))

    def _get(self, name: str) -> KeyVaultSecret:
        check_name(name)
        try:
            secret: KeyVaultSecret = self._client.get_secret(name)
        except ResourceNotFoundError:
            raise CredentialNotFound(name, where="key vault") from None
        except ClientAuthenticationError:
            raise CredentialUnavailable(name, "key vault refused the identity") from None
        except ServiceRequestError as exc:
            raise CredentialUnavailable(name, f"key vault unreachable ({type(exc).__name__})") from None
        except HttpResponseError as exc:
            raise CredentialUnavailable(name, f"key vault answered {exc.status_code}") from None
        if secret.value is None:
            raise CredentialInvalid(name, "the secret has no value")
        return secret

    def certificate(self, name: str) -> CertificateMaterial:
        secret = self._get(name)
        version = secret.properties.version or "unversioned"
        with self._lock:
            cached = self._cache.get((name, version))
        if cached is not None:
            return cached
        content_type = secret.properties.content_type
        value = secret.value or ""
        if content_type == PKCS12:
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise CredentialInvalid(name, "PKCS#12 value is not base64") from None
        elif content_type == PEM or "-----BEGIN" in value:
            data = value.encode("ascii", "replace")
        else:
            raise CredentialInvalid(name, "not a certificate (content type is neither PKCS#12 nor PEM)")
        material = pem.parse(name, data, version=version, source=self.source, content_type=content_type)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != name}
            self._cache[(name, version)] = material
        return material

    def certificate_info(self, name: str) -> CertificateInfo:
        return self.certificate(name).info

    def list_certificates(self) -> list[CertificateInfo]:
        try:
            listed = list(self._client.list_properties_of_secrets())
        except ClientAuthenticationError:
            raise CredentialUnavailable("(list)", "key vault refused the identity") from None
        except ServiceRequestError as exc:
            raise CredentialUnavailable("(list)", f"key vault unreachable ({type(exc).__name__})") from None
        except HttpResponseError as exc:
            raise CredentialUnavailable("(list)", f"key vault answered {exc.status_code}") from None
        names = sorted(
            p.name
            for p in listed
            if p.name and p.enabled is not False and (p.managed or p.content_type in (PKCS12, PEM))
        )
        return [self.certificate_info(n) for n in names]

    def secret(self, name: str) -> SecretValue:
        secret = self._get(name)
        return SecretValue(name, secret.properties.version or "unversioned", secret.value or "")

    def close(self) -> None:
        self._client.close()
