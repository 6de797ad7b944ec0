"""Run the FHIR API in the local functions host, in-process, on a free loopback port (tests only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import azure.functions as func

from functions._fhir import blueprints
from shared.wiring import get_container
from tests.helpers import running_host
from tie.localhost.host import HostConfig, LocalHost


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
