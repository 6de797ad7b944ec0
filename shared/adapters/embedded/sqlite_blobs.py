"""Embedded :class:`~shared.storage.ports.BlobStore`: blobs and their properties in one SQLite file.

Keeping the bytes in SQLite (``<root>/blobs.sqlite3``) rather than in loose files makes every ``put``
atomic (readers see the old blob or the new one, never half of one), makes ``overwrite=False`` a real
conditional create across threads and processes, and keeps content and metadata from drifting apart.
Containers exist implicitly. Semantics match :mod:`shared.adapters.azure.blobs`, including a
``content_type`` of ``application/octet-stream`` when none is given.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path

from shared.adapters.embedded._sqlite import SqliteDatabase
from shared.storage.errors import BlobExists, BlobNotFound
from shared.storage.keys import (
    prefix_upper_bound,
    validate_blob_name,
    validate_container_name,
    validate_metadata,
)
from shared.storage.ports import BlobInfo

#: What Azure reports for a blob uploaded without a content type; used here too for parity.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    container TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (container, name)
)
"""
_INFO_COLUMNS = "container, name, size, etag, content_type, metadata, last_modified"


def _info(row: tuple[str, str, int, str, str, str, str]) -> BlobInfo:
    container, name, size, etag, content_type, metadata, last_modified = row
    return BlobInfo(
        container=container,
        name=name,
        size=size,
        etag=etag,
        content_type=content_type,
        last_modified=datetime.fromisoformat(last_modified),
        metadata=json.loads(metadata),
    )


class SqliteBlobStore:
    """:class:`~shared.storage.ports.BlobStore` keeping everything in ``<root>/blobs.sqlite3``."""

    def __init__(self, root: str | PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.root = Path(root)
        self._db = SqliteDatabase(self.root / "blobs.sqlite3", busy_timeout=busy_timeout, schema=_SCHEMA)

    def put(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = True,
    ) -> BlobInfo:
        validate_container_name(container)
        validate_blob_name(name)
        clean_metadata = validate_metadata(metadata)
        payload = bytes(data)
        info = BlobInfo(
            container=container,
            name=name,
            size=len(payload),
            etag=uuid.uuid4().hex,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            last_modified=datetime.now(UTC),
            metadata=clean_metadata,
        )
        row = (
            container,
            name,
            info.size,
            info.etag,
            info.content_type,
            json.dumps(clean_metadata),
            info.last_modified.isoformat(),
            payload,
        )
        insert = f"INSERT INTO blobs ({_INFO_COLUMNS}, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        if overwrite:
            insert += (
                " ON CONFLICT (container, name) DO UPDATE SET size = excluded.size, etag = excluded.etag,"
                " content_type = excluded.content_type, metadata = excluded.metadata,"
                " last_modified = excluded.last_modified, data = excluded.data"
            )
        try:
            with self._db.write() as conn:
                conn.execute(insert, row)
        except sqlite3.IntegrityError:
            raise BlobExists(f"blob already exists in container {container}") from None
        return info

    def get(self, container: str, name: str) -> bytes:
        validate_container_name(container)
        validate_blob_name(name)
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT data FROM blobs WHERE container = ? AND name = ?", (container, name)
            ).fetchone()
        if row is None:
            raise BlobNotFound(f"blob not found in container {container}")
        return bytes(row[0])

    def info(self, container: str, name: str) -> BlobInfo | None:
        validate_container_name(container)
        validate_blob_name(name)
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM blobs WHERE container = ? AND name = ?", (container, name)
            ).fetchone()
        return None if row is None else _info(row)

    def delete(self, container: str, name: str) -> bool:
        validate_container_name(container)
        validate_blob_name(name)
        with self._db.write() as conn:
            deleted = conn.execute(
                "DELETE FROM blobs WHERE container = ? AND name = ?", (container, name)
            ).rowcount
        return deleted > 0

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        validate_container_name(container)
        validate_blob_name(prefix, allow_empty=True)
        sql = f"SELECT {_INFO_COLUMNS} FROM blobs WHERE container = ?"
        params: list[str] = [container]
        if prefix:
            sql += " AND name >= ?"
            params.append(prefix)
            bound = prefix_upper_bound(prefix)
            if bound is not None:
                sql += " AND name < ?"
                params.append(bound)
        sql += " ORDER BY name"
        with self._db.read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_info(row) for row in rows]

    def close(self) -> None:
        self._db.close()
