"""``GET /api/fhir/AuditEvent`` (search) and ``GET /api/fhir/AuditEvent/{id}`` (read): the audit log,
read-only, behind the same gateway check as the rest of the FHIR API. Logic:
:mod:`shared.fhirapi.audit_events`; adapters: :mod:`functions._fhir`."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions._fhir import fhir_endpoint
from shared.fhirapi.audit_events import audit_events_for


def register_audit(bp: Any) -> None:
    search = fhir_endpoint(lambda api, r, p: audit_events_for(api).search(r), "fhir_audit_search")
    read = fhir_endpoint(lambda api, r, p: audit_events_for(api).read(r, p["id"]), "fhir_audit_read")
    bp.function_name("fhir_audit_search")(
        bp.route(route="fhir/AuditEvent", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)(search)
    )
    bp.function_name("fhir_audit_read")(
        bp.route(route="fhir/AuditEvent/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)(read)
    )


bp = func.Blueprint()  # type: ignore[no-untyped-call]
register_audit(bp)
