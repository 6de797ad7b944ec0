// Virtual network for the platform: Function App outbound integration, API Management outbound
// integration (v2 tiers), private endpoints and the MLLP listener's internal Container Apps environment. With network isolation, the private DNS zones the private
// endpoints register in are created and linked here.
param name string
param location string
param tags object
@description('Address space of the VNet, at least a /22: four subnets are carved from it.')
param addressPrefix string
param networkIsolation bool
param workspaceId string
@description('Immutable storage account every diagnostic setting also archives to (monitoring.bicep).')
param archiveStorageAccountId string
@description('TCP port of the MLLP listener.')
param mllpPort int
@description('Address prefixes (HSCN ranges of the Trust systems, via the hub) allowed to reach the MLLP port.')
param mllpSourcePrefixes array

// Flex Consumption integration subnet: delegated to Microsoft.App/environments, /24 leaves room to scale out.
var functionSubnetPrefix = cidrSubnet(addressPrefix, 24, 0)
// Private endpoints of every PaaS resource.
var privateEndpointSubnetPrefix = cidrSubnet(addressPrefix, 24, 1)
// API Management v2 outbound VNet integration: delegated to Microsoft.Web/serverFarms, /26 as recommended.
var apimSubnetPrefix = cidrSubnet(addressPrefix, 26, 8)
// MLLP listener: internal Container Apps environment (workload profiles), delegated to Microsoft.App/environments.
var mllpSubnetPrefix = cidrSubnet(addressPrefix, 24, 3)

var privateDnsZoneNames = {
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
  queue: 'privatelink.queue.${environment().suffixes.storage}'
  serviceBus: 'privatelink.servicebus.windows.net'
  keyVault: 'privatelink.vaultcore.azure.net'
  sites: 'privatelink.azurewebsites.net'
  monitor: 'privatelink.monitor.azure.com'
  oms: 'privatelink.oms.opinsights.azure.com'
  ods: 'privatelink.ods.opinsights.azure.com'
  agentSvc: 'privatelink.agentsvc.azure-automation.net'
}

var subnetNames = [
  'snet-func'
  'snet-pe'
  'snet-apim'
  'snet-mllp'
]

// Only the listed senders reach the MLLP port; the load balancer's probes are let through.
var mllpRules = concat(empty(mllpSourcePrefixes) ? [] : [
  {
    name: 'allow-mllp-senders'
    properties: {
      priority: 100
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefixes: mllpSourcePrefixes
      sourcePortRange: '*'
      destinationAddressPrefix: mllpSubnetPrefix
      destinationPortRange: string(mllpPort)
    }
  }
], [
  {
    name: 'allow-load-balancer'
    properties: {
      priority: 110
      direction: 'Inbound'
      access: 'Allow'
      protocol: '*'
      sourceAddressPrefix: 'AzureLoadBalancer'
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: '*'
    }
  }
  {
    name: 'deny-other-mllp'
    properties: {
      priority: 200
      direction: 'Inbound'
      access: 'Deny'
      protocol: 'Tcp'
      sourceAddressPrefix: '*'
      sourcePortRange: '*'
      destinationAddressPrefix: mllpSubnetPrefix
      destinationPortRange: string(mllpPort)
    }
  }
])

resource nsgs 'Microsoft.Network/networkSecurityGroups@2023-11-01' = [for subnet in subnetNames: {
  name: 'nsg-${name}-${subnet}'
  location: location
  tags: tags
  properties: {
    securityRules: subnet == 'snet-mllp' ? mllpRules : []
  }
}]

resource nsgDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = [for (subnet, i) in subnetNames: {
  name: 'to-log-analytics'
  scope: nsgs[i]
  properties: {
    workspaceId: workspaceId
    storageAccountId: archiveStorageAccountId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}]

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: subnetNames[0]
        properties: {
          addressPrefix: functionSubnetPrefix
          networkSecurityGroup: {
            id: nsgs[0].id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: subnetNames[1]
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: nsgs[1].id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
      {
        name: subnetNames[2]
        properties: {
          addressPrefix: apimSubnetPrefix
          networkSecurityGroup: {
            id: nsgs[2].id
          }
          delegations: [
            {
              name: 'apim-v2'
              properties: {
                serviceName: 'Microsoft.Web/serverFarms'
              }
            }
          ]
        }
      }
      {
        name: subnetNames[3]
        properties: {
          addressPrefix: mllpSubnetPrefix
          networkSecurityGroup: {
            id: nsgs[3].id
          }
          delegations: [
            {
              name: 'container-apps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
    ]
  }
}

resource vnetDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vnet
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

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for zone in items(privateDnsZoneNames): if (networkIsolation) {
  name: zone.value
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (zone, i) in items(privateDnsZoneNames): if (networkIsolation) {
  parent: zones[i]
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

output id string = vnet.id
output functionSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, subnetNames[0])
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, subnetNames[1])
output apimSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, subnetNames[2])
output mllpSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, subnetNames[3])
@description('Private DNS zone resource IDs by key (blob, table, queue, serviceBus, keyVault, sites, monitor, oms, ods, agentSvc); empty without network isolation.')
output privateDnsZoneIds object = networkIsolation ? toObject(items(privateDnsZoneNames), zone => zone.key, zone => resourceId('Microsoft.Network/privateDnsZones', zone.value)) : {}
