"""Every alert the platform promises exists in the templates, notifies the action group and watches the
right signal; the message-flow workbook is valid and wired to the deployed resources."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infra import bicep_ast as b

ALERTS = b.load(b.MODULES / "alerts.bicep")
CUSTOM_METRICS = json.loads((b.BICEP_DIR / "config" / "custom-metrics.json").read_text())
WORKBOOK = b.INFRA / "workbooks" / "message-flow.workbook.json"

#: Every alert issue 7 asks for (certificate alerts come from certificateExpiryDays, checked separately).
REQUIRED = {
    "sb-dead-letters",
    "sb-backlog",
    "sb-backlog-growth",
    "sb-message-age",
    "func-failures",
    "func-http-5xx-rate",
    "apim-5xx",
    "apim-429",
    "reconciliation-variance",
    "no-hl7-traffic",
}


def _rules(variable: str) -> dict[str, dict[str, Any]]:
    """Alert definitions of an array variable in alerts.bicep, by name (values as source text)."""
    node = ALERTS.variables()[variable]
    if node.type == "call_expression":  # concat([...], more): the literal array
        node = next(n for n in b.walk(node) if n.type == "array")
    rules = {}
    for entry in node.named_children:
        if entry.type != "object":
            continue
        props = b.properties(entry)
        rules[b.literal(props["name"])] = props
    return rules


def test_every_required_alert_is_defined() -> None:
    defined = set(_rules("metricAlerts")) | set(_rules("logAlerts"))
    assert REQUIRED - defined == set()
    assert b.literal(ALERTS.params()["certificateExpiryDays"].default) == [90, 30, 7]
    cert = b.text(ALERTS.variables()["certificateAlerts"])
    assert "'cert-expiry-${days}d'" in cert
    assert "concat(" in b.text(ALERTS.variables()["logAlerts"]) and "certificateAlerts" in b.text(
        ALERTS.variables()["logAlerts"]
    )


def test_alert_rules_are_deployed_and_notify_the_action_group() -> None:
    (metric,) = ALERTS.resources("Microsoft.Insights/metricAlerts")
    (log,) = ALERTS.resources("Microsoft.Insights/scheduledQueryRules")
    assert metric.looped and b.text(metric.node.named_children[-1].named_children[-2]) == "metricAlerts"
    assert log.looped and b.text(log.node.named_children[-1].named_children[-2]) == "logAlerts"
    assert "actionGroupId: actionGroupId" in b.text(metric.get("properties.actions"))
    assert _flat(log.get("properties.actions.actionGroups")) == "[ actionGroupId ]"
    (call,) = [m for m in b.load(b.MAIN).modules() if m.symbol == "alerts"]
    assert b.text(call.get("params.actionGroupId")) == "monitoring.outputs.actionGroupId"
    monitoring = b.load(b.MODULES / "monitoring.bicep")
    (group,) = monitoring.resources("Microsoft.Insights/actionGroups")
    assert "alertEmailReceivers" in b.text(group.get("properties.emailReceivers"))


def _flat(node: Any) -> str:
    return " ".join(b.text(node).split())


def _criterion(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: b.text(v) for k, v in b.properties(rule["criterion"]).items()}


def test_dead_letter_alert_fires_on_any_dead_letter_on_any_entity() -> None:
    rule = _rules("metricAlerts")["sb-dead-letters"]
    criterion = _criterion(rule)
    assert criterion["metricName"] == "'DeadletteredMessages'"
    assert criterion["operator"] == "'GreaterThan'" and criterion["threshold"] == "0"
    assert re.search(r"name: 'EntityName'\s+operator: 'Include'\s+values: \[\s+'\*'", criterion["dimensions"])
    assert b.text(rule["scope"]) == "serviceBusNamespaceId"


def test_backlog_alerts_watch_active_messages() -> None:
    rules = _rules("metricAlerts")
    assert _criterion(rules["sb-backlog"])["metricName"] == "'ActiveMessages'"
    growth = _criterion(rules["sb-backlog-growth"])
    assert growth["metricName"] == "'ActiveMessages'"
    assert growth["criterionType"] == "'DynamicThresholdCriterion'"
    query = b.text(_rules("logAlerts")["sb-message-age"]["query"])
    assert "EnqueuedTimeUtc" in query and "messageAgeThresholdSeconds" in query


def test_apim_alerts_split_by_response_code() -> None:
    rules = _rules("metricAlerts")
    five = _criterion(rules["apim-5xx"])
    assert "'GatewayResponseCodeCategory'" in five["dimensions"] and "'5xx'" in five["dimensions"]
    throttled = _criterion(rules["apim-429"])
    assert "'GatewayResponseCode'" in throttled["dimensions"] and "'429'" in throttled["dimensions"]
    assert b.text(rules["apim-5xx"]["scope"]) == b.text(rules["apim-429"]["scope"]) == "apimId"


def test_custom_metric_alerts_use_the_documented_metric_names() -> None:
    logs = _rules("logAlerts")
    assert "customMetrics.reconciliationVariance.name" in b.text(logs["reconciliation-variance"]["query"])
    assert "customMetrics.certificateDaysRemaining.name" in b.text(ALERTS.variables()["certificateAlerts"])
    assert CUSTOM_METRICS["reconciliationVariance"]["name"] == "tie.reconciliation.variance"
    assert CUSTOM_METRICS["certificateDaysRemaining"]["name"] == "tie.certificate.days_remaining"
    readme = (b.INFRA / "README.md").read_text()
    for metric in ("reconciliationVariance", "certificateDaysRemaining", "stuckMessages"):
        assert CUSTOM_METRICS[metric]["name"] in readme, f"document {CUSTOM_METRICS[metric]['name']}"


def test_stuck_messages_alert_watches_the_gauge_the_stuck_monitor_emits() -> None:
    from shared.backbone.stuck import STUCK_METRIC, STUCK_METRIC_UNIT

    assert CUSTOM_METRICS["stuckMessages"]["name"] == STUCK_METRIC
    assert CUSTOM_METRICS["stuckMessages"]["unit"] == STUCK_METRIC_UNIT
    assert CUSTOM_METRICS["stuckMessages"]["dimensions"] == ["subscriber"]
    rule = _rules("logAlerts")["messages-stuck"]
    query = b.text(rule["query"])
    assert "where name == \\'${customMetrics.stuckMessages.name}\\'" in query
    assert "by subscriber" in query and "customDimensions[\\'subscriber\\']" in query
    assert "where stuck > ${stuckMessagesThreshold}" in query
    assert b.literal(ALERTS.params()["stuckMessagesThreshold"].default) == 0
    assert "tie inflight --stuck" in b.text(rule["description"])
    assert "messages-stuck" in (b.INFRA / "README.md").read_text()


def test_no_hl7_traffic_alert_is_limited_to_working_hours() -> None:
    query = b.text(_rules("logAlerts")["no-hl7-traffic"]["query"])
    assert "datetime_utc_to_local(now(), \\'${workingHoursTimeZone}\\')" in query
    assert "dayofweek(localNow) between (1d .. 5d)" in query
    assert "workingHoursStart" in query and "workingHoursEnd" in query
    assert "messages == 0" in query
    assert b.literal(ALERTS.params()["workingHoursTimeZone"].default) == "Europe/London"


def test_certificate_events_from_key_vault_raise_alerts() -> None:
    keyvault = b.load(b.MODULES / "keyvault.bicep")
    (topic,) = keyvault.resources("Microsoft.EventGrid/systemTopics")
    assert b.literal(topic.get("properties.topicType")) == "Microsoft.KeyVault.vaults"
    events = b.literal(keyvault.variables()["certificateEvents"])
    assert {e["eventType"] for e in events} == {
        "Microsoft.KeyVault.CertificateNearExpiry",
        "Microsoft.KeyVault.CertificateExpired",
    }
    (subscription,) = keyvault.resources("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    assert b.literal(subscription.get("properties.destination.endpointType")) == "MonitorAlert"
    assert "actionGroupId" in b.text(subscription.get("properties.destination.properties.actionGroups"))


def test_workbook_is_valid_and_deployed_with_resource_ids() -> None:
    workbook = json.loads(WORKBOOK.read_text())
    assert workbook["version"] == "Notebook/1.0"
    kinds = [item["type"] for item in workbook["items"]]
    assert kinds.count(10) >= 4 and kinds.count(3) >= 3  # metric charts and KQL queries
    text = WORKBOOK.read_text()
    for metric in ("IncomingMessages", "OutgoingMessages", "ActiveMessages", "DeadletteredMessages"):
        assert metric in text
    for placeholder in ("__SERVICEBUS_ID__", "__APIM_ID__"):
        assert placeholder in text
    module = b.load(b.MODULES / "workbook.bicep")
    (resource,) = module.resources("Microsoft.Insights/workbooks")
    serialized = b.text(resource.get("properties.serializedData"))
    assert "'__SERVICEBUS_ID__', serviceBusNamespaceId" in serialized
    assert "'__APIM_ID__', apimId" in serialized
    for name in re.findall(r"name == '(tie\.[a-z_.]+)'", text):
        assert name in {m["name"] for k, m in CUSTOM_METRICS.items() if k != "$comment"}
