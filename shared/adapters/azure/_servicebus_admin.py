"""Browse, dead-letter maintenance (replay, purge) and management of the Service Bus adapter
(:mod:`shared.adapters.azure.servicebus`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from azure.servicebus import ServiceBusReceivedMessage

from shared.adapters.azure._servicebus_convert import (
    _DEFAULT_LOCK_DURATION,
    _DEFAULT_MAX_DELIVERY_COUNT,
    _as_timedelta,
    _combine_rules,
    _replay_copy,
    _to_received,
)
from shared.adapters.azure._servicebus_errors import _SDK_ERRORS, UnsupportedMessageBody, _mapped
from shared.adapters.azure._servicebus_handlers import _ReceiverSlot, _ServiceBusHandlers
from shared.messaging.ports import ReceivedMessage, SubscriptionInfo, TopicInfo
from shared.messaging.topology import TOPOLOGY, TopicSpec

# The public module's logger, as before the split.
_log = logging.getLogger("shared.adapters.azure.servicebus")


class _ServiceBusAdmin(_ServiceBusHandlers):
    """Peek, replay and purge dead letters, read the topology."""

    # -- browse and dead-letter maintenance ----------------------------------------------------------------

    def _peek_sdk(
        self, slot: _ReceiverSlot, topic: str, subscription: str, *, from_sequence: int, count: int
    ) -> list[ServiceBusReceivedMessage]:
        with slot.lock, _mapped(topic, subscription):
            return slot.receiver.peek_messages(max_message_count=count, sequence_number=from_sequence)

    def peek(
        self, topic: str, subscription: str, *, dead_letter: bool = False, max_messages: int = 50
    ) -> list[ReceivedMessage]:
        """Browse from the oldest message without locking (``lock_token`` is ``None``)."""
        if max_messages < 1:
            return []
        slot = self._receiver(topic, subscription, session_id=None, dead_letter=dead_letter)
        # Always pass a start: the SDK otherwise continues after the receiver's last received message.
        peeked = self._peek_sdk(slot, topic, subscription, from_sequence=1, count=max_messages)
        result: list[ReceivedMessage] = []
        for sdk_message in peeked:
            try:
                result.append(_to_received(sdk_message, topic=topic, subscription=subscription, locked=False))
            except UnsupportedMessageBody:
                _log.warning(
                    "skipping peeked message with unsupported body",
                    extra={
                        "topic": topic,
                        "subscription": subscription,
                        "sequence_number": sdk_message.sequence_number,
                    },
                )
        return result

    def _dead_letter_targets(
        self,
        slot: _ReceiverSlot,
        topic: str,
        subscription: str,
        select: Callable[[ServiceBusReceivedMessage], bool],
    ) -> set[int]:
        """Sequence numbers of dead-letter messages ``select`` picks, found by peeking (no locks taken)."""
        targets: set[int] = set()
        next_sequence = 1
        examined = 0
        while examined < self._dlq_scan_limit:
            count = min(250, self._dlq_scan_limit - examined)
            page = self._peek_sdk(slot, topic, subscription, from_sequence=next_sequence, count=count)
            if not page:
                break
            examined += len(page)
            for sdk_message in page:
                sequence = sdk_message.sequence_number
                if sequence is None:
                    continue
                if select(sdk_message):
                    targets.add(sequence)
                next_sequence = max(next_sequence, sequence + 1)
        return targets

    def _sweep_dead_letters(
        self,
        topic: str,
        subscription: str,
        select: Callable[[ServiceBusReceivedMessage], bool],
        act: Callable[[_ReceiverSlot, ServiceBusReceivedMessage], None],
    ) -> int:
        """Lock dead-letter messages, ``act`` on the selected ones, abandon the rest back; return how many.

        Targets are fixed by a peek first, so messages dead-lettered during the sweep are left alone and
        the sweep ends even though abandoned messages become receivable again. Unselected messages stay
        locked until the sweep finishes so they are not received twice.
        """
        slot = self._receiver(topic, subscription, session_id=None, dead_letter=True)
        with slot.lock:
            targets = self._dead_letter_targets(slot, topic, subscription, select)
            if not targets:
                return 0
            held: list[ServiceBusReceivedMessage] = []
            done = 0
            try:
                while targets:
                    with _mapped(topic, subscription):
                        batch = slot.receiver.receive_messages(
                            max_message_count=min(len(targets), 100), max_wait_time=self._dlq_wait
                        )
                    if not batch:
                        break
                    for position, sdk_message in enumerate(batch):
                        sequence = sdk_message.sequence_number
                        if sequence in targets and select(sdk_message):
                            try:
                                act(slot, sdk_message)
                            except BaseException:
                                held.extend(batch[position:])  # including the failed one
                                raise
                            targets.discard(sequence)
                            done += 1
                        else:
                            held.append(sdk_message)
            finally:
                for sdk_message in held:
                    try:
                        slot.receiver.abandon_message(sdk_message)
                    except _SDK_ERRORS:  # lock lost: the broker makes it available again anyway
                        _log.info(
                            "could not abandon dead-letter message after sweep",
                            extra={
                                "topic": topic,
                                "subscription": subscription,
                                "sequence_number": sdk_message.sequence_number,
                            },
                        )
            return done

    def replay_dead_letters(
        self, topic: str, subscription: str, *, sequence_numbers: Sequence[int] | None = None
    ) -> int:
        """Send a copy of each selected dead-letter message to the topic, then complete the original.

        See the module docstring: the copy is addressed to ``subscription`` by the
        ``tie_replay_subscription`` property and needs :func:`replay_aware_filter` rules.
        """
        wanted = None if sequence_numbers is None else frozenset(sequence_numbers)
        if wanted is not None and not wanted:
            return 0

        def select(sdk_message: ServiceBusReceivedMessage) -> bool:
            return wanted is None or sdk_message.sequence_number in wanted

        def act(slot: _ReceiverSlot, sdk_message: ServiceBusReceivedMessage) -> None:
            copy = _replay_copy(sdk_message, subscription)
            sender = self._sender(topic)
            with sender.lock, _mapped(topic):
                sender.sender.send_messages(copy)
            # Only now is it safe to remove the dead-letter: the copy is on the topic.
            with _mapped(topic, subscription, sdk_message.sequence_number):
                slot.receiver.complete_message(sdk_message)

        return self._sweep_dead_letters(topic, subscription, select, act)

    def purge_dead_letters(self, topic: str, subscription: str, *, older_than: timedelta) -> int:
        """Delete dead-letter messages enqueued more than ``older_than`` ago (see module docstring)."""
        cutoff = datetime.now(UTC) - older_than

        def select(sdk_message: ServiceBusReceivedMessage) -> bool:
            enqueued = sdk_message.enqueued_time_utc
            return enqueued is not None and enqueued < cutoff

        def act(slot: _ReceiverSlot, sdk_message: ServiceBusReceivedMessage) -> None:
            with _mapped(topic, subscription, sdk_message.sequence_number):
                slot.receiver.complete_message(sdk_message)

        return self._sweep_dead_letters(topic, subscription, select, act)

    # -- management ----------------------------------------------------------------------------------------

    def topology(self) -> list[TopicInfo]:
        """Topics, subscriptions, rules and message counts from the management API."""
        topics: list[TopicInfo] = []
        with _mapped("*"):
            topic_properties = list(self._admin.list_topics())
        for topic in sorted(topic_properties, key=lambda t: t.name):
            subscriptions: list[SubscriptionInfo] = []
            with _mapped(topic.name):
                subscription_properties = list(self._admin.list_subscriptions(topic.name))
            for sub in sorted(subscription_properties, key=lambda s: s.name):
                with _mapped(topic.name, sub.name):
                    runtime = self._admin.get_subscription_runtime_properties(topic.name, sub.name)
                    rules = list(self._admin.list_rules(topic.name, sub.name))
                subscriptions.append(
                    SubscriptionInfo(
                        topic=topic.name,
                        name=sub.name,
                        active_count=runtime.active_message_count or 0,
                        dead_letter_count=runtime.dead_letter_message_count or 0,
                        max_delivery_count=sub.max_delivery_count or _DEFAULT_MAX_DELIVERY_COUNT,
                        lock_duration=_as_timedelta(sub.lock_duration, _DEFAULT_LOCK_DURATION),
                        requires_session=bool(sub.requires_session),
                        filter=_combine_rules(rules),
                    )
                )
            window = (
                _as_timedelta(topic.duplicate_detection_history_time_window, timedelta(minutes=10))
                if topic.requires_duplicate_detection
                else None
            )
            topics.append(
                TopicInfo(
                    name=topic.name, subscriptions=tuple(subscriptions), duplicate_detection_window=window
                )
            )
        return topics

    def topic_specs(self) -> tuple[TopicSpec, ...]:
        """The declared topology: reading the namespace's own would need management rights."""
        return TOPOLOGY
