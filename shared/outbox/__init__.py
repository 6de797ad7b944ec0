"""Transactional outbox: a bus publish is never lost between "stored" and "published".

The record store has no multi-record transactions, so the messages ride in the same conditional write
as the state they announce (the *owner*), and :class:`OutboxRelay` publishes what a crash left behind.
Protocol and every crash window: ``docs/outbox.md``; decision: ``docs/adr/0006-idempotency-and-outbox.md``.
"""

from __future__ import annotations

from shared.outbox.committed import CommittedBatch, CommittedBatchRelay, CommittedOutbox
from shared.outbox.errors import OutboxError, OutboxMessageInvalid
from shared.outbox.model import OUTBOX_FIELD, OutboxMessage, OwnerRef
from shared.outbox.outbox import PARKED_PARTITION, Outbox, OutboxEntry, PreparedBatch, carry_forward
from shared.outbox.relay import OutboxRelay, RelayReport

__all__ = [
    "OUTBOX_FIELD",
    "PARKED_PARTITION",
    "CommittedBatch",
    "CommittedBatchRelay",
    "CommittedOutbox",
    "Outbox",
    "OutboxEntry",
    "OutboxError",
    "OutboxMessage",
    "OutboxMessageInvalid",
    "OutboxRelay",
    "OwnerRef",
    "PreparedBatch",
    "RelayReport",
    "carry_forward",
]
