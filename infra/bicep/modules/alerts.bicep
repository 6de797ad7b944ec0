// Alert rules. Every rule notifies the platform action group. Rules on Service Bus and API Management use
// platform metrics; rules on the Function App and on custom metrics query Application Insights (classic
// table names: requests, traces, customMetrics). Key Vault certificate events are raised in keyvault.bicep.
//
//   alert (name)                     signal
//   sb-dead-letters                  DeadletteredMessages > 0, per topic (EntityName)
//   sb-backlog                       ActiveMessages above a threshold, per topic
//   sb-backlog-growth                ActiveMessages above its learned (dynamic) band, per topic
//   sb-message-age                   age of messages when the trigger receives them (host "Trigger Details")
//   func-failures                    failed function invocations
//   func-http-5xx-rate               share of HTTP responses with 5xx
//   apim-5xx                         gateway responses 5xx
//   apim-429                         gateway responses 429
//   cert-expiry-90d/-30d/-7d         custom metric tie.certificate.days_remaining
//   reconciliation-variance          custom metric tie.reconciliation.variance
//   messages-stuck                   custom metric tie.messages.stuck (in flight past TIE_STUCK_AFTER_SECONDS)
//   no-hl7-traffic                   no HL7 v2 requests for N minutes inside working hours (Europe/London)
//   apim-latency                     gateway Duration (average, ms) above a threshold
//   apim-backend-latency             BackendDuration (average, ms) above a threshold
//   func-latency-p95                 95th percentile of Function App request duration above a threshold
//   service-health                   Azure Service Health incidents/maintenance/advisories in our regions
//   resource-health                  a resource of the group became Unavailable or Degraded
param namePrefix string
param location string
param tags object
param actionGroupId string
param serviceBusNamespaceId string
param apimId string
param appInsightsId string
@description('Active messages per topic above which sb-backlog fires.')
param backlogThreshold int
@description('Seconds a message may wait on a subscription before sb-message-age fires.')
param messageAgeThresholdSeconds int
@description('Failed invocations per 15 minutes above which func-failures fires.')
param functionFailureThreshold int
@description('Percentage of 5xx HTTP responses (at least 20 requests in the window) above which func-http-5xx-rate fires.')
param http5xxRatePercent int
param apim5xxThreshold int
param apim429Threshold int
@description('Certificate expiry thresholds in days, largest first; one alert per band.')
param certificateExpiryDays array = [
  90
  30
  7
]
@description('Largest tolerated reconciliation variance (records) per run.')
param reconciliationVarianceThreshold int
@description('Messages a subscriber may hold in flight past TIE_STUCK_AFTER_SECONDS before messages-stuck fires (0: any).')
@minValue(0)
param stuckMessagesThreshold int = 0
@description('Function names whose requests count as HL7 v2 traffic (tests/infra checks they exist).')
param hl7FunctionNames array
@description('Window without HL7 v2 traffic that raises no-hl7-traffic (ISO 8601 duration).')
param noHl7TrafficWindow string
@minValue(0)
@maxValue(23)
param workingHoursStart int
@minValue(1)
@maxValue(24)
param workingHoursEnd int
param workingHoursTimeZone string = 'Europe/London'
@minValue(1)
@description('Average gateway Duration (ms) over 15 minutes above which apim-latency fires.')
param apimLatencyMs int = 2000
@minValue(1)
@description('Average BackendDuration (ms) over 15 minutes above which apim-backend-latency fires.')
param apimBackendLatencyMs int = 1500
@minValue(1)
@description('95th percentile of Function App request duration (ms, 15 minutes, at least 20 requests) above which func-latency-p95 fires.')
param functionP95LatencyMs int = 1000
@description('Regions whose Service Health events concern the platform.')
param serviceHealthRegions array

var customMetrics = loadJsonContent('../config/custom-metrics.json')
var hl7Names = join(map(hl7FunctionNames, n => '\'${n}\''), ', ')

