"""Tamper evidence of the embedded audit log, on real SQLite files.

Each tampering is done the way someone with the file would do it: drop the append-only triggers, then
edit, delete or swap rows with plain SQL. Verification must fail and name the first bad record.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.chain import GENESIS, entry_hash, verify_chain
from shared.audit.model import ACCESS, SUCCESS, Agent, AuditRecord, Entity

KEY = b"k" * 32
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        category=ACCESS,
        action="R",
        interaction="read",
        outcome=SUCCESS,
        agent=Agent("client", f"app-{i % 3}", verified=True),
        source="fhir-api",
        recorded=T0 + timedelta(seconds=i),
        correlation_id=f"corr-{i}",
        status="200",
        entities=(Entity("Patient", f"p{i}", "1"),),
        patients=(f"Patient/p{i}",),
        id=f"rec-{i}",
    )


def _log(path: Path, **kwargs: object) -> SqliteAuditLog:
    return SqliteAuditLog(path, key=KEY, clock=lambda: T0, **kwargs)  # type: ignore[arg-type]


def _written(tmp_path: Path, n: int = 6, checkpoint_every: int = 1000) -> Path:
    path = tmp_path / "audit.sqlite3"
    log = _log(path, checkpoint_every=checkpoint_every)
    for i in range(1, n + 1):
        log.append([_record(i)])
    log.close()
    return path


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        conn.execute(statement)
    conn.close()


def _verify(path: Path, key: bytes = KEY) -> tuple[bool, int | None, str]:
    log = _log(path)
    try:
        result = verify_chain(log.entries(), log.checkpoints(), key=key)
    finally:
        log.close()
    return result.ok, result.first_bad, result.reason


def test_an_untouched_log_verifies_and_round_trips(tmp_path: Path) -> None:
    path = _written(tmp_path)
    log = _log(path)
    entries = list(log.entries())
    assert [AuditRecord.from_json(json.loads(e.body)) for e in entries] == [_record(i) for i in range(1, 7)]
    assert entries[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    result = verify_chain(log.entries(), log.checkpoints(), key=KEY)
    log.close()
    assert (result.ok, result.checked, result.last_seq) == (True, 6, 6)


TAMPERING = [
    pytest.param(
        ["UPDATE audit_log SET body = replace(body, '\"app-0\"', '\"app-X\"') WHERE seq = 3"],
        3,
        "edited",
        id="modified-field",
    ),
    pytest.param(["DELETE FROM audit_log WHERE seq = 4"], 4, "missing", id="deleted-record"),
    pytest.param(
        [
            "UPDATE audit_log SET seq = -3 WHERE seq = 3",
            "UPDATE audit_log SET seq = 3 WHERE seq = 4",
            "UPDATE audit_log SET seq = 4 WHERE seq = -3",
        ],
        3,
        "edited",
        id="swapped-pair",
    ),
    pytest.param(["DELETE FROM audit_log WHERE seq > 4"], 5, "truncated", id="truncated-tail"),
]


@pytest.mark.parametrize(("statements", "first_bad", "reason"), TAMPERING)
def test_tampering_is_detected_at_the_first_bad_record(
    tmp_path: Path, statements: list[str], first_bad: int, reason: str
) -> None:
    path = _written(tmp_path)
    _tamper(path, *statements)
    ok, bad, why = _verify(path)
    assert (ok, bad) == (False, first_bad)
    assert reason in why


def test_a_rebuilt_chain_disagrees_with_the_signed_head(tmp_path: Path) -> None:
    """Edit record 2, then re-compute every hash after it: the chain is self-consistent again, but the
    head signed under the key (which the editor does not have) no longer matches."""
    path = _written(tmp_path)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT seq, body FROM audit_log ORDER BY seq").fetchall()
    conn.close()
    prev, updates = GENESIS, []
    for seq, body in rows:
        if seq == 2:
            body = body.replace('"app-2"', '"app-X"')
        digest = entry_hash(seq, prev, body)
        updates.append(
            f"UPDATE audit_log SET body = '{body}', prev = '{prev}', hash = '{digest}' WHERE seq = {seq}"
        )
        prev = digest
    _tamper(path, *updates)
    ok, bad, why = _verify(path)
    assert (ok, bad) == (False, 6)
    assert "signed checkpoint" in why


def test_a_forged_head_fails_its_signature(tmp_path: Path) -> None:
    path = _written(tmp_path)
    _tamper(path, "DELETE FROM audit_log WHERE seq = 6", "UPDATE audit_head SET seq = 5")
    ok, bad, why = _verify(path)
    assert ok is False and "signature" in why
    assert bad == 5


def test_periodic_checkpoints_are_kept_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    log = _log(path, checkpoint_every=2)
    for i in range(1, 6):
        log.append([_record(i)])
    assert [cp.seq for cp in log.checkpoints()] == [2, 4, 5]  # two periodic, then the head
    log.close()
    # Cut the tail and re-sign nothing: the checkpoint at 4 still catches it even with the head removed.
    _tamper(path, "DELETE FROM audit_log WHERE seq >= 4", "DELETE FROM audit_head")
    ok, bad, why = _verify(path)
    assert (ok, bad) == (False, 4) and "truncated" in why


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET body = '{}' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
        "DELETE FROM audit_terms",
        "UPDATE audit_checkpoints SET seq = 0",
    ],
)
def test_the_tables_refuse_update_and_delete(tmp_path: Path, statement: str) -> None:
    path = _written(tmp_path, n=2, checkpoint_every=1)
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute(statement)
    conn.close()
    assert _verify(path) == (True, None, "")


def test_a_batch_is_appended_atomically_in_order(tmp_path: Path) -> None:
    log = _log(tmp_path / "audit.sqlite3")
    entries = log.append([_record(1), _record(2), _record(3)])
    assert [e.seq for e in entries] == [1, 2, 3]
    assert [e.seq for e in log.search(patient="Patient/p2")] == [2]
    assert [e.seq for e in log.search(agent="app-0")] == [3]
    assert [e.seq for e in log.search(entity="Patient/p1")] == [1]
    assert [e.seq for e in log.search(correlation_id="corr-3")] == [3]
    assert [e.seq for e in log.search(since=T0 + timedelta(seconds=2))] == [2, 3]
    assert [e.seq for e in log.search(until=T0 + timedelta(seconds=2))] == [1]
    log.close()
