"""Immutable audit: who accessed or transformed which patient's data, when, why, with what outcome.

Modules: :mod:`.model` (the record, modelled on FHIR R4 ``AuditEvent``), :mod:`.chain` (hash chain,
signed checkpoints, verification), :mod:`.ports` (the :class:`AuditLog` port), :mod:`.sqlite_log` (the
embedded, append-only default), :mod:`.trail` (the facade the hook points call). The Azure adapter is
:mod:`shared.adapters.azure.audit_blobs`. Design: ``docs/audit.md``.
"""

from __future__ import annotations

from shared.audit.chain import Verification, verify_chain
from shared.audit.model import AuditRecord, Entity
from shared.audit.ports import AuditLog, ChainedEntry, Checkpoint
from shared.audit.trail import AuditTrail

__all__ = [
    "AuditLog",
    "AuditRecord",
    "AuditTrail",
    "ChainedEntry",
    "Checkpoint",
    "Entity",
    "Verification",
    "verify_chain",
]
