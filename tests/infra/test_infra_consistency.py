"""The names the code uses are exactly the names the Bicep templates provision.

How the link is made (see infra/README.md, "How the templates stay in step with the code"):

* topics/subscriptions and tables/containers: ``tools/infra_config.py`` renders ``infra/bicep/config/
  topology.json`` and ``storage.json`` from ``shared/``; Bicep reads them with ``loadJsonContent()``. These
  tests re-render and compare, check the JSON against the code independently, and check (through the
  tree-sitter parse) that the templates really map every JSON field onto the resource properties.
* app settings: ``infra/bicep/config/app-settings.json`` is the one list Bicep renders into the Function
  App; it must account for every name in ``local.settings.sample.json``.
* trigger connections: discovered from the registered FunctionApp, like the Functions host does.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import timedelta
from typing import Any

import isodate
import pytest

from shared.adapters.azure.servicebus import replay_aware_filter
from shared.config.settings import Settings, setting_names
from shared.messaging.topology import TOPOLOGY
from shared.storage import names
from tests.infra import bicep_ast as b
from tools import infra_config

CONFIG = b.BICEP_DIR / "config"
SAMPLE = b.ROOT / "local.settings.sample.json"


def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIG / name).read_text())
    return data


@pytest.fixture(scope="module")
def app_specs() -> list[Any]:
    from tie.localhost.discovery import describe, load_app

    return describe(load_app("function_app"))


# -- generated configuration --


def test_generated_config_files_are_up_to_date() -> None:
    for path, expected in infra_config.outputs().items():
        assert path.read_text() == expected, f"{path.name} is stale: run python tools/infra_config.py"


def test_iso_durations_round_trip() -> None:
    for value in (
        timedelta(seconds=60),
        timedelta(days=14),
        timedelta(minutes=10),
        timedelta(days=1, seconds=5),
    ):
        assert isodate.parse_duration(infra_config.iso_duration(value)) == value
    with pytest.raises(ValueError, match="positive"):
        infra_config.iso_duration(timedelta(0))


# -- Service Bus --


def test_topology_json_matches_the_code() -> None:
    topics = {t["name"]: t for t in _json("topology.json")["topics"]}
    assert list(topics) == [t.name for t in TOPOLOGY]
    for spec in TOPOLOGY:
        topic = topics[spec.name]
        window = spec.duplicate_detection_window
        assert topic["requiresDuplicateDetection"] is (window is not None)
        if window is not None:
            assert isodate.parse_duration(topic["duplicateDetectionHistoryTimeWindow"]) == window
        assert topic["maxMessageSizeInKilobytes"]["Standard"] * 1024 >= spec.max_message_bytes
        assert topic["maxMessageSizeInKilobytes"]["Premium"] * 1024 >= spec.max_message_bytes
        subs = {s["name"]: s for s in topic["subscriptions"]}
        left_out = {s["name"] for s in topic["notProvisioned"]}
        assert list(subs) == [s.name for s in spec.subscriptions if s.name not in left_out]
        assert left_out <= {s.name for s in spec.subscriptions}
        for sub_spec in spec.subscriptions:
            if sub_spec.name in left_out:
                continue
            sub = subs[sub_spec.name]
            assert sub["maxDeliveryCount"] == sub_spec.max_delivery_count
            assert isodate.parse_duration(sub["lockDuration"]) == sub_spec.lock_duration
            assert sub["requiresSession"] is sub_spec.requires_session
            assert isodate.parse_duration(sub["defaultMessageTimeToLive"]) == sub_spec.default_ttl
            assert sub["deadLetteringOnMessageExpiration"] is sub_spec.dead_letter_on_expiry
            assert sub["deadLetteringOnFilterEvaluationExceptions"] is True
            # The rule replaces $Default and admits replays addressed to this subscription only.
            assert sub["rule"] == {
                "name": "$Default",
                "sqlExpression": replay_aware_filter(sub_spec.name, sub_spec.filter),
            }
            assert f"'{sub_spec.name}'" in sub["rule"]["sqlExpression"]


def test_servicebus_module_deploys_every_topic_of_the_json() -> None:
    module = b.load(b.MODULES / "servicebus.bicep")
    topology = module.variables()["topology"]
    assert [b.string_value(a[0]) for a in b.call_arguments(topology, "loadJsonContent")] == [
        "../config/topology.json"
    ]
    (topics,) = [m for m in module.modules() if m.target == "servicebus-topic.bicep"]
    assert topics.looped
    loop = topics.node.named_children[-1]
    assert b.text(loop.named_children[-2]) == "topology.topics"
    assert b.text(topics.get("params.topic")) == "topic"


# JSON key -> property the templates must set from it, for topics and for subscriptions.
TOPIC_FIELDS = (
    "requiresDuplicateDetection",
    "duplicateDetectionHistoryTimeWindow",
    "maxMessageSizeInKilobytes",
)
SUBSCRIPTION_FIELDS = (
    "maxDeliveryCount",
    "lockDuration",
    "requiresSession",
    "defaultMessageTimeToLive",
    "deadLetteringOnMessageExpiration",
    "deadLetteringOnFilterEvaluationExceptions",
)


def test_topic_module_maps_every_json_field_onto_the_resources() -> None:
    module = b.load(b.MODULES / "servicebus-topic.bicep")
    (topic,) = module.resources("Microsoft.ServiceBus/namespaces/topics")
    assert b.text(topic.get("name")) == "topic.name"
    mapped = {
        key: b.text(value)
        for obj in b.walk(topic.body)
        if obj.type == "object"
        for key, value in b.properties(obj).items()
    }
    for field in TOPIC_FIELDS:
        expected = (
            "topic.maxMessageSizeInKilobytes[tier]"
            if field == "maxMessageSizeInKilobytes"
            else f"topic.{field}"
        )
        assert mapped.get(field) == expected, field

    (subs,) = module.resources("Microsoft.ServiceBus/namespaces/topics/subscriptions")
    assert subs.looped and b.text(subs.get("name")) == "sub.name"
    for field in SUBSCRIPTION_FIELDS:
        node = subs.get(f"properties.{field}")
        assert node is not None and b.text(node) == f"sub.{field}", field

    (rules,) = module.resources("Microsoft.ServiceBus/namespaces/topics/subscriptions/rules")
    assert b.text(rules.get("name")) == "sub.rule.name"
    assert b.literal(rules.get("properties.filterType")) == "SqlFilter"
    assert b.text(rules.get("properties.sqlFilter.sqlExpression")) == "sub.rule.sqlExpression"


def test_service_bus_triggers_use_declared_topics_and_provisioned_connections(app_specs: list[Any]) -> None:
    triggers = [s for s in app_specs if s.kind == "serviceBus"]
    assert triggers, "expected at least one Service Bus trigger"
    declared = {(t["name"], s["name"]) for t in _json("topology.json")["topics"] for s in t["subscriptions"]}
    settings = {s["name"] for s in _json("app-settings.json")["settings"]}
    for spec in triggers:
        assert (spec.topic, spec.subscription) in declared, spec.name
        assert spec.connection, f"{spec.name}: trigger without a connection name"
        # Identity-based connection with a user-assigned identity: namespace, credential and client id.
        for suffix in ("fullyQualifiedNamespace", "credential", "clientId"):
            assert f"{spec.connection}__{suffix}" in settings, f"{spec.name}: {spec.connection}__{suffix}"


# -- Storage --


def test_storage_json_matches_the_code() -> None:
    storage = _json("storage.json")
    assert set(storage["tables"]) == names.TABLES
    assert set(storage["containers"]) == names.CONTAINERS
    infra_only = {c["name"] for c in storage["infraContainers"]}
    assert infra_only & names.CONTAINERS == set(), (
        "now named in shared/storage/names.py: drop from INFRA_CONTAINERS"
    )
    worm = [c for c in storage["infraContainers"] if c["immutabilityDays"] > 0]
    assert [c["name"] for c in worm] == ["audit"]
    assert worm[0]["immutabilityDays"] >= 365 * 8, "audit records are kept at least 8 years"
    for name in names.TABLES:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", name), name
    for name in names.CONTAINERS | infra_only:
        assert re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name), name


def test_data_storage_provisions_the_json_names() -> None:
    main = b.load(b.MAIN)
    (data,) = [m for m in main.modules() if m.symbol == "dataStorage"]
    assert b.text(data.get("params.tables")) == "storageConfig.tables"
    containers = b.text(data.get("params.containers"))
    assert "storageConfig.containers" in containers and "storageConfig.infraContainers" in containers
    assert "c.immutabilityDays" in containers
    assert [
        b.string_value(a[0]) for a in b.call_arguments(main.variables()["storageConfig"], "loadJsonContent")
    ] == ["config/storage.json"]
    storage = b.load(b.MODULES / "storage.bicep")
    (tables,) = storage.resources("Microsoft.Storage/storageAccounts/tableServices/tables")
    assert tables.looped and b.text(tables.get("name")) == "table"
    (policy,) = storage.resources(
        "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"
    )
    assert policy.conditional and "container.immutabilityDays > 0" in b.text(policy.node)
    assert (
        b.text(policy.get("properties.immutabilityPeriodSinceCreationInDays")) == "container.immutabilityDays"
    )


# -- App settings --


def _sample_names() -> list[str]:
    return list(json.loads(SAMPLE.read_text())["Values"])


def test_every_sample_setting_is_provisioned_or_excluded_with_a_reason() -> None:
    spec = _json("app-settings.json")
    provisioned = [s["name"] for s in spec["settings"]]
    excluded = {e["name"]: e for e in spec["notProvisioned"]}
    assert len(provisioned) == len(set(provisioned)), "duplicate app setting"
    assert set(provisioned) & set(excluded) == set()
    missing = [n for n in _sample_names() if n not in provisioned and n not in excluded]
    assert missing == [], "local.settings.sample.json names neither provisioned nor excluded"
    assert set(excluded) <= set(_sample_names()), "exclusions must name sample settings"
    for entry in excluded.values():
        assert len(entry["reason"]) > 20, entry["name"]
        replaced = entry.get("replacedBy")
        if replaced and not replaced.startswith("functionAppConfig."):
            assert replaced in provisioned, entry["name"]


def test_settings_the_code_reads_are_accounted_for() -> None:
    spec = _json("app-settings.json")
    known = {s["name"] for s in spec["settings"]} | {e["name"] for e in spec["notProvisioned"]}
    assert set(setting_names()) - known == set()


def test_local_only_exclusions_are_the_expected_ones() -> None:
    excluded = {e["name"] for e in _json("app-settings.json")["notProvisioned"]}
    assert {"TIE_LOCAL_DIR", "TieStorage__emulatorConnectionString", "FUNCTIONS_WORKER_RUNTIME"} <= excluded
    assert excluded.isdisjoint(
        {"TIE_BUS_BACKEND", "TIE_STORAGE_BACKEND", "ServiceBusConnection__fullyQualifiedNamespace"}
    )


def test_setting_sources_resolve_in_main() -> None:
    main = b.load(b.MAIN)
    deployment_values = set(b.properties(main.variables()["deploymentValues"]))
    # Secrets the templates write: the Application Insights connection string and the gateway secret
    # (keyvault.bicep), whose name main.bicep keeps in a variable.
    secrets_created = {
        b.string_value(v) or b.literal(main.variables()[b.text(v)])
        for f in b.all_files()
        for m in f.modules()
        for k, v in b.properties(m.get("params")).items()
        if k in ("appInsightsSecretName", "gatewaySecretName")
    }
    spec = _json("app-settings.json")
    # The Function App's settings and the MLLP listener container's (mllp.bicep renders the same sources).
    rendered = spec["settings"] + spec["mllpListener"]
    for setting in rendered:
        kind, value = setting["from"], setting["value"]
        assert kind in {"literal", "deployment", "keyVaultSecret"}, setting
        if kind == "deployment":
            assert value in deployment_values, setting["name"]
        if kind == "keyVaultSecret":
            assert value in secrets_created, f"{setting['name']}: no Key Vault secret {value!r} is created"
    assert deployment_values <= {s["value"] for s in rendered}, "unused values"


def test_the_one_list_is_rendered_into_the_function_app() -> None:
    main = b.load(b.MAIN)
    spec_var = main.variables()["appSettingsSpec"]
    assert [b.string_value(a[0]) for a in b.call_arguments(spec_var, "loadJsonContent")] == [
        "config/app-settings.json"
    ]
    (function_app,) = [m for m in main.modules() if m.symbol == "functionApp"]
    assert b.text(function_app.get("params.appSettingsSpec")) == "appSettingsSpec.settings"
    assert b.text(function_app.get("params.deploymentValues")) == "deploymentValues"
    assert b.text(function_app.get("params.appSettingOverrides")) == "appSettingOverrides"
    module = b.load(b.MODULES / "functionapp.bicep")
    rendered = module.variables()["appSettings"]
    assert rendered.type == "for_statement"
    assert b.text(rendered.named_children[-2]) == "appSettingsSpec"
    body = b.properties(rendered.named_children[-1])
    assert b.text(body["name"]) == "setting.name"
    value = b.text(body["value"])
    for piece in (
        "appSettingOverrides[setting.name]",
        "setting.from == 'literal' ? setting.value",
        "deploymentValues[setting.value]",
        "@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${setting.value})",
    ):
        assert piece in value
    (site,) = module.resources("Microsoft.Web/sites")
    assert b.text(site.get("properties.siteConfig.appSettings")) == "appSettings"


def test_provisioned_settings_make_a_valid_azure_configuration() -> None:
    """The literal values plus plausible deployment values pass the app's own settings validation."""
    samples = {
        "environmentName": "prod",
        "hostStorageAccountName": "sttieprodh12345",
        "appIdentityClientId": "00000000-0000-0000-0000-000000000001",
        "serviceBusFqdn": "sb-tie-prod-uks-12345.servicebus.windows.net",
        "dataTableServiceUri": "https://sttieprodd12345.table.core.windows.net/",
        "dataBlobServiceUri": "https://sttieprodd12345.blob.core.windows.net/",
        "keyVaultUri": "https://kv-tie-prod-12345.vault.azure.net/",
        "appInsightsAuthenticationString": "ClientId=x;Authorization=AAD",
        "fhirServiceUrl": "https://tieprodws-fhir.fhir.azurehealthcareapis.com",
        "fhirPublicBaseUrl": "https://apim-tie-prod-uks-12345.azure-api.net/tie/fhir",
    }
    values: dict[str, str] = {}
    for setting in _json("app-settings.json")["settings"]:
        if setting["from"] == "literal":
            values[setting["name"]] = setting["value"]
        elif setting["from"] == "deployment":
            values[setting["name"]] = samples[setting["value"]]
        else:
            values[setting["name"]] = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
    settings = Settings.model_validate(values)
    assert settings.bus_backend == "azure" and settings.storage_backend == "azure"
    assert settings.environment == "prod"
    assert settings.service_bus_namespace == samples["serviceBusFqdn"]


