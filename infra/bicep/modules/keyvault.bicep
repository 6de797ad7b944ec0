// Key Vault for the mTLS client certificates and secrets: RBAC authorization (no access policies), soft
// delete with purge protection, diagnostics, private endpoint with network isolation, and Event Grid
// certificate events (near expiry, expired) raised as Azure Monitor alerts on the platform action group.
param name string
param location string
param tags object
@allowed([
  'standard'
  'premium'
])
param skuName string
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string
param networkIsolation bool
param privateEndpointSubnetId string
param privateDnsZoneId string
param workspaceId string
@description('Immutable storage account every diagnostic setting also archives to (monitoring.bicep).')
param archiveStorageAccountId string
param actionGroupId string
@description('Role assignments on the vault: [{ principalId, roleDefinitionId }].')
param roleAssignments array
@description('Application Insights component whose connection string is stored as a secret for the Function App Key Vault reference.')
param appInsightsName string
@description('Secret name of the Application Insights connection string (app-settings.json keyVaultSecret).')
param appInsightsSecretName string
@description('Secret name of the API gateway proof-of-passage value (X-TIE-Gateway; app setting TIE_APIM_SHARED_SECRET).')
param gatewaySecretName string
@description('Write the gateway secret: first deployment (bootstrap) or a deliberate rotation; otherwise it is left as it is.')
param writeGatewaySecret bool
@secure()
@description('Value written when writeGatewaySecret (main.bicep draws it from newGuid(): nobody sees or types it).')
param gatewaySecretValue string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: skuName
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForTemplateDeployment: false
    enabledForDiskEncryption: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    storageAccountId: archiveStorageAccountId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource appInsightsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: appInsightsSecretName
  properties: {
    value: appInsights.properties.ConnectionString
    contentType: 'Application Insights connection string'
  }
}

// Created once, not on every run: rewriting it would race the app and API Management picking it up.
resource gatewaySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (writeGatewaySecret) {
  parent: vault
  name: gatewaySecretName
  properties: {
    value: gatewaySecretValue
    contentType: 'API gateway proof-of-passage value'
  }
}

resource vaultRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for assignment in roleAssignments: {
  name: guid(vault.id, assignment.principalId, assignment.roleDefinitionId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', assignment.roleDefinitionId)
    principalId: assignment.principalId
    principalType: 'ServicePrincipal'
  }
}]

// Key Vault publishes certificate lifecycle events to Event Grid; Event Grid raises them as Azure Monitor
// alerts (no code, no extra data-plane role). CertificateNearExpiry fires 30 days before expiry; the 90/30/7
// day alerts on tie.certificate.days_remaining are in alerts.bicep.
resource events 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: 'egst-${name}'
  location: location
  tags: tags
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource eventsDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: events
  properties: {
    workspaceId: workspaceId
    storageAccountId: archiveStorageAccountId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

var certificateEvents = [
  {
    name: 'certificate-near-expiry'
    eventType: 'Microsoft.KeyVault.CertificateNearExpiry'
    severity: 'Sev2'
    description: 'A Key Vault certificate expires within 30 days: renew it (infra/README.md, Rotate certificates).'
  }
  {
    name: 'certificate-expired'
    eventType: 'Microsoft.KeyVault.CertificateExpired'
    severity: 'Sev1'
    description: 'A Key Vault certificate has expired: mTLS connections using it fail.'
  }
]

resource certificateAlerts 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = [for event in certificateEvents: {
  parent: events
  name: event.name
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: [
        event.eventType
      ]
    }
    destination: {
      endpointType: 'MonitorAlert'
      properties: {
        severity: event.severity
        description: event.description
        actionGroups: [
          actionGroupId
        ]
      }
    }
  }
}]

module privateEndpoint 'private-endpoint.bicep' = if (networkIsolation) {
  name: 'pe-${name}'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: vault.id
    groupId: 'vault'
    privateDnsZoneIds: [
      privateDnsZoneId
    ]
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
