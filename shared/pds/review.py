"""The identity review queue: write-backs held because PDS could not verify the patient's identity.

An item is a record (``identityreview`` table: reason, steps tried, candidate scores, subscription, event
key - no demographics) and the held canonical event in the blob store (``identity-review`` container, the
same store that keeps message bodies). ``tie review list`` shows open items; ``tie review resolve ID
--nhs-number N`` sets the number a person has confirmed and re-publishes the event to the one subscription
that held it, where the gate retrieves that number from PDS before anything is written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.backbone import clinical, contracts
from shared.canonical.model import ClinicalEvent, NhsNumber
from shared.errors import PermanentError, TieError
from shared.messaging.ports import REPLAY_SUBSCRIPTION_PROPERTY, MessageBus, OutboundMessage
from shared.messaging.topology import TOPIC_CLINICAL, TOPIC_PLATFORM
from shared.pds.model import TraceOutcome
from shared.storage.names import CONTAINER_IDENTITY_REVIEW, TABLE_IDENTITY_REVIEW
from shared.storage.ports import BlobStore, RecordStore

_log = logging.getLogger("tie.pds.review")

TABLE = TABLE_IDENTITY_REVIEW
CONTAINER = CONTAINER_IDENTITY_REVIEW
OPEN = "open"
RESOLVED = "resolved"


class ReviewItemNotFound(PermanentError):
    code = "review-item-not-found"


@dataclass(frozen=True, slots=True)
class ReviewItem:
    id: str
    subscription: str
    reason: str
    tried: tuple[str, ...]
    candidates: tuple[str, ...]
    event_key: str
    correlation_id: str | None
    created_at: str
    state: str


class ReviewQueue:
    def __init__(
        self,
        records: RecordStore,
        blobs: BlobStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        bus: MessageBus | None = None,
    ) -> None:
        """``bus``: where ``identity.review-required`` platform events go (``None``: not announced)."""
        self._records = records
        self._blobs = blobs
        self._bus = bus
        self._clock = clock
        self._new_id = new_id

    def hold(self, event: ClinicalEvent, outcome: TraceOutcome, *, subscription: str) -> str:
        """Keep ``event`` for a person to resolve. Returns the item id. The blob is written first, so an
        open record always has its event."""
        item = self._new_id()
        body = event.model_dump_json(exclude_defaults=True).encode()
        self._blobs.put(CONTAINER, item, body, content_type="application/json")
        self._records.insert(
            TABLE,
            OPEN,
            item,
            {
                "subscription": subscription,
                "reason": outcome.reason or outcome.status,
                "tried": ",".join(outcome.tried),
                "candidates": ",".join(outcome.candidates),
                "event_key": event.key.value,
                "correlation_id": event.provenance.correlation_id,
                "created_at": self._clock().isoformat(),
            },
        )
        self._announce(item, outcome.reason or outcome.status, subscription, event.provenance.correlation_id)
        return item

    def _announce(self, item: str, reason: str, subscription: str, correlation_id: str | None) -> None:
        """Best effort (the record is the truth): a platform event for alerting, no patient data."""
        if self._bus is None:
            return
        document = contracts.platform_event(
            "identity.review-required",
            event_id=f"identity-review-{item}",
            subject=item,
            severity="warning",
            correlation_id=correlation_id,
            details={"reason": reason, "subscription": subscription},
        )
        try:
            self._bus.publish(TOPIC_PLATFORM, [contracts.to_outbound(TOPIC_PLATFORM, document)])
        except TieError as exc:
            _log.warning("review event not published", extra={"error_code": exc.code})

    def list(self, state: str = OPEN) -> list[ReviewItem]:
        return [
            ReviewItem(
                id=r.row_key,
                subscription=str(r.value.get("subscription")),
                reason=str(r.value.get("reason")),
                tried=tuple(t for t in str(r.value.get("tried") or "").split(",") if t),
                candidates=tuple(c for c in str(r.value.get("candidates") or "").split(",") if c),
                event_key=str(r.value.get("event_key")),
                correlation_id=r.value.get("correlation_id"),
                created_at=str(r.value.get("created_at")),
                state=state,
            )
            for r in self._records.query(TABLE, partition_key=state)
        ]

    def resolve(self, item: str, nhs_number: str, bus: MessageBus) -> None:
        """Re-publish the held event with ``nhs_number`` (unverified: the gate retrieves it from PDS) to
        the subscription that held it, then close the item."""
        record = self._records.get(TABLE, OPEN, item)
        if record is None:
            raise ReviewItemNotFound("no open review item with that id")
        event = ClinicalEvent.model_validate_json(self._blobs.get(CONTAINER, item))
        patient = event.patient.model_copy(update={"nhs_number": NhsNumber(value=nhs_number)})
        resolved = event.model_copy(update={"patient": patient})
        message = clinical.to_message(resolved)
        properties = {
            **message.application_properties,
            REPLAY_SUBSCRIPTION_PROPERTY: str(record.value["subscription"]),
        }
        bus.publish(
            TOPIC_CLINICAL,
            [
                OutboundMessage(
                    body=message.body,
                    message_id=f"review-{item}",
                    session_id=message.session_id,
                    correlation_id=message.correlation_id,
                    content_type=message.content_type,
                    subject=message.subject,
                    application_properties=properties,
                )
            ],
        )
        closed = {**record.value, "resolved_at": self._clock().isoformat()}
        self._records.upsert(TABLE, RESOLVED, item, closed)
        self._records.delete(TABLE, OPEN, item)
        self._blobs.delete(CONTAINER, item)
