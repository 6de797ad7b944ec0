"""Client mTLS at the gateway (issue 13, finding 5): certificates negotiated on every host name, Trust CAs
from Key Vault, validate-client-certificate in every product next to validate-jwt, keys only in headers."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tests.infra import bicep_ast as b

APIM = b.load(b.MODULES / "apim.bicep")
POLICIES = b.INFRA / "apim" / "policies"
MARKER = "<!-- validate-client-certificate -->"


def _params(env: str) -> dict[str, Any]:
    path = b.BICEP_DIR / "params" / f"{env}.parameters.json"
    return {k: v["value"] for k, v in json.loads(path.read_text())["parameters"].items()}


def test_every_gateway_host_name_negotiates_client_certificates() -> None:
    variables = APIM.variables()
    hosts = {name: b.properties(variables[name]) for name in ("builtInHostName", "customHostName")}
    for name, props in hosts.items():
        assert b.literal(props["negotiateClientCertificate"]) is True, name
        assert b.literal(props["type"]) == "Proxy", name
    assert b.literal(hosts["customHostName"]["certificateSource"]) == "KeyVault"
    assert "identityClientId" not in hosts["customHostName"], "Key Vault is read by the system identity"
    (service,) = APIM.resources("Microsoft.ApiManagement/service")
    configured = b.text(service.get("properties.hostnameConfigurations"))
    assert configured.count("builtInHostName") == 2 and "customHostName" in configured


def test_trust_cas_come_from_key_vault() -> None:
    (cas,) = APIM.resources("Microsoft.ApiManagement/service/certificates")
    assert cas.looped and "in trustCaCertificates" in b.text(cas.node)
    assert (
        b.text(cas.get("properties.keyVault.secretIdentifier"))
        == "'${keyVaultUri}secrets/${ca.certificateName}'"
    )
    assert cas.get("properties.data") is None, "no certificate material in the template"


def _rendered_policies() -> list[b.Declaration]:
    return list(APIM.resources("Microsoft.ApiManagement/service/products/policies"))


def test_every_product_policy_validates_the_client_certificate() -> None:
    products = APIM.resources("Microsoft.ApiManagement/service/products")
    policies = _rendered_policies()
    assert len(products) == len(policies) == 2  # app teams + one per Trust system
    template = (POLICIES / "product-app-teams.xml").read_text()
    assert template.count(MARKER) == 1
    for policy in policies:
        value = b.text(policy.get("properties.value"))
        assert value.startswith("replace(productPolicy, clientCertificateMarker, "), policy.where()
        assert "certificatePolicyStart" in value and "certificatePolicyEnd" in value, policy.where()
        assert "noIdentity" in value, f"{policy.where()}: an empty rule must fail closed"
    start = b.string_value(APIM.variables()["certificatePolicyStart"]) or ""
    end = b.string_value(APIM.variables()["certificatePolicyEnd"]) or ""
    none = b.string_value(APIM.variables()["noIdentity"]) or ""
    rendered = template.replace(MARKER, start + none + end)
    root = ET.fromstring(rendered)
    (check,) = root.iter("validate-client-certificate")
    for attribute in ("validate-not-before", "validate-not-after", "validate-revocation"):
        assert check.get(attribute) == "true", attribute
    assert check.get("ignore-error") == "false"
    inbound = [child.tag for child in root.find("inbound")]  # type: ignore[union-attr]
    assert inbound[:2] == ["base", "validate-client-certificate"]
    # Alongside validate-jwt: the API policy keeps authenticating the caller's token.
    assert list(ET.parse(POLICIES / "api-tie.xml").getroot().iter("validate-jwt"))


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
def test_client_certificate_rules_name_onboarded_cas_and_are_xml_safe(env: str) -> None:
    values = _params(env)
    cas = {ca["name"] for ca in values.get("trustCaCertificates", [])}
    rules = list(values.get("appTeamsClientCertificates", []))
    for trust in values.get("trustClients", []):
        assert trust["clientCertificates"], trust["name"]
        rules += trust["clientCertificates"]
    for rule in rules:
        assert rule["issuerCertificate"] in cas, rule
        assert rule.get("subject") or rule.get("thumbprint"), f"{rule}: pin a subject or a thumbprint"
        for value in rule.values():
            assert not re.search(r'[<>&"]', value), f"{rule}: would break the rendered policy XML"


def test_subscription_keys_only_in_headers() -> None:
    (api,) = APIM.resources("Microsoft.ApiManagement/service/apis")
    assert (
        b.literal(api.get("properties.subscriptionKeyParameterNames.header")) == "Ocp-Apim-Subscription-Key"
    )
    query = b.literal(APIM.variables()["subscriptionKeyQueryName"])
    assert b.text(api.get("properties.subscriptionKeyParameterNames.query")) == "subscriptionKeyQueryName"
    root = ET.parse(POLICIES / "api-tie.xml").getroot()
    inbound = root.find("inbound")
    assert inbound is not None
    (choose,) = inbound.findall("choose")
    (when,) = choose.findall("when")
    assert f'Query.ContainsKey("{query}")' in (when.get("condition") or "")
    status = when.find("return-response/set-status")
    assert status is not None and status.get("code") == "400"
    # ... and the key is masked wherever a URL is logged.
    (diagnostics,) = APIM.resources("Microsoft.ApiManagement/service/diagnostics")
    masked = b.text(diagnostics.get("properties.frontend.request.dataMasking"))
    assert "subscriptionKeyQueryName" in masked and "'Hide'" in masked
