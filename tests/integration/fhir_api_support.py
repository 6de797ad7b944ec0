"""Run the FHIR API in the local functions host, in-process, on a free loopback port (tests only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import azure.functions as func

from functions._fhir import blueprints
from shared.wiring import get_container
from tests.helpers import HttpResult, http, running_host
from tie.localhost.host import HostConfig, LocalHost

#: The headers of a FHIR JSON request.
FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def fhir_app() -> func.FunctionApp:
    """A FunctionApp with the FHIR API only (fresh blueprints, the same functions as ``function_app``)."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for bp in blueprints():
        app.register_functions(bp)
    return app


@contextmanager
def fhir_host(app: func.FunctionApp | None = None) -> Iterator[str]:
    """The FHIR base URL (``http://127.0.0.1:<port>/api/fhir``) of a running local host over the
    process-wide container (the test's embedded stores)."""
    container = get_container()
    host = LocalHost(
        app or fhir_app(),
        container.bus,
        container.records,
        HostConfig(port=0, enable_service_bus=False, enable_timers=False),
    )
    with running_host(host):
        yield f"{host.base_url}/fhir"


def send(method: str, url: str, body: Any = None, **headers: str) -> HttpResult:
    """One FHIR JSON request: ``body`` as JSON (bytes as they are), ``headers`` over :data:`FHIR`."""
    raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    return http(method, url, raw, {**FHIR, **headers})
