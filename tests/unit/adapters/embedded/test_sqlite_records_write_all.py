"""The embedded record store's :meth:`~shared.adapters.embedded.sqlite_records.SqliteRecordStore.write_all`
(:class:`~shared.storage.ports.AtomicRecordWrites`): several writes, one transaction, all or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.storage.errors import ConcurrencyConflict, RecordNotFound
from shared.storage.keys import InvalidValue
from shared.storage.ports import JsonDict, RecordStore, RecordWrite


def _rows(store: RecordStore, table: str) -> list[tuple[str, str, JsonDict]]:
    return [(r.partition_key, r.row_key, r.value) for r in store.query(table)]


def test_write_all_is_all_or_none(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    store.insert("things", "p", "kept", {"v": 1})
    good = RecordWrite("upsert", "things", "p", "a", {"v": 2})
    cases: list[tuple[RecordWrite, type[Exception]]] = [
        (RecordWrite("upsert", "things", "p", "b", {"v": float("nan")}), InvalidValue),
        (RecordWrite("replace", "things", "p", "b", {"v": 3}), ValueError),  # type: ignore[arg-type]
    ]
    for bad, error in cases:
        with pytest.raises(error):
            store.write_all([good, bad])
        assert _rows(store, "things") == [("p", "kept", {"v": 1})]
    store.write_all(
        [
            good,
            RecordWrite("insert_if_absent", "things", "p", "kept", {"v": 9}),  # left as it is
            RecordWrite("insert_if_absent", "other", "q", "new", {"v": 4}),
            RecordWrite("upsert", "things", "p", "a", {"v": 5}),  # later writes see earlier ones
        ]
    )
    assert _rows(store, "things") == [("p", "a", {"v": 5}), ("p", "kept", {"v": 1})]
    assert _rows(store, "other") == [("q", "new", {"v": 4})]
    store.close()


def test_write_all_conditions_roll_back_every_write(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "r.sqlite3")
    kept = store.insert("things", "p", "kept", {"v": 1})
    stale = store.insert("things", "p", "stale", {"v": 1})
    store.update("things", "p", "stale", {"v": 2}, etag=stale.etag)
    before = _rows(store, "things")
    first = RecordWrite("upsert", "things", "p", "new", {"v": 3})
    cases: list[tuple[RecordWrite, type[Exception]]] = [
        (RecordWrite("update", "things", "p", "stale", {"v": 4}, stale.etag), ConcurrencyConflict),
        (RecordWrite("update", "things", "p", "gone", {"v": 4}, stale.etag), RecordNotFound),
        (RecordWrite("delete", "things", "p", "stale", etag=stale.etag), ConcurrencyConflict),
        (RecordWrite("update", "things", "p", "kept", {"v": 4}), ValueError),  # no etag
    ]
    for bad, error in cases:
        with pytest.raises(error):
            store.write_all([first, bad])
        assert _rows(store, "things") == before, bad
    store.write_all(
        [
            first,
            RecordWrite("update", "things", "p", "kept", {"v": 5}, kept.etag),
            RecordWrite("delete", "things", "p", "stale"),
            RecordWrite("delete", "things", "p", "never-there", etag="x"),  # nothing to delete: no error
        ]
    )
    assert _rows(store, "things") == [("p", "kept", {"v": 5}), ("p", "new", {"v": 3})]
    store.close()
