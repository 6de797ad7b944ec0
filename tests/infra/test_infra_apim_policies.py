"""API Management policies: well-formed XML, every reference resolvable, the required controls present.

The policies are deployed with format ``xml``, so they must be well-formed XML (policy expressions inside
single-quoted attributes, ``&amp;&amp;`` for ``&&``).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep_ast as b

POLICIES = b.INFRA / "apim" / "policies"
APIM = b.load(b.MODULES / "apim.bicep")
DOC = json.loads((b.INFRA / "openapi" / "tie-api.json").read_text())
XML_FILES = sorted(POLICIES.rglob("*.xml"))


def _xml(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def _loaded_files() -> dict[str, Path]:
    """Variable key (or variable name) -> policy file, for every loadTextContent of an XML file."""
    out: dict[str, Path] = {}
    for name, node in APIM.variables().items():
        if node.type == "object":
            for key, value in b.properties(node).items():
                for args in b.call_arguments(value, "loadTextContent"):
                    out[key] = (APIM.path.parent / str(b.string_value(args[0]))).resolve()
        else:
            for args in b.call_arguments(node, "loadTextContent"):
                path = (APIM.path.parent / str(b.string_value(args[0]))).resolve()
                if path.suffix == ".xml":
                    out[name] = path
    return out


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(POLICIES)))
def test_policy_is_well_formed_with_all_sections(path: Path) -> None:
    root = _xml(path)
    if root.tag == "fragment":
        assert path.parent.name == "fragments"
        return
    assert root.tag == "policies"
    assert [child.tag for child in root] == ["inbound", "backend", "outbound", "on-error"]
    is_global = path.name == "global.xml"
    for section in root:
        has_base = section.find("base") is not None
        assert has_base is not is_global, f"{path.name}/{section.tag}: <base /> (never in the global policy)"


def test_every_policy_file_is_deployed_and_every_deployed_file_exists() -> None:
    loaded = _loaded_files()
    assert set(loaded.values()) == set(XML_FILES), "orphaned or missing policy files"


def test_operation_policies_cover_exactly_the_openapi_operations() -> None:
    operation_ids = {
        op["operationId"] for item in DOC["paths"].values() for op in item.values() if isinstance(op, dict)
    }
    keys = set(b.properties(APIM.variables()["operationPolicies"]))
    assert keys == operation_ids
    for key, path in _loaded_files().items():
        if path.parent.name == "operations":
            assert path.stem == key


def _named_values_declared() -> set[str]:
    declared = set(b.properties(APIM.variables()["namedValues"]))
    declared |= set(b.properties(APIM.variables()["keyVaultNamedValues"]))
    for decl in APIM.resources("Microsoft.ApiManagement/service/namedValues"):
        if not decl.looped:
            declared.add(str(b.literal(decl.get("name"))))
    return declared


def test_every_named_value_reference_is_declared() -> None:
    declared = _named_values_declared()
    referenced = {name for path in XML_FILES for name in re.findall(r"\{\{([^}]+)\}\}", path.read_text())}
    assert referenced, "policies should use named values"
    assert referenced <= declared
    # No function key: the backend carries no credentials (the API policy authenticates with the identity).
    (backend,) = APIM.resources("Microsoft.ApiManagement/service/backends")
    assert backend.get("properties.credentials") is None


def test_every_fragment_and_backend_reference_resolves() -> None:
    fragments = set(b.properties(APIM.variables()["policyFragments"]))
    (backend,) = APIM.resources("Microsoft.ApiManagement/service/backends")
    backends = {b.text(backend.get("name"))}
    backend_names = {b.literal(APIM.variables()[name]) for name in backends if name in APIM.variables()}
    for path in XML_FILES:
        root = _xml(path)
        for include in root.iter("include-fragment"):
            assert include.get("fragment-id") in fragments, path.name
        for service in root.iter("set-backend-service"):
            assert service.get("backend-id") in backend_names, path.name
    for key, path in _loaded_files().items():
        if path.parent.name == "fragments":
            assert path.stem == key


def _roles(policy: ET.Element) -> set[str]:
    return {
        value.text or ""
        for claim in policy.iter("claim")
        if claim.get("name") == "roles"
        for value in claim.iter("value")
    }


def test_api_policy_authenticates_entra_tokens_for_the_audience() -> None:
    root = _xml(POLICIES / "api-tie.xml")
    (jwt,) = root.iter("validate-jwt")
    assert jwt.get("failed-validation-httpcode") == "401"
    assert jwt.get("require-signed-tokens") == "true" and jwt.get("require-expiration-time") == "true"
    assert [a.text for a in jwt.iter("audience")] == ["{{tie-api-audience}}"]
    config = jwt.find("openid-config")
    assert config is not None and "login.microsoftonline.com/{{tie-tenant-id}}" in str(config.get("url"))
    assert root.find("inbound/set-backend-service") is not None


@pytest.mark.parametrize(
    ("path", "method"),
    [(p, m) for p, item in DOC["paths"].items() for m in item],
    ids=lambda v: v,
)
def test_operation_policy_authorizes_the_roles_of_the_openapi_operation(path: str, method: str) -> None:
    operation: dict[str, Any] = DOC["paths"][path][method]
    policy = _xml(POLICIES / "operations" / f"{operation['operationId']}.xml")
    (jwt,) = policy.iter("validate-jwt")
    assert jwt.get("failed-validation-httpcode") == "403"
    assert [a.text for a in jwt.iter("audience")] == ["{{tie-api-audience}}"]
    assert _roles(policy) == set(operation["security"][0]["entraId"])
    content = list(policy.iter("validate-content"))
    if "requestBody" in operation:
        (check,) = content
        assert check.get("size-exceeded-action") == "prevent" and check.get("max-size")
    else:
        assert content == []


def test_product_limits_each_client() -> None:
    root = _xml(POLICIES / "product-app-teams.xml")
    (rate,) = root.iter("rate-limit-by-key")
    (quota,) = root.iter("quota-by-key")
    for limit in (rate, quota):
        assert limit.get("counter-key") == "@(context.Subscription.Id)"
    assert rate.get("calls") == "{{tie-rate-limit-per-minute}}" and rate.get("renewal-period") == "60"
    assert quota.get("calls") == "{{tie-quota-per-day}}" and quota.get("renewal-period") == "86400"


def test_correlation_id_is_generated_forwarded_and_returned() -> None:
    root = _xml(POLICIES / "global.xml")
    (variable,) = [v for v in root.iter("set-variable") if v.get("name") == "tie-correlation-id"]
    assert "Guid.NewGuid()" in str(variable.get("value"))
    for section in ("inbound", "outbound"):
        headers = [h for h in root.findall(f"{section}/set-header") if h.get("name") == "X-Correlation-ID"]
        assert headers and headers[0].get("exists-action") == "override", section
    fragment = _xml(POLICIES / "fragments" / "tie-operation-outcome.xml")
    assert any(h.get("name") == "X-Correlation-ID" for h in fragment.iter("set-header"))


def test_errors_are_operation_outcomes_without_backend_detail() -> None:
    root = _xml(POLICIES / "global.xml")
    on_error = root.find("on-error")
    assert on_error is not None
    assert [i.get("fragment-id") for i in on_error.iter("include-fragment")] == ["tie-operation-outcome"]
    fragment_text = (POLICIES / "fragments" / "tie-operation-outcome.xml").read_text()
    assert '"resourceType", "OperationOutcome"' in fragment_text
    assert "application/fhir+json" in fragment_text
    for path in XML_FILES:
        text = path.read_text()
        for leak in ("LastError.Message", "LastError.Scope", "Response.Body", "context.Api.ServiceUrl"):
            assert leak not in text, f"{path.name} would echo {leak}"
    api = _xml(POLICIES / "api-tie.xml")
    conditions = [w.get("condition") or "" for w in api.iter("when")]
    assert any("StatusCode >= 500" in c and "X-Correlation-ID" in c for c in conditions)
    removed = {h.get("name") for h in root.iter("set-header") if h.get("exists-action") == "delete"}
    assert {"Server", "X-Powered-By", "X-AspNet-Version"} <= removed


def test_policies_are_deployed_as_xml_and_diagnostics_never_log_bodies() -> None:
    for decl in APIM.resources():
        if decl.target.endswith("policies") or decl.target.endswith("policyFragments"):
            assert b.literal(decl.get("properties.format")) == "xml", decl.where()
    (diagnostics,) = APIM.resources("Microsoft.ApiManagement/service/diagnostics")
    bodies = [b.literal(v) for _, v in b.object_properties_named(diagnostics.body, "bytes")]  # type: ignore[arg-type]
    assert bodies == [0, 0, 0, 0]
    assert b.literal(diagnostics.get("properties.logClientIp")) is False


def test_gateway_header_carries_the_key_vault_secret_the_app_compares() -> None:
    """TIE_REQUIRE_APIM_HEADER: API Management sets the header (override: a caller cannot supply it) from a
    Key Vault-backed named value, and the app reads the same Key Vault secret as TIE_APIM_SHARED_SECRET."""
    spec = json.loads((b.BICEP_DIR / "config" / "app-settings.json").read_text())
    settings = {s["name"]: s for s in spec["settings"]}
    assert settings["TIE_REQUIRE_APIM_HEADER"]["value"] == "true"
    header = settings["TIE_APIM_HEADER_NAME"]["value"]
    (gateway,) = [h for h in _xml(POLICIES / "api-tie.xml").iter("set-header") if h.get("name") == header]
    assert gateway.get("exists-action") == "override"
    value = gateway.find("value")
    assert value is not None
    (named,) = re.findall(r"^\{\{([^}]+)\}\}$", (value.text or "").strip())
    assert b.text(b.properties(APIM.variables()["keyVaultNamedValues"])[named]) == "gatewaySecretName"
    (decl,) = APIM.resources("Microsoft.ApiManagement/service/namedValues")[1:]
    assert b.text(decl.get("name")) == "item.key" and decl.looped
    assert b.literal(decl.get("properties.secret")) is True
    assert "secrets/${item.value}" in b.text(decl.get("properties.keyVault.secretIdentifier"))
    main = b.load(b.MAIN)
    secret_name = b.literal(main.variables()["gatewaySecretName"])
    assert settings["TIE_APIM_SHARED_SECRET"] == {
        "name": "TIE_APIM_SHARED_SECRET",
        "from": "keyVaultSecret",
        "value": secret_name,
    }
    (apim,) = [m for m in main.modules() if m.symbol == "apim"]
    assert b.text(apim.get("params.gatewaySecretName")) == "gatewaySecretName"