var metricAlerts = [
  {
    name: 'sb-dead-letters'
    description: 'A message was dead-lettered on a subscription of this topic. List: tie bus dlq list <topic> <subscription>.'
    severity: 1
    scope: serviceBusNamespaceId
    windowSize: 'PT5M'
    criterion: {
      criterionType: 'StaticThresholdCriterion'
      name: 'dead-letters'
      metricNamespace: 'Microsoft.ServiceBus/namespaces'
      metricName: 'DeadletteredMessages'
      timeAggregation: 'Maximum'
      operator: 'GreaterThan'
      threshold: 0
      dimensions: [
        {
          name: 'EntityName'
          operator: 'Include'
          values: [
            '*'
          ]
        }
      ]
    }
  }
  {
    name: 'sb-backlog'
    description: 'Active messages on a topic\'s subscriptions stayed above the backlog threshold.'
    severity: 2
    scope: serviceBusNamespaceId
    windowSize: 'PT15M'
    criterion: {
      criterionType: 'StaticThresholdCriterion'
      name: 'backlog'
      metricNamespace: 'Microsoft.ServiceBus/namespaces'
      metricName: 'ActiveMessages'
      timeAggregation: 'Average'
      operator: 'GreaterThan'
      threshold: backlogThreshold
      dimensions: [
        {
          name: 'EntityName'
          operator: 'Include'
          values: [
            '*'
          ]
        }
      ]
    }
  }
  {
    name: 'sb-backlog-growth'
    description: 'Active messages are growing beyond their usual band (consumers slower than producers).'
    severity: 2
    scope: serviceBusNamespaceId
    windowSize: 'PT15M'
    criterion: {
      criterionType: 'DynamicThresholdCriterion'
      name: 'backlog-growth'
      metricNamespace: 'Microsoft.ServiceBus/namespaces'
      metricName: 'ActiveMessages'
      timeAggregation: 'Average'
      operator: 'GreaterThan'
      alertSensitivity: 'Medium'
      failingPeriods: {
        numberOfEvaluationPeriods: 4
        minFailingPeriodsToAlert: 3
      }
      dimensions: [
        {
          name: 'EntityName'
          operator: 'Include'
          values: [
            '*'
          ]
        }
      ]
    }
  }
  {
    name: 'apim-5xx'
    description: 'API Management answered with 5xx (gateway or backend failure).'
    severity: 1
    scope: apimId
    windowSize: 'PT5M'
    criterion: {
      criterionType: 'StaticThresholdCriterion'
      name: 'gateway-5xx'
      metricNamespace: 'Microsoft.ApiManagement/service'
      metricName: 'Requests'
      timeAggregation: 'Total'
      operator: 'GreaterThan'
      threshold: apim5xxThreshold
      dimensions: [
        {
          name: 'GatewayResponseCodeCategory'
          operator: 'Include'
          values: [
            '5xx'
          ]
        }
      ]
    }
  }
  {
    name: 'apim-429'
    description: 'API Management throttled callers (429): a client exceeds its rate limit or quota.'
    severity: 3
    scope: apimId
    windowSize: 'PT5M'
    criterion: {
      criterionType: 'StaticThresholdCriterion'
      name: 'gateway-429'
      metricNamespace: 'Microsoft.ApiManagement/service'
      metricName: 'Requests'
      timeAggregation: 'Total'
      operator: 'GreaterThan'
      threshold: apim429Threshold
      dimensions: [
        {
          name: 'GatewayResponseCode'
          operator: 'Include'
          values: [
            '429'
          ]
        }
      ]
    }
  }
  {
    name: 'apim-latency'
    description: 'Gateway requests took more than ${apimLatencyMs} ms on average (Duration: gateway plus backend).'
    severity: 2
    scope: apimId
    windowSize: 'PT15M'
    criterion: {
      criterionType: 'StaticThresholdCriterion'
      name: 'gateway-duration'
      metricNamespace: 'Microsoft.ApiManagement/service'
      metricName: 'Duration'
      timeAggregation: 'Average'
      operator: 'GreaterThan'
      threshold: apimLatencyMs
    }
  }
  {
    name: 'apim-backend-latency'
    description: 'The Function App answered the gateway in more than ${apimBackendLatencyMs} ms on average (BackendDuration).'
    severity: 2
    scope: apimId
    windowSize: 'PT15M'
    criterion: {
      criterionType: 'StaticThresholdCriterion'
      name: 'backend-duration'
      metricNamespace: 'Microsoft.ApiManagement/service'
      metricName: 'BackendDuration'
      timeAggregation: 'Average'
      operator: 'GreaterThan'
      threshold: apimBackendLatencyMs
    }
  }
]

