"""Security posture of the templates: Entra-only access, no public network access in prod, least privilege.

Checked on the parse tree, not by grepping: a property counts only where it sits in the resource body.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra import bicep_ast as b

ROLES: dict[str, str] = {
    k: v
    for k, v in json.loads((b.BICEP_DIR / "config" / "roles.json").read_text()).items()
    if k != "$comment"
}
PROD = {
    name: entry["value"]
    for name, entry in json.loads((b.BICEP_DIR / "params" / "prod.parameters.json").read_text())[
        "parameters"
    ].items()
}


def _one(module: str, type_: str) -> b.Declaration:
    found = [d for d in b.load(b.MODULES / module).resources(type_) if not d.existing]
    assert len(found) == 1, f"{module}: expected one {type_}, found {len(found)}"
    return found[0]


# (module, resource type, property path, required literal value)
REQUIRED_LITERALS: list[tuple[str, str, str, Any]] = [
    ("servicebus.bicep", "Microsoft.ServiceBus/namespaces", "properties.disableLocalAuth", True),
    ("servicebus.bicep", "Microsoft.ServiceBus/namespaces", "properties.minimumTlsVersion", "1.2"),
    ("storage.bicep", "Microsoft.Storage/storageAccounts", "properties.allowSharedKeyAccess", False),
    ("storage.bicep", "Microsoft.Storage/storageAccounts", "properties.allowBlobPublicAccess", False),
    ("storage.bicep", "Microsoft.Storage/storageAccounts", "properties.defaultToOAuthAuthentication", True),
    ("storage.bicep", "Microsoft.Storage/storageAccounts", "properties.minimumTlsVersion", "TLS1_2"),
    ("storage.bicep", "Microsoft.Storage/storageAccounts", "properties.supportsHttpsTrafficOnly", True),
    ("storage.bicep", "Microsoft.Storage/storageAccounts", "properties.allowCrossTenantReplication", False),
    ("keyvault.bicep", "Microsoft.KeyVault/vaults", "properties.enableRbacAuthorization", True),
    ("keyvault.bicep", "Microsoft.KeyVault/vaults", "properties.enableSoftDelete", True),
    ("keyvault.bicep", "Microsoft.KeyVault/vaults", "properties.enablePurgeProtection", True),
    ("monitoring.bicep", "Microsoft.Insights/components", "properties.DisableLocalAuth", True),
    (
        "monitoring.bicep",
        "Microsoft.OperationalInsights/workspaces",
        "properties.features.disableLocalAuth",
        True,
    ),
    ("functionapp.bicep", "Microsoft.Web/sites", "properties.httpsOnly", True),
    ("functionapp.bicep", "Microsoft.Web/sites", "properties.siteConfig.minTlsVersion", "1.2"),
    ("functionapp.bicep", "Microsoft.Web/sites", "properties.siteConfig.scmMinTlsVersion", "1.2"),
    ("functionapp.bicep", "Microsoft.Web/sites", "properties.siteConfig.ftpsState", "Disabled"),
    ("functionapp.bicep", "Microsoft.Web/sites", "kind", "functionapp,linux"),
    ("functionapp.bicep", "Microsoft.Web/sites", "identity.type", "UserAssigned"),
    ("functionapp.bicep", "Microsoft.Web/serverfarms", "sku", {"name": "FC1", "tier": "FlexConsumption"}),
    (
        "functionapp.bicep",
        "Microsoft.Web/sites",
        "properties.functionAppConfig.deployment.storage.authentication.type",
        "UserAssignedIdentity",
    ),
]


@pytest.mark.parametrize(
    ("module", "type_", "path", "expected"),
    REQUIRED_LITERALS,
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_required_setting(module: str, type_: str, path: str, expected: Any) -> None:
    decl = _one(module, type_)
    assert b.literal(decl.get(path)) == expected, f"{decl.where()}: {path}"


def test_function_app_is_vnet_integrated_and_uses_key_vault_references_with_its_identity() -> None:
    site = _one("functionapp.bicep", "Microsoft.Web/sites")
    assert b.text(site.get("properties.virtualNetworkSubnetId")) == "integrationSubnetId"
    assert b.text(site.get("properties.keyVaultReferenceIdentity")) == "identityId"
    spec = json.loads((b.BICEP_DIR / "config" / "app-settings.json").read_text())
    secret = next(s for s in spec["settings"] if s["name"] == "APPLICATIONINSIGHTS_CONNECTION_STRING")
    assert secret["from"] == "keyVaultSecret"
    rendered = b.text(b.load(b.MODULES / "functionapp.bicep").variables()["appSettings"])
    assert "@Microsoft.KeyVault(VaultName=" in rendered


def test_basic_auth_publishing_is_disabled() -> None:
    policies = b.load(b.MODULES / "functionapp.bicep").resources(
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    )
    assert {b.literal(p.get("name")): b.literal(p.get("properties.allow")) for p in policies} == {
        "ftp": False,
        "scm": False,
    }


# Properties that, anywhere in any template, would switch on key-based or anonymous access.
FORBIDDEN_VALUES = {
    "disableLocalAuth": False,
    "DisableLocalAuth": False,
    "allowSharedKeyAccess": True,
    "allowBlobPublicAccess": True,
    "enableRbacAuthorization": False,
    "enablePurgeProtection": False,
    "httpsOnly": False,
    "allow": True,
}


def test_no_template_enables_local_or_shared_key_auth() -> None:
    offenders = []
    for file in b.all_files():
        for key, forbidden in FORBIDDEN_VALUES.items():
            for prop, value in b.object_properties_named(file.root, key):
                if value.type != "boolean" or b.literal(value) is not forbidden:
                    if value.type != "boolean":  # computed: must not be able to yield the forbidden value
                        offenders.append(f"{file.rel}:{prop.start_point[0] + 1}: {key} is computed")
                    continue
                offenders.append(f"{file.rel}:{prop.start_point[0] + 1}: {key}: {b.text(value)}")
        for prop, value in b.object_properties_named(file.root, "publicAccess"):
            if b.string_value(value) != "None":
                offenders.append(f"{file.rel}:{prop.start_point[0] + 1}: container publicAccess")
    assert offenders == []


# Module parameters that carry public network access, and the main.bicep value each must receive.
# Exceptions (documented in infra/README.md): the API Management gateway is the front door, and Azure
# Monitor query access (portal/workbooks, Entra ID + RBAC) stays reachable; ingestion is private.
PUBLIC_ACCESS_EXCEPTIONS = {
    ("apim", "publicNetworkAccess"): "apimPublicNetworkAccess",
    ("monitoring", "queryPublicNetworkAccess"): "monitorQueryPublicNetworkAccess",
    # Default action Deny, no network allowed: the trusted-services bypass (Azure Monitor) is the only way in.
    ("monitoring", "archivePublicNetworkAccess"): "archivePublicNetworkAccess",
}


def test_public_network_access_properties_follow_parameters() -> None:
    """No template hard-codes public access on; modules take it from a parameter."""
    for file in b.all_files():
        for key in ("publicNetworkAccess", "publicNetworkAccessForIngestion", "publicNetworkAccessForQuery"):
            for prop, value in b.object_properties_named(file.root, key):
                where = f"{file.rel}:{prop.start_point[0] + 1}"
                assert value.type == "identifier", f"{where}: {key} must come from a parameter"


def test_main_passes_isolated_access_to_every_module_except_the_documented_exceptions() -> None:
    main = b.load(b.MAIN)
    assert b.text(main.variables()["isolatedAccess"]) == "networkIsolation ? 'Disabled' : publicNetworkAccess"
    seen = set()
    for module in main.modules():
        for key, value in b.properties(module.get("params")).items():
            if "PublicNetworkAccess" in key or key == "publicNetworkAccess":
                expected = PUBLIC_ACCESS_EXCEPTIONS.get((module.symbol, key), "isolatedAccess")
                assert b.text(value) == expected, f"{module.where()}: {key}"
                seen.add((module.symbol, key))
    assert set(PUBLIC_ACCESS_EXCEPTIONS) <= seen
    assert len(seen) >= 7, seen


def test_prod_parameters_keep_public_network_access_off() -> None:
    params = b.load(b.MAIN).params()

    def effective(name: str) -> Any:
        return PROD[name] if name in PROD else b.literal(params[name].default)

    assert effective("networkIsolation") is True, "prod needs private endpoints"
    assert effective("publicNetworkAccess") == "Disabled"
    assert effective("serviceBusSku") == "Premium", "private endpoints need Service Bus Premium"
    assert effective("apimSku") in {"StandardV2", "PremiumV2"}, "the gateway must reach the private backend"
    # The only public endpoint in prod is the authenticated gateway (and Entra-only monitor queries).
    for name in params:
        if "PublicNetworkAccess" in name and name not in PUBLIC_ACCESS_EXCEPTIONS.values():
            assert effective(name) == "Disabled", name


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
def test_isolation_implies_supporting_skus(env: str) -> None:
    params = b.load(b.MAIN).params()
    values = {
        k: v["value"]
        for k, v in json.loads((b.BICEP_DIR / "params" / f"{env}.parameters.json").read_text())[
            "parameters"
        ].items()
    }

    def effective(name: str) -> Any:
        return values[name] if name in values else b.literal(params[name].default)

    if effective("networkIsolation"):
        assert effective("serviceBusSku") == "Premium"
        assert effective("apimSku") in {"StandardV2", "PremiumV2"}
    else:
        assert env == "dev", "only dev may run without network isolation"


def _role_assignments() -> list[b.Declaration]:
    return [d for f in b.all_files() for d in f.resources("Microsoft.Authorization/roleAssignments")]


def test_service_bus_data_roles_go_to_the_app_identity_only() -> None:
    data_roles = {ROLES["serviceBusDataSender"], ROLES["serviceBusDataReceiver"]}
    sb_assignments = []
    for decl in _role_assignments():
        role_expr = b.text(decl.get("properties.roleDefinitionId"))
        if decl.file.path.name == "servicebus.bicep":
            sb_assignments.append(decl)
            assert b.text(decl.get("properties.principalId")) == "appPrincipalId", decl.where()
            assert b.text(decl.get("scope")) == "namespace", decl.where()
        else:
            assert not any(role in role_expr for role in data_roles), decl.where()
    assert len(sb_assignments) == 1
    module = b.load(b.MODULES / "servicebus.bicep")
    assert b.text(module.variables()["dataRoles"]) == (
        "[\n  roles.serviceBusDataSender\n  roles.serviceBusDataReceiver\n]"
    )
    (call,) = [m for m in b.load(b.MAIN).modules() if m.symbol == "serviceBus"]
    assert b.text(call.get("params.appPrincipalId")) == "appIdentity.outputs.principalId"
    # Nobody else is handed Service Bus roles through module parameters.
    for module_call in b.load(b.MAIN).modules():
        for value in b.properties(module_call.get("params")).values():
            assert "serviceBusData" not in b.text(value) or module_call.symbol == "serviceBus"


def test_role_assignments_name_known_roles_and_only_the_platform_identities() -> None:
    main = b.load(b.MAIN)
    principals = set()
    for module in main.modules():
        for key, value in b.properties(module.get("params")).items():
            if key == "roleAssignments":
                for entry in value.named_children:
                    role = b.text(b.get(entry, "roleDefinitionId"))
                    assert role.startswith("roles.") and role.removeprefix("roles.") in ROLES, role
                    principals.add(b.text(b.get(entry, "principalId")))
            if key == "telemetryPublisherPrincipalIds":
                principals.update(b.text(v) for v in value.named_children)
    assert principals == {"appIdentity.outputs.principalId", "apimIdentity.outputs.principalId"}
    for decl in _role_assignments():
        assert b.text(decl.get("properties.principalType")) == "'ServicePrincipal'", decl.where()


def test_secure_parameters_have_no_real_defaults() -> None:
    for file in b.all_files():
        for param in file.params().values():
            if param.secure and param.default is not None:
                # "" or a value drawn at deployment time (newGuid(): nobody ever sees or types it).
                if b.text(param.default) == "newGuid()":
                    continue
                assert b.literal(param.default) == "", f"{file.rel}:{param.line}: {param.name}"


def test_parameter_files_hold_no_secrets() -> None:
    for path in (b.BICEP_DIR / "params").glob("*.json"):
        lowered = path.read_text().lower()
        for marker in ("password", "secret", "accountkey", "sharedaccesskey", "instrumentationkey"):
            assert marker not in lowered, f"{path.name}: {marker}"


# Resource types without diagnostic settings, and why.
NO_DIAGNOSTICS = {
    "microsoft.insights/components": "workspace-based: telemetry is already in the Log Analytics workspace",
    "microsoft.insights/diagnosticsettings": "is the diagnostic setting",
    "microsoft.insights/actiongroups": "no diagnostic categories",
    "microsoft.insights/metricalerts": "no diagnostic categories; firing is in the activity log",
    "microsoft.insights/scheduledqueryrules": "no diagnostic categories; firing is in the activity log",
    "microsoft.insights/workbooks": "no diagnostic categories",
    "microsoft.insights/privatelinkscopes": "no diagnostic categories",
    "microsoft.insights/privatelinkscopes/scopedresources": "child link, no categories",
    "microsoft.managedidentity/userassignedidentities": "sign-ins are in Entra ID logs",
    "microsoft.authorization/roleassignments": "changes are in the activity log",
    "microsoft.authorization/policyassignments": "compliance and changes are in the activity log",
    "microsoft.authorization/locks": "changes are in the activity log",
    "microsoft.authorization/roledefinitions": "changes are in the activity log",
    "microsoft.insights/activitylogalerts": "no diagnostic categories; firing is in the activity log",
    "microsoft.network/privateendpoints": "no log categories (traffic is on the target resource)",
    "microsoft.network/privateendpoints/privatednszonegroups": "child configuration",
    "microsoft.network/privatednszones": "no diagnostic categories",
    "microsoft.network/privatednszones/virtualnetworklinks": "child configuration",
    "microsoft.web/serverfarms": "Flex Consumption plan: metrics and logs are per app",
    "microsoft.web/sites/basicpublishingcredentialspolicies": "site configuration",
    "microsoft.app/containerapps": "console and system logs go through the environment (azure-monitor)",
    "microsoft.web/sites/config": "site configuration (authentication is logged by the site)",
    "microsoft.keyvault/vaults/secrets": "access is logged by the vault's AuditEvent",
    "microsoft.eventgrid/systemtopics/eventsubscriptions": "delivery failures are logged on the system topic",
    "microsoft.storage/storageaccounts/blobservices/containers": "logged by blobServices",
    "microsoft.storage/storageaccounts/blobservices/containers/immutabilitypolicies": "policy on a container",
    "microsoft.storage/storageaccounts/tableservices/tables": "logged by tableServices",
    "microsoft.servicebus/namespaces/topics": "logged by the namespace",
    "microsoft.servicebus/namespaces/topics/subscriptions": "logged by the namespace",
    "microsoft.servicebus/namespaces/topics/subscriptions/rules": "logged by the namespace",
    "microsoft.servicebus/namespaces/networkrulesets": "namespace configuration",
}
NO_DIAGNOSTICS_PREFIXES = ("microsoft.apimanagement/service/",)  # children are logged by the service


def test_every_resource_sends_diagnostics_to_log_analytics() -> None:
    missing = []
    for file in b.all_files():
        decls = [d for d in file.resources() if not d.existing]
        scoped = {
            b.text(d.get("scope")).split("[")[0]
            for d in decls
            if d.target.lower() == "microsoft.insights/diagnosticsettings"
        }
        for decl in decls:
            kind = decl.target.lower()
            if kind in NO_DIAGNOSTICS or kind.startswith(NO_DIAGNOSTICS_PREFIXES):
                continue
            if decl.symbol not in scoped:
                missing.append(f"{decl.where()}: {decl.target}")
        for decl in decls:
            if decl.target.lower() == "microsoft.insights/diagnosticsettings":
                assert decl.get("properties.workspaceId") is not None, decl.where()
    assert missing == [], "resources without diagnostic settings"


def test_every_located_resource_is_tagged() -> None:
    for file in b.all_files():
        for decl in file.resources():
            if decl.existing or decl.get("location") is None:
                continue
            assert b.text(decl.get("tags")) == "tags", decl.where()
    tags = b.load(b.MAIN).variables()["tags"]
    (first,) = [args[0] for args in b.call_arguments(tags, "union")]
    assert set(b.properties(first)) >= {"service", "environment", "data-classification", "managed-by"}
