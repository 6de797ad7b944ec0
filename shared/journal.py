"""Message journal: what happened to a message, stage by stage, per correlation ID.

Each entry is one stage (received, published, consumed, failed, dead-lettered, replayed, ...) with a UTC
timestamp and non-identifying attributes (topic, message id, status, error code). No message bodies and
no patient data, ever: callers pass identifiers, not values. Backed by the record store port (table
``journal``, partition = correlation ID, row = time-ordered stage key), so it works on the embedded
default and on Azure Table Storage alike.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.storage.keys import safe_key
from shared.storage.names import TABLE_JOURNAL
from shared.storage.ports import RecordStore

JOURNAL_TABLE = TABLE_JOURNAL

_ALLOWED_VALUE_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class JournalEntry:
    correlation_id: str
    stage: str
    at: datetime
    attributes: Mapping[str, Any]


class Journal:
    def __init__(self, records: RecordStore, *, clock: Callable[[], datetime] | None = None) -> None:
        self._records = records
        self._clock = clock or (lambda: datetime.now(UTC))
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def record(self, correlation_id: str, stage: str, **attributes: str | int | float | bool | None) -> None:
        for key, value in attributes.items():
            if not isinstance(value, _ALLOWED_VALUE_TYPES):
                raise TypeError(f"journal attribute {key!r} must be a scalar")
        at = self._clock()
        with self._lock:
            seq = next(self._counter)
        # Row key sorts by time; the counter keeps entries from one process in order within a microsecond.
        row_key = f"{at.strftime('%Y%m%dT%H%M%S%f')}-{seq:08d}-{safe_key(stage)}"
        self._records.upsert(
            JOURNAL_TABLE,
            safe_key(correlation_id),
            row_key,
            {"stage": stage, "at": at.isoformat(), "attributes": dict(attributes)},
        )

    def trace(self, correlation_id: str) -> list[JournalEntry]:
        entries = []
        for rec in self._records.query(JOURNAL_TABLE, safe_key(correlation_id)):
            entries.append(
                JournalEntry(
                    correlation_id=correlation_id,
                    stage=str(rec.value["stage"]),
                    at=datetime.fromisoformat(str(rec.value["at"])),
                    attributes=dict(rec.value.get("attributes") or {}),
                )
            )
        entries.sort(key=lambda e: e.at)
        return entries
