"""Azure Functions entry point: creates the FunctionApp and registers blueprints. Nothing else.

Wiring (which adapter serves each port) lives in ``shared/wiring.py``; trigger adapters in ``functions/``.
"""

from __future__ import annotations

import azure.functions as func

from functions import health, hl7v2, ingest
from shared.bootstrap import bootstrap

bootstrap()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health.bp)
app.register_functions(ingest.bp)
app.register_functions(hl7v2.bp)
