// A user-assigned managed identity. User-assigned (not system-assigned) so that role assignments exist
// before the resource that uses the identity, and survive that resource being re-created.
@description('Identity name.')
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
