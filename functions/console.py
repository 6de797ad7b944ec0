"""``/api/console``: the operations console (HTML pages, a JSON API and two static files).

A thin adapter: the gateway check and error mapping of :func:`functions._http.http_endpoint`, the
operator from :func:`shared.console.identity.resolve_operator`, everything else in
:class:`shared.console.app.Console`. Design and role model: ``docs/console.md``.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func

from functions._http import http_endpoint
from shared.console.app import Console, ConsoleDeps, ConsoleRequest
from shared.console.identity import resolve_operator
from shared.console.readmodels import Certificate
from shared.console.reconciliation import RunHistorySource
from shared.gateway import gateway_policy
from shared.health import check_all
from shared.wiring import Container, get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]

STATIC_DIR = Path(__file__).with_name("console_static")
BASE = "/api/console"
DOWNSTREAMS = ("fhir", "hl7v2")


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _certificates(container: Container) -> Any:
    def read() -> list[Certificate]:
        from shared.credentials.expiry import inventory
        from shared.wiring import build_credential_provider, build_registry

        settings = container.settings
        statuses = inventory(
            build_credential_provider(settings),
            referenced=build_registry(settings).certificate_names(settings.environment),
            now=datetime.now(UTC),
        )
        return [Certificate(s.name, s.days_remaining, s.band, s.error) for s in statuses]

    return read


def build_console(container: Container, *, behind_gateway: bool) -> Console:
    settings = container.settings
    local = bool(os.environ.get("TIE_LOCAL_HOST"))
    return Console(
        ConsoleDeps(
            bus=container.bus,
            records=container.records,
            audit=container.audit,
            health=lambda: check_all(container).as_dict(),
            stuck_after=timedelta(seconds=settings.stuck_after_seconds),
            downstream_names=DOWNSTREAMS,
            base=BASE,
            static_dir=STATIC_DIR,
            certificates=_certificates(container),
            reconciliation=RunHistorySource(container.records),
            secure_cookies=behind_gateway or not local,  # plain http only on the bare local host
        )
    )


def _handle(req: func.HttpRequest) -> func.HttpResponse:
    container = get_container()
    # http_endpoint has already refused anything that did not pass the gateway check (when it is on).
    behind_gateway = gateway_policy(container.settings) is not None
    operator = resolve_operator(
        req.headers.get,
        behind_gateway=behind_gateway,
        local_host=bool(os.environ.get("TIE_LOCAL_HOST")),
        local_user=_local_user(),
    )
    path = req.route_params.get("path") or ""
    answer = build_console(container, behind_gateway=behind_gateway).handle(
        ConsoleRequest(req.method, path, dict(req.headers), req.get_body(), operator)
    )
    mimetype, _, _ = answer.content_type.partition(";")
    return func.HttpResponse(
        body=answer.body,
        status_code=answer.status,
        headers=answer.headers,
        mimetype=mimetype,
        charset="utf-8",
    )


@bp.function_name("console")
@bp.route(route="console/{*path}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def console(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
    return _handle(req)
