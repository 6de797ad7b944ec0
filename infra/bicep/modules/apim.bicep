// API Management: the front door. Imports infra/openapi/tie-api.json, applies the policies in
// infra/apim/policies (global -> API -> operation), calls the Function App with an Entra ID token of its
// managed identity (authentication-managed-identity; no function key), reads Key Vault-backed named values
// with its system-assigned identity (Key Vault Secrets User on the vault, granted here), logs to
// Application Insights without bodies, and publishes a product for app teams.
param name string
param location string
param tags object
@allowed([
  'Developer'
  'BasicV2'
  'StandardV2'
  'PremiumV2'
  'Premium'
])
param sku string
param capacity int
param publisherEmail string
param publisherName string
param identityId string
param identityClientId string
@allowed([
  'Enabled'
  'Disabled'
])
@description('The gateway is the front door: Enabled unless clients reach it privately (PremiumV2 injection).')
param publicNetworkAccess string
@description('Subnet for outbound VNet integration (StandardV2/PremiumV2) so the gateway reaches private backends; empty for none.')
param integrationSubnetId string
param appInsightsName string
param workspaceId string
@description('Immutable storage account every diagnostic setting also archives to (monitoring.bicep).')
param archiveStorageAccountId string
@description('Function App default host name (backend).')
param functionHostName string
param keyVaultUri string
@description('Key Vault the named values are read from; the system-assigned identity gets Key Vault Secrets User on it.')
param keyVaultName string
@description('Key Vault secret holding the gateway proof-of-passage value (X-TIE-Gateway).')
param gatewaySecretName string
@description('Entra ID tenant that issues the callers\' tokens.')
param tenantId string
@description('Application ID URI (audience) of the TIE API app registration, e.g. api://tie-prod.')
param apiAudience string
@description('App teams that get a subscription to the TIE product: [{ name, displayName }].')
param appTeams array
@description('Client certificates the app-teams product accepts: [{ issuerCertificate, subject?, thumbprint? }] (issuerCertificate: a name in trustCaCertificates). Empty: the product refuses every call.')
param appTeamsClientCertificates array
@description('CA (issuing or intermediate) certificates of onboarded Trusts, kept in Key Vault: [{ name, certificateName }] (Key Vault certificate name). Read with the system-assigned identity.')
param trustCaCertificates array
@description('Trust systems, each with its own product, subscription and client-certificate rule: [{ name, displayName, clientCertificates: [{ issuerCertificate, subject?, thumbprint? }] }].')
param trustClients array
@description('Custom gateway host name (e.g. tie.<trust>.nhs.uk); empty: the built-in azure-api.net name only.')
param gatewayHostName string
@description('Key Vault secret (certificate) of the custom host name\'s TLS server certificate.')
param gatewayCertificateSecretName string
@description('Bootstrap run: the system identity\'s role on the vault is granted in this run, so the Key Vault-backed custom host name is bound on the next (ordinary) run.')
param bootstrap bool
@minValue(1)
@description('Calls per minute per app-team subscription (rate-limit-by-key).')
param rateLimitPerMinute int
@minValue(1)
@description('Calls per day per app-team subscription (quota-by-key).')
param quotaPerDay int

