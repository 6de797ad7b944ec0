"""MESH sends: every message sent in the window acknowledged by its recipient (table ``meshoutbox``,
written by :class:`shared.mesh.outbound.MeshOutbound`; read only here).

* ``sent`` and not acknowledged ``ack_after`` after sending -> ``unacknowledged`` (chase downstream; the
  tracking status MESH last reported is in the item);
* a claim left ``sending`` (a crash between the send and its record: MESH cannot be asked by local id)
  -> ``unacknowledged`` (investigate: a person decides whether it went).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.mesh.outbound import ACKNOWLEDGED, SENDING, SENT
from shared.reconcile.model import Action, Category, Counts, Interface, Item
from shared.reconcile.scan import item_id
from shared.storage.errors import InvalidKey
from shared.storage.keys import restore_key
from shared.storage.names import TABLE_MESH_OUTBOX
from shared.storage.ports import RecordStore


@dataclass(slots=True)
class MeshResult:
    counts: dict[Interface, Counts] = field(default_factory=lambda: defaultdict(Counts))
    items: list[Item] = field(default_factory=list)


def check_mesh(
    records: RecordStore, *, since: datetime, until: datetime, now: datetime, ack_after: timedelta
) -> MeshResult:
    result = MeshResult()
    for rec in records.query(TABLE_MESH_OUTBOX):
        value = rec.value
        claimed = value.get("claimed_at")
        if not claimed:
            continue
        at = datetime.fromisoformat(str(value.get("sent_at") or claimed))
        if not since <= at < until:
            continue
        try:
            mailbox, local_id = restore_key(rec.partition_key), restore_key(rec.row_key)
        except InvalidKey:
            continue
        iface = Interface("out", f"mesh:{mailbox}", "mesh", str(value.get("workflow_id") or "*"))
        counts = result.counts[iface]
        counts.received += 1
        state = value.get("state")
        corr = str(value["correlation_id"]) if value.get("correlation_id") else None
        ids = {"localId": local_id, "recipient": str(value.get("recipient") or "")}
        age = max(0, int((now - at).total_seconds()))
        if state == ACKNOWLEDGED:
            counts.accepted += 1
            counts.delivered += 1
        elif state == SENT:
            counts.accepted += 1
            counts.inflight += 1
            if now - at >= ack_after:
                ids.update(
                    messageId=str(value.get("message_id") or ""), tracking=str(value.get("tracking") or "")
                )
                result.items.append(
                    Item(
                        iface,
                        Category.UNACKNOWLEDGED,
                        item_id(Category.UNACKNOWLEDGED, iface, local_id),
                        corr,
                        ids,
                        age,
                        Action.CHASE_DOWNSTREAM,
                        f"sent, not acknowledged by the recipient after {age // 3600} h",
                    )
                )
        elif state == SENDING:
            counts.inflight += 1
            if now - at >= ack_after:
                result.items.append(
                    Item(
                        iface,
                        Category.UNACKNOWLEDGED,
                        item_id(Category.UNACKNOWLEDGED, iface, local_id),
                        corr,
                        ids,
                        age,
                        Action.INVESTIGATE,
                        "send in doubt: started, never recorded (tie mesh status)",
                    )
                )
    return result
