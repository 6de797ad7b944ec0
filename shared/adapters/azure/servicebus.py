"""Azure Service Bus adapter for the :class:`~shared.messaging.ports.MessageBus` port (sync SDK, v7).

Production messaging, identity-based (:meth:`ServiceBusMessageBus.from_namespace`; no connection
strings). Tested against SDK fakes only, not a real namespace. Publish batches, settlement, delivery
count, sessions, replay through the topic, purge and peek: ``docs/servicebus-adapter.md``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, Protocol

import isodate
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION as SDK_NEXT_AVAILABLE_SESSION,
)
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusServerBusyError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    RuleProperties,
    ServiceBusAdministrationClient,
    SqlRuleFilter,
    TrueRuleFilter,
)

from shared.errors import PermanentError
from shared.messaging.errors import (
    BusError,
    BusUnavailable,
    MessageLockLost,
    MessageTooLarge,
    SessionLockLost,
    SubscriptionNotFound,
    TopicNotFound,
)
from shared.messaging.ports import (
    NEXT_AVAILABLE_SESSION,
    REPLAY_COUNT_PROPERTY,
    REPLAY_SUBSCRIPTION_PROPERTY,
    OutboundMessage,
    PropertyValue,
    ReceivedMessage,
    SubscriptionInfo,
    TopicInfo,
    replay_count,
)
from shared.messaging.topology import TOPOLOGY, TopicSpec

__all__ = [
    "REPLAY_COUNT_PROPERTY",
    "REPLAY_SUBSCRIPTION_PROPERTY",
    "ServiceBusMessageBus",
    "UnsupportedMessageBody",
    "replay_aware_filter",
]

_log = logging.getLogger(__name__)


# Application properties the broker adds to dead-lettered messages; surfaced as fields, not properties.
_DEAD_LETTER_PROPERTY_KEYS = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})
_MAX_MESSAGE_ID_LENGTH = 128  # Service Bus limit on MessageId
_DEFAULT_MAX_DELIVERY_COUNT = 10  # Service Bus default when the service omits it
_DEFAULT_LOCK_DURATION = timedelta(seconds=60)


class UnsupportedMessageBody(BusError, PermanentError):
    """A received message's AMQP body is neither data sections nor a string/bytes value."""

    code = "unsupported-message-body"


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
# Internal bookkeeping


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


#: What the SDK raises: every Service Bus / azure-core error, plus the client-side "already settled".
_SDK_ERRORS: tuple[type[Exception], ...] = (AzureError, MessageAlreadySettled)


def _where(topic: str, subscription: str | None = None, sequence_number: int | None = None) -> str:
    parts = [f"topic={topic}"]
    if subscription is not None:
        parts.append(f"subscription={subscription}")
    if sequence_number is not None:
        parts.append(f"sequence_number={sequence_number}")
    return ", ".join(parts)


def _translate(
    exc: BaseException,
    *,
    topic: str,
    subscription: str | None = None,
    sequence_number: int | None = None,
) -> BaseException:
    """Map an SDK exception to ours; exceptions that are not Azure/SDK errors are returned unchanged."""
    where = _where(topic, subscription, sequence_number)
    if isinstance(exc, BusError):
        return exc
    if isinstance(exc, MessageLockLostError | MessageAlreadySettled):
        return MessageLockLost(f"message lock lost or message already settled ({where})")
    if isinstance(exc, SessionLockLostError | SessionCannotBeLockedError):
        return SessionLockLost(f"session lock lost or session held elsewhere ({where})")
    if isinstance(exc, MessageSizeExceededError):
        return MessageTooLarge(f"message exceeds the Service Bus size limit ({where})")
    if isinstance(exc, MessagingEntityNotFoundError | ResourceNotFoundError):
        if subscription is None:
            return TopicNotFound(f"Service Bus entity not found ({where})")
        return SubscriptionNotFound(f"Service Bus entity not found ({where})")
    if isinstance(
        exc,
        ServiceBusConnectionError
        | OperationTimeoutError
        | ServiceBusCommunicationError
        | ServiceBusServerBusyError,
    ):
        return BusUnavailable(f"Service Bus unavailable: {type(exc).__name__} ({where})")
    if isinstance(exc, AzureError):
        # Authentication/authorisation, quota, disabled entity, HTTP errors from the management API:
        # the SDK has already retried; callers treat it as the bus being unavailable.
        return BusUnavailable(f"Service Bus error: {type(exc).__name__} ({where})")
    return exc


