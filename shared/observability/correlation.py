"""Correlation IDs, end to end.

Every request and message carries one correlation ID: HTTP callers may send ``X-Correlation-ID`` (we echo
it back); otherwise we generate one. Messages carry it as the Service Bus ``correlation_id`` and in the
application property ``tie_correlation_id`` (so subscription filters and the journal can see it). The
current ID lives in a context variable so log records pick it up without being passed around.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

HEADER = "X-Correlation-ID"
MESSAGE_PROPERTY = "tie_correlation_id"

# Accept what API Management, HL7 engines and UUID generators produce, nothing that could smuggle data
# into logs (no spaces, no separators, bounded length).
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")

_current: ContextVar[str | None] = ContextVar("tie_correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def is_valid_correlation_id(value: str) -> bool:
    return bool(_VALID.match(value))


def from_headers(headers: Mapping[str, str]) -> tuple[str, bool]:
    """Correlation ID from request headers (case-insensitive), else a new one.

    Returns ``(id, accepted)`` where ``accepted`` is False when the caller sent none or an invalid one.
    """
    for key, value in headers.items():
        if key.lower() == HEADER.lower():
            candidate = value.strip()
            if is_valid_correlation_id(candidate):
                return candidate, True
            break
    return new_correlation_id(), False


def get_correlation_id() -> str | None:
    return _current.get()


@contextmanager
def correlation_scope(correlation_id: str) -> Iterator[str]:
    """Make ``correlation_id`` current for the duration of the block (thread/task local)."""
    token = _current.set(correlation_id)
    try:
        yield correlation_id
    finally:
        _current.reset(token)
