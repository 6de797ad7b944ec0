"""The audit record: FHIR R4 ``AuditEvent`` reduced to what an auditor needs, and nothing more.

who (:attr:`AuditRecord.agent`), what (:attr:`~AuditRecord.entities`: resource type + logical id +
version, and :attr:`~AuditRecord.patients`: the patient(s) the data belongs to, as a FHIR logical
reference ``Patient/<id>`` or the pipeline's pseudonymous patient token ``patient-<sha256>``), when
(:attr:`~AuditRecord.recorded`), how (:attr:`~AuditRecord.action` C/R/U/D/E and the
:attr:`~AuditRecord.interaction`), why (:attr:`~AuditRecord.purpose` where the caller gave one), outcome
(AuditEvent outcome code and the HTTP status or ACK code), the correlation id, and for transformations
the SHA-256 digests of input and output. Never a message body, a search value or an NHS number: search
records keep parameter *names* only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

Action = Literal["C", "R", "U", "D", "E"]

#: AuditEvent.outcome (http://hl7.org/fhir/audit-event-outcome).
SUCCESS: Final = "0"
MINOR_FAILURE: Final = "4"
SERIOUS_FAILURE: Final = "8"
MAJOR_FAILURE: Final = "12"

#: Record classes (retention is configured per class; see docs/audit.md).
ACCESS: Final = "access"
TRANSFORM: Final = "transform"
OPERATOR: Final = "operator"


def outcome_for_status(status: int) -> str:
    """HTTP status -> AuditEvent outcome: 2xx/3xx success, 4xx minor (refused), 5xx serious."""
    if status < 400:
        return SUCCESS
    return MINOR_FAILURE if status < 500 else SERIOUS_FAILURE


@dataclass(frozen=True, slots=True)
class Agent:
    """Who: a client (OAuth client id from the gateway), a user, or the system itself."""

    type: Literal["client", "user", "system"]
    id: str
    #: True when the identity was established by something we trust (the API gateway's validated token,
    #: a client certificate, the operating-system user of the CLI); False: claimed, unverified.
    verified: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "verified": self.verified}


@dataclass(frozen=True, slots=True)
class Entity:
    """What: one resource (or message) by type and logical id, never by content."""

    type: str
    id: str
    version: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.type}/{self.id}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "id": self.id}
        if self.version is not None:
            out["version"] = self.version
        return out


SYSTEM: Final = Agent("system", "tie", verified=True)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    category: str
    action: Action
    interaction: str
    outcome: str
    agent: Agent
    source: str
    recorded: datetime
    correlation_id: str = ""
    status: str = ""
    entities: Sequence[Entity] = ()
    patients: Sequence[str] = ()
    purpose: str | None = None
    #: Search/history parameter names (values never: they may be identifiers).
    parameters: Sequence[str] = ()
    #: ``{"input": sha256 hex, "output": sha256 hex}`` for transformations and write-backs.
    digests: Mapping[str, str] = field(default_factory=dict)
    #: Small non-identifying facts: counts, a downstream name, an error code.
    detail: Mapping[str, str | int | bool] = field(default_factory=dict)
    id: str = field(default_factory=lambda: secrets.token_hex(16))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "recorded": self.recorded.astimezone(UTC).isoformat(timespec="microseconds"),
            "category": self.category,
            "action": self.action,
            "interaction": self.interaction,
            "outcome": self.outcome,
            "status": self.status,
            "agent": self.agent.to_json(),
            "source": self.source,
            "correlation_id": self.correlation_id,
            "entities": [e.to_json() for e in self.entities],
            "patients": sorted(set(self.patients)),
        }
        if self.purpose:
            out["purpose"] = self.purpose
        if self.parameters:
            out["parameters"] = sorted(set(self.parameters))
        if self.digests:
            out["digests"] = dict(sorted(self.digests.items()))
        if self.detail:
            out["detail"] = dict(sorted(self.detail.items()))
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditRecord:
        agent = data["agent"]
        return cls(
            id=str(data["id"]),
            recorded=datetime.fromisoformat(str(data["recorded"])),
            category=str(data["category"]),
            action=data["action"],
            interaction=str(data["interaction"]),
            outcome=str(data["outcome"]),
            status=str(data.get("status", "")),
            agent=Agent(agent["type"], str(agent["id"]), bool(agent.get("verified"))),
            source=str(data["source"]),
            correlation_id=str(data.get("correlation_id", "")),
            entities=tuple(
                Entity(str(e["type"]), str(e["id"]), e.get("version")) for e in data.get("entities", ())
            ),
            patients=tuple(str(p) for p in data.get("patients", ())),
            purpose=data.get("purpose"),
            parameters=tuple(str(p) for p in data.get("parameters", ())),
            digests=dict(data.get("digests") or {}),
            detail=dict(data.get("detail") or {}),
        )

    def terms(self) -> list[str]:
        """Index terms for searching (patient, agent, entity, correlation id, record id)."""
        terms = {f"patient:{p}" for p in self.patients}
        terms.add(f"id:{self.id}")
        terms.add(f"agent:{self.agent.id}")
        terms |= {f"entity:{e.reference}" for e in self.entities}
        if self.correlation_id:
            terms.add(f"correlation:{self.correlation_id}")
        return sorted(terms)


def canonical_json(value: Mapping[str, Any]) -> str:
    """The byte-stable JSON form that is hashed (sorted keys, no spaces, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