def _raise_translated(
    exc: BaseException,
    *,
    topic: str,
    subscription: str | None = None,
    sequence_number: int | None = None,
) -> NoReturn:
    mapped = _translate(exc, topic=topic, subscription=subscription, sequence_number=sequence_number)
    if mapped is exc:
        raise exc
    raise mapped from exc


@contextmanager
def _mapped(
    topic: str, subscription: str | None = None, sequence_number: int | None = None
) -> Iterator[None]:
    try:
        yield
    except _SDK_ERRORS as exc:
        _raise_translated(exc, topic=topic, subscription=subscription, sequence_number=sequence_number)


# --------------------------------------------------------------------------------------------------------
# Mapping between the port's dataclasses and SDK messages


def _ttl_for_sdk(ttl: timedelta | None) -> timedelta | None:
    # The SDK stores whole seconds (it truncates); round up so a sub-second TTL does not become "none".
    if ttl is None:
        return None
    return timedelta(seconds=max(1, math.ceil(ttl.total_seconds())))


def _to_sdk_message(message: OutboundMessage) -> ServiceBusMessage:
    properties: dict[str | bytes, Any] = {str(k): v for k, v in message.application_properties.items()}
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id or str(uuid.uuid4()),
        session_id=message.session_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        subject=message.subject,
        application_properties=properties or None,
        time_to_live=_ttl_for_sdk(message.time_to_live),
    )


def _property_value(value: object) -> PropertyValue | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str | bool | int | float):
        return value
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # uuid.UUID and other AMQP scalars


def _decode_properties(raw: Mapping[Any, Any] | None) -> dict[str, PropertyValue]:
    """Received application properties have ``bytes`` keys and string values; decode both to ``str``."""
    decoded: dict[str, PropertyValue] = {}
    for key, value in (raw or {}).items():
        name = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key)
        if name in _DEAD_LETTER_PROPERTY_KEYS:
            continue
        converted = _property_value(value)
        if converted is not None:
            decoded[name] = converted
    return decoded


def _body_bytes(sdk_message: ServiceBusReceivedMessage) -> bytes:
    """Join the AMQP data sections into one ``bytes``; accept a str/bytes AMQP value body too."""
    body = sdk_message.body
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if sdk_message.body_type == AmqpMessageBodyType.DATA:
        sections: list[bytes] = []
        for section in body:
            if not isinstance(section, bytes | bytearray | memoryview):
                raise UnsupportedMessageBody(
                    f"data section is not binary (sequence_number={sdk_message.sequence_number})"
                )
            sections.append(bytes(section))
        return b"".join(sections)
    raise UnsupportedMessageBody(
        f"AMQP body type {sdk_message.body_type.value} is not supported "
        f"(sequence_number={sdk_message.sequence_number})"
    )


def _to_received(
    sdk_message: ServiceBusReceivedMessage,
    *,
    topic: str,
    subscription: str,
    locked: bool,
    session_locked_until: datetime | None = None,
) -> ReceivedMessage:
    raw_count = sdk_message.delivery_count or 0
    lock_token = sdk_message.lock_token if locked else None
    locked_until = sdk_message.locked_until_utc if locked else None
    if locked and locked_until is None:
        locked_until = session_locked_until
    return ReceivedMessage(
        topic=topic,
        subscription=subscription,
        body=_body_bytes(sdk_message),
        message_id=sdk_message.message_id or "",
        sequence_number=sdk_message.sequence_number or 0,
        delivery_count=raw_count + 1 if locked else raw_count,
        enqueued_time=sdk_message.enqueued_time_utc or datetime.fromtimestamp(0, UTC),
        session_id=sdk_message.session_id,
        correlation_id=sdk_message.correlation_id,
        content_type=sdk_message.content_type,
        subject=sdk_message.subject,
        application_properties=_decode_properties(sdk_message.application_properties),
        lock_token=str(lock_token) if lock_token is not None else None,
        locked_until=locked_until,
        expires_at=sdk_message.expires_at_utc,
        dead_letter_reason=sdk_message.dead_letter_reason,
        dead_letter_description=sdk_message.dead_letter_error_description,
        dead_lettered_at=None,
    )


