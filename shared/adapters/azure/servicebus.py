"""Azure Service Bus adapter for the :class:`~shared.messaging.ports.MessageBus` port (sync SDK, v7).

Production messaging, identity-based (:meth:`ServiceBusMessageBus.from_namespace`; no connection
strings). Tested against SDK fakes only, not a real namespace. Publish batches, settlement, delivery
count, sessions, replay through the topic, purge and peek: ``docs/servicebus-adapter.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessageBatch, ServiceBusReceivedMessage
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from azure.servicebus.management import ServiceBusAdministrationClient

from shared.adapters.azure._servicebus_admin import _ServiceBusAdmin
from shared.adapters.azure._servicebus_convert import _to_received, _to_sdk_message
from shared.adapters.azure._servicebus_errors import (
    _SDK_ERRORS,
    UnsupportedMessageBody,
    _mapped,
    _raise_translated,
    _translate,
    _where,
)
from shared.adapters.azure._servicebus_handlers import _Locked, _ReceiverKey, _ReceiverSlot
from shared.messaging.errors import MessageLockLost, MessageTooLarge, SessionLockLost
from shared.messaging.ports import (
    NEXT_AVAILABLE_SESSION,
    REPLAY_COUNT_PROPERTY,
    REPLAY_SUBSCRIPTION_PROPERTY,
    OutboundMessage,
    ReceivedMessage,
)

__all__ = [
    "REPLAY_COUNT_PROPERTY",
    "REPLAY_SUBSCRIPTION_PROPERTY",
    "ServiceBusMessageBus",
    "UnsupportedMessageBody",
    "replay_aware_filter",
]

_log = logging.getLogger(__name__)


def replay_aware_filter(sub_name: str, base_filter: str | None) -> str:
    """The SQL rule a subscription needs so dead-letter replays reach only the subscription they are for.

    ``base_filter`` is the subscription's own filter (``None`` / ``"1=1"`` for "all messages"). The result
    admits ordinary messages exactly as ``base_filter`` does, and replayed copies only when
    ``tie_replay_subscription`` names this subscription. Used by the topology and the Bicep templates.
    """
    if not sub_name:
        raise ValueError("subscription name must not be empty")
    quoted = sub_name.replace("'", "''")
    clause = f"{REPLAY_SUBSCRIPTION_PROPERTY} IS NULL OR {REPLAY_SUBSCRIPTION_PROPERTY} = '{quoted}'"
    base = (base_filter or "").strip()
    if not base or base == "1=1":
        return clause
    return f"({base}) AND ({clause})"


# --------------------------------------------------------------------------------------------------------
# The adapter


class ServiceBusMessageBus(_ServiceBusAdmin):
    """:class:`~shared.messaging.ports.MessageBus` over Azure Service Bus topics and subscriptions.

    Thread-safe: bookkeeping is guarded by one lock and each SDK sender/receiver by its own.
    Browse, dead-letter maintenance and management: ``_servicebus_admin``; SDK handler caches and
    lifecycle: ``_servicebus_handlers``; conversions and errors: ``_servicebus_convert``,
    ``_servicebus_errors``.
    """

    @classmethod
    def from_namespace(
        cls, fully_qualified_namespace: str, credential: TokenCredential, **options: Any
    ) -> ServiceBusMessageBus:
        """Identity-based production constructor (``<namespace>.servicebus.windows.net`` + credential).

        ``options`` are passed to :meth:`__init__` (``min_receive_wait`` and friends).
        """
        client = ServiceBusClient(fully_qualified_namespace=fully_qualified_namespace, credential=credential)
        admin = ServiceBusAdministrationClient(fully_qualified_namespace, credential)
        return cls(client, admin, **options)

    # -- publish -------------------------------------------------------------------------------------------

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> None:
        """Send ``messages`` as one batch (all or nothing); :class:`MessageTooLarge` if they do not fit."""
        if not messages:
            return
        sdk_messages = [_to_sdk_message(message) for message in messages]
        slot = self._sender(topic)
        with slot.lock, _mapped(topic):
            batch: ServiceBusMessageBatch = slot.sender.create_message_batch()
            for index, sdk_message in enumerate(sdk_messages):
                try:
                    batch.add_message(sdk_message)
                except ValueError as exc:  # MessageSizeExceededError is a ValueError
                    raise MessageTooLarge(
                        f"{len(sdk_messages)} message(s) do not fit one Service Bus batch of "
                        f"{batch.max_size_in_bytes} bytes (stopped at message {index}, topic={topic}); "
                        "nothing was sent"
                    ) from exc
            slot.sender.send_messages(batch)

    # -- receive and settle --------------------------------------------------------------------------------

    def receive(
        self,
        topic: str,
        subscription: str,
        *,
        max_messages: int = 1,
        max_wait: float = 0.0,
        session_id: str | None = None,
    ) -> list[ReceivedMessage]:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        wait = max(max_wait, self._min_wait)
        if session_id == NEXT_AVAILABLE_SESSION:
            return self._receive_next_session(topic, subscription, max_messages=max_messages, wait=wait)
        slot = self._receiver(topic, subscription, session_id=session_id, dead_letter=False)
        try:
            with slot.lock:
                batch = slot.receiver.receive_messages(max_message_count=max_messages, max_wait_time=wait)
        except (SessionLockLostError, SessionCannotBeLockedError) as exc:
            self._discard_receiver(slot)
            _raise_translated(exc, topic=topic, subscription=subscription)
        except _SDK_ERRORS as exc:
            _raise_translated(exc, topic=topic, subscription=subscription)
        return self._register(slot, batch, topic, subscription)

    def _receive_next_session(
        self, topic: str, subscription: str, *, max_messages: int, wait: float
    ) -> list[ReceivedMessage]:
        with self._lock:
            self._check_open()
        receiver = self._new_receiver(
            topic, subscription, session_id=NEXT_AVAILABLE_SESSION, dead_letter=False, max_wait_time=wait
        )
        try:
            batch = receiver.receive_messages(max_message_count=max_messages, max_wait_time=wait)
        except OperationTimeoutError:
            # No session became available within the wait: nothing to receive.
            with suppress(Exception):
                receiver.close()
            return []
        except _SDK_ERRORS as exc:
            with suppress(Exception):
                receiver.close()
            _raise_translated(exc, topic=topic, subscription=subscription)
        session = receiver.session
        if not batch or session is None:
            # Do not keep a session lock the caller cannot name (no message carries its id).
            with suppress(Exception):
                receiver.close()
            return []
        key: _ReceiverKey = (topic, subscription, session.session_id, False)
        slot = _ReceiverSlot(key, receiver)
        with self._lock:
            previous = self._receivers.get(key)
            self._receivers[key] = slot
        if previous is not None:  # a stale receiver for a session whose lock we had lost
            self._discard_receiver(previous)
        return self._register(slot, batch, topic, subscription)

    def _register(
        self,
        slot: _ReceiverSlot,
        batch: Sequence[ServiceBusReceivedMessage],
        topic: str,
        subscription: str,
    ) -> list[ReceivedMessage]:
        session = slot.receiver.session
        session_locked_until = session.locked_until_utc if session is not None else None
        received: list[ReceivedMessage] = []
        for sdk_message in batch:
            try:
                message = _to_received(
                    sdk_message,
                    topic=topic,
                    subscription=subscription,
                    locked=True,
                    session_locked_until=session_locked_until,
                )
            except UnsupportedMessageBody as exc:
                # A body this platform cannot read will never become readable: dead-letter it now
                # instead of letting it cycle through max_delivery_count.
                _log.warning(
                    "dead-lettering message with unsupported body",
                    extra={
                        "topic": topic,
                        "subscription": subscription,
                        "sequence_number": sdk_message.sequence_number,
                    },
                )
                with slot.lock, _mapped(topic, subscription, sdk_message.sequence_number):
                    slot.receiver.dead_letter_message(
                        sdk_message, reason=UnsupportedMessageBody.code, error_description=str(exc)
                    )
                continue
            if message.lock_token is not None:
                with self._lock:
                    self._locked[message.lock_token] = _Locked(slot, sdk_message)
            received.append(message)
        return received

    def _lookup(self, message: ReceivedMessage) -> _Locked:
        if message.lock_token is None:
            raise ValueError("a peeked message (no lock token) cannot be settled or renewed")
        with self._lock:
            entry = self._locked.get(message.lock_token)
        if entry is None:
            raise MessageLockLost(
                "message is not locked by this bus: already settled, released or never received here "
                f"({_where(message.topic, message.subscription, message.sequence_number)})"
            )
        return entry

    def _forget(self, message: ReceivedMessage, entry: _Locked) -> None:
        with self._lock:
            if message.lock_token is not None and self._locked.get(message.lock_token) is entry:
                del self._locked[message.lock_token]

    def _settle(self, message: ReceivedMessage, action: Callable[[_Locked], None]) -> None:
        entry = self._lookup(message)
        try:
            with entry.slot.lock:
                action(entry)
        except _SDK_ERRORS as exc:
            mapped = _translate(
                exc,
                topic=message.topic,
                subscription=message.subscription,
                sequence_number=message.sequence_number,
            )
            if isinstance(mapped, MessageLockLost | SessionLockLost):
                self._forget(message, entry)  # cannot be settled any more
                if isinstance(mapped, SessionLockLost):
                    self._discard_receiver(entry.slot)
            if mapped is exc:
                raise
            raise mapped from exc
        self._forget(message, entry)

    def complete(self, message: ReceivedMessage) -> None:
        self._settle(message, lambda e: e.slot.receiver.complete_message(e.sdk_message))

    def abandon(self, message: ReceivedMessage) -> None:
        self._settle(message, lambda e: e.slot.receiver.abandon_message(e.sdk_message))

    def dead_letter(self, message: ReceivedMessage, *, reason: str, description: str = "") -> None:
        self._settle(
            message,
            lambda e: e.slot.receiver.dead_letter_message(
                e.sdk_message, reason=reason, error_description=description
            ),
        )

    def renew_lock(self, message: ReceivedMessage) -> datetime:
        """Renew the message lock; for a session message, renew the session lock (covers the session)."""
        entry = self._lookup(message)
        try:
            with entry.slot.lock:
                session = entry.slot.receiver.session
                if session is not None:
                    return session.renew_lock()
                return entry.slot.receiver.renew_message_lock(entry.sdk_message)
        except _SDK_ERRORS as exc:
            mapped = _translate(
                exc,
                topic=message.topic,
                subscription=message.subscription,
                sequence_number=message.sequence_number,
            )
            if isinstance(mapped, MessageLockLost):
                self._forget(message, entry)
            elif isinstance(mapped, SessionLockLost):
                self._discard_receiver(entry.slot)
            if mapped is exc:
                raise
            raise mapped from exc

    def release_session(self, topic: str, subscription: str, session_id: str) -> None:
        """Close the session receiver; unsettled messages of that session become available again."""
        with self._lock:
            slot = self._receivers.get((topic, subscription, session_id, False))
        if slot is not None:
            self._discard_receiver(slot)
