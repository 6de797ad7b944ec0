"""The reconciliation report: interfaces, their counts, and the variance items found on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final


class Category(StrEnum):
    """Variance categories, in the order a human should look at them."""

    MISSING = "missing-at-destination"
    UNACKNOWLEDGED = "unacknowledged"
    UNEXPECTED = "unexpected-at-destination"
    MISMATCH = "content-mismatch"
    SEQUENCE_GAP = "sequence-gap"
    STUCK = "stuck"
    VOLUME = "volume-anomaly"


class Action(StrEnum):
    REPLAY = "replay"
    CHASE_DOWNSTREAM = "chase downstream"
    CHASE_SENDER = "chase sender"
    INVESTIGATE = "investigate"


#: The suggested action per category (an unacknowledged AR is chased rather than replayed: see the item).
DEFAULT_ACTION: Final[Mapping[Category, Action]] = {
    Category.MISSING: Action.REPLAY,
    Category.UNACKNOWLEDGED: Action.REPLAY,
    Category.UNEXPECTED: Action.INVESTIGATE,
    Category.MISMATCH: Action.CHASE_DOWNSTREAM,
    Category.SEQUENCE_GAP: Action.CHASE_SENDER,
    Category.STUCK: Action.INVESTIGATE,
    Category.VOLUME: Action.INVESTIGATE,
}
CATEGORY_ORDER: Final = {c: i for i, c in enumerate(Category)}


@dataclass(frozen=True, slots=True, order=True)
class Interface:
    """One interface: inbound from a sender, or outbound to a downstream, over a transport, for a type."""

    direction: str  # "in" | "out"
    party: str  # sender (MSH-3|MSH-4, or the channel) / downstream (write-back subscription)
    transport: str  # mllp | http | mesh | fhir | ...
    message_type: str  # ADT^A01, event kind, ... ("*" when not known)

    @property
    def name(self) -> str:
        return f"{self.direction}:{self.party}:{self.transport}:{self.message_type}"

    def matches(self, wanted: str) -> bool:
        """``--interface``: the full name, the party, or a prefix of the name."""
        return wanted in (self.name, self.party) or self.name.startswith(wanted)


@dataclass(slots=True)
class Counts:
    received: int = 0
    accepted: int = 0
    delivered: int = 0
    failed: int = 0
    inflight: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "delivered": self.delivered,
            "failed": self.failed,
            "inflight": self.inflight,
        }


@dataclass(frozen=True, slots=True)
class Item:
    """One variance: identifiers only (correlation id, control id, resource reference), never content."""

    interface: Interface
    category: Category
    #: Stable across runs for the same finding (what ``tie reconcile replay`` names).
    item_id: str
    correlation_id: str | None
    identifiers: Mapping[str, str]
    age_seconds: int
    action: Action
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "item": self.item_id,
            "interface": self.interface.name,
            "category": self.category.value,
            "correlationId": self.correlation_id,
            "identifiers": dict(self.identifiers),
            "ageSeconds": self.age_seconds,
            "action": self.action.value,
            "detail": self.detail,
        }


@dataclass(slots=True)
class InterfaceReport:
    interface: Interface
    counts: Counts = field(default_factory=Counts)
    items: list[Item] = field(default_factory=list)

    @property
    def variance(self) -> int:
        return len(self.items)

    def by_category(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.category.value] = out.get(item.category.value, 0) + 1
        return out


@dataclass(slots=True)
class Report:
    run_id: str
    started: datetime
    since: datetime
    until: datetime
    interfaces: list[InterfaceReport]
    #: Messages (correlation ids) looked at; destination resources read.
    messages: int = 0
    reads: int = 0
    trigger: str = "on-demand"

    @property
    def variance(self) -> int:
        return sum(r.variance for r in self.interfaces)

    @property
    def clean(self) -> bool:
        return self.variance == 0

    def items(self) -> list[Item]:
        return [item for r in self.interfaces for item in r.items]

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys((c.value for c in Category), 0)
        for item in self.items():
            out[item.category.value] += 1
        return out
