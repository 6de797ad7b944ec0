"""MESH outbound: send once per clinical event, record the MESH message id, track delivery.

``meshoutbox`` table, partition = sending mailbox, row = the local id (the clinical event key): a claim
``sending`` is inserted before the send, so a second attempt for the same event finds it and returns the
recorded MESH message id instead of sending again. A claim left ``sending`` by a crash between the send and
the record is reported by :meth:`MeshOutbound.outstanding` for a person to reconcile (MESH cannot be asked
by local id), never re-sent silently. :meth:`refresh` asks MESH for the tracking status of each message not
yet acknowledged by its recipient; ``tie mesh status`` lists what is still outstanding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import TieError
from shared.mesh.errors import MeshRejected
from shared.mesh.ports import MeshMailbox
from shared.storage.errors import RecordExists
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_MESH_OUTBOX
from shared.storage.ports import RecordStore

TABLE = TABLE_MESH_OUTBOX
SENDING = "sending"
SENT = "sent"
ACKNOWLEDGED = "acknowledged"


class MeshSendInDoubt(MeshRejected):
    """A previous send for this event started and never recorded its result: a person decides."""

    code = "mesh-send-in-doubt"


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    duplicate: bool


class MeshOutbound:
    def __init__(
        self, records: RecordStore, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._records = records
        self._clock = clock

    def send(
        self,
        mailbox: MeshMailbox,
        recipient: str,
        body: bytes,
        *,
        local_id: str,
        workflow_id: str,
        subject: str | None = None,
        content_type: str | None = None,
        correlation_id: str | None = None,
    ) -> SendResult:
        box, row = safe_key(mailbox.mailbox), safe_key(local_id)
        claim = {
            "state": SENDING,
            "recipient": recipient,
            "workflow_id": workflow_id,
            "correlation_id": correlation_id,
            "claimed_at": self._clock().isoformat(),
        }
        try:
            record = self._records.insert(TABLE, box, row, claim)
        except RecordExists:
            existing = self._records.get(TABLE, box, row)
            if existing is not None and existing.value.get("message_id"):
                return SendResult(str(existing.value["message_id"]), True)
            raise MeshSendInDoubt("an earlier send of this event has no recorded result") from None
        try:
            message_id = mailbox.send(
                recipient,
                body,
                workflow_id=workflow_id,
                subject=subject,
                local_id=local_id,
                content_type=content_type,
            )
        except TieError:
            # MESH said no (or was unreachable before accepting anything): release the claim.
            self._records.delete(TABLE, box, row, etag=record.etag)
            raise
        value = {**claim, "state": SENT, "message_id": message_id, "sent_at": self._clock().isoformat()}
        self._records.update(TABLE, box, row, value, etag=record.etag)
        return SendResult(message_id, False)

    def refresh(self, mailbox: MeshMailbox) -> int:
        """Ask MESH for the status of every sent message not yet acknowledged; returns how many changed."""
        changed = 0
        for record in self._records.query(TABLE, partition_key=safe_key(mailbox.mailbox)):
            value = record.value
            if value.get("state") != SENT or not value.get("message_id"):
                continue
            status = mailbox.track(str(value["message_id"]))
            if status != value.get("tracking"):
                new: dict[str, Any] = {**value, "tracking": status, "tracked_at": self._clock().isoformat()}
                if status == ACKNOWLEDGED:
                    new["state"] = ACKNOWLEDGED
                self._records.update(TABLE, record.partition_key, record.row_key, new, etag=record.etag)
                changed += 1
        return changed

    def outstanding(self, mailbox: str) -> list[dict[str, Any]]:
        """Sent but not acknowledged by the recipient, and claims in doubt (``tie mesh status``)."""
        return [
            {"local_id": r.row_key, **r.value}
            for r in self._records.query(TABLE, partition_key=safe_key(mailbox))
            if r.value.get("state") in (SENDING, SENT)
        ]
