"""Settling a published batch on a store with :class:`~shared.storage.ports.AtomicRecordWrites`: the owner's
compare-and-swap and the entry's delete are one transaction, retried as a whole when the owner changed."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.messaging.ports import OutboundMessage
from shared.outbox import OUTBOX_FIELD, Outbox, OutboxMessage, OwnerRef
from shared.storage.names import TABLE_OUTBOX
from shared.storage.ports import Record

OWNER = OwnerRef("domain", "p", "r")


def message(key: str) -> OutboxMessage:
    return OutboxMessage(
        "clinical-events",
        OutboundMessage(body=b"{}", message_id=key, session_id="s", time_to_live=timedelta(days=1)),
    )


class ChangedAfterRead(SqliteRecordStore):
    """The owner is changed by someone else right after settle's first read of it (a lost CAS)."""

    raced = False

    def get(self, table: str, partition_key: str, row_key: str) -> Record | None:
        found = super().get(table, partition_key, row_key)
        if table == OWNER.table and found is not None and not self.raced:
            self.raced = True
            self.update(table, partition_key, row_key, {**found.value, "other": "writer"}, etag=found.etag)
        return found


def committed(store: SqliteRecordStore) -> tuple[Outbox, Any]:
    outbox = Outbox(store)
    created = store.insert(OWNER.table, OWNER.partition_key, OWNER.row_key, {"state": "new"})
    batch = outbox.prepare(OWNER, created.etag, [message("e1")])
    outbox.commit(batch, {"state": "stored"})
    return outbox, batch


def test_settle_is_one_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commits: list[str] = []
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(*args, **kwargs)
        conn.set_trace_callback(lambda sql: commits.append(sql) if sql.upper().startswith("COMMIT") else None)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    outbox, batch = committed(store)
    commits.clear()
    outbox.settle(OWNER, batch.batch_id, batch.entry_partition, batch.entry_row)
    assert len(commits) == 1
    owner = store.get(OWNER.table, OWNER.partition_key, OWNER.row_key)
    assert owner is not None and owner.value == {"state": "stored", OUTBOX_FIELD: {}}
    assert store.query(TABLE_OUTBOX) == []
    store.close()


def test_a_lost_compare_and_swap_writes_nothing_and_is_retried(tmp_path: Path) -> None:
    store = ChangedAfterRead(tmp_path / "r.sqlite3")
    store.raced = True  # no race while the batch is committed
    outbox, batch = committed(store)
    store.raced = False
    outbox.settle(OWNER, batch.batch_id, batch.entry_partition, batch.entry_row)
    owner = store.get(OWNER.table, OWNER.partition_key, OWNER.row_key)
    # The other writer's change is kept (the first CAS lost and wrote nothing), the batch is settled.
    assert owner is not None and owner.value == {"state": "stored", OUTBOX_FIELD: {}, "other": "writer"}
    assert store.query(TABLE_OUTBOX) == []
    store.close()
