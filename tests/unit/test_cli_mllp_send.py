"""``tie mllp send``: the port from ``TIE_MLLP_PORT`` (``--port`` wins), the correlation id read from the
ACK's own MSH-10, a ready-to-run ``tie trace`` hint, and one line instead of a traceback when nobody
listens."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers import REPO_ROOT, free_port
from tie import cli

pytestmark = pytest.mark.timeout(60)

SAMPLE = REPO_ROOT / "samples" / "adt-a01.hl7"


def _ack(msh10: str, code: str = "AA") -> bytes:
    return (
        f"MSH|^~\\&|TIE|RGT01|PAS|RGT01|20260315103001||ACK^A01^ACK|{msh10}|P|2.5.1\rMSA|{code}|SAMPLE0001\r"
    ).encode()


@contextmanager
def _receiver(reply: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """A one-shot MLLP receiver on a free port: records the frame it got, answers ``reply``."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while not data.endswith(b"\x1c\r"):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            received.append(data[1:-2])
            conn.sendall(b"\x0b" + reply + b"\x1c\r")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        thread.join(10)
        server.close()


@pytest.mark.parametrize(
    ("msh10", "code", "status", "expected_tail"),
    [
        ("corr-7f3a", "AA", 0, ["ACK AA  correlation id: corr-7f3a", "trace it: tie trace corr-7f3a"]),
        ("corr 2", "AE", 1, ["ACK AE  correlation id: corr 2", "trace it: tie trace 'corr 2'"]),
        ("", "AA", 0, ["ACK AA  correlation id: (not in the ACK's MSH-10)"]),
    ],
)
def test_send_uses_the_environment_port_and_prints_the_correlation_id_from_the_ack(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    msh10: str,
    code: str,
    status: int,
    expected_tail: list[str],
) -> None:
    with _receiver(_ack(msh10, code)) as (port, received):
        monkeypatch.setenv("TIE_MLLP_PORT", str(port))
        assert cli.main(["mllp", "send", str(SAMPLE)]) == status
    [frame] = received
    assert frame.startswith(b"MSH|") and b"\n" not in frame  # LF converted to CR
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"MSA|{code}|SAMPLE0001" in lines
    assert lines[-len(expected_tail) :] == expected_tail


def test_port_flag_overrides_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIE_MLLP_PORT", str(free_port()))  # nobody listens there
    with _receiver(_ack("corr-flag")) as (port, received):
        assert cli.main(["mllp", "send", str(SAMPLE), "--port", str(port)]) == 0
    assert len(received) == 1
    assert "ACK AA  correlation id: corr-flag" in capsys.readouterr().out


def test_nobody_listening_is_one_line_naming_the_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("TIE_MLLP_PORT", str(port))
    assert cli.main(["mllp", "send", str(SAMPLE), "--timeout", "5"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"tie mllp send: 127.0.0.1:{port}: ")
    assert line.endswith("(is tie run up? another port: --port or TIE_MLLP_PORT)")
