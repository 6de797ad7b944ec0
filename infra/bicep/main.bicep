// Serverless TIE: the whole platform for one environment in one resource group.
//
//   az deployment group create -g rg-tie-<env>-uks -f infra/bicep/main.bicep \
//     -p @infra/bicep/params/<env>.parameters.json
//
// Names: <abbreviation>-<workload>-<environment>-<region>[-<suffix>], the suffix (5 chars of uniqueString
// over subscription, resource group and environment) only where names are global (Service Bus, Key Vault,
// storage, Function App, API Management). Tags on every resource: service, environment,
// data-classification, managed-by. Operator walk-through: infra/README.md.
targetScope = 'resourceGroup'

metadata description = 'Serverless Trust Integration Engine (HL7 v2, FHIR R4) on Azure Functions, Service Bus, Storage, Key Vault and API Management.'

@allowed([
  'dev'
  'test'
  'prod'
])
param environmentName string
@allowed([
  'uksouth'
  'ukwest'
])
@description('NHS data residency: UK regions only (the Allowed locations policy assignment enforces the same list).')
param location string = resourceGroup().location
@description('CanNotDelete locks on the stateful resources (Service Bus, Key Vault, storage, Log Analytics); on in prod.')
param lockStatefulResources bool = environmentName == 'prod'
@minLength(2)
@maxLength(6)
@description('Short lowercase workload name used in resource names.')
param workload string = 'tie'
@allowed([
  'official'
  'official-sensitive'
])
@description('UK Government Security Classification of the data the environment holds (patient data: official-sensitive).')
param dataClassification string = 'official-sensitive'
@description('Extra tags merged into the standard ones (cost centre, owner, ...).')
param extraTags object = {}

// Network -----------------------------------------------------------------------------------------------
@description('Private endpoints for every PaaS resource, public network access off, private DNS. Requires Service Bus Premium and an API Management tier with VNet integration (StandardV2/PremiumV2).')
param networkIsolation bool = true
@allowed([
  'Enabled'
  'Disabled'
])
@description('Public network access of Service Bus, Storage, Key Vault, the Function App and telemetry ingestion.')
param publicNetworkAccess string = 'Disabled'
param vnetAddressPrefix string = '10.60.0.0/22'

// Service Bus --------------------------------------------------------------------------------------------
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Premium'
param serviceBusCapacity int = 1

// Storage and Key Vault ---------------------------------------------------------------------------------
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'
@allowed([
  'standard'
  'premium'
])
param keyVaultSku string = 'premium'

// Function App -------------------------------------------------------------------------------------------
param functionMaximumInstanceCount int = 100
param functionInstanceMemoryMB int = 2048
@description('Per-environment values for settings of config/app-settings.json, e.g. { TIE_LOG_LEVEL: \'DEBUG\' }.')
param appSettingOverrides object = {}

// MLLP listener (Azure Container Apps) ------------------------------------------------------------------
@description('MLLP listener image by digest (<registry>/tie-mllp@sha256:...), built from the Dockerfile; empty: no listener is deployed.')
param mllpImage string = ''
@description('Registry of mllpImage, pulled with the app identity (it needs AcrPull on the registry: infra/README.md, "MLLP listener"); empty for a public registry.')
param containerRegistryServer string = ''
@minValue(1)
@maxValue(65535)
param mllpPort int = 2575
@description('HSCN address ranges of the Trust systems that send HL7 v2 over MLLP (NSG and ingress allow-list).')
param mllpSourcePrefixes array = []
@allowed([
  'tls'
  'mutual'
])
@description('TIE_MLLP_TLS of the listener: the server certificate (and for mutual, the client CA senders must chain to) come from the credential registry entry mllp-listener, read from Key Vault (docs/credentials.md).')
param mllpTlsMode string = 'mutual'
@minValue(1)
param mllpMinReplicas int = environmentName == 'prod' ? 2 : 1
@minValue(1)
param mllpMaxReplicas int = 10
@minValue(1)
param mllpConcurrentConnections int = 50

