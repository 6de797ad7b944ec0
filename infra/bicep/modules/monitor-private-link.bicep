// Azure Monitor Private Link Scope for isolated environments: the workspace and Application Insights are
// reachable for ingestion only through a private endpoint in the VNet (ingestion access mode PrivateOnly).
// Query access stays open to Entra-authenticated users (portal, workbooks, alert evaluation).
param name string
param location string
param tags object
param workspaceId string
param appInsightsId string
param privateEndpointSubnetId string
@description('Private DNS zone IDs by key from network.bicep (monitor, oms, ods, agentSvc, blob).')
param privateDnsZoneIds object

resource privateLinkScope 'Microsoft.Insights/privateLinkScopes@2021-07-01-preview' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    accessModeSettings: {
      ingestionAccessMode: 'PrivateOnly'
      queryAccessMode: 'Open'
    }
  }
}

resource scopedWorkspace 'Microsoft.Insights/privateLinkScopes/scopedResources@2021-07-01-preview' = {
  parent: privateLinkScope
  name: 'workspace'
  properties: {
    linkedResourceId: workspaceId
  }
}

resource scopedAppInsights 'Microsoft.Insights/privateLinkScopes/scopedResources@2021-07-01-preview' = {
  parent: privateLinkScope
  name: 'app-insights'
  properties: {
    linkedResourceId: appInsightsId
  }
}

module privateEndpoint 'private-endpoint.bicep' = {
  name: 'pe-${name}'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: privateLinkScope.id
    groupId: 'azuremonitor'
    privateDnsZoneIds: [
      privateDnsZoneIds.monitor
      privateDnsZoneIds.oms
      privateDnsZoneIds.ods
      privateDnsZoneIds.agentSvc
      privateDnsZoneIds.blob
    ]
  }
  dependsOn: [
    scopedWorkspace
    scopedAppInsights
  ]
}

output id string = privateLinkScope.id
