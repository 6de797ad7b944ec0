"""Azure Functions entry point: creates the FunctionApp and registers blueprints. Nothing else.

Wiring (which adapter serves each port) lives in ``shared/wiring.py``; trigger adapters in ``functions/``.
"""

from __future__ import annotations

import os

import azure.functions as func

from functions import (
    audit_consumer,
    bulk_export,
    certificates,
    console,
    deadletter,
    events,
    fhir,
    fhir_audit,
    health,
    hl7v2,
    ingest,
    mesh,
    reconcile,
)
from shared.bootstrap import bootstrap

bootstrap()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(health.bp)
app.register_functions(ingest.bp)
app.register_functions(hl7v2.bp)
app.register_functions(fhir.bp)
app.register_functions(fhir_audit.bp)
app.register_functions(events.bp)
app.register_functions(audit_consumer.bp)
app.register_functions(deadletter.bp)
app.register_functions(bulk_export.bp)
app.register_functions(certificates.bp)
app.register_functions(mesh.bp)
app.register_functions(reconcile.bp)
if os.environ.get("TIE_LOCAL_HOST"):
    # The operations console: on the local host only until the gateway signs operators in and forwards
    # their roles (not in infra/openapi yet; see docs/console.md).
    app.register_functions(console.bp)
