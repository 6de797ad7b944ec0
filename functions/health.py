"""``GET /api/health``: the status of each dependency (bus, record store, blob store)."""

from __future__ import annotations

import azure.functions as func

from functions._http import json_response, ungated_endpoint
from shared.health import check_all
from shared.wiring import get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@ungated_endpoint  # no gateway check: platform probes call it directly
def health(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
    report = check_all(get_container())
    return json_response(report.as_dict(), 200 if report.healthy else 503, correlation_id=correlation_id)
