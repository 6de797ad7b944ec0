// The pipeline's deploy identity, least privilege, for one resource group (rg-tie-<env>-uks). Run ONCE per
// environment by a platform administrator (Owner or User Access Administrator on the group) - the only
// privileged step, before the first pipeline run (infra/README.md, "The deploy identity"):
//
//   az deployment group create -g rg-tie-<env>-uks -f infra/bicep/deploy-identity.bicep \
//     -p deployPrincipalId=<object id of the pipeline's service principal>
//
// Two role assignments instead of Owner:
//   1. "TIE deployer (<group>)": a custom role with the control-plane actions of exactly the resource types
//      the templates declare (tests/infra checks the list against the templates), no role assignment rights,
//      no key listing.
//   2. "Role Based Access Control Administrator" with a delegation condition: it may assign (and remove)
//      only the built-in roles of config/roles.json, and only to service principals (the platform's managed
//      identities) - never Owner, Contributor or User Access Administrator, never to users or groups.
targetScope = 'resourceGroup'

@description('Object ID of the service principal the deploy pipeline signs in as (OIDC federated credential).')
param deployPrincipalId string

var roles = loadJsonContent('config/roles.json')
// Every value of roles.json but its $comment.
var roleIds = map(filter(items(roles), r => r.key != '$comment'), r => r.value)
var rbacAdministrator = 'f58310d9-a9f6-439a-9e8d-f62e7b41a168'

// Control-plane actions per resource provider the templates use (tests/infra: every declared type matches).
var deployerActions = [
  'Microsoft.Resources/deployments/*'
  'Microsoft.Resources/subscriptions/resourceGroups/read'
  'Microsoft.ManagedIdentity/userAssignedIdentities/*'
  'Microsoft.Network/virtualNetworks/*'
  'Microsoft.Network/networkSecurityGroups/*'
  'Microsoft.Network/privateEndpoints/*'
  'Microsoft.Network/privateDnsZones/*'
  'Microsoft.Insights/components/*'
  'Microsoft.Insights/diagnosticSettings/*'
  'Microsoft.Insights/actionGroups/*'
  'Microsoft.Insights/metricAlerts/*'
  'Microsoft.Insights/scheduledQueryRules/*'
  'Microsoft.Insights/activityLogAlerts/*'
  'Microsoft.Insights/workbooks/*'
  'Microsoft.Insights/privateLinkScopes/*'
  'Microsoft.OperationalInsights/workspaces/*'
  'Microsoft.KeyVault/vaults/*'
  'Microsoft.Storage/storageAccounts/*'
  'Microsoft.ServiceBus/namespaces/*'
  'Microsoft.Web/serverfarms/*'
  'Microsoft.Web/sites/*'
  'Microsoft.ApiManagement/service/*'
  'Microsoft.EventGrid/systemTopics/*'
  'Microsoft.App/managedEnvironments/*'
  'Microsoft.App/containerApps/*'
  'Microsoft.Authorization/policyAssignments/read'
  'Microsoft.Authorization/policyAssignments/write'
  'Microsoft.Authorization/policyAssignments/delete'
  'Microsoft.Authorization/locks/read'
  'Microsoft.Authorization/locks/write'
  'Microsoft.Authorization/locks/delete'
  'Microsoft.Authorization/roleAssignments/read'
  'Microsoft.Authorization/roleDefinitions/read'
]
// Shared keys are off everywhere; the deployer cannot read or regenerate them either.
var deployerNotActions = [
  'Microsoft.Storage/storageAccounts/listKeys/action'
  'Microsoft.Storage/storageAccounts/regeneratekey/action'
  'Microsoft.ServiceBus/namespaces/authorizationRules/listKeys/action'
  'Microsoft.ServiceBus/namespaces/authorizationRules/regenerateKeys/action'
  'Microsoft.Web/sites/host/listKeys/action'
  'Microsoft.Web/sites/config/list/action'
]

resource deployerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'tie-deployer')
  properties: {
    roleName: 'TIE deployer (${resourceGroup().name})'
    description: 'Deploys the Serverless TIE templates into one resource group; no role assignment rights, no keys.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: deployerActions
        notActions: deployerNotActions
      }
    ]
  }
}

resource deployer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, deployPrincipalId, deployerRole.id)
  properties: {
    roleDefinitionId: deployerRole.id
    principalId: deployPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Delegation condition: writes and deletes of role assignments are allowed only for the listed roles and
// for service principals.
var roleList = join(roleIds, ', ')
var delegationCondition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${roleList}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'})) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${roleList}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'}))'

resource roleDelegation 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, deployPrincipalId, rbacAdministrator)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', rbacAdministrator)
    principalId: deployPrincipalId
    principalType: 'ServicePrincipal'
    description: 'TIE pipeline: may grant only the platform\'s data-plane roles (config/roles.json) to managed identities.'
    conditionVersion: '2.0'
    condition: delegationCondition
  }
}

output deployerRoleId string = deployerRole.id
