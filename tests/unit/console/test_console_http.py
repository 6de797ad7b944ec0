"""``/api/console`` on the local host: the gateway check first, then who the operator is."""

from __future__ import annotations

from collections.abc import Iterator

import azure.functions as func
import pytest

from functions import console
from shared.config.settings import get_settings, reset_settings
from shared.wiring import build_container, set_container
from tests.helpers import http, running_host
from tie.localhost.host import HostConfig, LocalHost

SECRET = "console-gateway-secret-7f3a"
ROLES = {"X-TIE-Console-User": "oncall@trust.nhs.uk", "X-TIE-Console-Roles": "TIE.Console.Read"}


def _host() -> Iterator[LocalHost]:
    reset_settings()
    container = build_container(get_settings())
    set_container(container)
    # The console's own app (function_app registers it only under tie run; importing it here with
    # TIE_LOCAL_HOST set would leave the console in every later test's function_app).
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(console.bp)
    config = HostConfig(port=0, enable_service_bus=False, enable_timers=False)
    host = LocalHost(app=app, bus=container.bus, records=container.records, config=config)
    with running_host(host):
        yield host


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHost]:
    monkeypatch.setenv("TIE_REQUIRE_APIM_HEADER", "true")
    monkeypatch.setenv("TIE_APIM_SHARED_SECRET", SECRET)
    monkeypatch.setenv("TIE_LOCAL_HOST", "1")  # even on the local host, behind the gateway only roles count
    yield from _host()


def test_behind_the_gateway_roles_come_from_the_gateway(gated: LocalHost) -> None:
    url = f"{gated.base_url}/console"
    assert http("GET", url).status == 401  # the gateway check runs first
    assert http("GET", url, headers={"X-TIE-Gateway": "wrong-secret-value-1"}).status == 403
    no_roles = http("GET", url, headers={"X-TIE-Gateway": SECRET})
    assert no_roles.status == 403 and b"Local operator" not in no_roles.body
    reader = http("GET", url, headers={"X-TIE-Gateway": SECRET, **ROLES})
    assert reader.status == 200 and b"oncall@trust.nhs.uk (roles: Read)" in reader.body
    assert b"Local operator" not in reader.body
    assert "Secure" in reader.headers["Set-Cookie"] and "SameSite=Strict" in reader.headers["Set-Cookie"]
    assert reader.headers["Content-Security-Policy"].startswith("default-src 'none'")
    letters = http("GET", f"{url}/deadletters", headers={"X-TIE-Gateway": SECRET, **ROLES})
    assert b"Replaying and purging need the Operate role." in letters.body


def test_without_gateway_or_local_host_nobody_is_an_operator() -> None:
    for host in _host():
        denied = http("GET", f"{host.base_url}/console/api/estate")
        assert denied.status == 403 and denied.json()["error"]["code"] == "forbidden"
        claimed = http("GET", f"{host.base_url}/console/api/estate", headers=ROLES)  # a claim is not a role
        assert claimed.status == 403


def test_the_local_host_has_a_local_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_LOCAL_HOST", "1")
    for host in _host():
        page = http("GET", f"{host.base_url}/console")
        assert page.status == 200 and b"Local operator." in page.body
        assert "Secure" not in page.headers["Set-Cookie"]  # plain http on loopback


def test_the_console_route_is_anonymous_to_the_functions_host() -> None:
    """Like every HTTP function (ADR 0003): the gateway secret is checked in code, no function key exists."""
    from tie.localhost.discovery import describe

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(console.bp)
    [spec] = [s for s in describe(app) if s.kind == "http"]
    assert str(getattr(spec.trigger.auth_level, "value", spec.trigger.auth_level)).lower() == "anonymous"