resource metricRules 'Microsoft.Insights/metricAlerts@2018-03-01' = [for rule in metricAlerts: {
  name: '${namePrefix}-${rule.name}'
  location: 'global'
  tags: tags
  properties: {
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      rule.scope
    ]
    evaluationFrequency: 'PT1M'
    windowSize: rule.windowSize
    autoMitigate: true
    criteria: {
      'odata.type': rule.criterion.criterionType == 'DynamicThresholdCriterion' ? 'Microsoft.Azure.Monitor.MultipleResourceMultipleMetricCriteria' : 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        rule.criterion
      ]
    }
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}]

// Certificate bands: 90d fires for (30, 90], 30d for (7, 30], 7d for anything at or below 7 days.
var certificateAlerts = [for (days, i) in certificateExpiryDays: {
  name: 'cert-expiry-${days}d'
  description: 'A certificate expires within ${days} days (custom metric ${customMetrics.certificateDaysRemaining.name}). Rotate: infra/README.md.'
  severity: i == 0 ? 3 : (i == 1 ? 2 : 1)
  frequency: 'PT6H'
  window: 'P1D'
  query: 'customMetrics | where name == \'${customMetrics.certificateDaysRemaining.name}\' | extend certificate = tostring(customDimensions[\'certificate\']) | summarize daysRemaining = min(valueMin) by certificate | where daysRemaining <= ${days}${i < length(certificateExpiryDays) - 1 ? ' and daysRemaining > ${certificateExpiryDays[i + 1]}' : ''}'
}]

var logAlerts = concat([
  {
    name: 'sb-message-age'
    description: 'Messages waited longer than ${messageAgeThresholdSeconds}s on a subscription before a trigger received them.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'traces | where message startswith \'Trigger Details:\' and message has \'EnqueuedTimeUtc\' | extend enqueued = todatetime(extract(@\'EnqueuedTimeUtc: ([^,]+)\', 1, message)) | where isnotnull(enqueued) | extend ageSeconds = datetime_diff(\'second\', timestamp, enqueued) | summarize maxAgeSeconds = max(ageSeconds) by operation_Name | where maxAgeSeconds > ${messageAgeThresholdSeconds}'
  }
  {
    name: 'func-failures'
    description: 'Function invocations failed (exceptions escaping a trigger, abandoned messages).'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'requests | where success == false | summarize failures = count() by operation_Name | where failures > ${functionFailureThreshold}'
  }
  {
    name: 'func-http-5xx-rate'
    description: 'More than ${http5xxRatePercent}% of HTTP responses from the Function App were 5xx.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'requests | extend code = toint(resultCode) | where code >= 100 | summarize total = count(), errors = countif(code >= 500) | extend ratePercent = 100.0 * errors / total | where total >= 20 and ratePercent > ${http5xxRatePercent}'
  }
  {
    name: 'func-latency-p95'
    description: 'The 95th percentile of Function App request duration exceeded ${functionP95LatencyMs} ms.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'requests | summarize total = count(), p95 = percentile(duration, 95) by operation_Name | where total >= 20 and p95 > ${functionP95LatencyMs}'
  }
  {
    name: 'reconciliation-variance'
    description: 'A reconciliation run found variance on an interface (custom metric ${customMetrics.reconciliationVariance.name} per interface and category; platform event reconcile.variance). Report: tie reconcile history; tie reconcile show <run>; docs/reconciliation.md.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT1H'
    query: 'customMetrics | where name == \'${customMetrics.reconciliationVariance.name}\' | extend reconciliation = tostring(customDimensions[\'reconciliation\']) | extend category = tostring(customDimensions[\'category\']) | summarize variance = max(valueMax) by reconciliation, category | where variance > ${reconciliationVarianceThreshold}'
  }
  {
    name: 'messages-stuck'
    description: 'A message is still in flight past TIE_STUCK_AFTER_SECONDS (custom metric ${customMetrics.stuckMessages.name}; platform event message.stuck). List: tie inflight --stuck; then tie trace <correlationId>.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT10M'
    query: 'customMetrics | where name == \'${customMetrics.stuckMessages.name}\' | extend subscriber = tostring(customDimensions[\'subscriber\']) | summarize stuck = max(valueMax) by subscriber | where stuck > ${stuckMessagesThreshold}'
  }
  {
    name: 'no-hl7-traffic'
    description: 'No HL7 v2 message arrived within the window during working hours (${workingHoursStart}:00-${workingHoursEnd}:00 ${workingHoursTimeZone}, Monday to Friday).'
    severity: 2
    frequency: 'PT5M'
    window: noHl7TrafficWindow
    query: 'let localNow = datetime_utc_to_local(now(), \'${workingHoursTimeZone}\'); requests | where operation_Name in (${hl7Names}) | summarize messages = count() | where messages == 0 and dayofweek(localNow) between (1d .. 5d) and hourofday(localNow) >= ${workingHoursStart} and hourofday(localNow) < ${workingHoursEnd}'
  }
  {
    name: 'cert-metric-missing'
    description: 'No ${customMetrics.certificateDaysRemaining.name} point for a day: the certificate_expiry timer (every 6 hours) is not running or cannot read the certificate store, so the expiry alerts are blind. Check: tie certs (docs/credentials.md).'
    severity: 2
    frequency: 'PT6H'
    window: 'P1D'
    query: 'customMetrics | where name == \'${customMetrics.certificateDaysRemaining.name}\' | summarize points = count() | where points == 0'
  }
], certificateAlerts)

