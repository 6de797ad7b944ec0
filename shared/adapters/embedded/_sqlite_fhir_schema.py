"""Tables and value encodings of the embedded FHIR store (:mod:`shared.adapters.embedded.sqlite_fhir`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SCHEMA = """
CREATE TABLE IF NOT EXISTS fhir_resource (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (rtype, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fhir_resource_updated ON fhir_resource (rtype, deleted, last_updated);
CREATE TABLE IF NOT EXISTS fhir_version (
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS fhir_version_key ON fhir_version (rtype, id, version);
CREATE INDEX IF NOT EXISTS fhir_version_updated ON fhir_version (rtype, last_updated);
CREATE TABLE IF NOT EXISTS fhir_idx_token (
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, system TEXT, code TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_idx_token_value ON fhir_idx_token (rtype, param, code, system);
CREATE INDEX IF NOT EXISTS fhir_idx_token_res ON fhir_idx_token (rtype, id, param);
CREATE TABLE IF NOT EXISTS fhir_idx_string (
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_idx_string_value ON fhir_idx_string (rtype, param, norm);
CREATE INDEX IF NOT EXISTS fhir_idx_string_res ON fhir_idx_string (rtype, id, param);
CREATE TABLE IF NOT EXISTS fhir_idx_date (
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_idx_date_value ON fhir_idx_date (rtype, param, lo, hi);
CREATE INDEX IF NOT EXISTS fhir_idx_date_res ON fhir_idx_date (rtype, id, param);
CREATE TABLE IF NOT EXISTS fhir_idx_ref (
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, ttype TEXT NOT NULL, tid TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fhir_idx_ref_value ON fhir_idx_ref (rtype, param, tid, ttype);
CREATE INDEX IF NOT EXISTS fhir_idx_ref_res ON fhir_idx_ref (rtype, id, param);
CREATE INDEX IF NOT EXISTS fhir_idx_ref_target ON fhir_idx_ref (ttype, tid);
CREATE TABLE IF NOT EXISTS fhir_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created INTEGER NOT NULL,
    parked INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    message TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS fhir_outbox_batch ON fhir_outbox (batch, seq);
CREATE INDEX IF NOT EXISTS fhir_outbox_due ON fhir_outbox (parked, id)
"""

_INDEX_TABLES = ("fhir_idx_token", "fhir_idx_string", "fhir_idx_date", "fhir_idx_ref")


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
