"""HL7 v2 write-back over MLLP against a scripted receiver on 127.0.0.1: AA done, AE retry, AR reject,
no ACK / no connection = unavailable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.backbone.errors import (
    DownstreamRejected,
    DownstreamRetry,
    DownstreamUnavailable,
    WriteBackUnmappable,
)
from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.canonical.model import EventKind
from shared.hl7v2 import parse_message
from tests.helpers import free_port
from tests.unit.backbone.support import FakeHl7Receiver, ReceiverScript, event, nhs_numbers

NHS = nhs_numbers(1)[0]


@pytest.fixture
def receiver() -> Iterator[FakeHl7Receiver]:
    with FakeHl7Receiver() as rx:
        yield rx


def downstream(port: int, timeout: float = 5.0) -> Hl7MllpDownstream:
    return Hl7MllpDownstream(
        MllpSender("127.0.0.1", port, connect_timeout=5.0),
        ack_timeout=timeout,
        receiving_application="PAS",
        receiving_facility="RGT01",
    )


def test_aa_is_done_and_the_message_is_an_a08_with_a_deterministic_control_id(
    receiver: FakeHl7Receiver,
) -> None:
    ds = downstream(receiver.port)
    try:
        e = event("H1", nhs=NHS, visit="V1")
        message = parse_message(ds.message_for(e))
        assert message.get("MSH-9.1") == "ADT" and message.get("MSH-9.2") == "A08"
        assert message.get("MSH-5") == "PAS" and message.get("MSH-6") == "RGT01"
        assert parse_message(ds.message_for(e)).control_id == message.control_id  # same on a re-send
        response = ds.apply(e)
        assert response.status == "AA" and response.details["control_id"] == message.control_id
        assert receiver.applied == {message.control_id: 1}
    finally:
        ds.close()


@pytest.mark.parametrize(
    ("answer", "expected", "response"),
    [("AE", DownstreamRetry, "AE"), ("CE", DownstreamRetry, "CE"), ("AR", DownstreamRejected, "AR")],
)
def test_negative_acks(
    receiver: FakeHl7Receiver, answer: str, expected: type[Exception], response: str
) -> None:
    receiver.script = ReceiverScript(lambda _cid, _n: answer)
    ds = downstream(receiver.port)
    try:
        with pytest.raises(expected) as info:
            ds.apply(event("H2", nhs=NHS, visit="V2"))
        assert info.value.response == response  # type: ignore[attr-defined]
        assert NHS not in str(info.value)
    finally:
        ds.close()


def test_no_ack_in_time_is_unavailable_and_the_next_send_reconnects(receiver: FakeHl7Receiver) -> None:
    receiver.script = ReceiverScript(lambda _cid, n: "timeout" if n == 1 else "AA")
    ds = downstream(receiver.port, timeout=1.0)  # a silent receiver always outlasts it
    try:
        e = event("H3", nhs=NHS, visit="V3")
        with pytest.raises(DownstreamUnavailable):
            ds.apply(e)
        assert ds.apply(e).status == "AA"  # the retry carries the same control ID
        [(control_id, sent)] = receiver.received.items()
        assert sent == 2 and receiver.applied[control_id] == 1
    finally:
        ds.close()


def test_connection_refused_is_unavailable() -> None:
    ds = downstream(free_port())
    try:
        with pytest.raises(DownstreamUnavailable):
            ds.apply(event("H4", nhs=NHS, visit="V4"))
    finally:
        ds.close()


def test_an_ack_for_another_message_is_retried(receiver: FakeHl7Receiver) -> None:
    receiver.script = ReceiverScript(lambda _cid, _n: "wrong-id")
    ds = downstream(receiver.port)
    try:
        with pytest.raises(DownstreamRetry):
            ds.apply(event("H5", nhs=NHS, visit="V5"))
        assert receiver.applied == {}
    finally:
        ds.close()


def test_what_is_skipped() -> None:
    configured = Hl7MllpDownstream(MllpSender("127.0.0.1", free_port()))
    try:
        e = event("H6", nhs=NHS, visit="V6")
        assert configured.skip_reason(e) is None
        order = e.model_copy(update={"kind": EventKind.ORDER})
        assert configured.skip_reason(order) == "kind-not-written-back:order"
        with pytest.raises(WriteBackUnmappable):
            configured.message_for(order)
    finally:
        configured.close()
    assert Hl7MllpDownstream(None).skip_reason(e) == "not-configured"
