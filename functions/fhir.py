"""FHIR API functions (UK Core): ``GET /api/fhir/metadata`` (CapabilityStatement), ``POST /api/fhir``
(transaction and batch Bundles), and read, vread, create, update, conditional create/update, delete,
history and search under ``/api/fhir/{resourceType}``, one set of functions per resource family
(Patient; Encounter; results; orders; records; directory).

Routes and semantics: :mod:`functions._fhir`, :mod:`shared.fhirapi.service`. The audit log's read-only
``AuditEvent`` functions are in :mod:`functions.fhir_audit`.
"""

from __future__ import annotations

import azure.functions as func

from functions._fhir import register_api

bp = func.Blueprint()  # type: ignore[no-untyped-call]
register_api(bp)
