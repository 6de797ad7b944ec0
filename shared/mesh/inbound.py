"""MESH inbound: poll a mailbox, persist each message durably, ingest it, and only then acknowledge it.

Per message id in the inbox (state in the ``meshinbox`` table, partition = mailbox, row = message id):

1. no record: download (all chunks), write the body to the blob store (``mesh-inbox``), then insert the
   record ``stored``. A download that fails part-way leaves nothing: the message stays in the inbox and is
   fetched again next poll.
2. ``stored``: route by workflow id (``data/workflows.json``). HL7 v2 goes through the same ingest as HTTP
   and MLLP with correlation id = MESH message id (its duplicate control-id check answers a re-ingest
   from the first outcome); other registered channels are published to the ingest topic with a
   deterministic bus message id. An unknown workflow or a message the ingest refuses is quarantined
   (record ``quarantined`` with the reason, journaled). "Could not store" (transient) leaves ``stored``:
   not acknowledged, retried next poll.
3. ``ingested`` / ``quarantined``: acknowledge to MESH, then ``acknowledged``.

So a host killed between download and acknowledgement finds the record next poll and acknowledges without a
second ingest, and the acknowledgement never precedes a durable record.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal, Protocol

from shared.backbone import contracts
from shared.errors import TieError, TransientError
from shared.journal import Journal
from shared.mesh.errors import MeshMessageGone
from shared.mesh.ports import MeshMailbox, MeshMessage
from shared.messaging.ports import MessageBus
from shared.messaging.topology import TOPIC_PLATFORM
from shared.storage.errors import RecordExists
from shared.storage.keys import safe_key
from shared.storage.names import CONTAINER_MESH_INBOX, TABLE_MESH_INBOX
from shared.storage.ports import BlobStore, RecordStore

_log = logging.getLogger("tie.mesh.inbound")

TABLE = TABLE_MESH_INBOX
CONTAINER = CONTAINER_MESH_INBOX
STORED = "stored"
INGESTED = "ingested"
QUARANTINED = "quarantined"
ACKNOWLEDGED = "acknowledged"
SOURCE = "mesh"

IngestOutcome = Literal["accepted", "refused", "unavailable"]


@cache
def workflow_routes() -> Mapping[str, str]:
    text = resources.files("shared.mesh").joinpath("data/workflows.json").read_text("utf-8")
    routes: dict[str, str] = json.loads(text)["workflows"]
    return routes


class Ingestor(Protocol):
    def __call__(self, channel: str, message: MeshMessage, correlation_id: str) -> tuple[IngestOutcome, str]:
        """Feed one message to the pipeline: (outcome, detail code such as the ACK code)."""
        ...


@dataclass
class PollReport:
    mailbox: str
    listed: int = 0
    ingested: int = 0
    quarantined: int = 0
    acknowledged: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class MeshInbound:
    def __init__(
        self,
        records: RecordStore,
        blobs: BlobStore,
        ingest: Ingestor,
        *,
        routes: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        bus: MessageBus | None = None,
    ) -> None:
        """``bus``: where ``mesh.quarantined`` platform events go (``None``: not announced)."""
        self._bus = bus
        self._records = records
        self._blobs = blobs
        self._ingest = ingest
        self._routes = workflow_routes() if routes is None else routes
        self._journal = Journal(records)
        self._clock = clock

    def poll(self, mailbox: MeshMailbox, *, limit: int = 500) -> PollReport:
        report = PollReport(mailbox.mailbox)
        ids = mailbox.inbox(limit)
        report.listed = len(ids)
        for message_id in ids:
            try:
                self._one(mailbox, message_id, report)
            except TieError as exc:
                # Transient (MESH or storage): nothing acknowledged; the next poll tries again.
                report.failed += 1
                report.errors.append(exc.code)
                _log.warning(
                    "mesh message not finished",
                    extra={"message_id": message_id, "error_code": exc.code, "mailbox": mailbox.mailbox},
                )
        return report

    def _blob_name(self, mailbox: str, message_id: str) -> str:
        return f"{safe_key(mailbox)}/{safe_key(message_id)}"

    def _one(self, mailbox: MeshMailbox, message_id: str, report: PollReport) -> None:
        box = safe_key(mailbox.mailbox)
        row = safe_key(message_id)
        record = self._records.get(TABLE, box, row)
        if record is None:
            message = mailbox.download(message_id)
            self._blobs.put(
                CONTAINER,
                self._blob_name(mailbox.mailbox, message_id),
                message.body,
                content_type=message.content_type or "application/octet-stream",
            )
            headers = {
                "workflow_id": message.workflow_id,
                "local_id": message.local_id,
                "sender": message.sender,
                "content_type": message.content_type,
                "size": len(message.body),
                "state": STORED,
                "received_at": self._clock().isoformat(),
            }
            try:
                record = self._records.insert(TABLE, box, row, headers)
            except RecordExists:  # another poller got there first: it owns this message
                return
            self._journal.record(
                message_id, "mesh-received", channel="mesh", source=SOURCE, size=len(message.body)
            )
        value: dict[str, Any] = dict(record.value)
        if value["state"] == STORED:
            value = self._ingest_stored(mailbox.mailbox, message_id, value, report)
            if value["state"] == STORED:
                report.retried += 1
                return
            record = self._records.update(TABLE, box, row, value, etag=record.etag)
        if value["state"] in (INGESTED, QUARANTINED):
            # Gone: acknowledged before and the record update was lost - nothing left to do.
            with contextlib.suppress(MeshMessageGone):
                mailbox.acknowledge(message_id)
            value["state"] = ACKNOWLEDGED
            value["acknowledged_at"] = self._clock().isoformat()
            self._records.update(TABLE, box, row, value, etag=record.etag)
            self._journal.record(message_id, "mesh-acknowledged", mailbox=mailbox.mailbox)
            report.acknowledged += 1

    def _ingest_stored(
        self, mailbox: str, message_id: str, value: dict[str, Any], report: PollReport
    ) -> dict[str, Any]:
        workflow = value.get("workflow_id") or ""
        channel = self._routes.get(workflow)
        if channel is None:
            return self._quarantine(message_id, value, "unknown-workflow", report)
        body = self._blobs.get(CONTAINER, self._blob_name(mailbox, message_id))
        message = MeshMessage(
            message_id=message_id,
            body=body,
            workflow_id=workflow,
            local_id=value.get("local_id"),
            sender=value.get("sender"),
            content_type=value.get("content_type"),
        )
        try:
            outcome, detail = self._ingest(channel, message, message_id)
        except TransientError as exc:
            report.errors.append(exc.code)
            return value
        if outcome == "unavailable":
            return value
        if outcome == "refused":
            return self._quarantine(message_id, value, f"refused:{detail}", report)
        report.ingested += 1
        return {**value, "state": INGESTED, "channel": channel, "outcome": detail}

    def _quarantine(
        self, message_id: str, value: dict[str, Any], reason: str, report: PollReport
    ) -> dict[str, Any]:
        report.quarantined += 1
        self._journal.record(message_id, "quarantined", source=SOURCE, reason=reason)
        _log.warning("mesh message quarantined", extra={"message_id": message_id, "status": reason})
        if self._bus is not None:
            document = contracts.platform_event(
                "mesh.quarantined",
                event_id=f"mesh-quarantined-{message_id}",
                subject=message_id,
                severity="warning",
                correlation_id=message_id,
                details={"reason": reason, "workflow_id": value.get("workflow_id")},
            )
            try:
                self._bus.publish(TOPIC_PLATFORM, [contracts.to_outbound(TOPIC_PLATFORM, document)])
            except TieError as exc:
                _log.warning("quarantine event not published", extra={"error_code": exc.code})
        return {**value, "state": QUARANTINED, "reason": reason}

    def entries(self, mailbox: str) -> list[dict[str, Any]]:
        """Every message this mailbox has seen, oldest first (``tie mesh status``)."""
        return [
            {"message_id": r.row_key, **r.value}
            for r in self._records.query(TABLE, partition_key=safe_key(mailbox))
        ]
