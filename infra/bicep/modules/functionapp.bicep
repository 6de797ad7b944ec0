// The Function App on Flex Consumption (Linux, Python 3.11) with a user-assigned identity, app settings
// rendered in main.bicep from config/app-settings.json, VNet integration, HTTPS only, TLS 1.2, FTP and
// basic-auth publishing disabled. No function key is read or handed out (host keys do not exist
// before the host has run): App Service authentication (authsettingsV2) admits only tokens that API
// Management's managed identity obtains for the TIE API (authentication-managed-identity policy).
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
@description('Immutable storage account every diagnostic setting also archives to (monitoring.bicep).')
param archiveStorageAccountId string
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
@description('Application (client) ID of the TIE API app registration: App Service authentication validates tokens issued for it.')
param apiClientId string
@description('Application ID URI of the TIE API (audience of the tokens API Management obtains with its managed identity).')
param apiAudience string
@description('Client ID of API Management\'s user-assigned identity: the only application allowed to call the app.')
param callerClientId string
@description('Principal (object) ID of the same identity.')
param callerPrincipalId string

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

// Entra ID in front of every route but /api/health: a request needs an access token for the TIE API from
// this tenant, and its caller must be API Management's managed identity (application and object ID). No
// login flow, no token store. The HTTP functions run with auth level anonymous behind it (docs/adr/0003).
resource authentication 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/health'
      ]
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        isAutoProvisioned: false
        registration: {
          clientId: apiClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            apiAudience
            apiClientId
          ]
          defaultAuthorizationPolicy: {
            allowedApplications: [
              callerClientId
            ]
            allowedPrincipals: {
              identities: [
                callerPrincipalId
              ]
            }
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
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
