"""infra/openapi/tie-api.json describes exactly the HTTP routes the FunctionApp serves, and is valid OpenAPI.

API Management imports this document; an operation missing here is unreachable through the gateway, and
one that the app does not serve is a gateway 404 waiting to happen.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra import bicep_ast as b

DOC_PATH = b.INFRA / "openapi" / "tie-api.json"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DOC_PATH.read_text())
    return data


@pytest.fixture(scope="module")
def served() -> set[tuple[str, str]]:
    """(path, method) of every HTTP function, paths in OpenAPI form (no constraints, no /api prefix)."""
    from tie.localhost.discovery import describe, load_app

    routes: set[tuple[str, str]] = set()
    for spec in describe(load_app("function_app")):
        if spec.kind != "http":
            continue
        assert spec.route is not None and spec.methods, f"{spec.name}: HTTP function without route/methods"
        template = re.sub(r"\{\*?([A-Za-z0-9_]+)(?::[^}]*)?\??\}", r"{\1}", spec.route.template)
        path = "/" + template.strip("/")
        routes.update((path, method.lower()) for method in spec.methods)
    return routes


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_document_is_openapi_3(doc: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.[01]\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    for (path, method), operation in _operations(doc).items():
        assert path.startswith("/") and not path.startswith("/api/"), path
        assert operation["responses"], f"{method} {path}"
        declared = {p.get("name") for p in operation.get("parameters", []) if "name" in p}
        for name in re.findall(r"\{([^}]+)\}", path):
            assert name in declared, f"{method} {path}: path parameter {name} not declared"


def test_document_passes_openapi_spec_validator(doc: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)


def test_paths_and_methods_equal_the_served_routes(doc: dict[str, Any], served: set[tuple[str, str]]) -> None:
    assert served, "no HTTP functions discovered"
    assert set(_operations(doc)) == served


def test_operation_ids_are_unique_and_url_safe(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for op in _operations(doc).values()]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][a-z0-9-]{2,79}", operation_id), operation_id


def test_every_operation_requires_an_entra_role_and_a_subscription_key(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    roles = set(schemes["entraId"]["flows"]["clientCredentials"]["scopes"])
    assert schemes["subscriptionKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Ocp-Apim-Subscription-Key",
    }
    for (path, method), operation in _operations(doc).items():
        (requirement,) = operation["security"]
        assert set(requirement) == {"entraId", "subscriptionKey"}, f"{method} {path}"
        assert len(requirement["entraId"]) == 1 and requirement["entraId"][0] in roles, f"{method} {path}"
        for status in ("401", "403", "429"):
            assert status in operation["responses"], f"{method} {path}: gateway {status} undocumented"


def test_hl7_request_media_types_equal_what_the_function_accepts(doc: dict[str, Any]) -> None:
    from functions.hl7v2 import ACCEPTED_CONTENT_TYPES

    content = doc["paths"]["/hl7v2"]["post"]["requestBody"]["content"]
    assert set(content) == set(ACCEPTED_CONTENT_TYPES)


def test_gateway_errors_are_operation_outcomes(doc: dict[str, Any]) -> None:
    for name in ("Unauthorized", "Forbidden", "TooManyRequests", "GatewayError"):
        content = doc["components"]["responses"][name]["content"]
        assert content == {
            "application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
        }
    outcome = doc["components"]["schemas"]["OperationOutcome"]
    assert outcome["properties"]["resourceType"]["enum"] == ["OperationOutcome"]


def test_apim_imports_this_document() -> None:
    apim = b.load(b.MODULES / "apim.bicep")
    loaded = [
        b.string_value(args[0]) for args in b.call_arguments(apim.variables()["openApi"], "loadTextContent")
    ]
    assert loaded == ["../../openapi/tie-api.json"]
    (api,) = apim.resources("Microsoft.ApiManagement/service/apis")
    assert b.literal(api.get("properties.format")) == "openapi+json"
    assert b.text(api.get("properties.value")) == "openApi"
    assert b.literal(api.get("properties.subscriptionRequired")) is True
    assert b.literal(api.get("properties.protocols")) == ["https"]
