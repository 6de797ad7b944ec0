"""``POST /api/hl7v2``: HL7 v2 (ER7) over HTTP; the body of the response is the ACK.

HTTP status tells the transport outcome, the ACK tells the HL7 outcome: one status per answer in
:data:`HTTP_STATUS` (the situations behind each, with their ACKs, are the README's HL7 v2 edge table,
checked against it by ``tests/unit/ingest/test_hl7_http_status.py``). A duplicate control ID with the
same content gets the first answer again (not re-processed). Every ACK's MSH-10 is the request's
correlation ID (also in ``X-Correlation-ID``), as over MLLP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import azure.functions as func

from functions._http import error_response, http_endpoint, read_body
from shared.ingest.hl7v2 import CONTENT_TYPE, Hl7Ingest, Hl7IngestResult
from shared.observability.correlation import HEADER
from shared.wiring import get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]

ACCEPTED_CONTENT_TYPES = frozenset({CONTENT_TYPE, "application/hl7-v2+er7", "application/hl7-v2"})
#: The HTTP status of each answer: the ingest outcomes (:data:`shared.ingest.hl7v2.Outcome`: AA / CA;
#: AE; AR / CR; AR / CE with ERR 207 and ``Retry-After``), no ACK asked for (MSH-15), a body over
#: ``TIE_HTTP_MAX_BODY_BYTES`` (AR / CR with ERR 102) and a wrong Content-Type (JSON error).
HTTP_STATUS: Final[Mapping[str, int]] = {
    "accepted": 200,
    "content-error": 422,
    "rejected": 400,
    "unavailable": 503,
    "no-ack": 204,
    "oversize": 413,
    "unsupported-media-type": 415,
}
#: First bytes of an oversize body the ACK is built from (MSH is all it reads).
_OVERSIZE_HEAD_BYTES = 65_536


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def to_http(result: Hl7IngestResult, *, oversize: bool = False) -> func.HttpResponse:
    headers = {HEADER: result.correlation_id}
    if result.code:
        headers["X-HL7-Ack-Code"] = result.code
    if result.duplicate:
        headers["X-HL7-Duplicate"] = "true"
    if result.outcome == "unavailable":
        headers["Retry-After"] = "5"
    if result.ack is None:
        return func.HttpResponse(status_code=HTTP_STATUS["no-ack"], headers=headers)
    return func.HttpResponse(
        body=result.ack,
        status_code=HTTP_STATUS["oversize" if oversize else result.outcome],
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
            HTTP_STATUS["unsupported-media-type"],
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
        return to_http(result, oversize=True)
    return to_http(service.handle(body, source="http", correlation_id=correlation_id))
