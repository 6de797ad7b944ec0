"""Structured (JSON lines) logging that never carries message bodies or patient identifiers.

Rules (see README "Logging"): log identifiers (correlation ID, message control ID, topic, status), never
values from a message. As defence in depth, :class:`RedactingFilter` scrubs anything that looks like an
NHS number, an HL7 v2 segment or a long free-text field from every record before it is emitted.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from shared.observability.correlation import get_correlation_id

#: Keys of ``extra={...}`` that are copied into the JSON line. Anything else is dropped.
ALLOWED_EXTRA = frozenset(
    {
        "event",
        "topic",
        "subscription",
        "function",
        "route",
        "method",
        "status",
        "duration_ms",
        "message_id",
        "control_id",
        "sequence_number",
        "delivery_count",
        "reason",
        "error_code",
        "count",
        "port",
        "connection_id",
        "schedule",
        "backend",
    }
)

_NHS_NUMBER = re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)")
_HL7_SEGMENT = re.compile(r"\b(MSH|PID|PV1|NK1|OBX|OBR|ORC|NTE|MRG|EVN|AL1|DG1|IN1|GT1)\|[^\r\n]*")
_REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Remove what looks like patient data from a log string."""
    if "|" in text:
        text = _HL7_SEGMENT.sub(r"\1|" + _REDACTED, text)
    return _NHS_NUMBER.sub(_REDACTED, text)


class RedactingFilter(logging.Filter):
    """Scrubs the formatted message and exception text of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        correlation_id = getattr(record, "correlation_id", None) or get_correlation_id()
        if correlation_id:
            payload["correlation_id"] = correlation_id
        for key in ALLOWED_EXTRA:
            if key in record.__dict__:
                payload[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            # Type and our redacted text only: tracebacks can hold local variables' reprs in some handlers.
            exc = record.exc_info[1]
            payload["exc_type"] = record.exc_info[0].__name__
            payload["exc"] = redact(str(exc))[:500] if exc is not None else ""
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO", *, stream: Any = None, attach_handler: bool = True) -> None:
    """Install the JSON formatter and redaction filter on the root logger (idempotent).

    With ``attach_handler=False`` (inside the Azure Functions worker, which owns the root handlers and
    forwards them to the host and Application Insights) only the redaction filter is added to the
    existing handlers.
    """
    root = logging.getLogger()
    root.setLevel(level)
    if not attach_handler:
        for existing in root.handlers:
            if not any(isinstance(f, RedactingFilter) for f in existing.filters):
                existing.addFilter(RedactingFilter())
        return
    for handler in root.handlers:
        if getattr(handler, "_tie", False):
            return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    handler._tie = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Chatty SDK loggers log request URLs and headers at INFO.
    for noisy in ("azure", "azure.core.pipeline.policies.http_logging_policy", "aiohttp.access", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
