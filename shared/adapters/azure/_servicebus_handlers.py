"""SDK sender and receiver caches of the Service Bus adapter: the base of
:class:`~shared.adapters.azure.servicebus.ServiceBusMessageBus` (with its lifecycle)."""

from __future__ import annotations

import logging
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.servicebus import NEXT_AVAILABLE_SESSION as SDK_NEXT_AVAILABLE_SESSION
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus.management import ServiceBusAdministrationClient

from shared.adapters.azure._servicebus_errors import _mapped
from shared.messaging.ports import NEXT_AVAILABLE_SESSION

# The public module's logger, as before the split.
_log = logging.getLogger("shared.adapters.azure.servicebus")


_ReceiverKey = tuple[str, str, str | None, bool]  # topic, subscription, session id, dead-letter sub-queue


@dataclass(eq=False)
class _ReceiverSlot:
    """One SDK receiver plus the lock that serialises calls on it (SDK handlers are not thread-safe)."""

    key: _ReceiverKey
    receiver: ServiceBusReceiver
    lock: threading.RLock = field(default_factory=threading.RLock)


@dataclass(eq=False)
class _SenderSlot:
    sender: ServiceBusSender
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Closable(Protocol):
    def close(self) -> None: ...


@dataclass(eq=False)
class _Locked:
    """A message received under peek-lock and not yet settled."""

    slot: _ReceiverSlot
    sdk_message: ServiceBusReceivedMessage


class _ServiceBusHandlers:
    """Clients, cached senders and receivers, and the locks of received messages."""

    def __init__(
        self,
        client: ServiceBusClient,
        admin_client: ServiceBusAdministrationClient,
        *,
        min_receive_wait: float = 1.0,
        dead_letter_receive_wait: float = 2.0,
        dead_letter_scan_limit: int = 5000,
    ) -> None:
        """Use already-built SDK clients (dependency injection; tests pass fakes).

        ``min_receive_wait``: the shortest wait handed to the SDK (it rejects 0).
        ``dead_letter_receive_wait``: how long a replay/purge sweep waits for the next dead-letter message.
        ``dead_letter_scan_limit``: at most this many dead-letter messages are examined (peeked) per
        replay/purge call.
        """
        if min_receive_wait <= 0 or dead_letter_receive_wait <= 0:
            raise ValueError("receive waits must be positive")
        if dead_letter_scan_limit < 1:
            raise ValueError("dead_letter_scan_limit must be at least 1")
        self._client = client
        self._admin = admin_client
        self._min_wait = min_receive_wait
        self._dlq_wait = dead_letter_receive_wait
        self._dlq_scan_limit = dead_letter_scan_limit
        self._lock = threading.RLock()
        self._senders: dict[str, _SenderSlot] = {}
        self._receivers: dict[_ReceiverKey, _ReceiverSlot] = {}
        self._locked: dict[str, _Locked] = {}
        self._closed = False

    # -- handler caches ------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ServiceBusMessageBus is closed")

    def _sender(self, topic: str) -> _SenderSlot:
        with self._lock:
            self._check_open()
            slot = self._senders.get(topic)
            if slot is None:
                with _mapped(topic):
                    slot = _SenderSlot(self._client.get_topic_sender(topic_name=topic))
                self._senders[topic] = slot
            return slot

    def _new_receiver(
        self,
        topic: str,
        subscription: str,
        *,
        session_id: str | None,
        dead_letter: bool,
        max_wait_time: float | None = None,
    ) -> ServiceBusReceiver:
        options: dict[str, Any] = {"receive_mode": ServiceBusReceiveMode.PEEK_LOCK}
        if dead_letter:
            options["sub_queue"] = ServiceBusSubQueue.DEAD_LETTER
        if session_id == NEXT_AVAILABLE_SESSION:
            options["session_id"] = SDK_NEXT_AVAILABLE_SESSION
            options["max_wait_time"] = max_wait_time
        elif session_id is not None:
            options["session_id"] = session_id
        with _mapped(topic, subscription):
            return self._client.get_subscription_receiver(
                topic_name=topic, subscription_name=subscription, **options
            )

    def _receiver(
        self, topic: str, subscription: str, *, session_id: str | None, dead_letter: bool
    ) -> _ReceiverSlot:
        key: _ReceiverKey = (topic, subscription, session_id, dead_letter)
        with self._lock:
            self._check_open()
            slot = self._receivers.get(key)
            if slot is None:
                receiver = self._new_receiver(
                    topic, subscription, session_id=session_id, dead_letter=dead_letter
                )
                slot = _ReceiverSlot(key, receiver)
                self._receivers[key] = slot
            return slot

    def _discard_receiver(self, slot: _ReceiverSlot) -> None:
        """Forget a receiver (and every lock it held) and close it."""
        with self._lock:
            if self._receivers.get(slot.key) is slot:
                del self._receivers[slot.key]
            for token in [t for t, entry in self._locked.items() if entry.slot is slot]:
                del self._locked[token]
        with slot.lock, suppress(Exception):
            slot.receiver.close()

    # -- lifecycle -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every receiver and sender, then the clients. Unsettled messages' locks simply expire."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            receivers = list(self._receivers.values())
            senders = list(self._senders.values())
            self._receivers.clear()
            self._senders.clear()
            self._locked.clear()
        handlers: list[_Closable] = [r.receiver for r in receivers]
        handlers.extend(s.sender for s in senders)
        handlers.extend((self._client, self._admin))
        for handler in handlers:
            try:
                handler.close()
            except Exception:  # noqa: BLE001 - closing is best effort; nothing to recover
                _log.debug("error while closing a Service Bus handler", exc_info=True)
