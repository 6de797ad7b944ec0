"""The message bus port.

Semantics follow Azure Service Bus topics/subscriptions, because that is what production runs on:

* ``publish`` sends to a *topic*; every *subscription* whose filter matches the message's application
  properties gets its own copy.
* Receivers use **peek-lock**: a received message is invisible to other receivers until its lock
  expires; the receiver must ``complete`` (done), ``abandon`` (release now, delivery count stays raised)
  or ``dead_letter`` it. A message whose delivery count reaches the subscription's ``max_delivery_count``
  moves to the dead-letter sub-queue with reason ``MaxDeliveryCountExceeded``.
* Duplicate detection drops a second message with the same ``message_id`` on a topic within the topic's
  duplicate-detection window.
* Sessions: on a subscription that requires sessions, a receiver locks one session and gets that
  session's messages in FIFO order; no other receiver sees that session until the lock is released.

Adapters: :mod:`shared.adapters.embedded.sqlite_bus` (embedded default, development stand-in) and
:mod:`shared.adapters.azure.servicebus` (Azure Service Bus).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shared.messaging.topology import TopicSpec

#: Application property values allowed on a message (what Service Bus accepts and filters on).
PropertyValue = str | int | float | bool

#: Pass as ``session_id`` to :meth:`MessageBus.receive` to lock whichever session has messages waiting.
NEXT_AVAILABLE_SESSION = "*"

#: Application property stamped on messages replayed from a dead-letter sub-queue (1, 2, ...).
REPLAY_COUNT_PROPERTY = "tie_replay_count"
#: Application property naming the one subscription a replayed copy is meant for. On Service Bus a replay
#: re-enters through the topic, so subscription rules use it for routing (``replay_aware_filter``); the
#: embedded bus stamps it too so consumers see the same properties on both.
REPLAY_SUBSCRIPTION_PROPERTY = "tie_replay_subscription"


def replay_count(properties: Mapping[str, object]) -> int:
    """How many times a message was replayed (its ``tie_replay_count``; 0 when absent or not a count)."""
    value = properties.get(REPLAY_COUNT_PROPERTY)
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return 0


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to publish. ``message_id`` drives duplicate detection; defaults to a new UUID."""

    body: bytes
    message_id: str | None = None
    session_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    subject: str | None = None
    application_properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    time_to_live: timedelta | None = None


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message delivered under peek-lock (or peeked, with ``lock_token`` ``None``)."""

    topic: str
    subscription: str
    body: bytes
    message_id: str
    sequence_number: int
    delivery_count: int
    enqueued_time: datetime
    session_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    subject: str | None = None
    application_properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    lock_token: str | None = None
    locked_until: datetime | None = None
    expires_at: datetime | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None
    dead_lettered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    topic: str
    name: str
    active_count: int
    dead_letter_count: int
    max_delivery_count: int
    lock_duration: timedelta
    requires_session: bool
    filter: str | None


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    subscriptions: Sequence[SubscriptionInfo]
    duplicate_detection_window: timedelta | None


@runtime_checkable
class CompleteAndRelease(Protocol):
    """Optional capability of a :class:`MessageBus` (the embedded bus): settle the last message taken from
    a session and give up the session in one step - one transaction instead of two."""

    def complete_and_release(self, message: ReceivedMessage) -> None:
        """:meth:`MessageBus.complete` then, when ``message`` came from a session this receiver holds,
        :meth:`MessageBus.release_session` (a session held by another receiver is left alone)."""
        ...


@runtime_checkable
class MessageBus(Protocol):
    """Publish/consume with peek-lock semantics. Implementations are thread-safe."""

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> None:
        """Publish atomically: all messages are accepted or none is (raises on failure)."""
        ...

    def receive(
        self,
        topic: str,
        subscription: str,
        *,
        max_messages: int = 1,
        max_wait: float = 0.0,
        session_id: str | None = None,
    ) -> list[ReceivedMessage]:
        """Lock and return up to ``max_messages`` messages, waiting up to ``max_wait`` seconds for one."""
        ...

    def complete(self, message: ReceivedMessage) -> None:
        """Settle as done. Raises :class:`~shared.messaging.errors.MessageLockLost` if the lock expired."""
        ...

    def abandon(self, message: ReceivedMessage) -> None:
        """Release the lock now; the message is redelivered (or dead-lettered at max delivery count)."""
        ...

    def dead_letter(self, message: ReceivedMessage, *, reason: str, description: str = "") -> None:
        """Move to the dead-letter sub-queue with ``reason`` (no patient data in reason/description)."""
        ...

    def renew_lock(self, message: ReceivedMessage) -> datetime:
        """Extend the lock; returns the new ``locked_until``."""
        ...

    def release_session(self, topic: str, subscription: str, session_id: str) -> None:
        """Give up a session lock taken by :meth:`receive` so another receiver may take the session."""
        ...

    def peek(
        self, topic: str, subscription: str, *, dead_letter: bool = False, max_messages: int = 50
    ) -> list[ReceivedMessage]:
        """Browse without locking (``lock_token`` is ``None``)."""
        ...

    def replay_dead_letters(
        self, topic: str, subscription: str, *, sequence_numbers: Sequence[int] | None = None
    ) -> int:
        """Return dead-lettered messages (all, or the given ones) to the subscription; returns how many.

        Replayed messages carry application property ``tie_replay_count`` (incremented each time) so
        consumers can tag the processing as a replay; their delivery count starts again from zero.
        """
        ...

    def purge_dead_letters(self, topic: str, subscription: str, *, older_than: timedelta) -> int:
        """Delete dead-lettered messages older than ``older_than``; returns how many."""
        ...

    def topology(self) -> list[TopicInfo]:
        """Topics, their subscriptions and message counts."""
        ...

    def topic_specs(self) -> tuple[TopicSpec, ...]:
        """The topology deliveries follow here, as specs: lock durations size the idempotency leases and
        delivery counts the retry budget (no management rights needed, no message counts)."""
        ...

    def close(self) -> None: ...
