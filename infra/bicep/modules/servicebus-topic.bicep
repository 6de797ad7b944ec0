// One topic with its subscriptions and their SQL rules, from one entry of config/topology.json.
// Every property comes from the JSON (which mirrors shared/messaging/topology.py); nothing is spelled here.
param namespaceName string
@description('One element of topology.json "topics".')
param topic object
@allowed([
  'Standard'
  'Premium'
])
@description('Service Bus tier of the namespace: picks the topic\'s maxMessageSizeInKilobytes (Premium accepts 1024-102400, Standard is fixed at 256).')
param tier string

var isPremium = tier == 'Premium'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: namespaceName
}

resource serviceBusTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' = {
  parent: namespace
  name: topic.name
  properties: union({
    requiresDuplicateDetection: topic.requiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: topic.duplicateDetectionHistoryTimeWindow
    supportOrdering: true
    enablePartitioning: false
    enableBatchedOperations: true
  }, isPremium ? {
    maxMessageSizeInKilobytes: topic.maxMessageSizeInKilobytes[tier]
  } : {})
}

resource subscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = [for sub in topic.subscriptions: {
  parent: serviceBusTopic
  name: sub.name
  properties: {
    maxDeliveryCount: sub.maxDeliveryCount
    lockDuration: sub.lockDuration
    requiresSession: sub.requiresSession
    defaultMessageTimeToLive: sub.defaultMessageTimeToLive
    deadLetteringOnMessageExpiration: sub.deadLetteringOnMessageExpiration
    deadLetteringOnFilterEvaluationExceptions: sub.deadLetteringOnFilterEvaluationExceptions
    enableBatchedOperations: true
  }
}]

// Named $Default so it replaces the implicit TrueFilter rule: the replay-aware SQL filter then decides
// alone, and a dead-letter replay addressed to one subscription is not delivered to the others.
resource rules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = [for (sub, i) in topic.subscriptions: {
  parent: subscriptions[i]
  name: sub.rule.name
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: sub.rule.sqlExpression
    }
  }
}]

output name string = serviceBusTopic.name
