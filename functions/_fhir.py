"""Azure Functions adapters for the FHIR API: request/response conversion and route registration.

The logic is in :mod:`shared.fhirapi`; a FHIR function here only builds a :class:`FhirRequest`, calls the
interaction and writes the :class:`FhirResponse` back (``application/fhir+json``), with the correlation
ID accepted or generated and echoed like every HTTP function. An exception that escapes the core becomes
a 500 OperationOutcome without details. With ``TIE_REQUIRE_APIM_HEADER`` on, the gateway check
(:mod:`shared.gateway`: the shared secret compared in constant time) runs first; a refusal is a 401/403
OperationOutcome (issue code ``login`` / ``forbidden``) that echoes nothing.

:func:`register_resources` adds one resource family's functions to a blueprint (``functions/fhir.py``
registers every family on one blueprint; a family's ``{resourceType}`` route segment is constrained to its
types, so the functions - and their telemetry - are per family while the API Management operations are
per interaction):

===========================================  ======  =================================================
route (under ``/api``)                       method  interaction
===========================================  ======  =================================================
``fhir/{resourceType}``                      GET     search (query string)
``fhir/{resourceType}``                      POST    create (``If-None-Exist``: conditional create)
``fhir/{resourceType}``                      PUT     conditional update (criteria in the query string)
``fhir/{resourceType}/_search``              POST    search (form body)
``fhir/{resourceType}/_history``             GET     type history
``fhir/{resourceType}/{id}``                 GET     read (``If-None-Match`` / ``If-Modified-Since``)
``fhir/{resourceType}/{id}``                 PUT     update (``If-Match``)
``fhir/{resourceType}/{id}``                 DELETE  delete (405 where deletion is not allowed)
``fhir/{resourceType}/{id}/_history``        GET     instance history
``fhir/{resourceType}/{id}/_history/{vid}``  GET     vread
``fhir/metadata``                            GET     CapabilityStatement
``fhir``                                     POST    transaction / batch Bundle
===========================================  ======  =================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from functions._http import endpoint
from shared.fhir.json import dumps
from shared.fhirapi import FhirApi, FhirRequest, FhirResponse, Headers
from shared.fhirapi.http import gateway_outcome
from shared.fhirapi.service import error_response
from shared.observability.correlation import HEADER
from shared.wiring import get_container

_log = logging.getLogger("tie.http")

Interaction = Callable[[FhirApi, FhirRequest, dict[str, str]], FhirResponse]


def to_request(req: func.HttpRequest, correlation_id: str) -> FhirRequest:
    return FhirRequest(
        method=req.method.upper(),
        url=req.url,
        headers=Headers(dict(req.headers.items())),
        body=req.get_body() or b"",
        correlation_id=correlation_id,
    )


def to_http(response: FhirResponse, correlation_id: str) -> func.HttpResponse:
    headers = dict(response.headers)
    headers[HEADER] = correlation_id
    if response.body is None:
        return func.HttpResponse(status_code=response.status, headers=headers)
    return func.HttpResponse(
        body=dumps(response.body),
        status_code=response.status,
        headers=headers,
        mimetype=response.content_type,
        charset="utf-8",
    )


def fhir_endpoint(interaction: Interaction, name: str) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """A Functions handler ``(req) -> HttpResponse`` running ``interaction(api, request, route_params)``
    (:func:`functions._http.endpoint` with FHIR responses and OperationOutcome errors)."""
    return endpoint(
        name,
        lambda req, cid: to_http(
            interaction(get_container().fhir_api, to_request(req, cid), dict(req.route_params)), cid
        ),
        refuse=lambda verdict, cid: to_http(gateway_outcome(verdict.status, verdict.message), cid),
        fail=_failure,
    )


def _failure(function: str, exc: Exception, correlation_id: str) -> func.HttpResponse:
    _log.error("unhandled error", extra={"function": function, "error_code": type(exc).__name__})
    return to_http(error_response(exc), correlation_id)


def _add(bp: Any, name: str, route: str, method: str, interaction: Interaction) -> None:
    handler = fhir_endpoint(interaction, name)
    bp.function_name(name)(
        bp.route(route=route, methods=[method], auth_level=func.AuthLevel.ANONYMOUS)(handler)
    )


def type_segment(resource_types: tuple[str, ...]) -> str:
    """The route segment matching exactly ``resource_types``, e.g.
    ``{resourceType:regex(^Observation$|^DiagnosticReport$)}`` (no groups: a route constraint cannot nest
    parentheses)."""
    for rtype in resource_types:
        if not rtype.isalpha():
            raise ValueError("resource types are letters only")
    return "{resourceType:regex(" + "|".join(f"^{t}$" for t in resource_types) + ")}"


def register_resources(bp: Any, family: str, resource_types: tuple[str, ...]) -> None:
    """Register the interactions of ``resource_types`` on ``bp`` as functions ``fhir_<family>_<interaction>``
    (see the module docs); the ``{resourceType}`` route segment only matches those types."""
    base = f"fhir/{type_segment(resource_types)}"
    f = f"fhir_{family}"
    _add(bp, f"{f}_search", base, "GET", lambda api, r, p: api.search(r, p["resourceType"]))
    _add(bp, f"{f}_create", base, "POST", lambda api, r, p: api.create(r, p["resourceType"]))
    _add(
        bp,
        f"{f}_conditional_update",
        base,
        "PUT",
        lambda api, r, p: api.conditional_update(r, p["resourceType"]),
    )
    _add(
        bp,
        f"{f}_search_post",
        f"{base}/_search",
        "POST",
        lambda api, r, p: api.search(r, p["resourceType"], post=True),
    )
    _add(
        bp,
        f"{f}_history_type",
        f"{base}/_history",
        "GET",
        lambda api, r, p: api.history(r, p["resourceType"]),
    )
    _add(bp, f"{f}_read", f"{base}/{{id}}", "GET", lambda api, r, p: api.read(r, p["resourceType"], p["id"]))
    _add(
        bp,
        f"{f}_update",
        f"{base}/{{id}}",
        "PUT",
        lambda api, r, p: api.update(r, p["resourceType"], p["id"]),
    )
    _add(
        bp,
        f"{f}_delete",
        f"{base}/{{id}}",
        "DELETE",
        lambda api, r, p: api.delete(r, p["resourceType"], p["id"]),
    )
    _add(
        bp,
        f"{f}_history_instance",
        f"{base}/{{id}}/_history",
        "GET",
        lambda api, r, p: api.history(r, p["resourceType"], p["id"]),
    )
    _add(
        bp,
        f"{f}_vread",
        f"{base}/{{id}}/_history/{{vid}}",
        "GET",
        lambda api, r, p: api.vread(r, p["resourceType"], p["id"], p["vid"]),
    )


def register_system(bp: Any) -> None:
    """``GET fhir/metadata`` and ``POST fhir`` (transaction / batch)."""
    _add(bp, "fhir_metadata", "fhir/metadata", "GET", lambda api, r, p: api.metadata(r))
    _add(bp, "fhir_bundle", "fhir", "POST", lambda api, r, p: api.bundle(r))


#: Resource families: each has its own functions ``fhir_<family>_<interaction>`` (and telemetry).
FAMILIES: dict[str, tuple[str, ...]] = {
    "patient": ("Patient",),
    "encounter": ("Encounter",),
    "results": ("Observation", "DiagnosticReport", "Specimen"),
    "orders": ("ServiceRequest", "MedicationRequest"),
    "records": ("AllergyIntolerance", "Condition", "DocumentReference"),
    "directory": ("Organization", "Practitioner", "Location"),
}


def register_api(bp: Any) -> None:
    """The whole FHIR API on ``bp``: the system interactions, then every family (:data:`FAMILIES`)."""
    register_system(bp)
    for family, resource_types in FAMILIES.items():
        register_resources(bp, family, resource_types)


def blueprints() -> list[Any]:
    """New blueprints for the whole FHIR API, e.g. for a test or benchmark FunctionApp; ``function_app``
    registers the module-level one of :mod:`functions.fhir`."""
    bp = func.Blueprint()  # type: ignore[no-untyped-call]
    register_api(bp)
    return [bp]


__all__ = [
    "FAMILIES",
    "blueprints",
    "fhir_endpoint",
    "register_api",
    "register_resources",
    "register_system",
    "to_http",
    "to_request",
]
