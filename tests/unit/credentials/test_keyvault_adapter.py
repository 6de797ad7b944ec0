"""The Key Vault provider against the SDK's interfaces: a ``create_autospec`` fake of ``SecretClient``
returning the SDK's own ``KeyVaultSecret`` / ``SecretProperties`` (no Key Vault emulator exists)."""

from __future__ import annotations

import base64
from typing import Any
from unittest.mock import create_autospec

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import KeyVaultSecret, SecretClient, SecretProperties
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

from shared.adapters.azure.keyvault import PEM, PKCS12, KeyVaultCredentialProvider
from shared.credentials import pem
from shared.credentials.errors import CredentialInvalid, CredentialNotFound, CredentialUnavailable
from shared.errors import TransientError
from tests.unit.credentials.conftest import Clock, Store

VAULT = "https://tie-kv.vault.azure.net"


def secret(
    name: str, version: str, value: str, content_type: str | None, *, managed: bool = True
) -> KeyVaultSecret:
    props = SecretProperties(
        vault_id=f"{VAULT}/secrets/{name}/{version}", content_type=content_type, managed=managed
    )
    return KeyVaultSecret(props, value)


def fake_client() -> Any:
    return create_autospec(SecretClient, instance=True)


def test_a_pkcs12_certificate_secret_gives_chain_key_and_the_vault_version(
    store: Store, clock: Clock
) -> None:
    issued = store.issue("mllp", days=40)
    p12 = pkcs12.serialize_key_and_certificates(b"mllp", issued.key, issued.cert, None, NoEncryption())
    client = fake_client()
    client.get_secret.return_value = secret("mllp", "v1abc", base64.b64encode(p12).decode(), PKCS12)
    provider = KeyVaultCredentialProvider(client)
    material = provider.certificate("mllp")
    assert material.info.version == "v1abc" and material.info.source == "keyvault"
    assert material.info.thumbprint == pem.thumbprint(issued.cert)
    assert material.info.days_remaining(clock()) == 40
    assert material.key_pem is not None and b"PRIVATE KEY" in material.key_pem
    pem.client_context(material, None, now=clock())  # usable in memory
    client.get_secret.assert_called_with("mllp")
    assert "PRIVATE" not in repr(material)


def test_a_pem_secret_and_a_rotation_to_a_new_version(store: Store) -> None:
    first, second = store.issue("svc", days=10), store.issue("svc", days=400)
    client = fake_client()
    client.get_secret.side_effect = [
        secret("svc", "v1", first.pem.decode(), PEM),
        secret("svc", "v1", first.pem.decode(), PEM),
        secret("svc", "v2", second.pem.decode(), PEM),
    ]
    provider = KeyVaultCredentialProvider(client)
    a = provider.certificate("svc")
    assert provider.certificate("svc") is a  # same version: cached, not parsed again
    b = provider.certificate("svc")
    assert (a.info.version, b.info.version) == ("v1", "v2")
    assert b.info.thumbprint == pem.thumbprint(second.cert)


def test_list_returns_certificate_backed_secrets_only(store: Store) -> None:
    one = store.issue("one", days=5)
    client = fake_client()
    client.list_properties_of_secrets.return_value = iter(
        [
            SecretProperties(vault_id=f"{VAULT}/secrets/one", content_type=PKCS12, managed=True),
            SecretProperties(vault_id=f"{VAULT}/secrets/api-key", content_type="text/plain"),
        ]
    )
    client.get_secret.return_value = secret("one", "v9", one.pem.decode(), PEM)
    infos = KeyVaultCredentialProvider(client).list_certificates()
    assert [(i.name, i.version) for i in infos] == [("one", "v9")]
    client.get_secret.assert_called_once_with("one")


@pytest.mark.parametrize(
    ("raised", "expected", "text"),
    [
        (ResourceNotFoundError("gone"), CredentialNotFound, "credential 'x' not found in the key vault"),
        (ClientAuthenticationError("no"), CredentialUnavailable, "key vault refused the identity"),
        (ServiceRequestError("dns"), CredentialUnavailable, "key vault unreachable (ServiceRequestError)"),
        (HttpResponseError("busy"), CredentialUnavailable, "key vault answered None"),
    ],
)
def test_sdk_errors_map_to_credential_errors_without_detail(
    raised: Exception, expected: type, text: str
) -> None:
    client = fake_client()
    client.get_secret.side_effect = raised
    with pytest.raises(expected) as caught:
        KeyVaultCredentialProvider(client).certificate("x")
    assert text in str(caught.value)
    assert isinstance(caught.value, TransientError) == (expected is CredentialUnavailable)


def test_a_secret_that_is_not_a_certificate_is_refused_without_quoting_it() -> None:
    client = fake_client()
    client.get_secret.return_value = secret("x", "v1", "hunter2-not-a-cert", "text/plain")
    with pytest.raises(CredentialInvalid) as caught:
        KeyVaultCredentialProvider(client).certificate("x")
    assert "hunter2" not in str(caught.value)


def test_secrets_keep_their_value_out_of_repr() -> None:
    client = fake_client()
    client.get_secret.return_value = secret("api", "v3", "s3cr3t-value", "text/plain", managed=False)
    value = KeyVaultCredentialProvider(client).secret("api")
    assert (value.version, value.value) == ("v3", "s3cr3t-value")
    assert "s3cr3t" not in repr(value)


def test_names_outside_the_key_vault_rule_are_refused_before_any_call() -> None:
    client = fake_client()
    with pytest.raises(CredentialInvalid):
        KeyVaultCredentialProvider(client).certificate("../etc/passwd")
    client.get_secret.assert_not_called()
