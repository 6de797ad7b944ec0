"""The PDS FHIR client: headers, retries and response handling over a pluggable transport.

:class:`PdsFhirClient` speaks the PDS FHIR API over a :class:`Transport`: :class:`Urllib3Transport` for the
real service (and the local stand-in over loopback), or the stand-in called in process
(:class:`shared.adapters.embedded.pds_stub.StubTransport`, the embedded default). Every call carries a fresh
``X-Request-ID`` and the caller's ``X-Correlation-ID``; 429/503 (and connection failures) are retried with
backoff that honours ``Retry-After``, then raise :class:`PdsUnavailable`. Nothing here logs a query string or
a body.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import urllib3

from shared.identifiers.nhs_number import is_valid_nhs_number
from shared.pds.errors import (
    PatientNotFound,
    PdsRejected,
    PdsResponseInvalid,
    PdsUnavailable,
    PdsVersionConflict,
)
from shared.pds.model import PdsPatient, SearchResult, error_code, parse_patient, parse_searchset
from shared.pds.ports import TokenSource

_log = logging.getLogger("tie.pds")

#: Statuses worth another try (PDS documents 429 rate limiting and 503 for spikes / maintenance).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Longest ``Retry-After`` honoured; longer waits give up (the caller's own retry takes over).
MAX_RETRY_AFTER_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> Reply:
        """One HTTP exchange. Raises :class:`PdsUnavailable` for connection failures and timeouts."""
        ...


class Urllib3Transport:
    """HTTP(S) to ``base_url`` (e.g. ``https://int.api.service.nhs.uk/personal-demographics/FHIR/R4``)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(5.0, timeout), read=timeout), retries=False
        )

    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> Reply:
        url = self._base + path + (("?" + urlencode(list(params))) if params else "")
        try:
            resp = self._pool.request(method, url, headers=dict(headers), body=body, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise PdsUnavailable(type(exc).__name__) from None
        return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.data)

    def close(self) -> None:
        self._pool.clear()


def _retry_after(headers: Mapping[str, str], fallback: float) -> float:
    raw = headers.get("retry-after")
    if raw is None:
        return fallback
    try:
        return max(0.0, float(raw))
    except ValueError:
        return fallback


class PdsFhirClient:
    """:class:`shared.pds.ports.PdsClient` over a transport."""

    def __init__(
        self,
        transport: Transport,
        token_source: TokenSource,
        *,
        max_attempts: int = 3,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        request_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._transport = transport
        self._tokens = token_source
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._request_id = request_id

    def _headers(self, correlation_id: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {
            "Accept": "application/fhir+json",
            "X-Request-ID": self._request_id(),
            "X-Correlation-ID": correlation_id,
        }
        token = self._tokens.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if extra:
            headers.update(extra)
        return headers

    def _call(
        self,
        path: str,
        params: Sequence[tuple[str, str]],
        correlation_id: str,
        *,
        method: str = "GET",
        extra: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[Reply, Any]:
        attempt = 0
        while True:
            attempt += 1
            try:
                headers = self._headers(correlation_id, extra)
                reply = self._transport.request(method, path, params, headers, body)
            except PdsUnavailable:
                if attempt >= self._max_attempts:
                    raise
                self._sleep(self._backoff * 2 ** (attempt - 1))
                continue
            if reply.status in RETRY_STATUSES or reply.status >= 500:
                wait = _retry_after(reply.headers, self._backoff * 2 ** (attempt - 1))
                if attempt >= self._max_attempts or wait > MAX_RETRY_AFTER_SECONDS:
                    raise PdsUnavailable("retries exhausted", status=reply.status)
                _log.warning(
                    "pds retry",
                    extra={"status": reply.status, "attempt": attempt, "correlation_id": correlation_id},
                )
                self._sleep(wait)
                continue
            try:
                body = json.loads(reply.body) if reply.body else None
            except ValueError:
                raise PdsResponseInvalid("PDS answered a body that is not JSON") from None
            return reply, body

    def retrieve(self, nhs_number: str, *, correlation_id: str) -> PdsPatient:
        if not is_valid_nhs_number(nhs_number):
            raise PdsRejected(400, "INVALID_RESOURCE_ID")
        reply, body = self._call(f"/Patient/{quote(nhs_number, safe='')}", (), correlation_id)
        code = error_code(body)
        if reply.status == 200:
            patient = parse_patient(body, asked_for=nhs_number)
            etag = reply.headers.get("etag")
            if etag and patient.version is None:
                # PDS sends the version in ETag (W/"2") as well as meta.versionId.
                version = etag.removeprefix("W/").strip('"')
                patient = dataclasses.replace(patient, version=version)
            return patient
        if reply.status in (404, 410):
            raise PatientNotFound(code)
        raise PdsRejected(reply.status, code)

    def update(
        self, nhs_number: str, patch: Sequence[Mapping[str, Any]], *, etag: str, correlation_id: str
    ) -> PdsPatient:
        """``PATCH /Patient/{id}`` (JSON Patch) guarded by ``If-Match: etag`` (from :attr:`PdsPatient.etag`).
        412 / 409 (no or stale ETag) raise :class:`PdsVersionConflict`: re-read and decide again."""
        if not is_valid_nhs_number(nhs_number):
            raise PdsRejected(400, "INVALID_RESOURCE_ID")
        reply, body = self._call(
            f"/Patient/{quote(nhs_number, safe='')}",
            (),
            correlation_id,
            method="PATCH",
            extra={"If-Match": etag, "Content-Type": "application/json-patch+json"},
            body=json.dumps({"patches": list(patch)}).encode(),
        )
        code = error_code(body)
        if reply.status == 200:
            return parse_patient(body, asked_for=nhs_number)
        if reply.status in (409, 412):
            raise PdsVersionConflict(reply.status, code)
        if reply.status in (404, 410):
            raise PatientNotFound(code)
        raise PdsRejected(reply.status, code)

    def search(self, params: Sequence[tuple[str, str]], *, correlation_id: str) -> SearchResult:
        reply, body = self._call("/Patient", params, correlation_id)
        if reply.status == 200:
            return parse_searchset(body)
        raise PdsRejected(reply.status, error_code(body))
