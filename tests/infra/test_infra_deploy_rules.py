"""Rules that make the templates deploy (issue 13, findings 1-4), checked on the parse tree.

Each test encodes one rule that Azure Resource Manager would otherwise enforce only at deployment time; the
ARM engine itself cannot run here (infra/README.md, "What the tests cannot prove").
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.messaging.topology import TIER_MESSAGE_SIZE_KB, TOPOLOGY, TopicSpec, max_message_size_kb
from tests.infra import bicep_ast as b

CONFIG = b.BICEP_DIR / "config"


def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIG / name).read_text())
    return data


# -- 1. Service Bus topic size by tier --


def test_topic_message_size_is_within_the_range_of_every_tier() -> None:
    """Premium refuses maxMessageSizeInKilobytes below 1024 (or above 102400); Standard is fixed at 256."""
    assert TIER_MESSAGE_SIZE_KB == {"Standard": (256, 256), "Premium": (1024, 102_400)}
    topics = _json("topology.json")["topics"]
    assert [t["name"] for t in topics] == [t.name for t in TOPOLOGY]
    for topic in topics:
        sizes = topic["maxMessageSizeInKilobytes"]
        assert set(sizes) == set(TIER_MESSAGE_SIZE_KB), topic["name"]
        for tier, (low, high) in TIER_MESSAGE_SIZE_KB.items():
            assert low <= sizes[tier] <= high, (topic["name"], tier, sizes[tier])


@pytest.mark.parametrize(
    ("max_bytes", "tier", "expected"),
    [
        (256 * 1024, "Standard", 256),
        (256 * 1024, "Premium", 1024),
        (2 * 1024 * 1024, "Premium", 2048),
        (2 * 1024 * 1024, "Standard", ValueError),
        (1024, "Basic", ValueError),
    ],
)
def test_max_message_size_kb(max_bytes: int, tier: str, expected: int | type[Exception]) -> None:
    spec = TopicSpec("t", (), max_message_bytes=max_bytes)
    if isinstance(expected, int):
        assert max_message_size_kb(spec, tier) == expected
    else:
        with pytest.raises(expected):
            max_message_size_kb(spec, tier)


def test_topic_module_sets_the_size_of_the_namespace_tier() -> None:
    module = b.load(b.MODULES / "servicebus-topic.bicep")
    assert module.params()["tier"].allowed() == ["Standard", "Premium"]
    (topic,) = module.resources("Microsoft.ServiceBus/namespaces/topics")
    sizes = [b.text(v) for _, v in b.object_properties_named(topic.body, "maxMessageSizeInKilobytes")]  # type: ignore[arg-type]
    assert sizes == ["topic.maxMessageSizeInKilobytes[tier]"]
    (call,) = [
        m for m in b.load(b.MODULES / "servicebus.bicep").modules() if m.target == "servicebus-topic.bicep"
    ]
    assert b.text(call.get("params.tier")) == "sku"


# -- 2. Key Vault-backed named values: the system-assigned identity, with a role on the vault --

APIM = b.load(b.MODULES / "apim.bicep")
ROLES = json.loads((CONFIG / "roles.json").read_text())


def test_key_vault_references_in_api_management_use_the_system_assigned_identity() -> None:
    (service,) = APIM.resources("Microsoft.ApiManagement/service")
    assert "SystemAssigned" in str(b.literal(service.get("identity.type")))
    with_vault = [
        (decl, node)
        for decl in APIM.resources()
        for _, node in b.object_properties_named(decl.body, "keyVault")  # type: ignore[arg-type]
        if decl.body is not None
    ]
    assert with_vault, "API Management reads nothing from Key Vault?"
    for decl, node in with_vault:
        # identityClientId would select a user-assigned identity, which a firewalled vault refuses.
        assert "identityClientId" not in b.properties(node), decl.where()
        assert "vaultSecretsUser" in b.text(decl.get("dependsOn")), (
            f"{decl.where()}: read before the role exists"
        )
    (grant,) = APIM.resources("Microsoft.Authorization/roleAssignments")
    assert b.text(grant.get("scope")) == "vault"
    assert b.text(grant.get("properties.principalId")) == "service.identity.principalId"
    assert "roles.keyVaultSecretsUser" in b.text(grant.get("properties.roleDefinitionId"))
    assert ROLES["keyVaultSecretsUser"] == "4633458b-17de-408a-b874-0445c86b69e6"
    (vault,) = [d for d in APIM.resources("Microsoft.KeyVault/vaults") if d.existing]
    assert b.text(vault.get("name")) == "keyVaultName"


# -- 3. No function key: Entra ID in front of the Function App, API Management's identity the only caller --

FUNCTION_APP = b.load(b.MODULES / "functionapp.bicep")


def test_no_template_lists_keys() -> None:
    for file in b.all_files():
        assert list(b.call_arguments(file.root, "listKeys")) == [], file.rel
        assert not re.search(r"\blist[A-Za-z]*Keys\s*\(", file.source.decode()), file.rel


def test_function_app_admits_only_api_managements_identity() -> None:
    (auth,) = FUNCTION_APP.resources("Microsoft.Web/sites/config")
    assert b.literal(auth.get("name")) == "authsettingsV2"
    assert b.literal(auth.get("properties.platform.enabled")) is True
    assert b.literal(auth.get("properties.globalValidation.requireAuthentication")) is True
    assert b.literal(auth.get("properties.globalValidation.unauthenticatedClientAction")) == "Return401"
    assert b.literal(auth.get("properties.globalValidation.excludedPaths")) == ["/api/health"]
    aad = "properties.identityProviders.azureActiveDirectory"
    assert b.literal(auth.get(f"{aad}.enabled")) is True
    policy = f"{aad}.validation.defaultAuthorizationPolicy"
    assert [b.text(n) for n in auth.get(f"{policy}.allowedApplications").named_children] == ["callerClientId"]  # type: ignore[union-attr]
    identities = auth.get(f"{policy}.allowedPrincipals.identities")
    assert [b.text(n) for n in identities.named_children] == ["callerPrincipalId"]  # type: ignore[union-attr]
    (call,) = [m for m in b.load(b.MAIN).modules() if m.symbol == "functionApp"]
    assert b.text(call.get("params.callerClientId")) == "apimIdentity.outputs.clientId"
    assert b.text(call.get("params.callerPrincipalId")) == "apimIdentity.outputs.principalId"


def test_api_management_calls_the_backend_with_its_managed_identity() -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(b.INFRA / "apim" / "policies" / "api-tie.xml").getroot()
    (auth,) = root.iter("authentication-managed-identity")
    assert auth.get("resource") == "{{tie-api-audience}}"
    assert auth.get("client-id") == "{{tie-apim-client-id}}"
    assert b.text(b.properties(APIM.variables()["namedValues"])["tie-apim-client-id"]) == "identityClientId"
    (backend,) = APIM.resources("Microsoft.ApiManagement/service/backends")
    assert backend.get("properties.credentials") is None


# -- 4. WORM policy created once, never re-PUT --


def test_immutability_policy_is_created_only_on_the_bootstrap_run() -> None:
    storage = b.load(b.MODULES / "storage.bicep")
    (policy,) = storage.resources(
        "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"
    )
    condition = b.text(policy.node)
    assert (
        policy.conditional
        and "if (createImmutabilityPolicies && container.immutabilityDays > 0)" in condition
    )
    main = b.load(b.MAIN)
    assert b.literal(main.params()["bootstrap"].default) is False, "a plain redeploy must skip the policy"
    storage_calls = [m for m in main.modules() if m.target == "modules/storage.bicep"]
    assert len(storage_calls) == 2
    for call in storage_calls:
        assert b.text(call.get("params.createImmutabilityPolicies")) == "bootstrap", call.where()
    # Nothing else PUTs immutability: no other declaration of the type anywhere.
    declared = [
        d for f in b.all_files() for d in f.resources() if d.target.lower().endswith("immutabilitypolicies")
    ]
    assert declared == [policy]
