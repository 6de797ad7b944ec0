"""Managed-identity credentials for every Azure adapter (no keys, no connection strings)."""

from __future__ import annotations

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential


def build_credential(managed_identity_client_id: str | None = None) -> TokenCredential:
    """User-assigned identity when a client id is configured, else the default chain.

    The default chain covers the system-assigned identity in Azure and a developer's ``az login`` locally.
    """
    if managed_identity_client_id:
        return ManagedIdentityCredential(client_id=managed_identity_client_id)
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)
