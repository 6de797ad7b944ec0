// The MLLP listener (HL7 v2 over TCP from Trust systems) on Azure Container Apps: an internal environment in
// the platform VNet (no public IP), TCP ingress on the MLLP port limited to the senders' address ranges,
// scale on concurrent connections (never below minReplicas: senders hold long-lived connections), the app
// identity for Service Bus and Storage (the same data roles as the Function App). TLS comes from the credential
// registry (entry mllp-listener: server certificate and, for mutual TLS, the client CA), read from Key Vault
// in memory by the app identity (Key Vault Secrets User, main.bicep) - no certificate files are mounted, and a
// renewed certificate is used without a restart. Settings come from config/app-settings.json "mllpListener"
// (TIE_MLLP_TLS: main.bicep mllpTlsMode). Image: the repository's Dockerfile. Network path: infra/README.md.
param environmentName string
param appName string
param location string
param tags object
@description('Subnet delegated to Microsoft.App/environments (network.bicep snet-mllp).')
param subnetId string
param workspaceId string
@description('Immutable storage account every diagnostic setting also archives to (monitoring.bicep).')
param archiveStorageAccountId string
@description('Resource ID of the user-assigned identity (the app identity: Service Bus, Storage, Key Vault).')
param identityId string
@description('Container image, by digest: <registry>/tie-mllp@sha256:... (built from the Dockerfile and scanned in CI).')
param image string
@description('Registry the image is pulled from with the identity (AcrPull); empty for a public registry.')
param registryServer string
@minValue(1)
@maxValue(65535)
param port int
@minValue(1)
param minReplicas int
@minValue(1)
param maxReplicas int
@minValue(1)
@description('Concurrent TCP connections per replica before another replica is added.')
param concurrentConnections int
param zoneRedundant bool
param keyVaultUri string
@description('Sender address ranges admitted by the ingress (HSCN ranges of the Trust systems).')
param allowedSourcePrefixes array
@description('"mllpListener" of config/app-settings.json: [{ name, from, value }].')
param settingsSpec array
@description('Values for settings with from = "deployment", by key.')
param deploymentValues object

var keyVaultSettings = filter(settingsSpec, s => s.from == 'keyVaultSecret')
var environmentVariables = [for setting in settingsSpec: setting.from == 'keyVaultSecret' ? {
  name: setting.name
  secretRef: setting.value
} : {
  name: setting.name
  value: setting.from == 'literal' ? setting.value : deploymentValues[setting.value]
}]
var settingSecrets = map(keyVaultSettings, s => {
  name: s.value
  keyVaultUrl: '${keyVaultUri}secrets/${s.value}'
  identity: identityId
})

resource managedEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    vnetConfiguration: {
      internal: true
      infrastructureSubnetId: subnetId
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    zoneRedundant: zoneRedundant
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
  }
}

resource environmentDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: managedEnvironment
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

resource listener 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: managedEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: false
        transport: 'tcp'
        targetPort: port
        exposedPort: port
        ipSecurityRestrictions: [for (prefix, i) in allowedSourcePrefixes: {
          name: 'sender-${i}'
          action: 'Allow'
          ipAddressRange: prefix
        }]
      }
      registries: empty(registryServer) ? [] : [
        {
          server: registryServer
          identity: identityId
        }
      ]
      secrets: settingSecrets
    }
    template: {
      containers: [
        {
          name: 'mllp-listener'
          image: image
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(environmentVariables, [
            {
              name: 'TIE_MLLP_PORT'
              value: string(port)
            }
          ])
          volumeMounts: [
            {
              volumeName: 'tmp'
              mountPath: '/tmp'
            }
          ]
          probes: [
            {
              type: 'Liveness'
              tcpSocket: {
                port: port
              }
              periodSeconds: 30
            }
            {
              type: 'Readiness'
              tcpSocket: {
                port: port
              }
              periodSeconds: 10
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'tcp-connections'
            tcp: {
              metadata: {
                concurrentConnections: string(concurrentConnections)
              }
            }
          }
        ]
      }
      volumes: [
        {
          name: 'tmp'
          storageType: 'EmptyDir'
        }
      ]
    }
  }
}

output name string = listener.name
@description('Private IP of the internal environment: the address HSCN senders connect to (through the hub).')
output staticIp string = managedEnvironment.properties.staticIp
output defaultDomain string = managedEnvironment.properties.defaultDomain