// API Management -----------------------------------------------------------------------------------------
@allowed([
  'Developer'
  'BasicV2'
  'StandardV2'
  'PremiumV2'
  'Premium'
])
param apimSku string = 'StandardV2'
param apimCapacity int = 1
@allowed([
  'Enabled'
  'Disabled'
])
@description('The API Management gateway is the front door; callers need an Entra ID token and a subscription key.')
param apimPublicNetworkAccess string = 'Enabled'
param apimPublisherEmail string
param apimPublisherName string = 'Trust Integration Team'
@description('Application ID URI (audience) of the TIE API app registration, e.g. api://tie-prod.')
param apiAudience string
@description('Application (client) ID of the same app registration (App Service authentication on the Function App).')
param apiClientId string
@description('Base URL of the Azure Health Data Services FHIR service the FHIR API stores resources in (https://<workspace>-<service>.fhir.azurehealthcareapis.com); the app identity needs FHIR Data Contributor on it.')
param fhirServiceUrl string
param apimRateLimitPerMinute int = 600
param apimQuotaPerDay int = 500000
@description('App teams that get a subscription to the TIE product: [{ name, displayName }].')
param appTeams array = []
@description('Client certificates the app-teams product accepts: [{ issuerCertificate, subject?, thumbprint? }] (issuerCertificate names an entry of trustCaCertificates). Empty: the product refuses every call.')
param appTeamsClientCertificates array = []
@description('CA certificates of onboarded Trusts in Key Vault: [{ name, certificateName }] (infra/README.md, "Onboard a Trust system").')
param trustCaCertificates array = []
@description('Trust systems calling the API: [{ name, displayName, clientCertificates: [{ issuerCertificate, subject?, thumbprint? }] }]; each gets a product with its own client-certificate rule.')
param trustClients array = []
@description('Custom gateway host name; empty: <apim>.azure-api.net only.')
param gatewayHostName string = ''
@description('Key Vault secret (certificate) with the TLS server certificate of gatewayHostName.')
param gatewayCertificateSecretName string = ''

// Monitoring ---------------------------------------------------------------------------------------------
@minValue(30)
param logRetentionDays int = 90
@minValue(1)
@description('Days archived diagnostic logs stay immutable in the archive storage account.')
param diagnosticArchiveDays int = 365
@allowed([
  'Enabled'
  'Disabled'
])
@description('Public query access to Log Analytics / Application Insights (portal, workbooks); Entra ID + RBAC still required.')
param monitorQueryPublicNetworkAccess string = 'Enabled'
@allowed([
  'Enabled'
  'Disabled'
])
@description('Diagnostics archive account. Enabled means "selected networks" with none selected (default action Deny): only the trusted-services bypass - Azure Monitor writing diagnostic logs - gets in. Disabled would shut Azure Monitor out as well.')
param archivePublicNetworkAccess string = 'Enabled'
@description('Alert e-mail receivers: [{ name, email }].')
param alertEmailReceivers array
@secure()
param alertWebhookUri string = ''
param backlogThreshold int = 1000
param messageAgeThresholdSeconds int = 300
param functionFailureThreshold int = 0
param http5xxRatePercent int = 5
param apim5xxThreshold int = 5
param apim429Threshold int = 50
param reconciliationVarianceThreshold int = 0
param noHl7TrafficWindow string = 'PT30M'
param workingHoursStart int = 8
param workingHoursEnd int = 18

// One-time steps ------------------------------------------------------------------------------------------
@description('First deployment of an environment (the pipeline sets it when the resource group has no successful deployment): creates what must be created once - the WORM immutability policies and the gateway secret. Later runs leave them alone (a locked policy refuses a PUT); infra/README.md.')
param bootstrap bool = false
@description('Write a new gateway secret on this run (rotation); implied by bootstrap.')
param rotateGatewaySecret bool = false
@secure()
@description('Seed of the gateway secret; never pass it - the default draws a fresh GUID per deployment.')
param gatewaySecretSeed string = newGuid()

// Names and tags ------------------------------------------------------------------------------------------
var regionCodes = {
  uksouth: 'uks'
  ukwest: 'ukw'
}
var allowedLocations = items(regionCodes)
var region = regionCodes[location]
var suffix = take(uniqueString(subscription().id, resourceGroup().id, environmentName), 5)
var base = '${workload}-${environmentName}-${region}'
var names = {
  appIdentity: 'id-${base}-app'
  apimIdentity: 'id-${base}-apim'
  workspace: 'log-${base}'
  appInsights: 'appi-${base}'
  actionGroup: 'ag-${base}'
  privateLinkScope: 'ampls-${base}'
  vnet: 'vnet-${base}'
  serviceBus: 'sb-${base}-${suffix}'
  keyVault: take('kv-${workload}-${environmentName}-${suffix}', 24)
  hostStorage: take('st${workload}${environmentName}h${suffix}', 24)
  dataStorage: take('st${workload}${environmentName}d${suffix}', 24)
  archiveStorage: take('st${workload}${environmentName}a${suffix}', 24)
  plan: 'asp-${base}'
  functionApp: 'func-${base}-${suffix}'
  apim: 'apim-${base}-${suffix}'
  containerAppsEnvironment: 'cae-${base}'
  mllpListener: 'ca-${base}-mllp'
  alertPrefix: 'alert-${base}'
}
var tags = union({
  service: 'serverless-tie'
  environment: environmentName
  'data-classification': dataClassification
  'managed-by': 'bicep'
}, extraTags)