def test_parameter_overrides_name_provisioned_settings() -> None:
    provisioned = {s["name"] for s in _json("app-settings.json")["settings"]}
    for path in (b.BICEP_DIR / "params").glob("*.parameters.json"):
        overrides = json.loads(path.read_text())["parameters"].get("appSettingOverrides", {"value": {}})[
            "value"
        ]
        assert set(overrides) <= provisioned, path.name


def test_runtime_replaces_functions_worker_runtime() -> None:
    (site,) = b.load(b.MODULES / "functionapp.bicep").resources("Microsoft.Web/sites")
    runtime = b.literal(site.get("properties.functionAppConfig.runtime"))
    sample = json.loads(SAMPLE.read_text())["Values"]
    assert runtime["name"] == sample["FUNCTIONS_WORKER_RUNTIME"] == "python"
    requires = tomllib.loads((b.ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={runtime['version']}" in requires


def test_gateway_body_limit_equals_the_app_limit() -> None:
    limit = next(
        s["value"] for s in _json("app-settings.json")["settings"] if s["name"] == "TIE_HTTP_MAX_BODY_BYTES"
    )
    sizes = {
        p.name: re.findall(r'max-size="(\d+)"', p.read_text())
        for p in (b.INFRA / "apim" / "policies" / "operations").glob("*.xml")
    }
    assert any(sizes.values())
    for name, found in sizes.items():
        assert all(value == limit for value in found), name


def test_gateway_correlation_id_pattern_equals_the_app_pattern() -> None:
    from shared.observability import correlation

    pattern = correlation._VALID.pattern
    global_policy = (b.INFRA / "apim" / "policies" / "global.xml").read_text()
    assert re.findall(r'IsMatch\(supplied, @"([^"]+)"\)', global_policy) == [pattern]
    openapi = json.loads((b.INFRA / "openapi" / "tie-api.json").read_text())
    assert openapi["components"]["parameters"]["CorrelationId"]["schema"]["pattern"] == pattern


def test_hl7_traffic_alert_watches_registered_functions(app_specs: list[Any]) -> None:
    main = b.load(b.MAIN)
    (alerts,) = [m for m in main.modules() if m.symbol == "alerts"]
    watched = b.literal(alerts.get("params.hl7FunctionNames"))
    http = {s.name for s in app_specs if s.kind == "http"}
    assert watched and set(watched) <= http
    assert all("hl7" in name for name in watched)
