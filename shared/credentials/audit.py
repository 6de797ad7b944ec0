"""Per-call credential audit: which credential (name, version, thumbprint - never the secret) each outbound
call used, with the correlation id.

:class:`CredentialAudit` is the small port the transports' TLS sources call *before* they send (so an
audit log that cannot be written stops the call: fail closed, nothing sent unaudited). Adapters:
:class:`TrailCredentialAudit` (the hash-chained audit trail, :mod:`shared.audit`) and
:class:`RecordingCredentialAudit` (in memory, for tests and the CLI).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from shared.audit.model import ACCESS, SUCCESS, Entity
from shared.audit.trail import AuditTrail
from shared.credentials.model import CredentialIdentity
from shared.observability.correlation import get_correlation_id

#: AuditRecord.interaction of a credential use.
INTERACTION = "credential-use"
#: AuditRecord.source of a credential use.
SOURCE = "tie.credentials"


@dataclass(frozen=True, slots=True)
class CredentialUse:
    downstream: str
    operation: str
    identity: CredentialIdentity
    correlation_id: str


class CredentialAudit(Protocol):
    def credential_used(self, use: CredentialUse) -> None:
        """Record one use. Raises a :class:`~shared.errors.TransientError` when it cannot be recorded."""
        ...


class TrailCredentialAudit:
    """Appends one ``credential-use`` record per outbound call to the audit trail."""

    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    def credential_used(self, use: CredentialUse) -> None:
        detail: dict[str, str | int | bool] = {"downstream": use.downstream, "operation": use.operation}
        detail.update(use.identity.as_detail())
        self._trail.record(
            category=ACCESS,
            action="E",
            interaction=INTERACTION,
            outcome=SUCCESS,
            source=SOURCE,
            correlation_id=use.correlation_id,
            entities=[Entity("Endpoint", use.downstream)],
            detail=detail,
        )


class RecordingCredentialAudit:
    """Keeps uses in memory (tests; ``tie certs`` dry runs)."""

    def __init__(self) -> None:
        self.uses: list[CredentialUse] = []
        self._lock = threading.Lock()

    def credential_used(self, use: CredentialUse) -> None:
        with self._lock:
            self.uses.append(use)


def current_correlation_id() -> str:
    return get_correlation_id() or ""