var roles = loadJsonContent('config/roles.json')
var storageConfig = loadJsonContent('config/storage.json')
var appSettingsSpec = loadJsonContent('config/app-settings.json')
var deploymentContainerName = 'app-package'
var gatewaySecretName = 'tie-gateway-secret'
var isolatedAccess = networkIsolation ? 'Disabled' : publicNetworkAccess

// Identities -------------------------------------------------------------------------------------------------
module appIdentity 'modules/identity.bicep' = {
  name: 'identity-app'
  params: {
    name: names.appIdentity
    location: location
    tags: tags
  }
}

module apimIdentity 'modules/identity.bicep' = {
  name: 'identity-apim'
  params: {
    name: names.apimIdentity
    location: location
    tags: tags
  }
}

// Network ----------------------------------------------------------------------------------------------------
module network 'modules/network.bicep' = {
  name: 'network'
  params: {
    name: names.vnet
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    networkIsolation: networkIsolation
    workspaceId: monitoring.outputs.workspaceId
    archiveStorageAccountId: monitoring.outputs.archiveStorageAccountId
    mllpPort: mllpPort
    mllpSourcePrefixes: mllpSourcePrefixes
  }
}

// Monitoring -------------------------------------------------------------------------------------------------
module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    actionGroupName: names.actionGroup
    location: location
    tags: tags
    retentionInDays: logRetentionDays
    alertEmailReceivers: alertEmailReceivers
    alertWebhookUri: alertWebhookUri
    telemetryPublisherPrincipalIds: [
      appIdentity.outputs.principalId
      apimIdentity.outputs.principalId
    ]
    ingestionPublicNetworkAccess: isolatedAccess
    queryPublicNetworkAccess: monitorQueryPublicNetworkAccess
    archivePublicNetworkAccess: archivePublicNetworkAccess
    archiveStorageName: names.archiveStorage
    archiveStorageSku: storageSku
    archiveImmutabilityDays: diagnosticArchiveDays
    createImmutabilityPolicies: bootstrap
  }
}

module monitorPrivateLink 'modules/monitor-private-link.bicep' = if (networkIsolation) {
  name: 'monitor-private-link'
  params: {
    name: names.privateLinkScope
    location: location
    tags: tags
    workspaceId: monitoring.outputs.workspaceId
    appInsightsId: monitoring.outputs.appInsightsId
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: network.outputs.privateDnsZoneIds
  }
}

// Key Vault --------------------------------------------------------------------------------------------------
module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
    skuName: keyVaultSku
    publicNetworkAccess: isolatedAccess
    networkIsolation: networkIsolation
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: networkIsolation ? network.outputs.privateDnsZoneIds.keyVault : ''
    workspaceId: monitoring.outputs.workspaceId
    archiveStorageAccountId: monitoring.outputs.archiveStorageAccountId
    actionGroupId: monitoring.outputs.actionGroupId
    appInsightsName: monitoring.outputs.appInsightsName
    appInsightsSecretName: 'appinsights-connection-string'
    gatewaySecretName: gatewaySecretName
    writeGatewaySecret: bootstrap || rotateGatewaySecret
    gatewaySecretValue: replace(gatewaySecretSeed, '-', '')
    // Secrets User also serves the MLLP listener container, which runs as the app identity (mllp module,
    // identityId) and reads its TLS certificate's backing secret through the credential registry.
    roleAssignments: [
      {
        principalId: appIdentity.outputs.principalId
        roleDefinitionId: roles.keyVaultSecretsUser
      }
      {
        principalId: appIdentity.outputs.principalId
        roleDefinitionId: roles.keyVaultCertificateUser
      }
    ]
  }
}

// Storage ----------------------------------------------------------------------------------------------------
// Host storage: the Functions runtime (AzureWebJobsStorage, identity-based) and the deployment package.
module hostStorage 'modules/storage.bicep' = {
  name: 'storage-host'
  params: {
    name: names.hostStorage
    location: location
    tags: tags
    skuName: storageSku
    tables: []
    containers: [
      {
        name: deploymentContainerName
        immutabilityDays: 0
      }
    ]
    publicNetworkAccess: isolatedAccess
    networkIsolation: networkIsolation
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: network.outputs.privateDnsZoneIds
    privateEndpointServices: [
      'blob'
      'queue'
      'table'
    ]
    workspaceId: monitoring.outputs.workspaceId
    archiveStorageAccountId: monitoring.outputs.archiveStorageAccountId
    createImmutabilityPolicies: bootstrap
    roleAssignments: [
      {
        principalId: appIdentity.outputs.principalId
        roleDefinitionId: roles.storageBlobDataOwner
      }
      {
        principalId: appIdentity.outputs.principalId
        roleDefinitionId: roles.storageQueueDataContributor
      }
    ]
  }
}