resource logRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in logAlerts: {
  name: '${namePrefix}-${rule.name}'
  location: location
  tags: tags
  properties: {
    displayName: '${namePrefix}-${rule.name}'
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}]

// Platform health: Azure's own incidents in our regions (Service Health, subscription-wide signal) and any
// resource of this group turning Unavailable/Degraded (Resource Health). Activity log alerts are global.
var healthAlerts = [
  {
    name: 'service-health'
    description: 'Azure Service Health: an incident, planned maintenance or advisory for a service the platform uses in ${join(serviceHealthRegions, '/')}.'
    scopes: [
      subscription().id
    ]
    conditions: [
      {
        field: 'category'
        equals: 'ServiceHealth'
      }
      {
        field: 'properties.impactedServices[*].ImpactedRegions[*].RegionName'
        containsAny: map(serviceHealthRegions, r => r == 'uksouth' ? 'UK South' : (r == 'ukwest' ? 'UK West' : r))
      }
    ]
  }
  {
    name: 'resource-health'
    description: 'Resource Health: a platform resource became Unavailable or Degraded.'
    scopes: [
      resourceGroup().id
    ]
    conditions: [
      {
        field: 'category'
        equals: 'ResourceHealth'
      }
      {
        anyOf: [
          {
            field: 'properties.currentHealthStatus'
            equals: 'Unavailable'
          }
          {
            field: 'properties.currentHealthStatus'
            equals: 'Degraded'
          }
        ]
      }
    ]
  }
]

resource healthRules 'Microsoft.Insights/activityLogAlerts@2023-01-01-preview' = [for rule in healthAlerts: {
  name: '${namePrefix}-${rule.name}'
  location: 'global'
  tags: tags
  properties: {
    description: rule.description
    enabled: true
    scopes: rule.scopes
    condition: {
      allOf: rule.conditions
    }
    actions: {
      actionGroups: [
        {
          actionGroupId: actionGroupId
        }
      ]
    }
  }
}]

output alertNames array = concat(map(metricAlerts, a => a.name), map(logAlerts, a => a.name), map(healthAlerts, a => a.name))
