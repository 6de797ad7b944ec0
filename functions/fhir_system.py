"""FHIR API system interactions: ``GET /api/fhir/metadata`` (CapabilityStatement) and ``POST /api/fhir``
(transaction and batch Bundles). Logic: :mod:`shared.fhirapi`; adapters: :mod:`functions._fhir`."""

from __future__ import annotations

import azure.functions as func

from functions._fhir import register_system

bp = func.Blueprint()  # type: ignore[no-untyped-call]
register_system(bp)
