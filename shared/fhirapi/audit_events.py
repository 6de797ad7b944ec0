"""``/api/fhir/AuditEvent``: the audit log served read-only as FHIR R4 ``AuditEvent`` resources.

``GET [base]/AuditEvent/{id}`` and ``GET [base]/AuditEvent?patient=&agent=&entity=&date=&_count=``
(``date`` repeatable with ``ge``/``gt``/``le``/``lt``/``eq`` prefixes; ``patient`` a ``Patient/<id>``
reference or a pipeline patient token; ``entity`` a ``Type/id`` reference). Unknown parameters are a 400
(an auditor must never get a silently broadened answer). No write interactions exist. Reading the audit
is itself audited: one ``access`` record per request naming the AuditEvents returned and the patients
they concern. The mapping to ``AuditEvent`` is in :func:`to_audit_event`; see ``docs/audit.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.audit.fhir_access import FhirAccessAuditor
from shared.audit.model import ACCESS, AuditRecord, Entity, outcome_for_status
from shared.fhirapi.errors import BadRequest
from shared.fhirapi.http import FhirRequest, FhirResponse, Preferences
from shared.fhirstore.errors import InvalidSearch, ResourceNotFound
from shared.fhirstore.search import date_range

_REST = "http://hl7.org/fhir/restful-interaction"
_REST_INTERACTIONS = frozenset(
    {"read", "vread", "search-type", "history", "create", "update", "delete", "bundle"}
)
_TIE = "urn:tie:audit"
_SEARCH_PARAMS = frozenset({"patient", "agent", "entity", "date", "_count", "_format", "_pretty"})
MAX_COUNT = 100
DEFAULT_COUNT = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_audit_event(record: AuditRecord) -> dict[str, Any]:
    """One audit record as a FHIR R4 ``AuditEvent``."""
    rest = record.category == ACCESS and record.interaction in _REST_INTERACTIONS
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": record.id,
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type"
            if rest
            else f"{_TIE}:category",
            "code": "rest" if rest else record.category,
        },
        "subtype": [
            {
                "system": _REST if rest else f"{_TIE}:interaction",
                "code": "history-instance"
                if rest and record.interaction == "history"
                else record.interaction,
            }
        ],
        "action": record.action,
        "recorded": record.recorded.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "outcome": record.outcome,
    }
    if record.status:
        event["outcomeDesc"] = record.status
    if record.purpose:
        event["purposeOfEvent"] = [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": record.purpose}
                ]
            }
        ]
    event["agent"] = [
        {
            "type": {"coding": [{"system": f"{_TIE}:agent-type", "code": record.agent.type}]},
            "who": {"identifier": {"system": f"{_TIE}:agent", "value": record.agent.id}},
            "requestor": record.agent.type != "system",
            "extension": [{"url": f"{_TIE}:verified", "valueBoolean": record.agent.verified}],
        }
    ]
    event["source"] = {"observer": {"display": record.source}}
    entities: list[dict[str, Any]] = [{"what": {"reference": e.reference}} for e in record.entities]
    for patient in record.patients:
        what = (
            {"reference": patient}
            if patient.startswith("Patient/")
            else {"identifier": {"system": f"{_TIE}:patient-token", "value": patient}}
        )
        entities.append(
            {
                "what": what,
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
            }
        )
    if record.correlation_id:
        entities.append(
            {"what": {"identifier": {"system": f"{_TIE}:correlation-id", "value": record.correlation_id}}}
        )
    details = [{"type": f"sha256-{k}", "valueString": v} for k, v in sorted(record.digests.items())]
    details += [{"type": f"parameter-{name}", "valueString": "present"} for name in record.parameters]
    if details:
        entities.append(
            {"what": {"identifier": {"system": f"{_TIE}:detail", "value": record.id}}, "detail": details}
        )
    if entities:
        event["entity"] = entities
    return event


class AuditEventApi:
    """Read and search over the audit log (through :meth:`FhirApi.handle` for the gateway, format and
    error handling)."""

    def __init__(self, auditor: FhirAccessAuditor, handle: Callable[..., FhirResponse]) -> None:
        self.auditor = auditor
        self._handle = handle

    def read(self, request: FhirRequest, record_id: str) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            found = self.auditor.trail.log.search(record_id=record_id, limit=1)
            if not found:
                self._audited(request, "read", [], 404)
                raise ResourceNotFound("AuditEvent", record_id)
            record = AuditRecord.from_json(json.loads(found[0].body))
            self._audited(request, "read", [record], 200)
            return FhirResponse(200, to_audit_event(record))

        return self._handle(request, act)

    def search(self, request: FhirRequest) -> FhirResponse:
        def act(media: str, prefs: Preferences) -> FhirResponse:
            filters: dict[str, str] = {}
            since: datetime | None = None
            until: datetime | None = None
            count = DEFAULT_COUNT
            for name, value in request.query_params():
                if name not in _SEARCH_PARAMS:
                    raise InvalidSearch(
                        name if name.isidentifier() else "parameter", "not supported on AuditEvent"
                    )
                if name in ("_format", "_pretty") or value == "":
                    continue
                if name == "_count":
                    if not value.isdigit():
                        raise InvalidSearch("_count", "must be a non-negative integer")
                    count = min(int(value), MAX_COUNT)
                elif name == "date":
                    lo, hi = _date(value)
                    since = lo if since is None or (lo is not None and lo > since) else since
                    until = hi if until is None or (hi is not None and hi < until) else until
                else:
                    filters[name] = value
            found = self.auditor.trail.log.search(
                patient=filters.get("patient"),
                agent=filters.get("agent"),
                entity=filters.get("entity"),
                since=since,
                until=until,
                limit=count,
            )
            records = [AuditRecord.from_json(json.loads(e.body)) for e in found]
            self._audited(
                request, "search-type", records, 200, sorted({n for n, _ in request.query_params()})
            )
            bundle: dict[str, Any] = {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(records) if len(records) < count else None,
                "entry": [
                    {
                        "fullUrl": f"AuditEvent/{r.id}",
                        "resource": to_audit_event(r),
                        "search": {"mode": "match"},
                    }
                    for r in records
                ],
            }
            if bundle["total"] is None:
                del bundle["total"]
            if not bundle["entry"]:
                del bundle["entry"]
            return FhirResponse(200, bundle)

        return self._handle(request, act)

    def _audited(
        self,
        request: FhirRequest,
        interaction: str,
        records: list[AuditRecord],
        status: int,
        params: list[str] | None = None,
    ) -> None:
        self.auditor.trail.record(
            category=ACCESS,
            action="R" if interaction == "read" else "E",
            interaction=f"audit-{interaction}",
            outcome=outcome_for_status(status),
            status=str(status),
            source="fhir-api",
            agent=self.auditor.agent(request),
            correlation_id=request.correlation_id,
            entities=[Entity("AuditEvent", r.id) for r in records],
            patients={p for r in records for p in r.patients},
            parameters=params or [],
            detail={"returned": len(records)} if params is not None else None,
        )


def _date(value: str) -> tuple[datetime | None, datetime | None]:
    prefix, text = (value[:2], value[2:]) if value[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", value)
    bounds = date_range(text)
    if bounds is None:
        raise InvalidSearch("date", "not a FHIR date or dateTime")
    lo = _EPOCH + timedelta(microseconds=bounds[0])
    hi = _EPOCH + timedelta(microseconds=bounds[1])
    if prefix in ("ge", "gt"):
        return (hi if prefix == "gt" else lo), None
    if prefix in ("le", "lt"):
        return None, (lo if prefix == "lt" else hi)
    return lo, hi


def audit_events_for(api: Any) -> AuditEventApi:
    """The AuditEvent API beside a :class:`~shared.fhirapi.service.FhirApi` (its auditor and handler)."""
    if api.audit is None:
        raise BadRequest("the audit log is not configured")
    return AuditEventApi(api.audit, api.handle)
