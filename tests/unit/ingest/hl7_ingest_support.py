"""Shared helpers for the HL7 v2 ingest unit tests: fabricated messages and a record store that races."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.hl7v2 import parse_message
from shared.ingest.hl7v2 import OUTCOME_TABLE
from shared.storage.ports import JsonDict, Record, RecordStore

GOOD_NHS = "9434765919"
BAD_NHS = "9434765910"  # wrong Modulus 11 check digit


def oru(
    control_id: str = "LAB0001",
    *,
    obr4: str = "UE^Urea and electrolytes^L",
    units: str = "mmol/L",
    nhs_number: str = GOOD_NHS,
    sender: str = "LIMS",
    facility: str = "LAB",
    accept_ack: str = "",
    app_ack: str = "",
) -> bytes:
    msh_tail = f"|||{accept_ack}|{app_ack}" if accept_ack or app_ack else ""
    segments = [
        f"MSH|^~\\&|{sender}|{facility}|TIE|TRUST|20260115110500||ORU^R01^ORU_R01|{control_id}|P|2.5.1"
        + msh_tail,
        f"PID|1||{nhs_number}^^^NHS^NH~RRV1234567^^^RRV^MR||TESTPATIENT^ALEX||19800101|F",
        "ORC|RE|ORD1^EPR|LAB1^LIMS",
        f"OBR|1|ORD1^EPR|LAB1^LIMS|{obr4}|||20260115093000" + "|" * 18 + "F",
        f"OBX|1|NM|NA^Sodium^L||140|{units}|133-146|N|||F",
    ]
    return ("\r".join(segments) + "\r").encode("ascii")


def ack_errs(ack: bytes | None) -> list[tuple[str | None, str, str | None]]:
    """(ERR-3.1 code, ERR-2 location as ``SEG^seq^field^rep^comp``, ERR-4 severity) per ERR segment."""
    assert ack is not None
    message = parse_message(ack)
    return [(e.get(3, comp=1), e.raw_field(2), e.get(4)) for e in message.segments_named("ERR")]


class RacingStore:
    """A :class:`RecordStore` that runs ``before_write`` once, just before the first write to the outcome
    table - the moment another edge instance could get in between our read and our write."""

    def __init__(self, inner: RecordStore, *, stale_first_read: bool = False) -> None:
        self.inner = inner
        self.before_write: Callable[[], None] | None = None
        self._stale_first_read = stale_first_read

    def _maybe_race(self, table: str) -> None:
        if table == OUTCOME_TABLE and self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()

    def get(self, table: str, partition_key: str, row_key: str) -> Record | None:
        if table == OUTCOME_TABLE and self._stale_first_read:
            self._stale_first_read = False
            return None  # read before a concurrent writer stored its outcome
        return self.inner.get(table, partition_key, row_key)

    def insert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        self._maybe_race(table)
        return self.inner.insert(table, partition_key, row_key, value)

    def update(self, table: str, partition_key: str, row_key: str, value: JsonDict, *, etag: str) -> Record:
        self._maybe_race(table)
        return self.inner.update(table, partition_key, row_key, value, etag=etag)

    def upsert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        self._maybe_race(table)
        return self.inner.upsert(table, partition_key, row_key, value)

    def delete(self, table: str, partition_key: str, row_key: str, *, etag: str | None = None) -> bool:
        return self.inner.delete(table, partition_key, row_key, etag=etag)

    def query(self, table: str, partition_key: str | None = None, **kwargs: Any) -> list[Record]:
        return self.inner.query(table, partition_key, **kwargs)

    def close(self) -> None:
        self.inner.close()
