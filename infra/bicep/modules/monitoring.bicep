// Log Analytics workspace, workspace-based Application Insights (Entra-only ingestion) and the action group
// every alert notifies, and the diagnostics archive: a storage account with version-level WORM, so the
// platform logs outlive a purge of the workspace. The private link scope for isolated environments is
// monitor-private-link.bicep.
param workspaceName string
@description('Storage account that archives every diagnostic setting (immutable).')
param archiveStorageName string
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GZRS'
])
param archiveStorageSku string
@minValue(1)
@description('Days an archived log blob cannot be changed or deleted (version-level immutability).')
param archiveImmutabilityDays int
@description('Declare the archive\'s default immutability policy: bootstrap run only (a locked policy refuses a PUT).')
param createImmutabilityPolicies bool
param appInsightsName string
param actionGroupName string
param location string
param tags object
@minValue(30)
param retentionInDays int
@description('Receivers of every alert: [{ name, email }].')
param alertEmailReceivers array
@description('Optional HTTPS webhook (e.g. the ITSM / on-call tool); empty for none.')
@secure()
param alertWebhookUri string = ''
@description('Principals allowed to send telemetry to Application Insights with Entra ID (Monitoring Metrics Publisher).')
param telemetryPublisherPrincipalIds array
@allowed([
  'Enabled'
  'Disabled'
])
@description('Public network ingestion. Disabled requires the private link scope (monitor-private-link.bicep).')
param ingestionPublicNetworkAccess string
@allowed([
  'Enabled'
  'Disabled'
])
@description('Public network query access (portal, workbooks, alert rules). Access still needs Entra ID and RBAC.')
param queryPublicNetworkAccess string
@allowed([
  'Enabled'
  'Disabled'
])
@description('Public network access of the archive account; with Enabled, networkAcls deny everything but the trusted-services bypass Azure Monitor writes through.')
param archivePublicNetworkAccess string

var roles = loadJsonContent('../config/roles.json')

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
      enableLogAccessUsingOnlyResourcePermissions: true
    }
    publicNetworkAccessForIngestion: ingestionPublicNetworkAccess
    publicNetworkAccessForQuery: queryPublicNetworkAccess
  }
}

// The archive: Azure Monitor writes every diagnostic setting's logs here as well (insights-logs-* append
// blobs), through the trusted-services bypass. Version-level immutability on the account covers the
// containers Azure Monitor creates; the default policy is declared on the bootstrap run only and locked or
// extended by ops afterwards (infra/README.md).
resource archive 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: archiveStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: archiveStorageSku
  }
  properties: {
    accessTier: 'Cool'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: archivePublicNetworkAccess
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
    }
    immutableStorageWithVersioning: union({
      enabled: true
    }, createImmutabilityPolicies ? {
      immutabilityPolicy: {
        immutabilityPeriodSinceCreationInDays: archiveImmutabilityDays
        state: 'Unlocked'
        allowProtectedAppendWrites: true
      }
    } : {})
  }
}

resource archiveBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: archive
  name: 'default'
  properties: {
    isVersioningEnabled: true
  }
}

// The archive's own logs go to the workspace only (archiving them into itself would log every write).
resource archiveDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: archive
  properties: {
    workspaceId: workspace.id
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource archiveBlobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: archiveBlobs
  properties: {
    workspaceId: workspace.id
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

// Query audit (who read what) stays in the workspace itself, and in the archive.
resource workspaceDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: workspace
  properties: {
    workspaceId: workspace.id
    storageAccountId: archive.id
    logs: [
      {
        categoryGroup: 'audit'
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

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
    DisableIpMasking: false
    publicNetworkAccessForIngestion: ingestionPublicNetworkAccess
    publicNetworkAccessForQuery: queryPublicNetworkAccess
  }
}

resource publisherRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in telemetryPublisherPrincipalIds: {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take(replace(actionGroupName, '-', ''), 12)
    enabled: true
    emailReceivers: [for receiver in alertEmailReceivers: {
      name: receiver.name
      emailAddress: receiver.email
      useCommonAlertSchema: true
    }]
    webhookReceivers: empty(alertWebhookUri) ? [] : [
      {
        name: 'on-call'
        serviceUri: alertWebhookUri
        useCommonAlertSchema: true
      }
    ]
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output actionGroupId string = actionGroup.id
output archiveStorageAccountId string = archive.id
