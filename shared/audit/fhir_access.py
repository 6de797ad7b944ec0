"""Audit records for the FHIR API: one per interaction (read, vread, search, history, create, update,
conditional update, delete, batch/transaction), with the caller, the resources and their patients.

The API (:class:`shared.fhirapi.service.FhirApi`) hands over the request, the response and every resource
the interaction returned or wrote, unsubsetted (so ``_elements`` cannot hide whose data it was). Who: the
client id API Management puts in ``X-TIE-Client-Id`` from the validated token (``azp`` / ``appid``),
``verified`` only when the app requires the gateway; otherwise the header is recorded as a claim, and a
request without it is ``anonymous``. Why: ``X-TIE-Purpose-Of-Use`` (a short code) when the caller sends it.
Searches record parameter *names*, never values. The capability statement is not audited (no patient data).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

from shared.audit.model import ACCESS, Action, Agent, Entity, outcome_for_status
from shared.audit.trail import AuditTrail, entity_of, patients_of

CLIENT_HEADER: Final = "X-TIE-Client-Id"
PURPOSE_HEADER: Final = "X-TIE-Purpose-Of-Use"
SOURCE: Final = "fhir-api"
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_PATIENT_PARAMS = ("patient", "subject", "beneficiary")


class _Request(Protocol):
    @property
    def body(self) -> bytes: ...

    @property
    def correlation_id(self) -> str: ...

    def header(self, name: str) -> str | None: ...

    def query_params(self) -> list[tuple[str, str]]: ...


class _Response(Protocol):
    @property
    def status(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Audited:
    """What an interaction is, for its audit record."""

    interaction: str
    action: Action
    resource_type: str | None
    resource_id: str | None = None
    version: str | None = None
    search: bool = False
    post: bool = False


def _token(value: str | None) -> str | None:
    return value if value and _TOKEN.match(value) else None


class FhirAccessAuditor:
    def __init__(self, trail: AuditTrail, *, gateway_verified: bool) -> None:
        self.trail = trail
        self._verified = gateway_verified

    def agent(self, request: _Request) -> Agent:
        client = _token(request.header(CLIENT_HEADER))
        if client is None:
            return Agent("user", "anonymous", verified=False)
        return Agent("client", client, verified=self._verified)

    def interaction(
        self,
        request: _Request,
        audited: Audited,
        response: _Response,
        touched: Sequence[Mapping[str, Any]],
    ) -> None:
        entities: dict[str, Entity] = {}
        patients: set[str] = set()
        seen: set[int] = set()
        for resource in touched:
            if id(resource) in seen:  # the same dict handed over twice (read, then shown)
                continue
            seen.add(id(resource))
            entity = entity_of(resource)
            if entity is not None:
                entities.setdefault(entity.reference, entity)
            patients |= patients_of(resource)
        rtype, rid = audited.resource_type, audited.resource_id
        if (
            rtype
            and rid
            and _ID.match(rid)
            and not any(e.type == rtype and e.id == rid for e in entities.values())
        ):
            entities[f"{rtype}/{rid}"] = Entity(rtype, rid, audited.version)
        if rtype == "Patient" and rid and _ID.match(rid):
            patients.add(f"Patient/{rid}")
        parameters: list[str] = []
        if audited.search:
            params = list(request.query_params())
            if audited.post and request.body:
                params += parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            parameters = sorted({name for name, _ in params if _PARAM.match(name)})
            patients |= set(_patient_params(params))
        detail: dict[str, str | int | bool] = {}
        if audited.search:
            detail["returned"] = len(touched)
        self.trail.record(
            category=ACCESS,
            action=audited.action,
            interaction=audited.interaction,
            outcome=outcome_for_status(response.status),
            status=str(response.status),
            source=SOURCE,
            agent=self.agent(request),
            correlation_id=request.correlation_id,
            entities=entities.values(),
            patients=patients,
            purpose=_token(request.header(PURPOSE_HEADER)),
            parameters=parameters,
            detail=detail,
            deferred=audited.action == "R" or audited.interaction == "search-type",
        )


def _patient_params(params: Iterable[tuple[str, str]]) -> Iterable[str]:
    """``patient=Patient/1`` / ``subject=Patient/1`` / ``patient=1``: logical references only."""
    for name, value in params:
        base = name.split(":", 1)[0]
        if base not in _PATIENT_PARAMS:
            continue
        for item in value.split(","):
            ref = item.strip()
            if ref.startswith("Patient/") and _ID.match(ref[8:]):
                yield ref
            elif base == "patient" and _ID.match(ref):
                yield f"Patient/{ref}"
