"""Unit tests for the Azure Service Bus adapter, against fakes of the SDK's interfaces.

There is no Service Bus emulator on our machines, so nothing here talks to a broker. The fakes are kept as
type-faithful as practical: the sender receives genuine ``azure.servicebus.ServiceBusMessage`` objects in a
genuine ``ServiceBusMessageBatch`` (real AMQP size accounting), the receivers hand out genuine
``ServiceBusReceivedMessage`` objects decoded from AMQP frames (bytes keys/values, data sections, 0-based
header delivery count, exactly as the SDK surfaces them), and the management fakes return genuine
``SubscriptionProperties`` / ``TopicProperties`` / ``RuleProperties`` objects. What the fakes cannot
prove is broker behaviour (filters, duplicate detection, lock expiry, session assignment).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION as SDK_NEXT_AVAILABLE_SESSION,
)
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSession,
    ServiceBusSubQueue,
)
from azure.servicebus._pyamqp.message import Header, Message, Properties  # the SDK's own AMQP frame types
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusServerBusyError,
    SessionLockLostError,
)
from azure.servicebus.management import (
    CorrelationRuleFilter,
    MessageCountDetails,
    RuleProperties,
    ServiceBusAdministrationClient,
    SqlRuleFilter,
    SubscriptionProperties,
    SubscriptionRuntimeProperties,
    TopicProperties,
    TrueRuleFilter,
)
from azure.servicebus.management._generated.models import SubscriptionDescription

from shared.adapters.azure.servicebus import (
    REPLAY_COUNT_PROPERTY,
    REPLAY_SUBSCRIPTION_PROPERTY,
    ServiceBusMessageBus,
    UnsupportedMessageBody,
    replay_aware_filter,
)
from shared.backbone.errors import DownstreamUnavailable, WriteBackUnmappable
from shared.backbone.settlement import ABANDONED, DEAD_LETTERED, settle_failure
from shared.errors import is_transient
from shared.messaging.errors import (
    BusUnavailable,
    MessageLockLost,
    MessageTooLarge,
    SessionLockLost,
    SubscriptionNotFound,
    TopicNotFound,
)
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, MessageBus, OutboundMessage, PropertyValue

TOPIC = "clinical-events"
SUB_A = "clinical-audit"
SUB_B = "clinical-archive"
SECRET = "9434765919 SMITH^JOHN"  # stands in for patient data; must never reach exception text
NOW = datetime.now(UTC).replace(microsecond=0)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


# --------------------------------------------------------------------------------------------------------
# Fakes


@dataclass
class Entry:
    """A message as the fake broker stores it."""

    sequence_number: int
    body: list[bytes] | Any = field(default_factory=lambda: [b"payload"])
    message_id: str = "m-1"
    session_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    subject: str | None = None
    properties: dict[str | bytes, Any] = field(default_factory=dict)
    delivery_count: int = 0  # AMQP header value: previous deliveries
    enqueued: datetime = NOW
    ttl_ms: int | None = None
    value_body: bool = False


def _sdk_message(
    entry: Entry, receiver: FakeReceiver, *, lock_token: uuid.UUID | None, locked_until: datetime | None
) -> ServiceBusReceivedMessage:
    annotations: dict[str | bytes, Any] = {
        b"x-opt-sequence-number": entry.sequence_number,
        b"x-opt-enqueued-time": _ms(entry.enqueued),
    }
    if locked_until is not None:
        annotations[b"x-opt-locked-until"] = _ms(locked_until)

    def enc(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    amqp = Message(
        header=Header(delivery_count=entry.delivery_count, ttl=entry.ttl_ms),
        message_annotations=annotations,
        properties=Properties(
            message_id=enc(entry.message_id),
            group_id=enc(entry.session_id),
            correlation_id=enc(entry.correlation_id),
            content_type=enc(entry.content_type),
            subject=enc(entry.subject),
        ),
        application_properties=dict(entry.properties) or None,
        data=None if entry.value_body else entry.body,
        value=entry.body if entry.value_body else None,
    )
    if lock_token is None:
        return ServiceBusReceivedMessage(amqp, receiver=receiver, is_peeked_message=True)
    return ServiceBusReceivedMessage(amqp, receiver=receiver, lock_token=lock_token)


@dataclass
class FakeSession:
    session_id: str
    locked_until_utc: datetime
    renewals: int = 0

    def renew_lock(self, **_: Any) -> datetime:
        self.renewals += 1
        self.locked_until_utc += timedelta(seconds=60)
        return self.locked_until_utc


class FakeReceiver:
    """Mimics ``ServiceBusReceiver``: a tiny peek-lock store with the SDK's method signatures."""

    def __init__(self, events: list[tuple[Any, ...]], name: str, *, session: FakeSession | None = None):
        self.events = events
        self.name = name
        self.session = session
        self.entries: list[Entry] = []
        self.locked: dict[uuid.UUID, Entry] = {}
        self.handed_out: list[ServiceBusReceivedMessage] = []
        self.dead_lettered: list[tuple[int, str | None, str | None]] = []
        self.fail: dict[str, list[BaseException]] = {}
        self.receive_calls: list[tuple[int | None, float | None]] = []
        self.peek_calls: list[tuple[int, int]] = []
        self.renewed: list[ServiceBusReceivedMessage] = []
        self.closed = False

    def add(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        return entry

    def _maybe_fail(self, method: str) -> None:
        queue = self.fail.get(method)
        if queue:
            raise queue.pop(0)

    def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        assert not self.closed
        assert max_wait_time is None or max_wait_time > 0  # the SDK rejects 0
        self.receive_calls.append((max_message_count, max_wait_time))
        self._maybe_fail("receive_messages")
        locked_entries = {id(e) for e in self.locked.values()}
        out: list[ServiceBusReceivedMessage] = []
        for entry in sorted(self.entries, key=lambda e: e.sequence_number):
            if len(out) >= (max_message_count or 1):
                break
            if id(entry) in locked_entries:
                continue
            token = uuid.uuid4()
            self.locked[token] = entry
            message = _sdk_message(entry, self, lock_token=token, locked_until=NOW + timedelta(seconds=60))
            self.handed_out.append(message)
            out.append(message)
        return out

    def _settle(self, method: str, message: ServiceBusReceivedMessage) -> Entry:
        self._maybe_fail(method)
        assert message in self.handed_out, "settled a message this receiver never handed out"
        token = message.lock_token
        assert isinstance(token, uuid.UUID)
        entry = self.locked.pop(token, None)
        if entry is None:
            raise MessageAlreadySettled(action=method)
        self.events.append((method, self.name, entry.sequence_number))
        return entry

    def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        self.entries.remove(self._settle("complete_message", message))

    def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        self._settle("abandon_message", message).delivery_count += 1

    def dead_letter_message(
        self,
        message: ServiceBusReceivedMessage,
        reason: str | None = None,
        error_description: str | None = None,
    ) -> None:
        entry = self._settle("dead_letter_message", message)
        self.entries.remove(entry)
        self.dead_lettered.append((entry.sequence_number, reason, error_description))

    def renew_message_lock(self, message: ServiceBusReceivedMessage, **_: Any) -> datetime:
        if self.session is not None:
            raise TypeError("Renewing message lock is an invalid operation when working with sessions.")
        self._maybe_fail("renew_message_lock")
        self.renewed.append(message)
        return NOW + timedelta(minutes=5)

    def peek_messages(
        self, max_message_count: int = 1, *, sequence_number: int = 0, **_: Any
    ) -> list[ServiceBusReceivedMessage]:
        self.peek_calls.append((max_message_count, sequence_number))
        self._maybe_fail("peek_messages")
        chosen = [
            e
            for e in sorted(self.entries, key=lambda e: e.sequence_number)
            if e.sequence_number >= sequence_number
        ]
        return [_sdk_message(e, self, lock_token=None, locked_until=None) for e in chosen[:max_message_count]]

    def close(self) -> None:
        self.closed = True
        self.locked.clear()  # the broker releases the locks


class RecordingBatch(ServiceBusMessageBatch):
    """The SDK's real batch (real size accounting) that also remembers what was added."""

    def __init__(self, max_size_in_bytes: int | None = None) -> None:
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.added: list[ServiceBusMessage] = []

    def add_message(self, message: Any) -> None:
        super().add_message(message)
        self.added.append(message)


class FakeSender:
    def __init__(self, events: list[tuple[Any, ...]], topic: str, max_batch_bytes: int = 256 * 1024):
        self.events = events
        self.topic = topic
        self.max_batch_bytes = max_batch_bytes
        self.sends: list[list[ServiceBusMessage]] = []
        self.fail: list[BaseException] = []
        self.closed = False

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> RecordingBatch:
        return RecordingBatch(max_size_in_bytes or self.max_batch_bytes)

    def send_messages(self, message: Any, **_: Any) -> None:
        if self.fail:
            raise self.fail.pop(0)
        if isinstance(message, RecordingBatch):
            batch = list(message.added)
        else:
            assert isinstance(message, ServiceBusMessage)
            batch = [message]
        self.sends.append(batch)
        for sent in batch:
            self.events.append(("send", self.topic, sent.message_id))

    def close(self) -> None:
        self.closed = True


class FakeClient:
    """Mimics ``ServiceBusClient.get_topic_sender`` / ``get_subscription_receiver``."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.senders: dict[str, FakeSender] = {}
        self.receivers: dict[tuple[str, str, str | None, Any], FakeReceiver] = {}
        self.next_sessions: list[FakeReceiver] = []
        self.receiver_calls: list[dict[str, Any]] = []
        self.missing: set[str] = set()
        self.closed = False

    def sender(self, topic: str = TOPIC) -> FakeSender:
        return self.senders.setdefault(topic, FakeSender(self.events, topic))

    def receiver(
        self, sub: str, *, topic: str = TOPIC, session_id: str | None = None, dead_letter: bool = False
    ) -> FakeReceiver:
        key = (topic, sub, session_id, ServiceBusSubQueue.DEAD_LETTER if dead_letter else None)
        if key not in self.receivers:
            name = f"{sub}{'/$dlq' if dead_letter else ''}{'/' + session_id if session_id else ''}"
            session = FakeSession(session_id, NOW + timedelta(seconds=30)) if session_id else None
            self.receivers[key] = FakeReceiver(self.events, name, session=session)
        return self.receivers[key]

    def get_topic_sender(self, topic_name: str, **_: Any) -> FakeSender:
        if topic_name in self.missing:
            raise MessagingEntityNotFoundError(message="entity not found")
        return self.sender(topic_name)

    def get_subscription_receiver(
        self, topic_name: str, subscription_name: str, **kwargs: Any
    ) -> FakeReceiver:
        self.receiver_calls.append(
            {"topic_name": topic_name, "subscription_name": subscription_name, **kwargs}
        )
        assert kwargs.get("receive_mode", ServiceBusReceiveMode.PEEK_LOCK) == ServiceBusReceiveMode.PEEK_LOCK
        if subscription_name in self.missing:
            raise MessagingEntityNotFoundError(message="entity not found")
        session_id = kwargs.get("session_id")
        if session_id == SDK_NEXT_AVAILABLE_SESSION:
            return self.next_sessions.pop(0)
        dead_letter = kwargs.get("sub_queue") == ServiceBusSubQueue.DEAD_LETTER
        return self.receiver(
            subscription_name, topic=topic_name, session_id=session_id, dead_letter=dead_letter
        )

    def close(self) -> None:
        self.closed = True


def _build(cls: type, name: str, **values: Any) -> Any:
    """A genuine SDK management model with every keyword-only field defaulted to ``None``."""
    params = inspect.signature(cls).parameters.values()
    kwargs: dict[str, Any] = {p.name: None for p in params if p.kind is p.KEYWORD_ONLY}
    kwargs.update(values)
    return cls(name, **kwargs)


class FakeAdmin:
    """Mimics the ``ServiceBusAdministrationClient`` calls the adapter makes, returning genuine models."""

    def __init__(self) -> None:
        self.topics: list[TopicProperties] = []
        self.subscriptions: dict[str, list[SubscriptionProperties]] = {}
        self.counts: dict[tuple[str, str], tuple[int, int]] = {}
        self.rules: dict[tuple[str, str], list[RuleProperties]] = {}
        self.closed = False

    def list_topics(self, **_: Any) -> list[TopicProperties]:
        return list(self.topics)

    def list_subscriptions(self, topic_name: str, **_: Any) -> list[SubscriptionProperties]:
        return list(self.subscriptions.get(topic_name, []))

    def get_subscription_runtime_properties(
        self, topic_name: str, subscription_name: str, **_: Any
    ) -> SubscriptionRuntimeProperties:
        active, dead = self.counts[(topic_name, subscription_name)]
        details = MessageCountDetails(active_message_count=active, dead_letter_message_count=dead)
        description = SubscriptionDescription(message_count_details=details)
        return SubscriptionRuntimeProperties._from_internal_entity(subscription_name, description)

    def list_rules(self, topic_name: str, subscription_name: str, **_: Any) -> list[RuleProperties]:
        return list(self.rules.get((topic_name, subscription_name), []))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def admin() -> FakeAdmin:
    return FakeAdmin()


@pytest.fixture
def bus(client: FakeClient, admin: FakeAdmin) -> Iterator[ServiceBusMessageBus]:
    adapter = ServiceBusMessageBus(
        client,  # type: ignore[arg-type]
        admin,  # type: ignore[arg-type]
        min_receive_wait=0.01,
        dead_letter_receive_wait=0.01,
    )
    yield adapter
    adapter.close()


# --------------------------------------------------------------------------------------------------------
# Construction


def test_implements_the_port(bus: ServiceBusMessageBus) -> None:
    assert isinstance(bus, MessageBus)


def test_from_namespace_builds_identity_based_sdk_clients_without_connecting() -> None:
    class Credential:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            raise AssertionError("constructing the adapter must not fetch a token")

    adapter = ServiceBusMessageBus.from_namespace("tie-test.servicebus.windows.net", Credential())
    try:
        assert isinstance(adapter._client, ServiceBusClient)
        assert adapter._client.fully_qualified_namespace == "tie-test.servicebus.windows.net"
        assert isinstance(adapter._admin, ServiceBusAdministrationClient)
    finally:
        adapter.close()


# --------------------------------------------------------------------------------------------------------
# Publish


def test_publish_maps_every_field_onto_a_genuine_servicebus_message(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    outbound = OutboundMessage(
        body=b"MSH|^~\\&|PAS",
        message_id="ctl-123",
        session_id="patient-key-1",
        correlation_id="corr-9",
        content_type="x-application/hl7-v2+er7",
        subject="ADT^A01",
        application_properties={"event": "admission", "priority": 2, "urgent": True, "score": 1.5},
        time_to_live=timedelta(hours=1),
    )
    bus.publish(TOPIC, [outbound])
    [[sent]] = client.sender().sends
    assert type(sent) is ServiceBusMessage
    assert b"".join(sent.body) == b"MSH|^~\\&|PAS"
    assert sent.message_id == "ctl-123"
    assert sent.session_id == "patient-key-1"
    assert sent.correlation_id == "corr-9"
    assert sent.content_type == "x-application/hl7-v2+er7"
    assert sent.subject == "ADT^A01"
    assert sent.application_properties == {"event": "admission", "priority": 2, "urgent": True, "score": 1.5}
    assert sent.time_to_live == timedelta(hours=1)


def test_publish_defaults_message_id_to_distinct_uuids_and_rounds_subsecond_ttl_up(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    bus.publish(
        TOPIC, [OutboundMessage(b"a", time_to_live=timedelta(milliseconds=300)), OutboundMessage(b"b")]
    )
    [[first, second]] = client.sender().sends
    assert first.message_id != second.message_id
    assert uuid.UUID(first.message_id) and uuid.UUID(second.message_id)
    assert first.time_to_live == timedelta(seconds=1)  # the SDK would truncate 0.3 s to "no TTL"
    assert second.time_to_live is None
    assert first.application_properties is None


def test_publish_several_messages_is_one_batch_send(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    bus.publish(TOPIC, [OutboundMessage(f"m{i}".encode(), message_id=f"id-{i}") for i in range(3)])
    sends = client.sender().sends
    assert len(sends) == 1
    assert [m.message_id for m in sends[0]] == ["id-0", "id-1", "id-2"]


def test_publish_nothing_sends_nothing(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    bus.publish(TOPIC, [])
    assert client.senders == {}


def test_messages_that_do_not_fit_one_batch_raise_and_nothing_is_sent(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    client.sender().max_batch_bytes = 1000
    messages = [OutboundMessage(SECRET.encode() + b"x" * 300, message_id=f"id-{i}") for i in range(3)]
    with pytest.raises(MessageTooLarge) as caught:
        bus.publish(TOPIC, messages)
    assert client.sender().sends == []
    assert SECRET not in str(caught.value)
    assert not is_transient(caught.value)
    # Two of them fit: the same call with fewer messages goes through as one batch.
    bus.publish(TOPIC, messages[:2])
    assert [[m.message_id for m in batch] for batch in client.sender().sends] == [["id-0", "id-1"]]


def test_single_oversized_message_raises_message_too_large(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    client.sender().max_batch_bytes = 500
    with pytest.raises(MessageTooLarge):
        bus.publish(TOPIC, [OutboundMessage(b"x" * 600)])
    assert client.sender().sends == []


@pytest.mark.parametrize(
    ("sdk_error", "expected"),
    [
        (MessageSizeExceededError(message="too big"), MessageTooLarge),
        (MessagingEntityNotFoundError(message="nope"), TopicNotFound),
        (ServiceBusConnectionError(message="down"), BusUnavailable),
        (OperationTimeoutError(message="slow"), BusUnavailable),
        (ServiceBusCommunicationError(message="dns"), BusUnavailable),
        (ServiceBusServerBusyError(message="busy"), BusUnavailable),
    ],
)
def test_send_errors_are_mapped(
    bus: ServiceBusMessageBus, client: FakeClient, sdk_error: Exception, expected: type[Exception]
) -> None:
    client.sender().fail.append(sdk_error)
    with pytest.raises(expected) as caught:
        bus.publish(TOPIC, [OutboundMessage(SECRET.encode())])
    assert caught.value.__cause__ is sdk_error
    assert SECRET not in str(caught.value)


def test_unknown_topic_when_opening_the_sender(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    client.missing.add("no-such-topic")
    with pytest.raises(TopicNotFound, match="no-such-topic"):
        bus.publish("no-such-topic", [OutboundMessage(b"x")])


# --------------------------------------------------------------------------------------------------------
# Receive and map


def test_receive_maps_sdk_message_to_received_message(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    receiver = client.receiver(SUB_A)
    receiver.add(
        Entry(
            7,
            body=[b"MSH|part1", b"|part2"],
            message_id="ctl-7",
            correlation_id="corr",
            content_type="application/fhir+json",
            subject="Observation",
            properties={b"event": b"result", b"attempt": 3, b"urgent": False, b"ratio": 0.5},
            delivery_count=0,
            ttl_ms=3_600_000,
        )
    )
    [message] = bus.receive(TOPIC, SUB_A, max_messages=5, max_wait=0)
    assert (message.topic, message.subscription) == (TOPIC, SUB_A)
    assert message.body == b"MSH|part1|part2"
    assert message.message_id == "ctl-7"
    assert message.sequence_number == 7
    assert message.delivery_count == 1  # Service Bus convention: first delivery is 1 (AMQP header says 0)
    assert message.enqueued_time == NOW
    assert message.correlation_id == "corr"
    assert message.content_type == "application/fhir+json"
    assert message.subject == "Observation"
    assert message.session_id is None
    assert dict(message.application_properties) == {
        "event": "result",
        "attempt": 3,
        "urgent": False,
        "ratio": 0.5,
    }
    assert message.lock_token == str(next(iter(receiver.locked)))
    assert message.locked_until == NOW + timedelta(seconds=60)
    assert message.expires_at == NOW + timedelta(hours=1)
    assert message.dead_letter_reason is None
    # max_wait=0 cannot be handed to the SDK: the configured minimum is used instead.
    assert receiver.receive_calls == [(5, 0.01)]


def test_receive_reuses_one_receiver_per_subscription(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    client.receiver(SUB_A).add(Entry(1))
    client.receiver(SUB_A).add(Entry(2))
    assert len(bus.receive(TOPIC, SUB_A)) == 1
    assert len(bus.receive(TOPIC, SUB_A)) == 1
    assert len(client.receiver_calls) == 1
    call = client.receiver_calls[0]
    assert call["receive_mode"] == ServiceBusReceiveMode.PEEK_LOCK
    assert "session_id" not in call and "sub_queue" not in call


def test_unsupported_body_is_dead_lettered_not_returned(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    receiver = client.receiver(SUB_A)
    receiver.add(Entry(1, body={"not": "bytes"}, value_body=True))
    receiver.add(Entry(2, body=[b"ok"]))
    received = bus.receive(TOPIC, SUB_A, max_messages=2)
    assert [m.sequence_number for m in received] == [2]
    assert receiver.dead_lettered == [(1, UnsupportedMessageBody.code, receiver.dead_lettered[0][2])]
    assert "value" in (receiver.dead_lettered[0][2] or "")


def test_string_value_body_is_accepted(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    client.receiver(SUB_A).add(Entry(1, body="plain text", value_body=True))
    [message] = bus.receive(TOPIC, SUB_A)
    assert message.body == b"plain text"


# --------------------------------------------------------------------------------------------------------
# Settlement


def test_settlement_goes_to_the_receiver_that_received_the_message(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    recv_a, recv_b = client.receiver(SUB_A), client.receiver(SUB_B)
    recv_a.add(Entry(1, message_id="same"))
    recv_b.add(Entry(1, message_id="same"))
    [from_a] = bus.receive(TOPIC, SUB_A)
    [from_b] = bus.receive(TOPIC, SUB_B)
    bus.complete(from_b)
    assert client.events == [("complete_message", SUB_B, 1)]
    assert recv_b.entries == [] and len(recv_a.entries) == 1
    bus.abandon(from_a)
    assert client.events[-1] == ("abandon_message", SUB_A, 1)
    assert recv_a.entries[0].delivery_count == 1


def test_settling_twice_raises_lock_lost_without_calling_the_sdk(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    client.receiver(SUB_A).add(Entry(1))
    [message] = bus.receive(TOPIC, SUB_A)
    bus.complete(message)
    with pytest.raises(MessageLockLost):
        bus.complete(message)
    assert client.events == [("complete_message", SUB_A, 1)]


def test_dead_letter_passes_reason_and_description(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    receiver = client.receiver(SUB_A)
    receiver.add(Entry(4))
    [message] = bus.receive(TOPIC, SUB_A)
    bus.dead_letter(message, reason="ValidationFailed", description="MSH-9 not a supported trigger")
    assert receiver.dead_lettered == [(4, "ValidationFailed", "MSH-9 not a supported trigger")]


def test_a_permanent_write_back_failure_is_dead_lettered_at_the_first_delivery(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    """The host's settlement (shared.backbone.settlement) through the SDK: dead_letter_message with the
    error code as reason and the failing field as description, at delivery 1 - never abandon_message."""
    receiver = client.receiver(SUB_A)
    receiver.add(Entry(9, body=[SECRET.encode()]))
    [message] = bus.receive(TOPIC, SUB_A)
    exc = WriteBackUnmappable("hl7v2", "cannot be written", detail="charset ASCII at PID-5")
    assert settle_failure(bus, message, exc) == DEAD_LETTERED
    assert receiver.dead_lettered == [(9, "writeback-unmappable", "charset ASCII at PID-5")]
    assert [e[0] for e in client.events if e[0].endswith("_message")] == ["dead_letter_message"]
    assert SECRET not in repr(receiver.dead_lettered)


def test_a_transient_write_back_failure_is_abandoned(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    receiver = client.receiver(SUB_A)
    entry = receiver.add(Entry(10))
    [message] = bus.receive(TOPIC, SUB_A)
    assert settle_failure(bus, message, DownstreamUnavailable("hl7v2", "refused")) == ABANDONED
    assert receiver.dead_lettered == [] and entry.delivery_count == 1  # back on the subscription


@pytest.mark.parametrize(
    "sdk_error", [MessageLockLostError(message="expired"), MessageAlreadySettled(action="complete")]
)
def test_lock_lost_is_mapped_and_forgotten(
    bus: ServiceBusMessageBus, client: FakeClient, sdk_error: Exception
) -> None:
    receiver = client.receiver(SUB_A)
    receiver.add(Entry(1, body=[SECRET.encode()]))
    [message] = bus.receive(TOPIC, SUB_A)
    receiver.fail["complete_message"] = [sdk_error]
    with pytest.raises(MessageLockLost) as caught:
        bus.complete(message)
    assert is_transient(caught.value)
    assert SECRET not in str(caught.value)
    assert "sequence_number=1" in str(caught.value)
    with pytest.raises(MessageLockLost):  # bookkeeping dropped: the SDK is not asked again
        bus.abandon(message)
    assert client.events == []


def test_transient_settlement_failure_keeps_the_lock_for_a_retry(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    receiver = client.receiver(SUB_A)
    receiver.add(Entry(1))
    [message] = bus.receive(TOPIC, SUB_A)
    receiver.fail["complete_message"] = [ServiceBusConnectionError(message="link detached")]
    with pytest.raises(BusUnavailable):
        bus.complete(message)
    bus.complete(message)
    assert client.events == [("complete_message", SUB_A, 1)]


def test_renew_lock_uses_the_original_sdk_message(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    receiver = client.receiver(SUB_A)
    receiver.add(Entry(1))
    [message] = bus.receive(TOPIC, SUB_A)
    assert bus.renew_lock(message) == NOW + timedelta(minutes=5)
    assert receiver.renewed == [receiver.handed_out[0]]


def test_peeked_messages_have_no_lock_and_cannot_be_settled(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    receiver = client.receiver(SUB_A)
    receiver.add(Entry(3, delivery_count=2))
    receiver.add(Entry(5))
    peeked = bus.peek(TOPIC, SUB_A, max_messages=10)
    assert [m.sequence_number for m in peeked] == [3, 5]
    assert all(m.lock_token is None and m.locked_until is None for m in peeked)
    assert peeked[0].delivery_count == 2  # raw header value for browsed messages
    assert receiver.peek_calls == [(10, 1)]  # explicit start, not "after the last received"
    with pytest.raises(ValueError, match="peeked"):
        bus.complete(peeked[0])
    assert receiver.locked == {}


def test_peek_dead_letter_surfaces_reason_and_description(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    dlq = client.receiver(SUB_A, dead_letter=True)
    dlq.add(
        Entry(
            9,
            properties={
                b"DeadLetterReason": b"MaxDeliveryCountExceeded",
                b"DeadLetterErrorDescription": b"Message could not be consumed after 5 delivery attempts.",
                b"event": b"result",
            },
        )
    )
    [message] = bus.peek(TOPIC, SUB_A, dead_letter=True)
    assert message.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert message.dead_letter_description == "Message could not be consumed after 5 delivery attempts."
    assert dict(message.application_properties) == {"event": "result"}
    assert message.dead_lettered_at is None
    assert client.receiver_calls[-1]["sub_queue"] == ServiceBusSubQueue.DEAD_LETTER


# --------------------------------------------------------------------------------------------------------
# Sessions


def test_next_available_session_receive_and_release(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    session_receiver = FakeReceiver(
        client.events, "s1", session=FakeSession("patient-1", NOW + timedelta(seconds=30))
    )
    session_receiver.add(Entry(1, session_id="patient-1"))
    session_receiver.add(Entry(2, session_id="patient-1"))
    client.next_sessions.append(session_receiver)

    received = bus.receive(TOPIC, SUB_A, max_messages=2, max_wait=0.5, session_id=NEXT_AVAILABLE_SESSION)
    call = client.receiver_calls[-1]
    assert call["session_id"] == SDK_NEXT_AVAILABLE_SESSION
    assert call["max_wait_time"] == 0.5
    assert [m.session_id for m in received] == ["patient-1", "patient-1"]
    assert all(m.locked_until == NOW + timedelta(seconds=30) for m in received)  # the session's lock

    bus.complete(received[0])
    assert client.events == [("complete_message", "s1", 1)]
    # Renewing a session message renews the session lock (the SDK refuses per-message renewal).
    assert bus.renew_lock(received[1]) == NOW + timedelta(seconds=90)
    assert session_receiver.session is not None and session_receiver.session.renewals == 1

    bus.release_session(TOPIC, SUB_A, "patient-1")
    assert session_receiver.closed
    with pytest.raises(MessageLockLost):
        bus.complete(received[1])
    bus.release_session(TOPIC, SUB_A, "patient-1")  # releasing again is a no-op


def test_next_available_session_with_no_session_returns_empty(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    idle = FakeReceiver(client.events, "idle", session=FakeSession("unassigned", NOW))
    idle.fail["receive_messages"] = [OperationTimeoutError(message="no session")]
    client.next_sessions.append(idle)
    assert bus.receive(TOPIC, SUB_A, session_id=NEXT_AVAILABLE_SESSION) == []
    assert idle.closed


def test_explicit_session_receiver_is_cached_and_session_lock_loss_mapped(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    receiver = client.receiver(SUB_A, session_id="patient-2")
    receiver.add(Entry(1, session_id="patient-2"))
    [message] = bus.receive(TOPIC, SUB_A, session_id="patient-2")
    assert bus.receive(TOPIC, SUB_A, session_id="patient-2") == []
    assert [c["session_id"] for c in client.receiver_calls] == ["patient-2"]

    receiver.fail["complete_message"] = [SessionLockLostError(message="session lock expired")]
    with pytest.raises(SessionLockLost):
        bus.complete(message)
    assert receiver.closed  # the receiver for a lost session is dropped


# --------------------------------------------------------------------------------------------------------
# Dead-letter replay and purge


def _dead_letter(sequence_number: int, **kwargs: Any) -> Entry:
    properties = {
        b"DeadLetterReason": b"MaxDeliveryCountExceeded",
        b"DeadLetterErrorDescription": b"5 attempts",
        **kwargs.pop("properties", {}),
    }
    return Entry(sequence_number, properties=properties, **kwargs)


def test_replay_sends_a_marked_copy_then_completes_the_dead_letter(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    dlq = client.receiver(SUB_A, dead_letter=True)
    dlq.add(
        _dead_letter(
            10,
            body=[b"MSH|1"],
            message_id="ctl-10",
            session_id="patient-1",
            correlation_id="corr-10",
            subject="ADT^A01",
            properties={b"event": b"admission"},
        )
    )
    dlq.add(_dead_letter(11, message_id="ctl-11", properties={REPLAY_COUNT_PROPERTY.encode(): 2}))

    assert bus.replay_dead_letters(TOPIC, SUB_A) == 2

    first, second = (batch[0] for batch in client.sender().sends)
    assert b"".join(first.body) == b"MSH|1"
    assert (
        first.session_id == "patient-1" and first.correlation_id == "corr-10" and first.subject == "ADT^A01"
    )
    assert first.application_properties == {
        "event": "admission",
        REPLAY_COUNT_PROPERTY: 1,
        REPLAY_SUBSCRIPTION_PROPERTY: SUB_A,
    }
    assert first.message_id == "ctl-10:replay:1"  # the original id would be dropped by duplicate detection
    assert (second.application_properties or {})[REPLAY_COUNT_PROPERTY] == 3
    assert second.message_id == "ctl-11:replay:3"
    # Each dead letter is completed only after its copy was sent.
    dlq_name = f"{SUB_A}/$dlq"
    assert [e for e in client.events if e[0] != "abandon_message"] == [
        ("send", TOPIC, "ctl-10:replay:1"),
        ("complete_message", dlq_name, 10),
        ("send", TOPIC, "ctl-11:replay:3"),
        ("complete_message", dlq_name, 11),
    ]
    assert dlq.entries == []


def test_replay_does_not_complete_when_the_send_fails(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    dlq = client.receiver(SUB_A, dead_letter=True)
    dlq.add(_dead_letter(10, message_id="ctl-10"))
    dlq.add(_dead_letter(11, message_id="ctl-11"))
    client.sender().fail.append(ServiceBusServerBusyError(message="busy"))

    with pytest.raises(BusUnavailable):
        bus.replay_dead_letters(TOPIC, SUB_A)

    assert [e[0] for e in client.events].count("complete_message") == 0
    assert [e.sequence_number for e in dlq.entries] == [10, 11]  # nothing lost
    assert dlq.locked == {}  # both abandoned back, not left locked
    # A later attempt succeeds and replays both.
    assert bus.replay_dead_letters(TOPIC, SUB_A) == 2
    assert dlq.entries == []


def test_replay_selected_sequence_numbers_only(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    dlq = client.receiver(SUB_A, dead_letter=True)
    for seq in (10, 11, 12):
        dlq.add(_dead_letter(seq, message_id=f"ctl-{seq}"))

    assert bus.replay_dead_letters(TOPIC, SUB_A, sequence_numbers=[11]) == 1

    assert [m.message_id for batch in client.sender().sends for m in batch] == ["ctl-11:replay:1"]
    assert [e.sequence_number for e in dlq.entries] == [10, 12]
    assert dlq.locked == {}  # the unselected one was abandoned back
    assert ("abandon_message", f"{SUB_A}/$dlq", 10) in client.events


def test_replay_of_absent_sequence_numbers_locks_nothing(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    dlq = client.receiver(SUB_A, dead_letter=True)
    dlq.add(_dead_letter(10))
    assert bus.replay_dead_letters(TOPIC, SUB_A, sequence_numbers=[99]) == 0
    assert bus.replay_dead_letters(TOPIC, SUB_A, sequence_numbers=[]) == 0
    assert dlq.receive_calls == []
    assert client.events == []


def test_purge_deletes_only_dead_letters_older_than_the_cutoff(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    dlq = client.receiver(SUB_A, dead_letter=True)
    dlq.add(_dead_letter(1, enqueued=NOW - timedelta(days=30)))
    dlq.add(_dead_letter(2, enqueued=NOW - timedelta(hours=1)))
    dlq.add(_dead_letter(3, enqueued=NOW - timedelta(days=8)))

    assert bus.purge_dead_letters(TOPIC, SUB_A, older_than=timedelta(days=7)) == 2

    assert [e.sequence_number for e in dlq.entries] == [2]
    assert dlq.locked == {}
    completed = [e[2] for e in client.events if e[0] == "complete_message"]
    assert sorted(completed) == [1, 3]
    assert client.senders == {}  # purge never publishes


# --------------------------------------------------------------------------------------------------------
# Topology


def test_topology_reports_counts_settings_and_filters(bus: ServiceBusMessageBus, admin: FakeAdmin) -> None:
    admin.topics = [
        _build(TopicProperties, TOPIC, requires_duplicate_detection=True,
               duplicate_detection_history_time_window=timedelta(minutes=10)),
        _build(TopicProperties, "platform-events", requires_duplicate_detection=False,
               duplicate_detection_history_time_window=timedelta(minutes=10)),
    ]  # fmt: skip
    admin.subscriptions = {
        TOPIC: [
            _build(SubscriptionProperties, SUB_A, max_delivery_count=5, lock_duration=timedelta(seconds=60),
                   requires_session=False),
            _build(SubscriptionProperties, SUB_B, max_delivery_count=3, lock_duration=timedelta(minutes=2),
                   requires_session=True),
        ],
        "platform-events": [
            _build(SubscriptionProperties, "platform-audit", max_delivery_count=None, lock_duration=None,
                   requires_session=None),
        ],
    }  # fmt: skip
    admin.counts = {
        (TOPIC, SUB_A): (4, 1),
        (TOPIC, SUB_B): (0, 7),
        ("platform-events", "platform-audit"): (0, 0),
    }
    sql = replay_aware_filter(SUB_A, "event = 'result'")
    admin.rules = {
        (TOPIC, SUB_A): [_build(RuleProperties, "r", filter=SqlRuleFilter(sql))],
        (TOPIC, SUB_B): [
            _build(RuleProperties, "r1", filter=SqlRuleFilter("a = 1")),
            _build(RuleProperties, "r2", filter=CorrelationRuleFilter(label="ADT", properties={"kind": "x"})),
        ],
        ("platform-events", "platform-audit"): [_build(RuleProperties, "$Default", filter=TrueRuleFilter())],
    }

    clinical, platform = bus.topology()

    assert clinical.name == TOPIC and clinical.duplicate_detection_window == timedelta(minutes=10)
    archive, audit = clinical.subscriptions  # sorted by name
    assert (audit.name, audit.active_count, audit.dead_letter_count) == (SUB_A, 4, 1)
    assert (audit.max_delivery_count, audit.lock_duration, audit.requires_session) == (
        5,
        timedelta(seconds=60),
        False,
    )
    assert audit.filter == sql
    assert (archive.name, archive.active_count, archive.dead_letter_count) == (SUB_B, 0, 7)
    assert archive.requires_session is True and archive.lock_duration == timedelta(minutes=2)
    assert archive.filter == "(a = 1) OR (sys.Label = 'ADT' AND kind = 'x')"

    assert platform.duplicate_detection_window is None
    [pa] = platform.subscriptions
    assert pa.filter is None  # TrueFilter: everything
    assert (pa.max_delivery_count, pa.lock_duration, pa.requires_session) == (
        10,
        timedelta(seconds=60),
        False,
    )


def test_topology_subscription_without_rules_receives_nothing(
    bus: ServiceBusMessageBus, admin: FakeAdmin
) -> None:
    admin.topics = [_build(TopicProperties, TOPIC, requires_duplicate_detection=False)]
    admin.subscriptions = {TOPIC: [_build(SubscriptionProperties, SUB_A, max_delivery_count=5)]}
    admin.counts = {(TOPIC, SUB_A): (0, 0)}
    [topic] = bus.topology()
    assert topic.subscriptions[0].filter == "1=0"


# --------------------------------------------------------------------------------------------------------
# Replay-aware filter


def test_replay_aware_filter_text() -> None:
    clause = "tie_replay_subscription IS NULL OR tie_replay_subscription = 'clinical-audit'"
    assert replay_aware_filter("clinical-audit", None) == clause
    assert replay_aware_filter("clinical-audit", "1=1") == clause
    assert replay_aware_filter("clinical-audit", "event = 'result'") == f"(event = 'result') AND ({clause})"
    assert replay_aware_filter("o'brien", None).endswith("= 'o''brien'")
    with pytest.raises(ValueError):
        replay_aware_filter("", None)


def test_replay_aware_filter_routes_replays_to_one_subscription_only() -> None:
    """Evaluate the rule with the platform's own Service Bus SQL evaluator (the embedded bus uses it too)."""
    compile_filter = pytest.importorskip("shared.messaging.filters").compile_filter
    audit = compile_filter(replay_aware_filter(SUB_A, "event = 'result'"))
    archive = compile_filter(replay_aware_filter(SUB_B, None))
    fresh: dict[str, PropertyValue] = {"event": "result"}
    replay_for_audit: dict[str, PropertyValue] = {
        "event": "result",
        REPLAY_SUBSCRIPTION_PROPERTY: SUB_A,
        REPLAY_COUNT_PROPERTY: 1,
    }
    assert audit(fresh) and archive(fresh)
    assert audit(replay_for_audit) and not archive(replay_for_audit)
    assert not audit({"event": "order"})


# --------------------------------------------------------------------------------------------------------
# Error mapping table (receive path) and lifecycle


@pytest.mark.parametrize(
    ("sdk_error", "expected", "transient"),
    [
        (MessagingEntityNotFoundError(message="nope"), SubscriptionNotFound, False),
        (ServiceBusConnectionError(message="down"), BusUnavailable, True),
        (OperationTimeoutError(message="slow"), BusUnavailable, True),
        (ServiceBusCommunicationError(message="dns"), BusUnavailable, True),
        (ServiceBusServerBusyError(message="busy"), BusUnavailable, True),
        (SessionLockLostError(message="gone"), SessionLockLost, True),
        (MessageLockLostError(message="gone"), MessageLockLost, True),
    ],
)
def test_receive_error_mapping(
    bus: ServiceBusMessageBus,
    client: FakeClient,
    sdk_error: Exception,
    expected: type[Exception],
    transient: bool,
) -> None:
    client.receiver(SUB_A).fail["receive_messages"] = [sdk_error]
    with pytest.raises(expected) as caught:
        bus.receive(TOPIC, SUB_A)
    assert is_transient(caught.value) is transient
    assert f"subscription={SUB_A}" in str(caught.value)


def test_unknown_subscription_when_opening_the_receiver(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    client.missing.add("no-such-sub")
    with pytest.raises(SubscriptionNotFound):
        bus.receive(TOPIC, "no-such-sub")


def test_non_sdk_errors_pass_through_unchanged(bus: ServiceBusMessageBus, client: FakeClient) -> None:
    client.receiver(SUB_A).fail["receive_messages"] = [KeyError("bug")]
    with pytest.raises(KeyError):
        bus.receive(TOPIC, SUB_A)


def test_close_closes_every_handler_and_rejects_further_use(client: FakeClient, admin: FakeAdmin) -> None:
    adapter = ServiceBusMessageBus(client, admin, min_receive_wait=0.01)  # type: ignore[arg-type]
    client.receiver(SUB_A).add(Entry(1))
    adapter.receive(TOPIC, SUB_A)
    adapter.publish(TOPIC, [OutboundMessage(b"x")])
    adapter.close()
    adapter.close()  # idempotent
    assert client.receiver(SUB_A).closed and client.sender().closed and client.closed and admin.closed
    with pytest.raises(RuntimeError):
        adapter.publish(TOPIC, [OutboundMessage(b"x")])


def test_fakes_only_stand_in_for_methods_the_real_sdk_has() -> None:
    """Guard the fakes: every method the adapter can call on them exists on the real SDK class."""
    from azure.servicebus import ServiceBusReceiver, ServiceBusSender

    pairs: list[tuple[type, type]] = [
        (FakeReceiver, ServiceBusReceiver),
        (FakeSender, ServiceBusSender),
        (FakeClient, ServiceBusClient),
        (FakeAdmin, ServiceBusAdministrationClient),
        (FakeSession, ServiceBusSession),
        (RecordingBatch, ServiceBusMessageBatch),
    ]
    helpers = {"add", "sender", "receiver"}
    for fake, real in pairs:
        public = {
            name
            for name, value in vars(fake).items()
            if inspect.isfunction(value) and not name.startswith("_")
        } - helpers
        assert public, fake
        for name in public:
            assert hasattr(real, name), f"{real.__name__}.{name} does not exist"


def test_concurrent_receive_and_complete_settles_each_message_once(
    bus: ServiceBusMessageBus, client: FakeClient
) -> None:
    import threading

    receiver = client.receiver(SUB_A)
    for seq in range(1, 101):
        receiver.add(Entry(seq))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while batch := bus.receive(TOPIC, SUB_A, max_messages=3):
                for message in batch:
                    bus.complete(message)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    completed = sorted(e[2] for e in client.events if e[0] == "complete_message")
    assert completed == list(range(1, 101))
    assert receiver.entries == [] and bus._locked == {}
