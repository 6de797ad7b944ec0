// The Function App on Flex Consumption (Linux, Python 3.11) with a user-assigned identity, app settings
// rendered in main.bicep from config/app-settings.json, VNet integration, HTTPS only, TLS 1.2, FTP and
// basic-auth publishing disabled. Its host key is written to Key Vault, where the API Management backend
// reads it through a Key Vault named value.
param planName string
param siteName string
param location string
param tags object
param identityId string
@description('Blob endpoint of the host storage account (trailing slash).')
param hostStorageBlobEndpoint string
@description('Container in host storage that holds the deployment package.')
param deploymentContainerName string
@description('Subnet delegated to Microsoft.App/environments for outbound VNet integration.')
param integrationSubnetId string
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string
param networkIsolation bool
param privateEndpointSubnetId string
param privateDnsZoneId string
param workspaceId string
@description('"settings" of config/app-settings.json: [{ name, from, value }].')
param appSettingsSpec array
@description('Values for settings with from = "deployment", by key.')
param deploymentValues object
@description('Per-environment values by setting name; win over the list.')
param appSettingOverrides object
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int
@allowed([
  2048
  4096
])
param instanceMemoryMB int
param keyVaultName string
@description('Key Vault secret that receives the host key for API Management.')
param functionKeySecretName string

// THE app settings: one entry per element of config/app-settings.json "settings". literal -> value as is;
// deployment -> deploymentValues[value]; keyVaultSecret -> Key Vault reference resolved with the app identity.
var appSettings = [for setting in appSettingsSpec: {
  name: setting.name
  value: contains(appSettingOverrides, setting.name) ? string(appSettingOverrides[setting.name]) : (setting.from == 'literal' ? setting.value : (setting.from == 'deployment' ? deploymentValues[setting.value] : '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${setting.value})'))
}]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: siteName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: publicNetworkAccess
    virtualNetworkSubnetId: integrationSubnetId
    keyVaultReferenceIdentity: identityId
    clientAffinityEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Publishing uses Entra ID (OIDC in the pipeline); no FTP or SCM basic-auth credentials exist.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: workspaceId
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

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// API Management sends this key as x-functions-key (named value backed by this secret). Rotation:
// infra/README.md ("Rotate the function key").
resource functionKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: functionKeySecretName
  properties: {
    value: listKeys('${site.id}/host/default', '2024-04-01').functionKeys.default
    contentType: 'Azure Functions host key for the API Management backend'
  }
}

module privateEndpoint 'private-endpoint.bicep' = if (networkIsolation) {
  name: 'pe-${siteName}'
  params: {
    name: 'pe-${siteName}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: site.id
    groupId: 'sites'
    privateDnsZoneIds: [
      privateDnsZoneId
    ]
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output planId string = plan.id
