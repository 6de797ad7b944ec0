// Guard rails of the resource group: data residency (the built-in "Allowed locations" policy, assigned to
// the resource group, so nothing - not even a hand-made resource - lands outside the UK regions) and
// CanNotDelete locks on the resources that hold state (prod). A lock blocks deletes through Azure Resource
// Manager only; data-plane access is unchanged.
param tags object
@description('Regions resources may be created in (uksouth/ukwest: NHS data residency).')
param allowedLocations array
@description('CanNotDelete locks on the stateful resources (prod).')
param lockStatefulResources bool
@description('Names of the resources that hold state, by kind: { serviceBus, keyVault, storageAccounts: [], workspace }.')
param stateful object

// Built-in policy definition "Allowed locations".
var allowedLocationsDefinitionId = tenantResourceId('Microsoft.Authorization/policyDefinitions', 'e56962a6-4747-49cd-b67b-bf8b01975c4c')

resource allowedLocationsAssignment 'Microsoft.Authorization/policyAssignments@2024-04-01' = {
  name: 'tie-allowed-locations'
  properties: {
    displayName: 'TIE: resources only in ${join(allowedLocations, ', ')}'
    description: 'NHS data residency for ${tags.service} (${tags.environment}).'
    policyDefinitionId: allowedLocationsDefinitionId
    enforcementMode: 'Default'
    parameters: {
      listOfAllowedLocations: {
        value: allowedLocations
      }
    }
    nonComplianceMessages: [
      {
        message: 'Serverless TIE resources must be created in ${join(allowedLocations, ' or ')} (NHS data residency).'
      }
    ]
  }
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: stateful.serviceBus
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: stateful.keyVault
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: stateful.workspace
}

resource accounts 'Microsoft.Storage/storageAccounts@2023-05-01' existing = [for account in stateful.storageAccounts: {
  name: account
}]

var lockNotes = 'Holds TIE state (messages, secrets, records or logs). Remove the lock only through a reviewed change.'

resource serviceBusLock 'Microsoft.Authorization/locks@2020-05-01' = if (lockStatefulResources) {
  name: 'tie-cannot-delete'
  scope: serviceBus
  properties: {
    level: 'CanNotDelete'
    notes: lockNotes
  }
}

resource vaultLock 'Microsoft.Authorization/locks@2020-05-01' = if (lockStatefulResources) {
  name: 'tie-cannot-delete'
  scope: vault
  properties: {
    level: 'CanNotDelete'
    notes: lockNotes
  }
}

resource workspaceLock 'Microsoft.Authorization/locks@2020-05-01' = if (lockStatefulResources) {
  name: 'tie-cannot-delete'
  scope: workspace
  properties: {
    level: 'CanNotDelete'
    notes: lockNotes
  }
}

resource accountLocks 'Microsoft.Authorization/locks@2020-05-01' = [for (account, i) in stateful.storageAccounts: if (lockStatefulResources) {
  name: 'tie-cannot-delete'
  scope: accounts[i]
  properties: {
    level: 'CanNotDelete'
    notes: lockNotes
  }
}]

output policyAssignmentId string = allowedLocationsAssignment.id
