"""The local host's HTTP server neither logs nor echoes request lines: URL and header limits answered with
fixed JSON (414 / 431 / 400), aiohttp's own error logging reduced to the error type."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import http, running_host
from tie.localhost.host import (
    MAX_HEADER_BYTES,
    MAX_URL_BYTES,
    HostConfig,
    LocalHost,
    _PrivateRequestHandler,
)

pytestmark = pytest.mark.timeout(60)

NAME = "Zebedeeqx"


@pytest.fixture
def host() -> Iterator[LocalHost]:
    from tests.fixtures import sample_app

    container = sample_app.install_container()
    config = HostConfig(port=0, enable_service_bus=False, enable_timers=False)
    h = LocalHost(app=sample_app.app, bus=container.bus, records=container.records, config=config)
    with running_host(h):
        yield h


def _target(length: int) -> str:
    """A request target of exactly ``length`` bytes served by the sample app (``files/{*path}``)."""
    head = f"/api/files/{NAME}?q="
    return head + "a" * (length - len(head))


def test_url_limit_is_exact_and_the_refusal_echoes_nothing(
    host: LocalHost, caplog: pytest.LogCaptureFixture
) -> None:
    origin = f"http://127.0.0.1:{host.port}"
    assert http("GET", origin + _target(MAX_URL_BYTES)).status == 200
    with caplog.at_level(logging.DEBUG):
        refused = http("GET", origin + _target(MAX_URL_BYTES + 1))
    assert refused.status == 414
    body = refused.json()
    assert body["error"]["code"] == "uri_too_long" and body["error"]["correlationId"]
    assert NAME not in refused.body.decode() and NAME not in caplog.text
    assert "http request rejected" in caplog.text


def test_header_limit_is_431_and_garbage_is_400(host: LocalHost, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{host.port}/api/items/1"
    value = NAME + "b" * (MAX_HEADER_BYTES - len(NAME))
    assert http("GET", url, headers={"X-Note": value}).status == 200
    with caplog.at_level(logging.DEBUG):
        big = http("GET", url, headers={"X-Note": value + "b"})
        with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
            sock.sendall(f"GET /api/items?x={NAME} HTTP/1.1 trailing\r\n\r\n".encode())
            garbled = sock.recv(65536)
    assert big.status == 431 and big.json()["error"]["code"] == "header_too_large"
    assert garbled.split(b" ", 2)[1] == b"400" and b'"bad_request"' in garbled
    assert NAME.encode() not in garbled + big.body and NAME not in caplog.text


def test_aiohttp_error_logging_keeps_only_the_error_type(caplog: pytest.LogCaptureFixture) -> None:
    handler: Any = object.__new__(_PrivateRequestHandler)
    with caplog.at_level(logging.DEBUG):
        handler.log_exception("Error handling request from %s", NAME, exc_info=ValueError(NAME))
        handler.log_debug("Request handler timed out: %s", NAME, exc_info=TimeoutError(NAME))
    assert [r.getMessage() for r in caplog.records] == ["http server error"]
    assert getattr(caplog.records[0], "error_code", None) == "ValueError"
    assert NAME not in caplog.text