def _replay_message_id(original: str | None, count: int) -> str:
    base = original or str(uuid.uuid4())
    candidate = f"{base}:replay:{count}"
    if len(candidate) <= _MAX_MESSAGE_ID_LENGTH:
        return candidate
    digest = hashlib.sha256(base.encode("utf-8")).hexdigest()
    return f"{digest}:replay:{count}"


def _replay_copy(sdk_message: ServiceBusReceivedMessage, subscription: str) -> ServiceBusMessage:
    """A new message for the topic carrying the dead-lettered message's body and properties."""
    decoded = _decode_properties(sdk_message.application_properties)
    properties: dict[str | bytes, Any] = {str(k): v for k, v in decoded.items()}
    count = replay_count(decoded) + 1
    properties[REPLAY_COUNT_PROPERTY] = count
    properties[REPLAY_SUBSCRIPTION_PROPERTY] = subscription
    return ServiceBusMessage(
        _body_bytes(sdk_message),
        message_id=_replay_message_id(sdk_message.message_id, count),
        session_id=sdk_message.session_id,
        correlation_id=sdk_message.correlation_id,
        content_type=sdk_message.content_type,
        subject=sdk_message.subject,
        application_properties=properties,
        time_to_live=sdk_message.time_to_live,
    )


def _render_rule_filter(rule_filter: object) -> str | None:
    if isinstance(rule_filter, TrueRuleFilter):
        return None
    if isinstance(rule_filter, FalseRuleFilter):
        return "1=0"
    if isinstance(rule_filter, SqlRuleFilter):
        return rule_filter.sql_expression or None
    if isinstance(rule_filter, CorrelationRuleFilter):
        clauses: list[str] = []
        system = (
            ("sys.CorrelationId", rule_filter.correlation_id),
            ("sys.MessageId", rule_filter.message_id),
            ("sys.To", rule_filter.to),
            ("sys.ReplyTo", rule_filter.reply_to),
            ("sys.Label", rule_filter.label),
            ("sys.SessionId", rule_filter.session_id),
            ("sys.ReplyToSessionId", rule_filter.reply_to_session_id),
            ("sys.ContentType", rule_filter.content_type),
        )
        for name, value in system:
            if value is not None:
                clauses.append(f"{name} = '{value.replace(chr(39), chr(39) * 2)}'")
        for key, prop in (rule_filter.properties or {}).items():
            if isinstance(prop, str):
                clauses.append(f"{key} = '{prop.replace(chr(39), chr(39) * 2)}'")
            elif isinstance(prop, bool):
                clauses.append(f"{key} = {'TRUE' if prop else 'FALSE'}")
            else:
                clauses.append(f"{key} = {prop}")
        return " AND ".join(clauses) if clauses else None
    return None


def _combine_rules(rules: Iterable[RuleProperties]) -> str | None:
    """Service Bus delivers a message if *any* rule matches: OR the rules' filters together."""
    expressions: list[str] = []
    for rule in rules:
        rendered = _render_rule_filter(rule.filter)
        if rendered is None:
            return None  # a match-all rule makes the whole subscription match-all
        expressions.append(rendered)
    if not expressions:
        return "1=0"  # no rules: the subscription receives nothing
    if len(expressions) == 1:
        return expressions[0]
    return " OR ".join(f"({expression})" for expression in expressions)


def _as_timedelta(value: timedelta | str | None, default: timedelta) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value:
        parsed = isodate.parse_duration(value)
        if isinstance(parsed, timedelta):
            return parsed
    return default


# --------------------------------------------------------------------------------------------------------
# The adapter


class ServiceBusMessageBus:
    """:class:`~shared.messaging.ports.MessageBus` over Azure Service Bus topics and subscriptions.

    Thread-safe: bookkeeping is guarded by one lock and each SDK sender/receiver by its own.
    """

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
