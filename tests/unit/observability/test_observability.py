from __future__ import annotations

import io
import json
import logging

import pytest

from shared.observability.correlation import correlation_scope, from_headers, get_correlation_id
from shared.observability.logging import JsonFormatter, RedactingFilter, configure_logging, redact


def test_correlation_id_accepted_from_header_case_insensitively() -> None:
    assert from_headers({"x-correlation-id": "abc-123"}) == ("abc-123", True)


@pytest.mark.parametrize("bad", ["", "has space", "a" * 200, "semi;colon", "PID|1|x"])
def test_invalid_correlation_id_is_replaced(bad: str) -> None:
    cid, accepted = from_headers({"X-Correlation-ID": bad})
    assert not accepted and cid != bad and len(cid) == 32


def test_correlation_scope_is_restored() -> None:
    assert get_correlation_id() is None
    with correlation_scope("outer"):
        with correlation_scope("inner"):
            assert get_correlation_id() == "inner"
        assert get_correlation_id() == "outer"
    assert get_correlation_id() is None


@pytest.mark.parametrize(
    "text",
    [
        "patient 9434765919 admitted",
        "nhs 943 476 5919",
        "nhs 943-476-5919",
        "PID|1||9434765919^^^NHS^NH||SMITH^JOHN",
        "segment MSH|^~\\&|EPR|RGT|TIE|RGT|20260101||ADT^A01|1|P|2.5",
    ],
)
def test_redaction_removes_identifiers_and_segments(text: str) -> None:
    out = redact(text)
    assert "9434765919" not in out.replace(" ", "").replace("-", "")
    assert "SMITH" not in out


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_json_lines_carry_correlation_and_allowed_extras_only() -> None:
    logger, stream = _capture()
    with correlation_scope("corr-1"):
        logger.info("processed %s", "msg", extra={"topic": "t", "body": "PID|secret", "status": "ok"})
    line = json.loads(stream.getvalue())
    assert line["correlation_id"] == "corr-1"
    assert line["topic"] == "t" and line["status"] == "ok"
    assert "body" not in line


def test_exceptions_are_logged_as_type_and_redacted_text() -> None:
    logger, stream = _capture()
    try:
        raise ValueError("bad NHS number 9434765919")
    except ValueError:
        logger.exception("failed")
    line = json.loads(stream.getvalue())
    assert line["exc_type"] == "ValueError"
    assert "9434765919" not in stream.getvalue()


def test_configure_logging_in_worker_mode_only_adds_filter() -> None:
    root = logging.getLogger()
    saved = list(root.handlers)
    marker = logging.StreamHandler(io.StringIO())
    root.handlers = [marker]
    try:
        configure_logging("INFO", attach_handler=False)
        assert root.handlers == [marker]
        assert any(isinstance(f, RedactingFilter) for f in marker.filters)
    finally:
        root.handlers = saved
