// Azure Monitor workbook "TIE message flow" (infra/workbooks/message-flow.workbook.json): gateway responses,
// Service Bus flow, backlog and dead-letters per topic, function invocations, message age, custom metrics.
param displayName string
param location string
param tags object
param appInsightsId string
param serviceBusNamespaceId string
param apimId string

var template = loadTextContent('../../workbooks/message-flow.workbook.json')

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'tie-message-flow')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: replace(replace(template, '__SERVICEBUS_ID__', serviceBusNamespaceId), '__APIM_ID__', apimId)
  }
}

output id string = workbook.id
