"""Guard rails (issue 13, finding 7): UK residency, locks, latency and health alerts, an immutable log
archive, no subscription without a consumer, the linter's API-version rule."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra import bicep_ast as b

MAIN = b.load(b.MAIN)
GUARDRAILS = b.load(b.MODULES / "guardrails.bicep")
ALERTS = b.load(b.MODULES / "alerts.bicep")
MONITORING = b.load(b.MODULES / "monitoring.bicep")
UK = ["uksouth", "ukwest"]


def _params(env: str) -> dict[str, Any]:
    path = b.BICEP_DIR / "params" / f"{env}.parameters.json"
    return {k: v["value"] for k, v in json.loads(path.read_text())["parameters"].items()}


# -- residency --


def test_location_is_a_uk_region() -> None:
    assert MAIN.params()["location"].allowed() == UK
    assert sorted(b.properties(MAIN.variables()["regionCodes"])) == UK
    for env in ("dev", "test", "prod"):
        assert _params(env).get("location", "uksouth") in UK, env
    for file in b.all_files():
        for region in ("westeurope", "northeurope", "eastus", "westus"):
            assert region not in file.source.decode(), f"{file.rel}: {region}"


def test_allowed_locations_policy_is_assigned() -> None:
    (assignment,) = GUARDRAILS.resources("Microsoft.Authorization/policyAssignments")
    definition = b.text(GUARDRAILS.variables()["allowedLocationsDefinitionId"])
    assert "e56962a6-4747-49cd-b67b-bf8b01975c4c" in definition  # built-in "Allowed locations"
    assert b.text(assignment.get("properties.policyDefinitionId")) == "allowedLocationsDefinitionId"
    assert b.literal(assignment.get("properties.enforcementMode")) == "Default"
    assert b.text(assignment.get("properties.parameters.listOfAllowedLocations.value")) == "allowedLocations"
    (call,) = [m for m in MAIN.modules() if m.symbol == "guardrails"]
    assert b.text(call.get("params.allowedLocations")) == "map(allowedLocations, l => l.key)"
    assert b.text(MAIN.variables()["allowedLocations"]) == "items(regionCodes)"


# -- locks --


def test_stateful_resources_are_locked_in_prod() -> None:
    locks = GUARDRAILS.resources("Microsoft.Authorization/locks")
    scopes = set()
    for lock in locks:
        assert lock.conditional and "if (lockStatefulResources)" in b.text(lock.node), lock.where()
        assert b.literal(lock.get("properties.level")) == "CanNotDelete", lock.where()
        scopes.add(b.text(lock.get("scope")))
    assert scopes == {"serviceBus", "vault", "workspace", "accounts[i]"}
    assert b.text(MAIN.params()["lockStatefulResources"].default) == "environmentName == 'prod'"
    assert _params("prod").get("lockStatefulResources", True) is True
    (call,) = [m for m in MAIN.modules() if m.symbol == "guardrails"]
    accounts = b.text(call.get("params.stateful.storageAccounts"))
    for account in ("hostStorage.outputs.name", "dataStorage.outputs.name", "names.archiveStorage"):
        assert account in accounts


# -- latency and health alerts --


def _metric_rules() -> dict[str, str]:
    node = ALERTS.variables()["metricAlerts"]
    return {b.literal(b.properties(e)["name"]): b.text(e) for e in node.named_children if e.type == "object"}


def test_latency_alerts() -> None:
    metric = _metric_rules()
    assert "metricName: 'Duration'" in metric["apim-latency"]
    assert "metricName: 'BackendDuration'" in metric["apim-backend-latency"]
    logs = b.text(ALERTS.variables()["logAlerts"])
    assert re.search(r"name: 'func-latency-p95'.*?percentile\(duration, 95\)", logs, re.S)


def test_service_and_resource_health_alerts() -> None:
    (rules,) = ALERTS.resources("Microsoft.Insights/activityLogAlerts")
    assert rules.looped and "in healthAlerts" in b.text(rules.node)
    assert b.text(rules.get("properties.actions.actionGroups")).count("actionGroupId") == 2
    health = b.text(ALERTS.variables()["healthAlerts"])
    assert "equals: 'ServiceHealth'" in health and "equals: 'ResourceHealth'" in health
    assert "subscription().id" in health and "resourceGroup().id" in health


# -- immutable archive of the diagnostic logs --


def test_every_diagnostic_setting_is_also_archived() -> None:
    own = {"archiveDiagnostics", "archiveBlobDiagnostics"}  # the archive's own logs: workspace only
    for file in b.all_files():
        for setting in file.resources("Microsoft.Insights/diagnosticSettings"):
            if file.path.name == "monitoring.bicep" and setting.symbol in own:
                continue
            target = b.text(setting.get("properties.storageAccountId"))
            assert target in {"archiveStorageAccountId", "archive.id"}, setting.where()
    for call in MAIN.modules():
        if "archiveStorageAccountId" in b.properties(call.get("params")):
            assert b.text(call.get("params.archiveStorageAccountId")) == (
                "monitoring.outputs.archiveStorageAccountId"
            )


def test_archive_is_immutable() -> None:
    (archive,) = [
        d for d in MONITORING.resources("Microsoft.Storage/storageAccounts") if d.symbol == "archive"
    ]
    worm = " ".join(b.text(archive.get("properties.immutableStorageWithVersioning")).split())
    assert worm.startswith("union({ enabled: true }, createImmutabilityPolicies ? {"), worm
    assert "allowProtectedAppendWrites: true" in worm  # diagnostic logs are append blobs
    (blobs,) = MONITORING.resources("Microsoft.Storage/storageAccounts/blobServices")
    assert b.literal(blobs.get("properties.isVersioningEnabled")) is True
    (call,) = [m for m in MAIN.modules() if m.symbol == "monitoring"]
    assert b.text(call.get("params.createImmutabilityPolicies")) == "bootstrap"


# -- no subscription without a consumer --


@pytest.fixture(scope="module")
def triggers() -> set[tuple[str, str]]:
    from tie.localhost.discovery import describe, load_app

    return {(s.topic, s.subscription) for s in describe(load_app("function_app")) if s.kind == "serviceBus"}


def test_every_provisioned_subscription_has_a_consumer(triggers: set[tuple[str, str]]) -> None:
    """Otherwise its messages expire into dead-letter and the Sev1 dead-letter alert never clears."""
    topology = json.loads((b.BICEP_DIR / "config" / "topology.json").read_text())
    provisioned = {(t["name"], s["name"]) for t in topology["topics"] for s in t["subscriptions"]}
    assert provisioned == triggers
    for topic in topology["topics"]:
        for entry in topic["notProvisioned"]:
            assert len(entry["reason"]) > 20, entry


# -- linter --


def test_linter_checks_api_versions() -> None:
    config = json.loads((b.BICEP_DIR / "bicepconfig.json").read_text())
    rules = config["analyzers"]["core"]["rules"]
    assert rules["use-recent-api-versions"]["level"] in {"warning", "error"}


# -- least-privilege deploy identity --

DEPLOY = b.load(b.BICEP_DIR / "deploy-identity.bicep")
ROLES = {
    k: v
    for k, v in json.loads((b.BICEP_DIR / "config" / "roles.json").read_text()).items()
    if k != "$comment"
}


def _strings(name: str) -> list[str]:
    return [str(b.literal(n)) for n in DEPLOY.variables()[name].named_children if n.type == "string"]


def test_deploy_role_covers_exactly_what_the_templates_declare_and_no_more() -> None:
    from fnmatch import fnmatchcase

    actions = _strings("deployerActions")
    assert "*" not in actions and not any(a.endswith("/*") and a.count("/") == 1 for a in actions)
    assert not any(
        a.lower().startswith("microsoft.authorization/roleassignments/")
        and a != ("Microsoft.Authorization/roleAssignments/read")
        for a in actions
    ), "role assignments only through the conditioned delegation"
    declared = {
        d.target
        for f in b.all_files()
        if f.path != DEPLOY.path
        for d in f.resources()
        if not d.existing and d.target != "Microsoft.Authorization/roleAssignments"
    }
    assert declared
    for type_ in sorted(declared):
        write = f"{type_}/write".lower()
        assert any(fnmatchcase(write, a.lower()) for a in actions), f"deploy role cannot write {type_}"
    not_actions = " ".join(_strings("deployerNotActions"))
    assert "storageAccounts/listKeys" in not_actions and "sites/host/listKeys" in not_actions


def test_deploy_identity_may_grant_only_the_platform_roles_to_service_principals() -> None:
    (delegation,) = [
        d for d in DEPLOY.resources("Microsoft.Authorization/roleAssignments") if d.symbol == "roleDelegation"
    ]
    assert b.literal(delegation.get("properties.conditionVersion")) == "2.0"
    assert b.text(delegation.get("properties.condition")) == "delegationCondition"
    condition = b.text(DEPLOY.variables()["delegationCondition"])
    for action in ("roleAssignments/write", "roleAssignments/delete"):
        assert action in condition
    assert condition.count("GuidEquals {${roleList}}") == 2
    assert condition.count("StringEqualsIgnoreCase {\\'ServicePrincipal\\'}") == 2
    assert (
        b.text(DEPLOY.variables()["roleIds"])
        == "map(filter(items(roles), r => r.key != '$comment'), r => r.value)"
    )
    # Owner, Contributor and User Access Administrator are never among the delegable roles.
    assert set(ROLES.values()).isdisjoint(
        {
            "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
            "b24988ac-6180-42a0-ab88-20f7382dd24c",
            "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        }
    )
    for decl in DEPLOY.resources("Microsoft.Authorization/roleAssignments"):
        assert b.literal(decl.get("properties.principalType")) == "ServicePrincipal"


def test_archive_admits_only_the_trusted_services_bypass() -> None:
    (archive,) = [
        d for d in MONITORING.resources("Microsoft.Storage/storageAccounts") if d.symbol == "archive"
    ]
    assert b.literal(archive.get("properties.networkAcls")) == {
        "defaultAction": "Deny",
        "bypass": "AzureServices",
    }
    assert b.literal(archive.get("properties.allowSharedKeyAccess")) is False
