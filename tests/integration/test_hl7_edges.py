"""HL7 v2 over HTTP (``POST /api/hl7v2`` through the local host) and over MLLP (the listener)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from shared.hl7v2 import parse_message
from shared.ingest.mllp_listener import build_mllp_server
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from shared.mllp.client import MllpClient, classify_ack, read_msa
from shared.mllp.framing import frame
from tests.fixtures.hl7_messages import adt_a01
from tests.helpers import http, running_host
from tie.localhost.discovery import load_app
from tie.localhost.host import HostConfig, LocalHost

pytestmark = pytest.mark.timeout(120)
HL7 = {"Content-Type": "x-application/hl7-v2+er7"}


@pytest.fixture
def base(container: Any) -> Iterator[str]:
    app = load_app("function_app")
    config = HostConfig(port=0, enable_service_bus=False, enable_timers=False)
    with running_host(LocalHost(app=app, bus=container.bus, records=container.records, config=config)) as h:
        yield h.base_url


def test_http_accepts_adt_with_aa(base: str, container: Any) -> None:
    res = http("POST", f"{base}/hl7v2", adt_a01("H1"), HL7 | {"X-Correlation-ID": "h-1"})
    assert res.status == 200
    assert res.headers["Content-Type"].startswith("x-application/hl7-v2+er7")
    assert res.headers["X-HL7-Ack-Code"] == "AA"
    assert res.headers["X-Correlation-ID"] == "h-1"
    ack = parse_message(res.body)
    assert (ack["MSA-1"], ack["MSA-2"]) == ("AA", "H1")
    assert [m.message_id for m in container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)] != []
    again = http("POST", f"{base}/hl7v2", adt_a01("H1"), HL7)
    assert again.status == 200 and again.headers["X-HL7-Duplicate"] == "true" and again.body == res.body


def test_http_error_statuses(base: str) -> None:
    assert http("POST", f"{base}/hl7v2", adt_a01("H2"), {"Content-Type": "application/json"}).status == 415
    assert http("POST", f"{base}/hl7v2", adt_a01("H2")).status == 415
    big = adt_a01("H3") + b"NTE|1||" + b"x" * 1_100_000 + b"\r"
    assert http("POST", f"{base}/hl7v2", big, HL7).status == 413
    empty = http("POST", f"{base}/hl7v2", b"", HL7)
    assert empty.status == 400 and parse_message(empty.body)["MSA-1"] == "AR"
    garbage = http("POST", f"{base}/hl7v2", bytes(range(256)), HL7)
    assert garbage.status == 400 and parse_message(garbage.body)["MSA-1"] == "AR"
    ae = http("POST", f"{base}/hl7v2", adt_a01("H4", nhs_number="9434765910"), HL7)
    assert ae.status == 422 and parse_message(ae.body)["MSA-1"] == "AE"
    assert "9434765910" not in ae.body.decode()
    silent = http("POST", f"{base}/hl7v2", adt_a01("H5", accept_ack="NE", app_ack="NE"), HL7)
    assert silent.status == 204 and silent.body == b""
    assert http("GET", f"{base}/hl7v2").status == 405


def test_http_corrected_resend_under_a_rejected_control_id(base: str, container: Any) -> None:
    """Issue 10 case 6: an AE does not reserve the control ID; the corrected resend is accepted."""
    rejected = http("POST", f"{base}/hl7v2", adt_a01("H6", nhs_number="9434765910"), HL7)
    assert rejected.status == 422 and parse_message(rejected.body)["MSA-1"] == "AE"
    corrected = http("POST", f"{base}/hl7v2", adt_a01("H6"), HL7)
    assert corrected.status == 200 and corrected.headers["X-HL7-Ack-Code"] == "AA"
    assert corrected.headers.get("X-HL7-Duplicate") != "true"
    [message] = container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)
    assert message.body == adt_a01("H6")
    clash = http("POST", f"{base}/hl7v2", adt_a01("H6", nhs_number="9434765910"), HL7)
    assert clash.status == 400 and parse_message(clash.body)["ERR-3.1"] == "205"


def test_http_unescaped_delimiter_is_a_warning_in_the_aa(base: str) -> None:
    """Issue 10 case 7: hospital service PV1-10 ``MED&SURG`` (a code holding a sub-component)."""
    raw = adt_a01("H7").replace(b"|||MED|", b"|||MED&SURG|")
    assert raw != adt_a01("H7")
    res = http("POST", f"{base}/hl7v2", raw, HL7)
    assert res.status == 200 and res.headers["X-HL7-Ack-Code"] == "AA"
    ack = parse_message(res.body)
    assert (ack.raw("ERR-2"), ack["ERR-3.1"], ack["ERR-4"]) == ("PV1^1^10^1^1", "102", "W")


# ------------------------------------------------------------------------------------------------ MLLP
async def _with_listener(container: Any, scenario: Any, settings: Any = None) -> Any:
    server = build_mllp_server(container.bus, container.records, settings or container.settings, port=0)
    await server.start()
    try:
        return await scenario(server.port)
    finally:
        await server.stop(grace=5)


def test_mllp_accepts_adt_and_acks_after_publish(container: Any) -> None:
    async def scenario(port: int) -> bytes:
        async with MllpClient("127.0.0.1", port) as client:
            ack = await client.send(adt_a01("M1"), timeout=10)
            # By the time the ACK is in our hands the message is on the ingest topic.
            assert len(container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)) == 1
            second = await client.send(adt_a01("M2"), timeout=10)
            assert read_msa(second).control_id == "M2"
            return ack

    ack = asyncio.run(_with_listener(container, scenario))
    assert classify_ack(ack).name == "ACCEPT"
    assert read_msa(ack).control_id == "M1"


def test_mllp_many_concurrent_connections(container: Any) -> None:
    async def one(port: int, conn: int) -> list[str]:
        codes = []
        async with MllpClient("127.0.0.1", port) as client:
            for i in range(10):
                ack = await client.send(adt_a01(f"C{conn}-{i}"), timeout=20)
                summary = read_msa(ack)
                assert summary.control_id == f"C{conn}-{i}"
                codes.append(summary.code)
        return codes

    async def scenario(port: int) -> list[list[str]]:
        return list(await asyncio.gather(*(one(port, c) for c in range(16))))

    results = asyncio.run(_with_listener(container, scenario))
    assert all(code == "AA" for codes in results for code in codes)
    assert len(container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, max_messages=500)) == 160


def test_mllp_bad_frames_get_a_nak_and_the_connection_survives(container: Any) -> None:
    small = container.settings.model_copy(update={"mllp_max_message_bytes": 4096})

    async def scenario(port: int) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        codes = []

        async def reply() -> bytes:
            data = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 10)
            return data[1:-2]

        writer.write(frame(b"MSH|^~\\&|X|Y|TIE|Z|20260101||ADT^A01|BIG|P|2.5\r" + b"NTE|1||" + b"x" * 8000))
        codes.append(read_msa(await reply()).code)
        writer.write(b"\x0bgarbage not hl7\x1c\r")
        codes.append(read_msa(await reply()).code)
        writer.write(b"\x0bMSH|^~\\&|X|Y|TIE|Z|20260101||ADT^A01|BRK|P|2.5\r\x1cX")
        codes.append(read_msa(await reply()).code)
        writer.write(frame(adt_a01("OK1")))
        codes.append(read_msa(await reply()).code)
        writer.close()
        await writer.wait_closed()
        return codes

    assert asyncio.run(_with_listener(container, scenario, small)) == ["AR", "AR", "AR", "AA"]
