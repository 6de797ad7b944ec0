"""FHIR Bulk Data export: ``$export`` kick-off, status polling, cancel, file download, and the worker timer.

Logic: :mod:`shared.bulkexport` (docs/bulk-export.md). Routes (under ``/api``):

=====================================  ======  ==========================================
``fhir/$export``                       GET     system-level kick-off (202 + Content-Location)
``fhir/Patient/$export``               GET     patient-level kick-off
``fhir/bulkstatus/{jobId}``            GET     status: 202 + X-Progress / 200 manifest
``fhir/bulkstatus/{jobId}``            DELETE  cancel
``fhir/bulkfiles/{jobId}/{fileName}``  GET     one NDJSON file of the manifest
=====================================  ======  ==========================================

Every route passes the gateway check first (:func:`functions._http.gateway_verdict`), like the rest of the
FHIR API. ``bulk_export_worker`` (every 10 s) runs queued jobs for up to 50 s a call; a job's state is in
the record store, so a host restart resumes it where the last file was saved.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import azure.functions as func

from functions._fhir import to_request
from functions._http import gateway_verdict
from shared.bulkexport import BulkExportApi, ExportResponse, Level, export_api_for, export_runner_for
from shared.fhirapi import FhirRequest
from shared.fhirapi.http import gateway_outcome
from shared.fhirapi.service import error_response
from shared.gateway import GatewayVerdict
from shared.observability.correlation import HEADER, correlation_scope, from_headers
from shared.wiring import get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]
_log = logging.getLogger("tie.http")

Interaction = Callable[[BulkExportApi, FhirRequest, dict[str, str]], ExportResponse]


def to_http(response: ExportResponse, correlation_id: str) -> func.HttpResponse:
    headers = dict(response.headers)
    headers[HEADER] = correlation_id
    if response.body is None:
        return func.HttpResponse(status_code=response.status, headers=headers)
    body = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
    return func.HttpResponse(
        body=body,
        status_code=response.status,
        headers=headers,
        mimetype=response.content_type,
        charset="utf-8",
    )


def _handle(req: func.HttpRequest, name: str, interaction: Interaction) -> func.HttpResponse:
    correlation_id, _ = from_headers(dict(req.headers.items()))
    started = time.perf_counter()
    with correlation_scope(correlation_id):
        try:
            verdict = gateway_verdict(req, name)
            if verdict is GatewayVerdict.PASSED:
                api = export_api_for(get_container())
                response = interaction(api, to_request(req, correlation_id), dict(req.route_params))
            else:
                refused = gateway_outcome(verdict.status, verdict.message)
                response = ExportResponse(refused.status, refused.body)
        except Exception as exc:  # noqa: BLE001 - HTTP boundary: no stack trace or payload leaves the app
            _log.error("unhandled error", extra={"function": name, "error_code": type(exc).__name__})
            failed = error_response(exc)
            response = ExportResponse(failed.status, failed.body, failed.headers)
        _log.info(
            "http request",
            extra={
                "function": name,
                "method": req.method,
                "status": response.status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return to_http(response, correlation_id)


@bp.function_name("fhir_export_system")
@bp.route(route="fhir/$export", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def fhir_export_system(req: func.HttpRequest) -> func.HttpResponse:
    return _handle(req, "fhir_export_system", lambda api, r, p: api.kickoff(r, Level.SYSTEM))


@bp.function_name("fhir_export_patient")
@bp.route(route="fhir/Patient/$export", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def fhir_export_patient(req: func.HttpRequest) -> func.HttpResponse:
    return _handle(req, "fhir_export_patient", lambda api, r, p: api.kickoff(r, Level.PATIENT))


@bp.function_name("fhir_export_status")
@bp.route(route="fhir/bulkstatus/{jobId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def fhir_export_status(req: func.HttpRequest) -> func.HttpResponse:
    return _handle(req, "fhir_export_status", lambda api, r, p: api.status(r, p["jobId"]))


@bp.function_name("fhir_export_cancel")
@bp.route(route="fhir/bulkstatus/{jobId}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
def fhir_export_cancel(req: func.HttpRequest) -> func.HttpResponse:
    return _handle(req, "fhir_export_cancel", lambda api, r, p: api.cancel(r, p["jobId"]))


@bp.function_name("fhir_export_file")
@bp.route(route="fhir/bulkfiles/{jobId}/{fileName}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def fhir_export_file(req: func.HttpRequest) -> func.HttpResponse:
    return _handle(req, "fhir_export_file", lambda api, r, p: api.download(r, p["jobId"], p["fileName"]))


@bp.function_name("bulk_export_worker")
@bp.timer_trigger(schedule="*/10 * * * * *", arg_name="timer", use_monitor=False)
def bulk_export_worker(timer: func.TimerRequest) -> None:
    finished = export_runner_for(get_container()).run_pending(budget_seconds=50.0)
    if finished:
        _log.info("bulk exports finished", extra={"count": finished})
