"""Settlement of a failed delivery: a permanent failure is dead-lettered at once with its reason, anything
else abandoned (redelivered). The embedded bus here; Service Bus in
tests/unit/adapters/azure/test_servicebus_adapter.py; the local host end to end in
tests/integration/test_local_host.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.backbone.errors import (
    ContractViolation,
    DownstreamRejected,
    DownstreamRetry,
    DownstreamUnavailable,
    EventConflict,
    WriteBackUnmappable,
)
from shared.backbone.settlement import (
    ABANDONED,
    DEAD_LETTERED,
    DeadLetterOrder,
    dead_letter_order,
    settle_failure,
)
from shared.errors import ConfigurationError, PermanentError
from shared.idempotency.exceptions import IdempotencyPayloadConflict, IdempotencyStoredFailure
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, ReceivedMessage
from shared.messaging.topology import SUB_WRITEBACK_HL7V2, TOPIC_CLINICAL
from tests.unit.backbone import support as s

NHS = s.nhs_numbers(1)

#: failure -> the dead-letter order (reason, description), or None: abandoned and redelivered.
ORDERS: list[tuple[BaseException, DeadLetterOrder | None]] = [
    (
        WriteBackUnmappable("hl7v2", "cannot be written", detail="charset ASCII at PID-5"),
        DeadLetterOrder("writeback-unmappable", "charset ASCII at PID-5"),
    ),
    (
        DownstreamRejected("hl7v2", "rejected", response="AE", detail="ERR 103 at PID-8 (E)"),
        DeadLetterOrder("downstream-rejected", "ERR 103 at PID-8 (E)"),
    ),
    (
        DownstreamRejected("fhir", "rejected", response="422"),
        DeadLetterOrder("downstream-rejected", "downstream-rejected"),
    ),
    (
        EventConflict("corrected result under the same key"),
        DeadLetterOrder("event-conflict", "event-conflict"),
    ),
    (
        IdempotencyStoredFailure("k" * 64, error_code="downstream-rejected", error_type="DownstreamRejected"),
        DeadLetterOrder("downstream-rejected", "stored final failure (DownstreamRejected)"),
    ),
    (
        IdempotencyPayloadConflict(
            "k" * 64, stored_payload_hash="a" * 64, received_payload_hash="b" * 64, status="COMPLETED"
        ),
        DeadLetterOrder("idempotency-payload-conflict", "IdempotencyPayloadConflict (correction)"),
    ),
    (
        ContractViolation(TOPIC_CLINICAL, path="$.data", keyword="canonical-model"),
        DeadLetterOrder("contract-violation", "$.data: canonical-model"),
    ),
    (DownstreamUnavailable("hl7v2", "connection refused"), None),
    (DownstreamRetry("hl7v2", "AE 207", response="AE"), None),
    (ConfigurationError("no write-back subscriber"), None),  # a deployment fix cures it: redeliver
    (PermanentError("some other permanent error"), None),  # not a delivery failure the backbone knows
    (ValueError("a bug"), None),
]


@pytest.mark.parametrize(("exc", "order"), ORDERS, ids=[type(e).__name__ for e, _ in ORDERS])
def test_dead_letter_order_per_failure(exc: BaseException, order: DeadLetterOrder | None) -> None:
    assert dead_letter_order(exc) == order


@pytest.fixture
def env(tmp_path: Path) -> Iterator[s.Env]:
    with s.embedded(tmp_path) as e:
        yield e


def _receive(env: s.Env) -> ReceivedMessage:
    [message] = env.bus.receive(
        TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2, max_messages=1, max_wait=1.0, session_id=NEXT_AVAILABLE_SESSION
    )
    return message


def test_embedded_bus_dead_letters_a_permanent_failure_at_the_first_delivery(env: s.Env) -> None:
    s.publish(env.bus, s.event("S1", nhs=NHS[0], visit="VS1", correlation_id="c-s1"))
    message = _receive(env)
    exc = WriteBackUnmappable("hl7v2", "cannot be written", detail="charset ASCII at PID-5")
    assert settle_failure(env.bus, message, exc) == DEAD_LETTERED
    assert env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2) == []
    [dead] = env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2, dead_letter=True)
    assert (dead.dead_letter_reason, dead.dead_letter_description, dead.delivery_count) == (
        "writeback-unmappable",
        "charset ASCII at PID-5",
        1,
    )


def test_embedded_bus_abandons_a_transient_failure(env: s.Env) -> None:
    s.publish(env.bus, s.event("S2", nhs=NHS[0], visit="VS2", correlation_id="c-s2"))
    message = _receive(env)
    assert settle_failure(env.bus, message, DownstreamUnavailable("hl7v2", "refused")) == ABANDONED
    assert env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2, dead_letter=True) == []
    again = _receive(env)
    assert again.delivery_count == 2
