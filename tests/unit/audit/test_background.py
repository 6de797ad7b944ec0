"""The background writer: records are written in order, readers see what was queued before them, close
writes the rest, and once the log cannot be written new appends are refused (fail closed) until it can."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.background import BackgroundAuditLog
from shared.audit.chain import verify_chain
from shared.audit.model import ACCESS, SUCCESS, Agent, AuditRecord
from shared.audit.ports import ChainedEntry
from shared.storage.errors import StorageUnavailable

KEY = b"q" * 32


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        category=ACCESS,
        action="R",
        interaction="read",
        outcome=SUCCESS,
        agent=Agent("client", "c"),
        source="test",
        recorded=datetime(2026, 12, 7, tzinfo=UTC),
        id=f"r{i}",
    )


def _ids(log: BackgroundAuditLog | SqliteAuditLog) -> list[str]:
    return [json.loads(e.body)["id"] for e in log.entries()]


def test_queued_records_are_written_in_order_and_read_back(tmp_path: Path) -> None:
    log = BackgroundAuditLog(SqliteAuditLog(tmp_path / "a.sqlite3", key=KEY))
    for i in range(50):
        assert log.append([_record(i)]) == []
    assert _ids(log) == [f"r{i}" for i in range(50)]  # entries() waits for the queue
    assert verify_chain(log.entries(), log.checkpoints(), key=KEY).ok
    log.close()


def test_close_writes_what_is_still_queued(tmp_path: Path) -> None:
    log = BackgroundAuditLog(SqliteAuditLog(tmp_path / "a.sqlite3", key=KEY), max_delay=60)
    log.append([_record(1), _record(2)])
    log.close()
    reopened = SqliteAuditLog(tmp_path / "a.sqlite3", key=KEY)
    assert _ids(reopened) == ["r1", "r2"]
    reopened.close()


class Flaky(SqliteAuditLog):
    """Refuses appends while ``down`` is set; signals each refusal."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, key=KEY)
        self.down = threading.Event()
        self.refused = threading.Event()

    def append(self, records: Sequence[AuditRecord]) -> list[ChainedEntry]:
        if self.down.is_set():
            self.refused.set()
            raise StorageUnavailable("audit store unavailable (test)")
        return super().append(records)


def test_an_unwritable_log_refuses_new_appends_and_keeps_the_queued_ones(tmp_path: Path) -> None:
    inner = Flaky(tmp_path / "a.sqlite3")
    log = BackgroundAuditLog(inner, retry_delay=0.01)
    inner.down.set()
    log.append([_record(1)])
    assert inner.refused.wait(30)
    with pytest.raises(StorageUnavailable):
        log.flush()
    with pytest.raises(StorageUnavailable):
        log.append([_record(2)])  # fail closed: the audited action fails
    inner.down.clear()
    log.flush()  # the writer retries; the queued record is not lost
    assert _ids(log) == ["r1"]
    log.append([_record(3)])
    assert _ids(log) == ["r1", "r3"]
    log.close()
