"""FHIR API, results (Observation, DiagnosticReport, Specimen - stored without clinical events).

Read, vread, create, update, conditional create/update, delete, history and search under
``/api/fhir/{resourceType}``. Routes and semantics: :mod:`functions._fhir`, :mod:`shared.fhirapi.service`.
"""

from __future__ import annotations

from functions._fhir import blueprint

bp = blueprint("results")
