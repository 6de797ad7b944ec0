"""PDS ports: the client and the source of its access token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.pds.model import PdsPatient, SearchResult


class TokenSource(Protocol):
    """An OAuth2 access token for the application-restricted access mode (signed-JWT client credentials).

    The downstream credential registry implements this when it exists; until then
    :class:`shared.pds.auth.StaticTokenSource` or :class:`shared.pds.auth.NoToken`."""

    def token(self) -> str | None:
        """A bearer token, or ``None`` where no authentication is wanted (the local stand-in)."""
        ...


class PdsClient(Protocol):
    """PDS FHIR API, the two calls the engine needs. Raises :mod:`shared.pds.errors` types."""

    def retrieve(self, nhs_number: str, *, correlation_id: str) -> PdsPatient:
        """``GET /Patient/{id}``. A superseded number answers the current record (``superseded_from`` set)."""
        ...

    def search(self, params: Sequence[tuple[str, str]], *, correlation_id: str) -> SearchResult:
        """``GET /Patient?...`` with the given query parameters (repeatable, in order)."""
        ...