var isV2 = endsWith(sku, 'V2')
var roles = loadJsonContent('../config/roles.json')

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}
var apiName = 'tie'
var backendName = 'tie-functions'
var subscriptionKeyQueryName = 'subscription-key'
var openApi = loadTextContent('../../openapi/tie-api.json')
var globalPolicy = loadTextContent('../../apim/policies/global.xml')
var apiPolicy = loadTextContent('../../apim/policies/api-tie.xml')
var productPolicy = loadTextContent('../../apim/policies/product-app-teams.xml')
// Client mTLS: every product policy carries validate-client-certificate in place of this marker.
var clientCertificateMarker = '<!-- validate-client-certificate -->'
// Refuses every certificate: what a product without a configured client certificate gets (fail closed).
var noIdentity = '<identity thumbprint="0000000000000000000000000000000000000000" />'
var certificatePolicyStart = '<validate-client-certificate validate-revocation="true" validate-trust="false" validate-not-before="true" validate-not-after="true" ignore-error="false"><identities>'
var certificatePolicyEnd = '</identities></validate-client-certificate>'
var appTeamsIdentities = map(appTeamsClientCertificates, c => '<identity issuer-certificate-id="${c.issuerCertificate}"${contains(c, 'subject') ? ' subject="${c.subject}"' : ''}${contains(c, 'thumbprint') ? ' thumbprint="${c.thumbprint}"' : ''} />')
var builtInHostName = {
  type: 'Proxy'
  hostName: '${name}.azure-api.net'
  certificateSource: 'BuiltIn'
  defaultSslBinding: empty(gatewayHostName)
  negotiateClientCertificate: true
}
var customHostName = {
  type: 'Proxy'
  hostName: gatewayHostName
  certificateSource: 'KeyVault'
  keyVaultId: '${keyVaultUri}secrets/${gatewayCertificateSecretName}'
  defaultSslBinding: true
  negotiateClientCertificate: true
}
var policyFragments = {
  'tie-operation-outcome': loadTextContent('../../apim/policies/fragments/tie-operation-outcome.xml')
}
// One policy per OpenAPI operationId (tests/infra checks that the keys and the document agree).
var operationPolicies = {
  'get-health': loadTextContent('../../apim/policies/operations/get-health.xml')
  'post-messages': loadTextContent('../../apim/policies/operations/post-messages.xml')
  'get-message-trace': loadTextContent('../../apim/policies/operations/get-message-trace.xml')
  'post-hl7v2': loadTextContent('../../apim/policies/operations/post-hl7v2.xml')
  'fhir-metadata': loadTextContent('../../apim/policies/operations/fhir-metadata.xml')
  'fhir-bundle': loadTextContent('../../apim/policies/operations/fhir-bundle.xml')
  'fhir-search': loadTextContent('../../apim/policies/operations/fhir-search.xml')
  'fhir-create': loadTextContent('../../apim/policies/operations/fhir-create.xml')
  'fhir-conditional-update': loadTextContent('../../apim/policies/operations/fhir-conditional-update.xml')
  'fhir-search-post': loadTextContent('../../apim/policies/operations/fhir-search-post.xml')
  'fhir-history-type': loadTextContent('../../apim/policies/operations/fhir-history-type.xml')
  'fhir-read': loadTextContent('../../apim/policies/operations/fhir-read.xml')
  'fhir-update': loadTextContent('../../apim/policies/operations/fhir-update.xml')
  'fhir-delete': loadTextContent('../../apim/policies/operations/fhir-delete.xml')
  'fhir-history-instance': loadTextContent('../../apim/policies/operations/fhir-history-instance.xml')
  'fhir-vread': loadTextContent('../../apim/policies/operations/fhir-vread.xml')
  'fhir-audit-search': loadTextContent('../../apim/policies/operations/fhir-audit-search.xml')
  'fhir-audit-read': loadTextContent('../../apim/policies/operations/fhir-audit-read.xml')
  'fhir-export-system': loadTextContent('../../apim/policies/operations/fhir-export-system.xml')
  'fhir-export-patient': loadTextContent('../../apim/policies/operations/fhir-export-patient.xml')
  'fhir-export-status': loadTextContent('../../apim/policies/operations/fhir-export-status.xml')
  'fhir-export-cancel': loadTextContent('../../apim/policies/operations/fhir-export-cancel.xml')
  'fhir-export-file': loadTextContent('../../apim/policies/operations/fhir-export-file.xml')
}
// Values the policy XML refers to as {{name}}.
var namedValues = {
  'tie-tenant-id': tenantId
  'tie-api-audience': apiAudience
  'tie-rate-limit-per-minute': string(rateLimitPerMinute)
  'tie-quota-per-day': string(quotaPerDay)
  'tie-apim-client-id': identityClientId
}
// Values the policy XML refers to as {{name}} that live in Key Vault (secret names). API Management reads them
// with its system-assigned identity: a firewalled vault admits no user-assigned identity through the
// trusted-services bypass, and that bypass is being retired for API Management.
var keyVaultNamedValues = {
  'tie-gateway-secret': gatewaySecretName
}

resource service 'Microsoft.ApiManagement/service@2024-05-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    capacity: capacity
  }
  identity: {
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    publisherEmail: publisherEmail
    publisherName: publisherName
    publicNetworkAccess: publicNetworkAccess
    // Client certificates are negotiated on every gateway host name (validate-client-certificate per product).
    hostnameConfigurations: empty(gatewayHostName) || bootstrap ? [
      builtInHostName
    ] : [
      builtInHostName
      customHostName
    ]
    virtualNetworkType: empty(integrationSubnetId) ? 'None' : 'External'
    virtualNetworkConfiguration: empty(integrationSubnetId) ? null : {
      subnetResourceId: integrationSubnetId
    }
    // Classic tiers: TLS 1.2+ only and no weak ciphers (v2 tiers allow nothing older by design).
    customProperties: isV2 ? {} : {
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Ciphers.TripleDes168': 'false'
    }
  }
}

