"""Issue 12 item 5: the same HL7 problem gets the same answer over ``POST /api/hl7v2`` and over MLLP.

One table: each row is a bad message and the ACK code, HL7 table 0357 codes and ERR-2 locations it must
get. Every row goes through the HTTP function (in process, through its ``http_endpoint`` wrapper) and
through the MLLP listener on a loopback port; both answers must equal the row and each other. No row may
be answered ``207`` (application internal error): these are all permanent problems of the message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import pytest

from functions.hl7v2 import hl7v2_ingest
from shared.config.settings import get_settings, reset_settings
from shared.hl7v2 import limits, parse_message
from shared.ingest.mllp_listener import build_mllp_server
from shared.mllp.framing import frame
from shared.wiring import build_container, set_container
from tests.unit.ingest.hl7_ingest_support import BAD_NHS, GOOD_NHS, oru

pytestmark = pytest.mark.timeout(60)

#: Both edges' size limit in these tests (HTTP body and MLLP frame).
SIZE_LIMIT = 8192
HL7 = "x-application/hl7-v2+er7"

Errs = list[tuple[str, str]]


def _without(segment: bytes, raw: bytes) -> bytes:
    return b"\r".join(line for line in raw.split(b"\r") if not line.startswith(segment))


@dataclass(frozen=True)
class Row:
    name: str
    message: bytes
    code: str
    #: (ERR-3.1 code, ERR-2 location) per ERR segment, in order.
    errs: Errs
    http_status: int
    #: Module attributes of :mod:`shared.hl7v2.limits` to lower for the row.
    bounds: dict[str, int] = field(default_factory=dict)


ROWS = [
    Row("control id of 5,000 characters", oru("X" * 5000), "AR", [("102", "MSH^1^10^1")], 400),
    Row(
        "control id of 5,000 characters, enhanced mode",
        oru("X" * 5000, accept_ack="AL", app_ack="NE"),
        "CR",
        [("102", "MSH^1^10^1")],
        400,
    ),
    # Within the MSH-10 bound, but too long once escaped for storage (every '#' becomes three characters).
    Row("control id that cannot key the store", oru("#" * 190), "AR", [("102", "MSH^1^10^1")], 400),
    Row("sending application too long", oru(sender="A" * 300), "AR", [("102", "MSH^1^3^1")], 400),
    Row(
        "sender that cannot key the store",
        oru(sender="/" * 200, facility="/" * 200),
        "AR",
        [("102", "MSH^1^3^1")],
        400,
    ),
    Row("control id missing", oru(""), "AR", [("101", "MSH^1^10^1")], 400),
    Row(
        "unsupported message type",
        oru().replace(b"ORU^R01^ORU_R01", b"ZZZ^Z01"),
        "AR",
        [("200", "MSH^1^9^1^1")],
        400,
    ),
    Row(
        "unsupported event",
        oru().replace(b"ORU^R01^ORU_R01", b"ORU^R99"),
        "AR",
        [("201", "MSH^1^9^1^2")],
        400,
    ),
    Row(
        "unsupported version",
        oru().replace(b"|P|2.5.1", b"|P|3.0"),
        "AR",
        [("203", "MSH^1^12^1^1")],
        400,
    ),
    Row(
        "processing id not in table 0103",
        oru().replace(b"|P|2.5.1", b"|X|2.5.1"),
        "AR",
        [("103", "MSH^1^11^1^1")],
        400,
    ),
    Row("required segment missing", _without(b"OBR", oru()), "AR", [("100", "OBR")], 400),
    Row("more segments than the bound", oru(), "AR", [("100", "OBX^1")], 400, {"MAX_SEGMENTS": 4}),
    Row("field longer than the bound", oru(), "AR", [("102", "PID^1^3^1")], 400, {"MAX_FIELD_LENGTH": 30}),
    Row(
        "more repetitions than the bound",
        oru(),
        "AR",
        [("102", "PID^1^3^2")],
        400,
        {"MAX_FIELD_REPETITIONS": 1},
    ),
    Row("not HL7 at all", b"hello", "AR", [("100", "")], 400),
    Row(
        "bad encoding characters",
        oru().replace(b"MSH|^~\\&|", b"MSH|^^\\&|"),
        "AR",
        [("102", "MSH^1^2^1")],
        400,
    ),
    Row("NHS number check digit", oru(nhs_number=BAD_NHS), "AE", [("102", "PID^1^3^1^1")], 422),
    Row(
        "NHS number check digit, enhanced mode",
        oru(nhs_number=BAD_NHS, accept_ack="AL", app_ack="NE"),
        "CR",
        [("102", "PID^1^3^1^1")],
        422,
    ),
    Row(
        "patient identifiers missing",
        oru().replace(GOOD_NHS.encode() + b"^^^NHS^NH~RRV1234567^^^RRV^MR", b""),
        "AE",
        [("101", "PID^1^3^1")],
        422,
    ),
    Row(
        "message over the size limit",
        oru() + b"NTE|1||" + b"x" * SIZE_LIMIT + b"\r",
        "AR",
        [("102", "")],
        413,
    ),
    Row(
        "message over the size limit, enhanced mode",
        oru(accept_ack="AL", app_ack="NE") + b"NTE|1||" + b"x" * SIZE_LIMIT + b"\r",
        "CR",
        [("102", "")],
        413,
    ),
]


@pytest.fixture
def container(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The embedded container with both edges limited to :data:`SIZE_LIMIT` bytes."""
    monkeypatch.setenv("TIE_HTTP_MAX_BODY_BYTES", str(SIZE_LIMIT))
    monkeypatch.setenv("TIE_MLLP_MAX_MESSAGE_BYTES", str(SIZE_LIMIT))
    reset_settings()
    built = build_container(get_settings())
    set_container(built)
    return built


