"""Every Service Bus trigger settles its own message through ``ServiceBusMessageActions`` (autoComplete off):
complete on success, dead-letter a permanent failure at the first delivery with its reason and description,
abandon (and re-raise) anything else. Run against fakes of the SDK-type binding interfaces - there is no
Service Bus emulator here; the local host's settlement is covered in tests/integration/test_e2e_host.py."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions import audit_consumer, events, ingest
from functions._servicebus import body_of, properties_of
from shared.backbone.errors import (
    ContractViolation,
    DownstreamRejected,
    DownstreamUnavailable,
    WriteBackUnmappable,
)
from shared.idempotency.exceptions import IdempotencyStoredFailure
from shared.messaging.topology import SUB_WRITEBACK_HL7V2, TOPIC_CLINICAL
from tie.localhost.discovery import describe, load_app

#: Each Service Bus trigger registered in function_app.py -> (module, the handler its settlement wraps).
TRIGGERS: dict[str, tuple[Any, str]] = {
    "writeback_fhir": (events, "_write_back"),
    "writeback_hl7v2": (events, "_write_back"),
    "ingest_processor": (ingest, "_process"),
    "audit_clinical": (audit_consumer, "_consume"),
    "audit_operational": (audit_consumer, "_consume"),
    "audit_platform": (audit_consumer, "_consume"),
}

#: failure raised by the handler (None: it returns) -> the settlement call (action, reason, description).
OUTCOMES: list[tuple[str, Exception | None, tuple[str, ...]]] = [
    ("success", None, ("complete",)),
    (
        "rejected",
        DownstreamRejected("hl7v2", "rejected", response="AE", detail="ERR 103 at PID-8 (E)"),
        ("deadletter", "downstream-rejected", "ERR 103 at PID-8 (E)"),
    ),
    (
        "unmappable",
        WriteBackUnmappable("hl7v2", "cannot be written", detail="charset ASCII at PID-5"),
        ("deadletter", "writeback-unmappable", "charset ASCII at PID-5"),
    ),
    (
        "stored-final",
        IdempotencyStoredFailure("k" * 64, error_code="downstream-rejected", error_type="DownstreamRejected"),
        ("deadletter", "downstream-rejected", "stored final failure (DownstreamRejected)"),
    ),
    (
        "broken-contract",
        ContractViolation(TOPIC_CLINICAL, path="$.data", keyword="canonical-model"),
        ("deadletter", "contract-violation", "$.data: canonical-model"),
    ),
    ("unavailable", DownstreamUnavailable("hl7v2", "connection refused"), ("abandon",)),
    ("bug", ValueError("a bug"), ("abandon",)),
]


@dataclass
class FakeReceivedMessage:
    """The attributes of ``azure.servicebus.ServiceBusReceivedMessage`` the triggers read."""

    body: Any = b"{}"
    application_properties: dict[Any, Any] | None = None
    message_id: str = "m-1"
    delivery_count: int = 1
    correlation_id: str | None = "c-1"
    session_id: str | None = "s-1"
    content_type: str | None = "application/json"
    subject: str | None = "observation.final"


@dataclass
class FakeMessageActions:
    """``ServiceBusMessageActions``: records each settlement call."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def complete(self, message: Any) -> None:
        self.calls.append((message, "complete"))

    def abandon(self, message: Any) -> None:
        self.calls.append((message, "abandon"))

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None:
        self.calls.append((message, "deadletter", deadletter_reason, deadletter_error_description))


def _registered() -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """Service Bus trigger name -> (user function, trigger binding), as function_app.py registers them."""
    return {
        spec.name: (spec.user_function, spec.trigger.get_dict_repr())
        for spec in describe(load_app("function_app"))
        if spec.kind == "serviceBus"
    }


SERVICE_BUS_TRIGGERS = _registered()


def test_the_table_names_every_service_bus_trigger() -> None:
    assert set(SERVICE_BUS_TRIGGERS) == set(TRIGGERS)


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_each_trigger_settles_itself(name: str) -> None:
    fn, trigger = SERVICE_BUS_TRIGGERS[name]
    assert trigger["autoCompleteMessages"] is False
    assert "message_actions" in inspect.signature(fn).parameters


@pytest.mark.parametrize("name", sorted(TRIGGERS))
@pytest.mark.parametrize(("kind", "failure", "expected"), OUTCOMES, ids=[k for k, _, _ in OUTCOMES])
def test_failure_kind_to_settlement(
    name: str,
    kind: str,
    failure: Exception | None,
    expected: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module, handler = TRIGGERS[name]
    handled: list[Any] = []

    def fake_handler(msg: Any, *args: Any) -> None:
        handled.append(msg)
        if failure is not None:
            raise failure

    monkeypatch.setattr(module, handler, fake_handler)
    msg, actions = FakeReceivedMessage(), FakeMessageActions()
    trigger = SERVICE_BUS_TRIGGERS[name][0]
    if expected[0] == "abandon":  # abandoned, and the invocation fails
        with pytest.raises(type(failure)):  # type: ignore[arg-type]
            trigger(msg=msg, message_actions=actions)
    else:
        trigger(msg=msg, message_actions=actions)
    assert handled == [msg]
    assert actions.calls == [(msg, *expected)]  # settled exactly once


def test_the_sdk_message_reaches_the_core_as_text() -> None:
    msg = FakeReceivedMessage(
        body=iter([b'{"a":', b"1}"]),
        application_properties={b"tie_event_key": b"k-1", b"tie_replay_count": 2},
    )
    delivery = events.delivery_from(msg, TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2)  # type: ignore[arg-type]
    assert (delivery.body, delivery.properties) == (
        b'{"a":1}',
        {"tie_event_key": "k-1", "tie_replay_count": 2},
    )
    assert (delivery.message_id, delivery.session_id, delivery.delivery_count) == ("m-1", "s-1", 1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"abc", b"abc"), (bytearray(b"abc"), b"abc"), ([b"a", b"bc"], b"abc")],
    ids=["bytes", "bytearray", "sections"],
)
def test_body_of(body: Any, expected: bytes) -> None:
    assert body_of(FakeReceivedMessage(body=body)) == expected


def test_properties_of_no_properties() -> None:
    assert properties_of(FakeReceivedMessage(application_properties=None)) == {}