resource diagnosticsToWorkspace 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: service
  properties: {
    workspaceId: workspaceId
    storageAccountId: archiveStorageAccountId
    logAnalyticsDestinationType: 'Dedicated'
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

resource plainNamedValues 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = [for item in items(namedValues): {
  parent: service
  name: item.key
  properties: {
    displayName: item.key
    value: item.value
    secret: false
  }
}]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The system-assigned identity exists only once the service does, so its role on the vault is granted here,
// before anything reads the vault.
resource vaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, service.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: service.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Backed by Key Vault (versionless secret id): API Management refreshes them from the vault, so rotating a
// secret needs no redeployment. No identityClientId: read with the system-assigned identity.
resource secretNamedValues 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = [for item in items(keyVaultNamedValues): {
  parent: service
  name: item.key
  properties: {
    displayName: item.key
    secret: true
    keyVault: {
      secretIdentifier: '${keyVaultUri}secrets/${item.value}'
    }
  }
  dependsOn: [
    vaultSecretsUser
  ]
}]

// One certificate entity per onboarded Trust CA, from Key Vault (system-assigned identity); the product
// policies name them as issuer-certificate-id.
resource trustCas 'Microsoft.ApiManagement/service/certificates@2024-05-01' = [for ca in trustCaCertificates: {
  parent: service
  name: ca.name
  properties: {
    keyVault: {
      secretIdentifier: '${keyVaultUri}secrets/${ca.certificateName}'
    }
  }
  dependsOn: [
    vaultSecretsUser
  ]
}]

resource logger 'Microsoft.ApiManagement/service/loggers@2024-05-01' = {
  parent: service
  name: 'appinsights'
  properties: {
    loggerType: 'applicationInsights'
    resourceId: appInsights.id
    credentials: {
      connectionString: appInsights.properties.ConnectionString
      identityClientId: identityClientId
    }
  }
}

// Request/response bodies are never logged (they carry patient data); only the correlation header.
resource appInsightsDiagnostics 'Microsoft.ApiManagement/service/diagnostics@2024-05-01' = {
  parent: service
  name: 'applicationinsights'
  properties: {
    loggerId: logger.id
    alwaysLog: 'allErrors'
    httpCorrelationProtocol: 'W3C'
    verbosity: 'information'
    logClientIp: false
    sampling: {
      samplingType: 'fixed'
      percentage: 100
    }
    frontend: {
      request: {
        headers: [
          'X-Correlation-ID'
        ]
        body: {
          bytes: 0
        }
        dataMasking: {
          queryParams: [
            {
              value: subscriptionKeyQueryName
              mode: 'Hide'
            }
          ]
        }
      }
      response: {
        headers: [
          'X-Correlation-ID'
        ]
        body: {
          bytes: 0
        }
      }
    }
    backend: {
      request: {
        headers: [
          'X-Correlation-ID'
        ]
        body: {
          bytes: 0
        }
      }
      response: {
        headers: [
          'X-Correlation-ID'
        ]
        body: {
          bytes: 0
        }
      }
    }
  }
}

resource backend 'Microsoft.ApiManagement/service/backends@2024-05-01' = {
  parent: service
  name: backendName
  properties: {
    protocol: 'http'
    url: 'https://${functionHostName}/api'
    description: 'TIE Function App (App Service authentication: API Management\'s managed identity only)'
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
  }
}

resource fragments 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = [for fragment in items(policyFragments): {
  parent: service
  name: fragment.key
  properties: {
    format: 'xml'
    value: fragment.value
    description: 'Shared policy fragment (infra/apim/policies/fragments/${fragment.key}.xml)'
  }
}]

resource servicePolicy 'Microsoft.ApiManagement/service/policies@2024-05-01' = {
  parent: service
  name: 'policy'
  properties: {
    format: 'xml'
    value: globalPolicy
  }
  dependsOn: [
    fragments
  ]
}

resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: service
  name: apiName
  properties: {
    displayName: 'Trust Integration Engine'
    path: 'tie'
    protocols: [
      'https'
    ]
    apiType: 'http'
    format: 'openapi+json'
    value: openApi
    serviceUrl: 'https://${functionHostName}/api'
    subscriptionRequired: true
    // API Management always accepts the key under the query name too; api-tie.xml refuses such requests
    // (400) and the diagnostics mask the parameter, so keys never sit in URL logs.
    subscriptionKeyParameterNames: {
      header: 'Ocp-Apim-Subscription-Key'
      query: subscriptionKeyQueryName
    }
  }
}

