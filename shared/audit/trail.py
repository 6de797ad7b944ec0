"""The facade the hook points call: build an :class:`~shared.audit.model.AuditRecord`, append it.

Hook points (all optional: ``audit=None`` audits nothing, for benchmarks' "without" run and unit tests of
other modules): the FHIR API (:mod:`shared.fhirapi.service`, one record per interaction), the HL7 v2 edge
and the ingest processor (:mod:`shared.ingest`), the write-back subscribers
(:mod:`shared.backbone.writeback`) and the operator commands of ``tie``. Appending fails closed: an
audit log that cannot be written raises a transient error and the audited action fails with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.audit.model import (
    SERIOUS_FAILURE,
    SUCCESS,
    SYSTEM,
    TRANSFORM,
    Action,
    Agent,
    AuditRecord,
    Entity,
)
from shared.audit.payloads import CANONICAL, RECEIVED, PayloadStore
from shared.audit.ports import AuditLog

_PATIENT_REFS = ("subject", "patient", "beneficiary")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def patients_of(resource: Mapping[str, Any]) -> set[str]:
    """The patients a FHIR resource belongs to, as ``Patient/<id>`` references (its own id for a
    Patient; ``subject`` / ``patient`` / ``beneficiary`` references otherwise)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient" and isinstance(resource.get("id"), str):
        return {f"Patient/{resource['id']}"}
    out: set[str] = set()
    for name in _PATIENT_REFS:
        ref = resource.get(name)
        refs = ref if isinstance(ref, list) else [ref]
        for item in refs:
            value = item.get("reference") if isinstance(item, dict) else None
            if isinstance(value, str) and value.startswith("Patient/"):
                out.add(value.split("/_history", 1)[0])
    return out


def entity_of(resource: Mapping[str, Any]) -> Entity | None:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if not isinstance(rtype, str) or not isinstance(rid, str):
        return None
    meta = resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return Entity(rtype, rid, str(version) if version is not None else None)


def resources_in(body: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The resources a response returned: the resource itself, or a Bundle's entry resources."""
    if not body:
        return []
    if body.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in body.get("entry") or ()
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") != "OperationOutcome"
        ]
    if body.get("resourceType") == "OperationOutcome":
        return []
    return [body]


class AuditTrail:
    """Appends audit records to an :class:`~shared.audit.ports.AuditLog`. Thread-safe."""

    def __init__(
        self,
        log: AuditLog,
        *,
        clock: Callable[[], datetime] | None = None,
        deferred: AuditLog | None = None,
        payloads: PayloadStore | None = None,
    ) -> None:
        #: Where records are read from (and appended with ``deferred=True``): the background writer when
        #: there is one (its reads wait for what is queued), else ``log``.
        self.log = deferred or log
        self._durable = log
        self._clock = clock or (lambda: datetime.now(UTC))
        #: Where the bodies behind the digests are kept (``None``: digests only; docs/audit.md).
        self.payloads = payloads

    def keep(self, record_class: str, data: bytes | None) -> None:
        """Store a body before the record naming its digest is appended (fails closed, like the record)."""
        if self.payloads is not None and data is not None:
            self.payloads.put(record_class, data)

    def now(self) -> datetime:
        return self._clock()

    def record(
        self,
        *,
        category: str,
        action: Action,
        interaction: str,
        outcome: str,
        source: str,
        agent: Agent = SYSTEM,
        correlation_id: str = "",
        status: str = "",
        entities: Iterable[Entity] = (),
        patients: Iterable[str] = (),
        purpose: str | None = None,
        parameters: Sequence[str] = (),
        digests: Mapping[str, str] | None = None,
        detail: Mapping[str, str | int | bool] | None = None,
        deferred: bool = False,
    ) -> AuditRecord:
        """Append one record; ``deferred``: through the background writer when there is one (stored
        within milliseconds, after the call returns - used for FHIR reads and searches, see docs/audit.md)."""
        record = AuditRecord(
            category=category,
            action=action,
            interaction=interaction,
            outcome=outcome,
            agent=agent,
            source=source,
            recorded=self._clock(),
            correlation_id=correlation_id,
            status=status,
            entities=tuple(entities),
            patients=tuple(sorted(set(patients))),
            purpose=purpose,
            parameters=tuple(parameters),
            digests=dict(digests or {}),
            detail=dict(detail or {}),
        )
        (self.log if deferred else self._durable).append([record])
        return record

    def transformed(
        self,
        *,
        correlation_id: str,
        channel: str,
        message_id: str,
        received: bytes,
        produced: bytes | None,
        patient: str | None,
        event_key: str | None,
        error_code: str | None = None,
    ) -> AuditRecord:
        """The ingest processor turned a received message into a canonical clinical event (or failed to):
        input = SHA-256 of the received bytes, output = SHA-256 of the clinical-event message body."""
        entities = [Entity("Message", message_id)]
        if event_key:
            entities.append(Entity("ClinicalEvent", event_key))
        digests = {"input": sha256_hex(received)}
        self.keep(RECEIVED, received)
        if produced is not None:
            digests["output"] = sha256_hex(produced)
            self.keep(CANONICAL, produced)
        detail: dict[str, str | int | bool] = {"channel": channel}
        if error_code:
            detail["error_code"] = error_code
        return self.record(
            category=TRANSFORM,
            action="E",
            interaction="transform",
            outcome=SUCCESS if error_code is None else SERIOUS_FAILURE,
            source="ingest-processor",
            agent=Agent("system", "ingest-processor", verified=True),
            correlation_id=correlation_id,
            entities=entities,
            patients=[patient] if patient else [],
            digests=digests,
            detail=detail,
        )

    def written_back(
        self,
        *,
        correlation_id: str,
        subscription: str,
        downstream: str,
        event_key: str,
        patient: str | None,
        event_digest: str,
        payload_digest: str | None,
        status: str,
        attempts: int,
        error_code: str | None = None,
        reply_digest: str | None = None,
    ) -> AuditRecord:
        """A clinical event was sent to a downstream system (applied, or finally failed): input = the
        event's content digest, output = SHA-256 of the payload sent, reply = SHA-256 of the downstream's
        answer (when the downstream reports them; the bodies were kept when it answered: :meth:`keep`)."""
        digests = {"input": event_digest}
        if payload_digest:
            digests["output"] = payload_digest
        if reply_digest:
            digests["reply"] = reply_digest
        detail: dict[str, str | int | bool] = {"downstream": downstream, "attempts": attempts}
        if error_code:
            detail["error_code"] = error_code
        return self.record(
            category=TRANSFORM,
            action="C",
            interaction="write-back",
            outcome=SUCCESS if error_code is None else SERIOUS_FAILURE,
            status=status,
            source=subscription,
            agent=Agent("system", subscription, verified=True),
            correlation_id=correlation_id,
            entities=[Entity("ClinicalEvent", event_key)],
            patients=[patient] if patient else [],
            digests=digests,
            detail=detail,
        )

    def close(self) -> None:
        self.log.close()
        self._durable.close()
        if self.payloads is not None:
            self.payloads.close()
