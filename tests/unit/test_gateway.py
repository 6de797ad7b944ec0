"""The API gateway check (TIE_REQUIRE_APIM_HEADER): every HTTP route of the real app but /health, the
shared secret compared in constant time, refusals that echo nothing.

The app runs in the local host in-process (HTTP only) on 127.0.0.1; the routes under test are whatever
the app registers, so a route added later is covered without touching this file.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator
from typing import Any

import pytest

import shared.gateway
from shared.config.settings import get_settings, reset_settings
from shared.errors import ConfigurationError
from shared.fhirapi.http import gateway_outcome
from shared.gateway import GatewayPolicy, GatewayVerdict, check_gateway, gateway_policy
from shared.wiring import build_container, set_container
from tests.helpers import REPO_ROOT, http, running_host
from tie.localhost.discovery import FunctionSpec, describe, load_app
from tie.localhost.host import HostConfig, LocalHost

pytestmark = pytest.mark.timeout(120)

SECRET = "s3cret-from-key-vault-0123456789"
WRONG = "guessed-value-9876543210"
HL7 = (REPO_ROOT / "samples" / "adt-a01.hl7").read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")


# ----------------------------------------------------------------------------------------- pure check


def test_check_gateway_verdicts() -> None:
    assert check_gateway(SECRET, SECRET) is GatewayVerdict.PASSED
    assert check_gateway(f" {SECRET} ", SECRET) is GatewayVerdict.PASSED  # HTTP strips whitespace
    assert check_gateway(None, SECRET) is GatewayVerdict.MISSING
    assert check_gateway("  ", SECRET) is GatewayVerdict.MISSING
    assert check_gateway(WRONG, SECRET) is GatewayVerdict.WRONG
    assert check_gateway(SECRET[:-1], SECRET) is GatewayVerdict.WRONG
    assert check_gateway("caf\u00e9-\udcff", SECRET) is GatewayVerdict.WRONG  # non-ASCII: no TypeError
    assert check_gateway(SECRET, None) is GatewayVerdict.UNCONFIGURED
    assert [v.status for v in GatewayVerdict] == [200, 401, 403, 403]


def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(shared.gateway.hmac, "compare_digest", spy)
    assert check_gateway(WRONG, SECRET) is GatewayVerdict.WRONG
    assert check_gateway(SECRET, SECRET) is GatewayVerdict.PASSED
    assert calls == [(WRONG.encode(), SECRET.encode()), (SECRET.encode(), SECRET.encode())]


def test_policy_from_settings_keeps_the_secret_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gateway_policy(get_settings()) is None
    monkeypatch.setenv("TIE_REQUIRE_APIM_HEADER", "true")
    monkeypatch.setenv("TIE_APIM_SHARED_SECRET", SECRET)
    reset_settings()
    policy = gateway_policy(get_settings())
    assert policy == GatewayPolicy("X-TIE-Gateway", SECRET)
    assert SECRET not in repr(policy) and SECRET not in repr(get_settings())
    reference = "@Microsoft.KeyVault(VaultName=kv-tie;SecretName=tie-function-host-key)"
    monkeypatch.setenv("TIE_APIM_SHARED_SECRET", reference)  # App Service could not resolve it
    reset_settings()
    unresolved = gateway_policy(get_settings())
    assert unresolved is not None
    assert unresolved.check({"X-TIE-Gateway": reference}.get) is GatewayVerdict.UNCONFIGURED
    monkeypatch.setenv("TIE_APIM_SHARED_SECRET", "tiny-Zq9")
    reset_settings()
    with pytest.raises(ConfigurationError) as refused:
        get_settings()
    assert "TIE_APIM_SHARED_SECRET" in str(refused.value) and "tiny-Zq9" not in str(refused.value)


def test_fhir_refusal_is_an_operation_outcome() -> None:
    missing = gateway_outcome(401, GatewayVerdict.MISSING.message)
    assert missing.status == 401 and missing.content_type == "application/fhir+json"
    assert missing.body == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login", "diagnostics": GatewayVerdict.MISSING.message}],
    }
    assert gateway_outcome(403, "x").body["issue"][0]["code"] == "forbidden"  # type: ignore[index]


# ----------------------------------------------------------------------------------- through the host


def _example_path(spec: FunctionSpec) -> str:
    """A concrete path for a route template (first alternative of a regex constraint, else ``1``)."""
    assert spec.route is not None
    parts = []
    for segment in spec.route.template.strip("/").split("/"):
        if not segment.startswith("{"):
            parts.append(segment)
            continue
        alternative = re.search(r"\^([A-Za-z]+)\$", segment)
        parts.append(alternative.group(1) if alternative else "1")
    path = "/" + "/".join(parts)
    assert spec.route.match(path) is not None, path
    return path


def _calls(host: LocalHost) -> list[tuple[str, str, str]]:
    """(function, method, url) for every method of every HTTP function but health."""
    out = []
    for spec in host.http_functions:
        for method in sorted(spec.methods or {"GET"}):
            out.append((spec.name, method, f"{host.base_url}{_example_path(spec)}"))
    return [c for c in out if c[0] != "health"]


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHost]:
    monkeypatch.setenv("TIE_REQUIRE_APIM_HEADER", "true")
    monkeypatch.setenv("TIE_APIM_SHARED_SECRET", SECRET)
    yield from _host()


def _host() -> Iterator[LocalHost]:
    reset_settings()
    container = build_container(get_settings())
    set_container(container)
    app: Any = load_app("function_app")
    config = HostConfig(port=0, enable_service_bus=False, enable_timers=False)
    host = LocalHost(app=app, bus=container.bus, records=container.records, config=config)
    with running_host(host):
        yield host


def _assert_refused(res: Any, status: int, function: str, *secrets: str) -> None:
    assert res.status == status, (function, res.status, res.body[:200])
    text = res.body.decode()
    for value in secrets:
        assert value not in text and value not in str(res.headers), function
    body = res.json()
    if function.startswith("fhir_"):
        assert res.headers["Content-Type"].startswith("application/fhir+json")
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == ("login" if status == 401 else "forbidden")
    else:
        assert body["error"]["code"] == ("gateway_missing" if status == 401 else "gateway_wrong")


def test_every_route_but_health_needs_the_gateway_secret(gated: LocalHost) -> None:
    calls = _calls(gated)
    names = {name for name, _, _ in calls}
    assert {"hl7v2_ingest", "ingest_http", "message_trace", "fhir_metadata", "fhir_patient_read"} <= names
    for name, method, url in calls:
        body = HL7 if method in ("POST", "PUT") else None
        _assert_refused(http(method, url, body=body), 401, name, SECRET)
        wrong = http(method, url, body=body, headers={"X-TIE-Gateway": WRONG})
        _assert_refused(wrong, 403, name, SECRET, WRONG)
    assert http("GET", f"{gated.base_url}/health").status == 200


def test_the_right_secret_passes(gated: LocalHost) -> None:
    gw = {"X-TIE-Gateway": SECRET}
    base = gated.base_url
    hl7 = http("POST", f"{base}/hl7v2", HL7, {**gw, "Content-Type": "x-application/hl7-v2+er7"})
    assert hl7.status == 200 and b"MSA|AA" in hl7.body
    posted = http("POST", f"{base}/messages?channel=raw", b"hello", {**gw, "X-Correlation-ID": "gw-1"})
    assert posted.status == 202
    assert http("GET", f"{base}/messages/gw-1", headers=gw).status == 200
    assert http("GET", f"{base}/fhir/metadata", headers=gw).status == 200
    assert http("GET", f"{base}/fhir/Patient?family=x", headers=gw).status == 200


def test_check_on_without_a_secret_refuses_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_REQUIRE_APIM_HEADER", "true")
    for host in _host():
        res = http("POST", f"{host.base_url}/hl7v2", HL7, {"X-TIE-Gateway": "anything-at-all-123"})
        assert res.status == 403 and res.json()["error"]["code"] == "gateway_unconfigured"
        assert http("GET", f"{host.base_url}/fhir/metadata").status == 403
        assert http("GET", f"{host.base_url}/health").status == 200


def test_check_off_by_default() -> None:
    for host in _host():
        assert http("GET", f"{host.base_url}/fhir/metadata").status == 200


def test_every_http_function_is_anonymous_to_the_functions_host() -> None:
    """In Azure no function key exists: App Service authentication admits only API Management's managed
    identity (ADR 0003) and the gateway secret is checked in code, so a function declaring
    ``AuthLevel.FUNCTION`` would answer every gateway call with 401."""
    app: Any = load_app("function_app")
    levels = {
        spec.name: str(getattr(spec.trigger.auth_level, "value", spec.trigger.auth_level)).lower()
        for spec in describe(app)
        if spec.kind == "http"
    }
    assert {"health", "hl7v2_ingest", "fhir_patient_read"} <= set(levels)
    assert {name: level for name, level in levels.items() if level != "anonymous"} == {}