// Data storage: exactly the tables and containers of shared/storage/names.py (config/storage.json), the
// message-body container and the WORM audit container.
module dataStorage 'modules/storage.bicep' = {
  name: 'storage-data'
  params: {
    name: names.dataStorage
    location: location
    tags: tags
    skuName: storageSku
    tables: storageConfig.tables
    containers: concat(map(storageConfig.containers, c => {
      name: c
      immutabilityDays: 0
    }), map(storageConfig.infraContainers, c => {
      name: c.name
      immutabilityDays: c.immutabilityDays
    }))
    publicNetworkAccess: isolatedAccess
    networkIsolation: networkIsolation
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: network.outputs.privateDnsZoneIds
    privateEndpointServices: [
      'blob'
      'table'
    ]
    workspaceId: monitoring.outputs.workspaceId
    archiveStorageAccountId: monitoring.outputs.archiveStorageAccountId
    createImmutabilityPolicies: bootstrap
    roleAssignments: [
      {
        principalId: appIdentity.outputs.principalId
        roleDefinitionId: roles.storageTableDataContributor
      }
      {
        principalId: appIdentity.outputs.principalId
        roleDefinitionId: roles.storageBlobDataContributor
      }
    ]
  }
}

// Service Bus ------------------------------------------------------------------------------------------------
module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    name: names.serviceBus
    location: location
    tags: tags
    sku: serviceBusSku
    capacity: serviceBusCapacity
    publicNetworkAccess: isolatedAccess
    networkIsolation: networkIsolation
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: networkIsolation ? network.outputs.privateDnsZoneIds.serviceBus : ''
    workspaceId: monitoring.outputs.workspaceId
    archiveStorageAccountId: monitoring.outputs.archiveStorageAccountId
    appPrincipalId: appIdentity.outputs.principalId
  }
}

// Function App -----------------------------------------------------------------------------------------------
// Values that app-settings.json entries with from = "deployment" refer to by key. The settings themselves
// are rendered inside functionapp.bicep (a for-expression needs values known when its deployment starts,
// which module parameters are and these module outputs are not).
var deploymentValues = {
  environmentName: environmentName
  hostStorageAccountName: hostStorage.outputs.name
  appIdentityClientId: appIdentity.outputs.clientId
  serviceBusFqdn: serviceBus.outputs.fullyQualifiedNamespace
  dataTableServiceUri: dataStorage.outputs.tableEndpoint
  dataBlobServiceUri: dataStorage.outputs.blobEndpoint
  keyVaultUri: keyVault.outputs.uri
  appInsightsAuthenticationString: 'ClientId=${appIdentity.outputs.clientId};Authorization=AAD'
  fhirServiceUrl: fhirServiceUrl
  // Public FHIR base behind the gateway (Location headers, Bundle links); override for a custom domain.
  fhirPublicBaseUrl: 'https://${names.apim}.azure-api.net/tie/fhir'
  mllpTlsMode: mllpTlsMode
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    planName: names.plan
    siteName: names.functionApp
    location: location
    tags: tags
    identityId: appIdentity.outputs.id
    hostStorageBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    integrationSubnetId: network.outputs.functionSubnetId
    publicNetworkAccess: isolatedAccess
    networkIsolation: networkIsolation
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: networkIsolation ? network.outputs.privateDnsZoneIds.sites : ''
    workspaceId: monitoring.outputs.workspaceId
    archiveStorageAccountId: monitoring.outputs.archiveStorageAccountId
    appSettingsSpec: appSettingsSpec.settings
    deploymentValues: deploymentValues
    appSettingOverrides: appSettingOverrides
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
    keyVaultName: keyVault.outputs.name
    apiClientId: apiClientId
    apiAudience: apiAudience
    callerClientId: apimIdentity.outputs.clientId
    callerPrincipalId: apimIdentity.outputs.principalId
  }
}

