"""FHIR R4 repository: the port (:mod:`.ports`), errors, search semantics, bundle processing and the
embedded SQLite adapter. The Azure Health Data Services adapter lives in
:mod:`shared.adapters.azure.ahds_fhir`."""

from __future__ import annotations

from shared.fhirstore.ports import FhirRepository, SearchResult, StoredResource, WriteResult

__all__ = ["FhirRepository", "SearchResult", "StoredResource", "WriteResult"]