def post(body: bytes, correlation_id: str | None = None) -> func.HttpResponse:
    headers = {"Content-Type": HL7, "Content-Length": str(len(body))}
    if correlation_id:
        headers["X-Correlation-ID"] = correlation_id
    request = func.HttpRequest(method="POST", url="/api/hl7v2", headers=headers, body=body)
    return hl7v2_ingest(request)


async def _exchange(port: int, payloads: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    try:
        for payload in payloads:
            writer.write(frame(payload))
            await writer.drain()
            reply = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 20)
            assert reply.startswith(b"\x0b")
            replies.append(reply[1:-2])
    finally:
        writer.close()
        await writer.wait_closed()
    return replies


def over_mllp(container: Any, payloads: list[bytes]) -> list[bytes]:
    async def scenario() -> list[bytes]:
        server = build_mllp_server(
            container.bus, container.records, container.settings, host="127.0.0.1", port=0
        )
        await server.start()
        try:
            return await _exchange(server.port, payloads)
        finally:
            await server.stop(grace=5)

    return asyncio.run(scenario())


def summary(ack: bytes) -> tuple[str, Errs]:
    """MSA-1 and (ERR-3.1, ERR-2) of every ERR segment with severity E."""
    message = parse_message(ack)
    errs = [
        (e.get(3, comp=1) or "", e.raw_field(2)) for e in message.segments_named("ERR") if e.get(4) == "E"
    ]
    return message.get("MSA-1") or "", errs


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_same_problem_same_ack_over_http_and_mllp(
    row: Row, container: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in row.bounds.items():
        monkeypatch.setattr(limits, name, value)
    response = post(row.message)
    assert response.mimetype == HL7, response.get_body()[:200]
    assert response.status_code == row.http_status
    http_ack = response.get_body()
    assert response.headers["X-HL7-Ack-Code"] == summary(http_ack)[0]
    [mllp_ack] = over_mllp(container, [row.message])

    assert summary(http_ack) == summary(mllp_ack) == (row.code, row.errs)
    for ack in (http_ack, mllp_ack):
        assert all(err.get(3, comp=1) != "207" for err in parse_message(ack).segments_named("ERR"))
        assert b"TESTPATIENT" not in ack and GOOD_NHS.encode() not in ack and BAD_NHS.encode() not in ack
