"""Shared plumbing for HTTP-triggered functions: correlation IDs, JSON errors, no leaked internals, and
the API gateway check (:mod:`shared.gateway`) on every route but health."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared.errors import PermanentError, TransientError
from shared.gateway import GatewayVerdict, gateway_policy
from shared.observability.correlation import HEADER, correlation_scope, from_headers
from shared.wiring import get_container

_log = logging.getLogger("tie.http")

JSON = "application/json"


def json_response(
    payload: Any,
    status: int = 200,
    *,
    correlation_id: str | None = None,
    headers: dict[str, str] | None = None,
    mimetype: str = JSON,
) -> func.HttpResponse:
    all_headers = dict(headers or {})
    if correlation_id:
        all_headers[HEADER] = correlation_id
    return func.HttpResponse(
        body=json.dumps(payload, separators=(",", ":")),
        status_code=status,
        headers=all_headers,
        mimetype=mimetype,
        charset="utf-8",
    )


def error_response(
    status: int, code: str, message: str, correlation_id: str, **extra: Any
) -> func.HttpResponse:
    """JSON error body. ``message`` must not contain patient data or payload fragments."""
    body = {"error": {"code": code, "message": message, "correlationId": correlation_id, **extra}}
    return json_response(body, status, correlation_id=correlation_id)


Handler = Callable[[func.HttpRequest, str], func.HttpResponse]


def gateway_verdict(req: func.HttpRequest, function: str) -> GatewayVerdict:
    """The gateway check for one request (PASSED when ``TIE_REQUIRE_APIM_HEADER`` is off); refusals are
    logged with the reason only, never a header value."""
    policy = gateway_policy(get_container().settings)
    if policy is None:
        return GatewayVerdict.PASSED
    verdict = policy.check(req.headers.get)
    if verdict is GatewayVerdict.UNCONFIGURED:
        _log.error(
            "gateway check on but TIE_APIM_SHARED_SECRET is not set; request refused",
            extra={"function": function, "reason": verdict.value},
        )
    elif verdict is not GatewayVerdict.PASSED:
        _log.warning("gateway check failed", extra={"function": function, "reason": verdict.value})
    return verdict


Respond = Callable[[func.HttpRequest, str], func.HttpResponse]
#: The response to a refused gateway check ``(verdict, correlation_id)``.
Refuse = Callable[[GatewayVerdict, str], func.HttpResponse]
#: The response to an exception that escaped ``(function name, exception, correlation_id)``; it logs it.
Fail = Callable[[str, Exception, str], func.HttpResponse]


def endpoint(
    name: str, respond: Respond, *, refuse: Refuse | None, fail: Fail
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """The one wrapper of every HTTP function: a Functions handler ``(req) -> HttpResponse`` named ``name``.

    Accepts ``X-Correlation-ID`` or generates one, makes it current for logging and echoes it on every
    response; runs the gateway check first (``refuse`` answers a refusal; ``None``: no check); calls
    ``respond(req, correlation_id)``; an exception that escapes becomes ``fail(...)`` (no stack trace or
    payload leaves the app); logs one ``http request`` line with the status and duration.
    """

    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        correlation_id, _ = from_headers(dict(req.headers))
        started = time.perf_counter()
        with correlation_scope(correlation_id):
            try:
                verdict = gateway_verdict(req, name) if refuse is not None else GatewayVerdict.PASSED
                if refuse is None or verdict is GatewayVerdict.PASSED:
                    response = respond(req, correlation_id)
                else:
                    response = refuse(verdict, correlation_id)
            except Exception as exc:  # noqa: BLE001 - HTTP boundary: no stack trace leaves the app
                response = fail(name, exc, correlation_id)
            response.headers.setdefault(HEADER, correlation_id)
            _log.info(
                "http request",
                extra={
                    "function": name,
                    "method": req.method,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            return response

    wrapper.__name__ = name
    wrapper.__qualname__ = name
    # The Functions worker matches parameters to bindings by name: expose the trigger's signature.
    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("req", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=func.HttpRequest)],
        return_annotation=func.HttpResponse,
    )
    return wrapper


def http_endpoint(handler: Handler) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Wrap a handler ``(req, correlation_id) -> HttpResponse`` (:func:`endpoint` with JSON errors).

    With ``TIE_REQUIRE_APIM_HEADER`` on, a request without the gateway's secret header gets 401/403 JSON
    before the handler runs; an escaped exception is a 503 (transient) / 400 (permanent) / 500 JSON error
    with the correlation ID.
    """
    return _json_endpoint(handler, gated=True)


def ungated_endpoint(handler: Handler) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """:func:`http_endpoint` without the gateway check: for ``/health`` only (platform probes)."""
    return _json_endpoint(handler, gated=False)


def _json_endpoint(handler: Handler, *, gated: bool) -> Callable[[func.HttpRequest], func.HttpResponse]:
    wrapper = endpoint(handler.__name__, handler, refuse=_json_refusal if gated else None, fail=_json_failure)
    functools.update_wrapper(wrapper, handler)
    del wrapper.__wrapped__  # type: ignore[attr-defined]
    return wrapper


def _json_refusal(verdict: GatewayVerdict, correlation_id: str) -> func.HttpResponse:
    return error_response(verdict.status, f"gateway_{verdict.value}", verdict.message, correlation_id)


def _json_failure(function: str, exc: Exception, correlation_id: str) -> func.HttpResponse:
    if isinstance(exc, TransientError):
        _log.warning("transient failure", extra={"function": function, "error_code": exc.code})
        response = error_response(
            503, "unavailable", "A dependency is unavailable; retry later.", correlation_id
        )
        response.headers["Retry-After"] = "5"
        return response
    if isinstance(exc, PermanentError):
        _log.warning("request failed", extra={"function": function, "error_code": exc.code})
        return error_response(400, exc.code, "The request could not be processed.", correlation_id)
    _log.error("unhandled error", extra={"function": function, "error_code": type(exc).__name__})
    return error_response(500, "internal_error", "An internal error occurred.", correlation_id)


def read_body(req: func.HttpRequest, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` bytes (caller answers 413)."""
    length = req.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    body = req.get_body()
    return None if len(body) > limit else body
