// A storage account with Entra-only access (no shared keys, no anonymous blobs), its tables and containers,
// WORM (time-based immutability) on the containers that ask for it, diagnostics on every service, and
// private endpoints with network isolation. Used twice by main.bicep: host storage (Functions runtime and
// deployment package) and data storage (journal, idempotency tables, message bodies, audit).
param name string
param location string
param tags object
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GZRS'
])
param skuName string
@description('Table names (exactly those the code declares in shared/storage/names.py for the data account).')
param tables array
@description('Containers: [{ name, immutabilityDays }]; immutabilityDays > 0 adds a time-based retention (WORM) policy.')
param containers array
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string
param networkIsolation bool
param privateEndpointSubnetId string
@description('Private DNS zone IDs by key from network.bicep (blob, table, queue).')
param privateDnsZoneIds object
@description('Storage services that get a private endpoint with network isolation.')
param privateEndpointServices array
param workspaceId string
@description('Immutable storage account every diagnostic setting also archives to (monitoring.bicep).')
param archiveStorageAccountId string
@description('Data-plane role assignments on this account: [{ principalId, roleDefinitionId }].')
param roleAssignments array
@minValue(7)
param softDeleteDays int = 30
@description('Create the time-based retention (WORM) policies: first deployment only (main.bicep bootstrap). Once locked, a policy refuses any PUT, so later runs must not declare it; it is only ever extended (infra/README.md).')
param createImmutabilityPolicies bool

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: networkIsolation ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource accountDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
  properties: {
    workspaceId: workspaceId
    storageAccountId: archiveStorageAccountId
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
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
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in containers: {
  parent: blobService
  name: container.name
  properties: {
    publicAccess: 'None'
  }
}]

// Time-based retention: blobs cannot be modified or deleted until the period has passed. Created once,
// unlocked (ARM cannot lock); infra/README.md shows how ops lock it once verified (irreversible) and how the
// period is extended afterwards (az storage container immutability-policy extend). Redeploys skip it.
resource immutabilityPolicies 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = [for (container, i) in containers: if (createImmutabilityPolicies && container.immutabilityDays > 0) {
  parent: blobContainers[i]
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: container.immutabilityDays
    allowProtectedAppendWrites: true
  }
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
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
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource storageTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in tables: {
  parent: tableService
  name: table
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
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
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for assignment in roleAssignments: {
  name: guid(account.id, assignment.principalId, assignment.roleDefinitionId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', assignment.roleDefinitionId)
    principalId: assignment.principalId
    principalType: 'ServicePrincipal'
  }
}]

module privateEndpoints 'private-endpoint.bicep' = [for service in privateEndpointServices: if (networkIsolation) {
  name: 'pe-${name}-${service}'
  params: {
    name: 'pe-${name}-${service}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: account.id
    groupId: service
    privateDnsZoneIds: networkIsolation ? [
      privateDnsZoneIds[service]
    ] : []
  }
}]

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
