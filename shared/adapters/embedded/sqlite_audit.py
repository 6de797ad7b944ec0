"""Embedded :class:`~shared.audit.ports.AuditLog`: an append-only, hash-chained SQLite file.

``<TIE_LOCAL_DIR>/audit.sqlite3``, 0600. Tables ``audit_log`` (the chain), ``audit_terms`` (search index)
and ``audit_checkpoints`` refuse ``UPDATE`` and ``DELETE`` through triggers, and this class has no such
path; ``audit_head`` holds the signed head (re-signed in the same transaction as every append). One append
is one ``BEGIN IMMEDIATE`` transaction (WAL, ``synchronous=NORMAL``: no fsync per commit), so a crash
leaves the chain as it was before or after the append, never half of it. The triggers stop accidents and
code paths, not an owner editing the file: that is what the chain and the signed checkpoints detect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path

from shared.adapters.embedded._sqlite import SqliteDatabase
from shared.audit.chain import GENESIS, checkpoint, entry_hash
from shared.audit.model import AuditRecord, canonical_json
from shared.audit.ports import ChainedEntry, Checkpoint

_APPEND_ONLY = ("audit_log", "audit_terms", "audit_checkpoints")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    recorded TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_terms (
    term TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (term, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_log_recorded ON audit_log (recorded);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER NOT NULL, hash TEXT NOT NULL, at TEXT NOT NULL, signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL, hash TEXT NOT NULL, at TEXT NOT NULL, signature TEXT NOT NULL
);
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    for table in _APPEND_ONLY
    for verb in ("update", "delete")
)


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class SqliteAuditLog:
    """:class:`~shared.audit.ports.AuditLog` in one SQLite file; ``key`` signs the checkpoints."""

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        key: bytes,
        checkpoint_every: int = 1000,
        clock: Callable[[], datetime] | None = None,
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self._key = key
        self._every = checkpoint_every
        self._clock = clock or (lambda: datetime.now(UTC))
        self._db = SqliteDatabase(self.path, busy_timeout=busy_timeout)
        with self._db.read() as conn:
            conn.executescript(_SCHEMA)  # trigger bodies contain ';': executescript, not split

    def append(self, records: Sequence[AuditRecord]) -> list[ChainedEntry]:
        if not records:
            return []
        out: list[ChainedEntry] = []
        documents = [(record.to_json(), record.terms()) for record in records]  # outside the write lock
        bodies = [canonical_json(document) for document, _ in documents]
        with self._db.write() as conn:
            row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
            crossed = False
            rows: list[tuple[int, str, str, str, str]] = []
            terms: list[tuple[str, int]] = []
            for (document, record_terms), body in zip(documents, bodies, strict=True):
                seq += 1
                digest = entry_hash(seq, prev, body)
                rows.append((seq, document["recorded"], prev, digest, body))
                terms += [(t, seq) for t in record_terms]
                out.append(ChainedEntry(seq, prev, digest, body))
                crossed = crossed or seq % self._every == 0
                prev = digest
            conn.executemany(
                "INSERT INTO audit_log (seq, recorded, prev, hash, body) VALUES (?, ?, ?, ?, ?)", rows
            )
            conn.executemany("INSERT INTO audit_terms (term, seq) VALUES (?, ?)", terms)
            head = checkpoint(self._key, seq, prev, _instant(self._clock()))
            if crossed:
                conn.execute(
                    "INSERT INTO audit_checkpoints (seq, hash, at, signature) VALUES (?, ?, ?, ?)",
                    (head.seq, head.hash, head.at, head.signature),
                )
            conn.execute(
                "INSERT INTO audit_head (id, seq, hash, at, signature) VALUES (1, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
                " at = excluded.at, signature = excluded.signature",
                (head.seq, head.hash, head.at, head.signature),
            )
        return out

    def entries(self, *, after: int = 0) -> Iterator[ChainedEntry]:
        last = after
        while True:
            with self._db.read() as conn:
                rows = conn.execute(
                    "SELECT seq, prev, hash, body FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 1000",
                    (last,),
                ).fetchall()
            if not rows:
                return
            for seq, prev, hash_, body in rows:
                yield ChainedEntry(int(seq), str(prev), str(hash_), str(body))
            last = int(rows[-1][0])

    def search(
        self,
        *,
        patient: str | None = None,
        agent: str | None = None,
        entity: str | None = None,
        correlation_id: str | None = None,
        record_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ChainedEntry]:
        sql = "SELECT seq, prev, hash, body FROM audit_log WHERE 1 = 1"
        params: list[str | int] = []
        for prefix, value in (
            ("patient", patient),
            ("agent", agent),
            ("entity", entity),
            ("correlation", correlation_id),
            ("id", record_id),
        ):
            if value:
                sql += " AND seq IN (SELECT seq FROM audit_terms WHERE term = ?)"
                params.append(f"{prefix}:{value}")
        if since is not None:
            sql += " AND recorded >= ?"
            params.append(_instant(since))
        if until is not None:
            sql += " AND recorded < ?"
            params.append(_instant(until))
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._db.read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [ChainedEntry(int(s), str(p), str(h), str(b)) for s, p, h, b in rows]

    def checkpoints(self) -> list[Checkpoint]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT seq, hash, at, signature FROM audit_checkpoints ORDER BY seq"
            ).fetchall()
            head = conn.execute("SELECT seq, hash, at, signature FROM audit_head").fetchone()
        out = [Checkpoint(int(s), str(h), str(a), str(g)) for s, h, a, g in rows]
        if head is not None:
            out.append(Checkpoint(int(head[0]), str(head[1]), str(head[2]), str(head[3])))
        return out

    def close(self) -> None:
        self._db.close()
