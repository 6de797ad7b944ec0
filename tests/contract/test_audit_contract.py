"""Behavioural contract of the audit log port on every backend: the embedded SQLite log and the Azure
append-blob adapter against Azurite (marked ``azurite``). Same chain, same verification, no forks when two
writers append at once, and an edited record is caught on both."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.chain import verify_chain
from shared.audit.model import ACCESS, SUCCESS, Agent, AuditRecord, Entity
from shared.audit.ports import AuditLog
from tests.contract.backends import BACKENDS

KEY = b"c" * 32
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _record(i: int, agent: str = "app") -> AuditRecord:
    return AuditRecord(
        category=ACCESS,
        action="R",
        interaction="read",
        outcome=SUCCESS,
        agent=Agent("client", agent, verified=True),
        source="fhir-api",
        recorded=T0 + timedelta(seconds=i),
        correlation_id=f"corr-{i}",
        status="200",
        entities=(Entity("Observation", f"o{i}", "1"),),
        patients=(f"Patient/p{i % 2}",),
        id=f"{agent}-{i}",
    )


@pytest.fixture(params=BACKENDS)
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], AuditLog]]:
    """A factory: every call opens another handle (another writer) on the same log."""
    opened: list[AuditLog] = []
    if request.param == "sqlite":

        def factory() -> AuditLog:
            log = SqliteAuditLog(tmp_path / "audit.sqlite3", key=KEY)
            opened.append(log)
            return log
    else:
        from shared.adapters.azure.audit_blobs import AppendBlobAuditLog

        connection = request.getfixturevalue("azurite")
        container = f"audit-{uuid.uuid4().hex[:12]}"

        def factory() -> AuditLog:
            log = AppendBlobAuditLog.from_connection_string(connection, container=container)
            opened.append(log)
            return log

    yield factory
    for log in opened:
        log.close()


def _verify(log: AuditLog) -> tuple[bool, int, int | None]:
    result = verify_chain(log.entries(), log.checkpoints(), key=KEY)
    return result.ok, result.checked, result.first_bad


def test_appended_records_come_back_in_order_and_verify(open_log: Callable[[], AuditLog]) -> None:
    log = open_log()
    log.append([_record(1)])
    log.append([_record(2), _record(3)])
    entries = list(log.entries())
    assert [AuditRecord.from_json(json.loads(e.body)) for e in entries] == [_record(i) for i in (1, 2, 3)]
    assert [e.seq for e in log.entries(after=1)] == [2, 3]
    assert _verify(log) == (True, 3, None)
    assert [e.seq for e in log.search(patient="Patient/p1")] == [1, 3]
    assert [e.seq for e in log.search(entity="Observation/o2", agent="app")] == [2]
    assert [e.seq for e in log.search(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=3))] == [
        2
    ]


def test_a_reopened_log_continues_the_chain(open_log: Callable[[], AuditLog]) -> None:
    open_log().append([_record(1)])
    open_log().append([_record(2)])
    assert _verify(open_log()) == (True, 2, None)


def test_concurrent_writers_never_fork_the_chain(open_log: Callable[[], AuditLog]) -> None:
    writers = [open_log() for _ in range(3)]
    start = threading.Barrier(len(writers))

    def run(index: int) -> None:
        start.wait()
        for i in range(8):
            writers[index].append([_record(i, agent=f"w{index}")])

    with ThreadPoolExecutor(len(writers)) as pool:
        for future in [pool.submit(run, i) for i in range(len(writers))]:
            future.result()  # re-raises a writer's failure
    log = open_log()
    assert _verify(log) == (True, 24, None)
    ids = sorted(json.loads(e.body)["id"] for e in log.entries())
    assert ids == sorted(f"w{w}-{i}" for w in range(3) for i in range(8))


def test_an_edited_record_is_caught(open_log: Callable[[], AuditLog], tmp_path: Path) -> None:
    log = open_log()
    log.append([_record(1), _record(2), _record(3)])
    if isinstance(log, SqliteAuditLog):
        import sqlite3

        conn = sqlite3.connect(tmp_path / "audit.sqlite3", isolation_level=None)
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET body = replace(body, 'o2', 'o9') WHERE seq = 2")
        conn.close()
    else:
        # Azurite has no immutability policy: rewrite the segment as someone would without one.
        from shared.adapters.azure.audit_blobs import PREFIX

        container = log._container  # the test plays the attacker
        (name,) = [b.name for b in container.list_blobs(name_starts_with=PREFIX)]
        data = container.get_blob_client(name).download_blob().readall().replace(b"o2", b"o9")
        container.get_blob_client(name).upload_blob(data, blob_type="AppendBlob", overwrite=True)
    assert _verify(open_log()) == (False, 1, 2)