resource apiLevelPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'xml'
    value: apiPolicy
  }
  dependsOn: [
    backend
    secretNamedValues
    fragments
    plainNamedValues
  ]
}

resource operationLevelPolicies 'Microsoft.ApiManagement/service/apis/operations/policies@2024-05-01' = [for operation in items(operationPolicies): {
  name: '${service.name}/${api.name}/${operation.key}/policy'
  properties: {
    format: 'xml'
    value: operation.value
  }
  dependsOn: [
    apiLevelPolicy
    plainNamedValues
  ]
}]

resource product 'Microsoft.ApiManagement/service/products@2024-05-01' = {
  parent: service
  name: 'tie-app-teams'
  properties: {
    displayName: 'TIE for application teams'
    description: 'HL7 v2 and messaging APIs of the Trust Integration Engine. Callers need an Entra ID token with the operation\'s app role and a subscription key.'
    subscriptionRequired: true
    approvalRequired: true
    subscriptionsLimit: 5
    state: 'published'
  }
}

resource productApi 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = {
  parent: product
  name: api.name
}

resource productLevelPolicy 'Microsoft.ApiManagement/service/products/policies@2024-05-01' = {
  parent: product
  name: 'policy'
  properties: {
    format: 'xml'
    value: replace(productPolicy, clientCertificateMarker, '${certificatePolicyStart}${empty(appTeamsIdentities) ? noIdentity : join(appTeamsIdentities, '')}${certificatePolicyEnd}')
  }
  dependsOn: [
    plainNamedValues
    trustCas
  ]
}

resource teamSubscriptions 'Microsoft.ApiManagement/service/subscriptions@2024-05-01' = [for team in appTeams: {
  parent: service
  name: team.name
  properties: {
    displayName: team.displayName
    scope: product.id
    state: 'active'
    allowTracing: false
  }
}]

// A product per Trust system: the same limits, its own client-certificate rule and subscription.
resource trustProducts 'Microsoft.ApiManagement/service/products@2024-05-01' = [for trust in trustClients: {
  parent: service
  name: 'tie-trust-${trust.name}'
  properties: {
    displayName: 'TIE for ${trust.displayName}'
    description: 'Trust system ${trust.displayName}: client certificate (mTLS), Entra ID token and subscription key.'
    subscriptionRequired: true
    approvalRequired: true
    subscriptionsLimit: 2
    state: 'published'
  }
}]

resource trustProductApis 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = [for (trust, i) in trustClients: {
  parent: trustProducts[i]
  name: api.name
}]

resource trustProductPolicies 'Microsoft.ApiManagement/service/products/policies@2024-05-01' = [for (trust, i) in trustClients: {
  parent: trustProducts[i]
  name: 'policy'
  properties: {
    format: 'xml'
    value: replace(productPolicy, clientCertificateMarker, '${certificatePolicyStart}${empty(trust.clientCertificates) ? noIdentity : join(map(trust.clientCertificates, c => '<identity issuer-certificate-id="${c.issuerCertificate}"${contains(c, 'subject') ? ' subject="${c.subject}"' : ''}${contains(c, 'thumbprint') ? ' thumbprint="${c.thumbprint}"' : ''} />'), '')}${certificatePolicyEnd}')
  }
  dependsOn: [
    plainNamedValues
    trustCas
  ]
}]

resource trustSubscriptions 'Microsoft.ApiManagement/service/subscriptions@2024-05-01' = [for (trust, i) in trustClients: {
  parent: service
  name: 'trust-${trust.name}'
  properties: {
    displayName: trust.displayName
    scope: trustProducts[i].id
    state: 'active'
    allowTracing: false
  }
}]

output id string = service.id
output name string = service.name
output gatewayUrl string = service.properties.gatewayUrl
output principalId string = service.identity.principalId
