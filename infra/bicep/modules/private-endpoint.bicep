// One private endpoint for one sub-resource (groupId) of a PaaS resource, registered in private DNS.
param name string
param location string
param tags object
param subnetId string
param targetResourceId string
@description('Private-link sub-resource, e.g. blob, table, queue, namespace, vault, sites, azuremonitor.')
param groupId string
@description('Private DNS zone resource IDs the endpoint registers its A records in.')
param privateDnsZoneIds array

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetResourceId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource dnsGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [for (zoneId, i) in privateDnsZoneIds: {
      name: 'zone-${i}'
      properties: {
        privateDnsZoneId: zoneId
      }
    }]
  }
}

output id string = endpoint.id
