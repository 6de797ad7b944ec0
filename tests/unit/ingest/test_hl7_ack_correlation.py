"""Issue 12 item 5: the engine's ACK carries the correlation ID in its own MSH-10, over HTTP and MLLP.

A sender quotes the ACK's control ID and the journal (``tie trace``) finds the message: every ACK the
ingest core builds - accepted, content error, rejected, unparseable, oversize - has MSH-10 = the
correlation ID its journal entries are filed under. A retransmission answered from the store gets the
ACK sent the first time (MSH-10 = the first correlation ID, whose journal holds the processing); the
retransmission's own journal entry names it as ``original_correlation_id``.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.hl7v2 import parse_message
from shared.journal import Journal
from shared.observability.correlation import HEADER, is_valid_correlation_id
from tests.unit.ingest.hl7_ingest_support import BAD_NHS, oru
from tests.unit.ingest.test_hl7_edges_same_answer import SIZE_LIMIT, container, over_mllp, post

__all__ = ["container"]  # the size-limited container fixture

pytestmark = pytest.mark.timeout(60)

OVERSIZE = oru("BIG1") + b"NTE|1||" + b"x" * SIZE_LIMIT + b"\r"
CASES = [
    ("accepted", oru("C1"), "AA"),
    ("content error", oru("C2", nhs_number=BAD_NHS), "AE"),
    ("rejected", oru("C3").replace(b"|P|2.5.1", b"|P|3.0"), "AR"),
    ("unparseable", b"hello", "AR"),
    ("oversize", OVERSIZE, "AR"),
]


def ack_control_id(ack: bytes) -> str:
    return parse_message(ack).get("MSH-10") or ""


def stages(container: Any, correlation_id: str) -> list[str]:
    return [e.stage for e in Journal(container.records).trace(correlation_id)]


@pytest.mark.parametrize(("name", "message", "code"), CASES, ids=[c[0] for c in CASES])
def test_http_ack_control_id_is_the_correlation_id(
    name: str, message: bytes, code: str, container: Any
) -> None:
    sent = post(message, correlation_id=f"trace-{name.replace(' ', '-')}")
    assert sent.headers[HEADER] == f"trace-{name.replace(' ', '-')}"
    assert parse_message(sent.get_body()).get("MSA-1") == code
    assert ack_control_id(sent.get_body()) == sent.headers[HEADER]
    assert stages(container, sent.headers[HEADER])[-1] == "acknowledged"

    generated = post(message.replace(b"|C", b"|D"))  # no header: the engine's own id, in both places
    assert ack_control_id(generated.get_body()) == generated.headers[HEADER]


def test_mllp_ack_control_ids_are_journaled_correlation_ids(container: Any) -> None:
    acks = over_mllp(container, [message for _, message, _ in CASES])
    ids = [ack_control_id(ack) for ack in acks]
    assert [parse_message(a).get("MSA-1") for a in acks] == [code for _, _, code in CASES]
    assert all(is_valid_correlation_id(i) for i in ids) and len(set(ids)) == len(ids)
    for (name, _, _), correlation_id in zip(CASES[:-1], ids, strict=False):
        # every frame the core handled is traceable by the ACK's MSH-10 (the oversize NAK is answered by
        # the listener before the core sees the frame: its id is logged with the reason)
        trace = Journal(container.records).trace(correlation_id)
        assert trace and trace[0].stage == "received", name
        assert str(trace[0].attributes["source"]).startswith("mllp:"), name


def test_retransmission_returns_the_first_ack_and_links_the_correlation_ids(container: Any) -> None:
    first = post(oru("R1"), correlation_id="first-1")
    again = post(oru("R1"), correlation_id="again-1")
    assert again.headers["X-HL7-Duplicate"] == "true" and again.get_body() == first.get_body()
    assert ack_control_id(again.get_body()) == "first-1"
    [duplicate] = [e for e in Journal(container.records).trace("again-1") if e.stage == "duplicate"]
    assert duplicate.attributes["original_correlation_id"] == "first-1"
