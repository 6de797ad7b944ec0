"""Transactional outbox: a bus publish is never lost between "stored" and "published".

The :class:`~shared.storage.ports.RecordStore` port has no multi-record transactions (Azure Tables only
offers them within one partition), so the unit of atomicity is **one conditional write of one record**,
the *owner*: the record that holds the state the messages announce (for the idempotency guard, the
idempotency record of the clinical event). The messages are embedded in the owner's value (field
``outbox``), and the write that stores the new state stores them too — on the embedded SQLite store and on
Azure Tables alike.

Protocol (:class:`Outbox`)::

    1. prepare  insert an *entry* in table ``outbox`` (partition = a hex shard, row = time + batch id):
                {batch id, owner ref, owner ETag E}. The relay's index; no messages in it.
    2. commit   replace the owner, conditional on ETag E, with new state + ``outbox[batch id] = messages``.
                THIS is the commit point: afterwards the messages are durable, before it nothing is.
    3. publish  bus.publish(topic, messages) — every message_id deterministic (the clinical-event key).
    4. settle   remove the batch from the owner (compare-and-swap), delete the entry.

:class:`OutboxRelay` (timer trigger or background thread) walks the entries: batch present in the owner
-> publish + settle; absent and the owner changed since E (or gone) -> the batch can never commit (a
commit is conditional on E) or was already settled: drop the entry; absent and the owner still at E ->
the writer may yet commit: wait ``orphan_grace``, then fence (a no-op write changes the ETag, so the late
commit fails) and drop the entry.

Crash windows and how each is covered
-------------------------------------
* **Before 2 (after 1 or during the effect)**: nothing was committed, nothing is published. The entry is an
  orphan the relay drops. For the guard the key is still ``IN_PROGRESS``: the redelivered message takes
  the lease over and runs again.
* **After 2, before 3** ("stored, not published"): the relay finds the batch in the owner and publishes it.
  Sooner still, a redelivery of the same event finds the key ``COMPLETED`` with the batch pending and
  publishes it itself (:meth:`Outbox.flush_owner`).
* **After 3, before 4** ("published, not marked done"): the relay publishes again with the same
  ``message_id``; Service Bus duplicate detection (and the embedded bus's) drops it within the topic's
  ``duplicate_detection_window`` (10 minutes here). Beyond the window the copy is delivered, and the
  consumer's idempotency guard — keyed on the same clinical-event key — answers it from the store: no
  second effect.
* **During 4**: settling is two idempotent steps; whatever is left is redone by the relay (re-publish,
  deduplicated as above).
* **Bus down at 3**: the writer logs and returns (``Outcome.published = False``); the relay retries.
  Messages the bus rejects for good (unknown topic, too large) are *parked* (partition ``parked``) for an
  operator instead of blocking the relay.

A store with real transactions (the embedded FHIR store) commits its batches as rows of its own outbox
table in the same transaction as the state (:mod:`shared.outbox.committed`, :class:`CommittedBatchRelay`).

Known limits: a batch published by the relay after a crash can arrive after a later event of the same
patient that was published directly (per-patient order holds for the direct path only); consumers
compare event times. Owners rewritten by generic code must keep unsettled batches
(:func:`~shared.outbox.outbox.carry_forward`), else the rewrite drops them before publication.
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