// API Management ---------------------------------------------------------------------------------------------
module apim 'modules/apim.bicep' = {
  name: 'apim'
  params: {
    name: names.apim
    location: location
    tags: tags
    sku: apimSku
    capacity: apimCapacity
    publisherEmail: apimPublisherEmail
    publisherName: apimPublisherName
    identityId: apimIdentity.outputs.id
    identityClientId: apimIdentity.outputs.clientId
    publicNetworkAccess: apimPublicNetworkAccess
    integrationSubnetId: networkIsolation ? network.outputs.apimSubnetId : ''
    appInsightsName: monitoring.outputs.appInsightsName
    workspaceId: monitoring.outputs.workspaceId
    archiveStorageAccountId: monitoring.outputs.archiveStorageAccountId
    functionHostName: functionApp.outputs.defaultHostName
    keyVaultUri: keyVault.outputs.uri
    keyVaultName: keyVault.outputs.name
    gatewaySecretName: gatewaySecretName
    tenantId: tenant().tenantId
    apiAudience: apiAudience
    appTeams: appTeams
    appTeamsClientCertificates: appTeamsClientCertificates
    trustCaCertificates: trustCaCertificates
    trustClients: trustClients
    gatewayHostName: gatewayHostName
    gatewayCertificateSecretName: gatewayCertificateSecretName
    bootstrap: bootstrap
    rateLimitPerMinute: apimRateLimitPerMinute
    quotaPerDay: apimQuotaPerDay
  }
}

// MLLP listener ----------------------------------------------------------------------------------------------
module mllp 'modules/mllp.bicep' = if (!empty(mllpImage)) {
  name: 'mllp'
  params: {
    environmentName: names.containerAppsEnvironment
    appName: names.mllpListener
    location: location
    tags: tags
    subnetId: network.outputs.mllpSubnetId
    workspaceId: monitoring.outputs.workspaceId
    archiveStorageAccountId: monitoring.outputs.archiveStorageAccountId
    identityId: appIdentity.outputs.id
    image: mllpImage
    registryServer: containerRegistryServer
    port: mllpPort
    minReplicas: mllpMinReplicas
    maxReplicas: mllpMaxReplicas
    concurrentConnections: mllpConcurrentConnections
    zoneRedundant: environmentName == 'prod'
    keyVaultUri: keyVault.outputs.uri
    allowedSourcePrefixes: mllpSourcePrefixes
    settingsSpec: appSettingsSpec.mllpListener
    deploymentValues: deploymentValues
  }
}

// Guard rails -------------------------------------------------------------------------------------------------
module guardrails 'modules/guardrails.bicep' = {
  name: 'guardrails'
  params: {
    tags: tags
    allowedLocations: map(allowedLocations, l => l.key)
    lockStatefulResources: lockStatefulResources
    stateful: {
      serviceBus: serviceBus.outputs.name
      keyVault: keyVault.outputs.name
      workspace: monitoring.outputs.workspaceName
      storageAccounts: [
        hostStorage.outputs.name
        dataStorage.outputs.name
        names.archiveStorage
      ]
    }
  }
}

// Alerts and workbook ----------------------------------------------------------------------------------------
module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    namePrefix: names.alertPrefix
    location: location
    tags: tags
    actionGroupId: monitoring.outputs.actionGroupId
    serviceBusNamespaceId: serviceBus.outputs.id
    apimId: apim.outputs.id
    appInsightsId: monitoring.outputs.appInsightsId
    backlogThreshold: backlogThreshold
    messageAgeThresholdSeconds: messageAgeThresholdSeconds
    functionFailureThreshold: functionFailureThreshold
    http5xxRatePercent: http5xxRatePercent
    apim5xxThreshold: apim5xxThreshold
    apim429Threshold: apim429Threshold
    reconciliationVarianceThreshold: reconciliationVarianceThreshold
    hl7FunctionNames: [
      'hl7v2_ingest'
    ]
    noHl7TrafficWindow: noHl7TrafficWindow
    workingHoursStart: workingHoursStart
    workingHoursEnd: workingHoursEnd
    serviceHealthRegions: map(allowedLocations, l => l.key)
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    displayName: 'TIE message flow (${environmentName})'
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    serviceBusNamespaceId: serviceBus.outputs.id
    apimId: apim.outputs.id
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppHostName string = functionApp.outputs.defaultHostName
output apimName string = apim.outputs.name
output apimGatewayUrl string = apim.outputs.gatewayUrl
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output keyVaultName string = keyVault.outputs.name
output dataStorageAccountName string = dataStorage.outputs.name
output appInsightsName string = monitoring.outputs.appInsightsName
output alertNames array = alerts.outputs.alertNames
@description('Private IP HSCN senders reach the MLLP listener on (through the hub); empty without a listener.')
output mllpListenerIp string = empty(mllpImage) ? '' : mllp.outputs.staticIp
