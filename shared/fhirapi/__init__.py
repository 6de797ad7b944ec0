"""The FHIR R4 HTTP API core (framework-free): :class:`FhirApi` and its request/response types.

Modules: :mod:`.service` (interactions and their HTTP semantics), :mod:`.http` (headers, media types,
``Prefer``, bodies), :mod:`.clinical_events` (the write path to canonical clinical events and its
policy), :mod:`.capability` (CapabilityStatement), :mod:`.minimise` (``_elements`` and the per-client
data-minimisation policy point), :mod:`.errors`. The Azure Functions adapters are ``functions/fhir_*.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.fhirapi.http import FhirRequest, FhirResponse, Headers
from shared.fhirapi.service import FhirApi, FhirApiConfig

if TYPE_CHECKING:
    from shared.wiring import Container

__all__ = ["FhirApi", "FhirApiConfig", "FhirRequest", "FhirResponse", "Headers", "api_for"]


def api_for(container: Container) -> FhirApi:
    """The API over a container's FHIR repository, bus and record store, configured from its settings."""
    settings = container.settings
    config = FhirApiConfig(
        max_body_bytes=settings.http_max_body_bytes,
        base_url=settings.fhir_base_url,
        require_gateway_header=settings.require_apim_header,
        gateway_header=settings.apim_header_name,
    )
    return FhirApi(container.fhir, container.bus, container.records, config=config)
