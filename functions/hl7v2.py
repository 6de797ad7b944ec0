"""``POST /api/hl7v2``: HL7 v2 (ER7) over HTTP; the body of the response is the ACK.

HTTP status tells the transport outcome, the ACK tells the HL7 outcome:

=====================================  ======  ==================================================
situation                              status  body
=====================================  ======  ==================================================
accepted (stored and published)        200     AA (original mode) / CA (enhanced mode)
duplicate control ID, same content     same    the ACK sent the first time (not re-processed)
content errors (original mode)         422     AE with ERR segments
unparseable / structure unacceptable   400     AR (original) / CR (enhanced) with ERR segments
could not be stored (transient)        503     AR / CE with ERR 207, ``Retry-After``
MSH-15 asks for no accept ACK          204     (empty)
wrong Content-Type                     415     JSON error
body over TIE_HTTP_MAX_BODY_BYTES      413     AR / CR with ERR 102 (as an oversize MLLP frame)
=====================================  ======  ==================================================

Every ACK's MSH-10 is the request's correlation ID (also in ``X-Correlation-ID``), as over MLLP.
"""

from __future__ import annotations

import azure.functions as func

from functions._http import error_response, http_endpoint, read_body
from shared.observability.correlation import HEADER
from shared.pipeline.hl7v2 import CONTENT_TYPE, Hl7Ingest, Hl7IngestResult
from shared.wiring import get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]

ACCEPTED_CONTENT_TYPES = frozenset({CONTENT_TYPE, "application/hl7-v2+er7", "application/hl7-v2"})
_STATUS = {"accepted": 200, "content-error": 422, "rejected": 400, "unavailable": 503}
#: First bytes of an oversize body the ACK is built from (MSH is all it reads).
_OVERSIZE_HEAD_BYTES = 65_536


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def to_http(result: Hl7IngestResult, *, status: int | None = None) -> func.HttpResponse:
    headers = {HEADER: result.correlation_id}
    if result.code:
        headers["X-HL7-Ack-Code"] = result.code
    if result.duplicate:
        headers["X-HL7-Duplicate"] = "true"
    if result.outcome == "unavailable":
        headers["Retry-After"] = "5"
    if result.ack is None:
        return func.HttpResponse(status_code=204, headers=headers)
    return func.HttpResponse(
        body=result.ack,
        status_code=status or _STATUS[result.outcome],
        headers=headers,
        mimetype=CONTENT_TYPE,
    )


@bp.function_name("hl7v2_ingest")
@bp.route(route="hl7v2", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def hl7v2_ingest(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
    container = get_container()
    if _media_type(req.headers.get("Content-Type")) not in ACCEPTED_CONTENT_TYPES:
        return error_response(
            415,
            "unsupported_media_type",
            f"Send HL7 v2 ER7 with Content-Type {CONTENT_TYPE}.",
            correlation_id,
        )
    body = read_body(req, container.settings.http_max_body_bytes)
    service = Hl7Ingest(container.bus, container.records)
    if body is None:
        whole = req.get_body()
        result = service.oversize(
            whole[:_OVERSIZE_HEAD_BYTES], size=len(whole), source="http", correlation_id=correlation_id
        )
        return to_http(result, status=413)
    return to_http(service.handle(body, source="http", correlation_id=correlation_id))
