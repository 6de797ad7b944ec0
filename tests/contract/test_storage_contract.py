"""Behavioural contract of the storage ports, run against every backend.

The same tests run on the embedded SQLite stores and on the Azure adapters against Azurite (marked
``azurite``; the emulator is started by the session fixture in ``tests/contract/conftest.py``). A
backend passes only if it behaves exactly like the others, so production and development stay in step.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.embedded.sqlite_blobs import SqliteBlobStore
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.errors import PermanentError, TransientError
from shared.storage.errors import (
    BlobExists,
    BlobNotFound,
    ConcurrencyConflict,
    InvalidKey,
    RecordExists,
    RecordNotFound,
    StorageUnavailable,
)
from shared.storage.keys import (
    MAX_KEY_LENGTH,
    MAX_VALUE_BYTES,
    InvalidValue,
    ValueTooLarge,
    encode_value,
    restore_key,
    safe_key,
    validate_key,
)
from shared.storage.ports import BlobStore, Record, RecordStore
from tests.contract.backends import BACKENDS

T = TypeVar("T")


#: Identifiers that break naive keys: forbidden characters, the escape characters themselves, controls,
#: quotes (OData), percent (URL decoding), a lone surrogate, astral characters, whitespace, dots.
NASTY_IDENTIFIERS = [
    "a/b",
    "back\\slash",
    "hash#tag",
    "what?",
    "100%",
    "%2F",
    "it's",
    "''",
    "!",
    "!2F",
    "!u",
    "nul\x00byte",
    "\t\n\r\x1f\x7f\x85\x9f",
    "\ud800lone",
    "😀 astral 𝄞",
    "  spaces  ",
    ".",
    "..",
    "ü-Ä-ß-中文-עברית",
    "+&=;:@$,",
    "9434765919",
    "x" * 200,
]


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    store: BlobStore
    if request.param == "sqlite":
        store = SqliteBlobStore(tmp_path / "blobs")
    else:
        from shared.adapters.azure.blobs import AzureBlobStore

        store = AzureBlobStore.from_connection_string(request.getfixturevalue("azurite"))
    yield store
    store.close()


@pytest.fixture
def table() -> str:
    """A fresh table per test (Azurite is shared by the session)."""
    return "t" + uuid.uuid4().hex[:20]


@pytest.fixture
def container() -> str:
    return "c-" + uuid.uuid4().hex[:20]


def race(count: int, action: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``action(i)`` on ``count`` threads released together; results or exceptions, by index."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not run")] * count

    def run(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[index] = action(index)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


# -- records: basic operations ------------------------------------------------------------------------


def test_store_satisfies_protocol(records: RecordStore) -> None:
    assert isinstance(records, RecordStore)


def test_insert_then_get_round_trips_value(records: RecordStore, table: str) -> None:
    value = {"text": "héllo 😀", "n": 3, "f": 1.5, "ok": True, "none": None, "list": [1, {"a": "b"}]}
    created = records.insert(table, "p1", "r1", value)
    assert (created.table, created.partition_key, created.row_key, created.value) == (
        table,
        "p1",
        "r1",
        value,
    )
    assert created.etag
    assert isinstance(created.updated_at, datetime) and created.updated_at.tzinfo is not None

    fetched = records.get(table, "p1", "r1")
    assert fetched is not None
    assert fetched.value == value
    assert fetched.etag == created.etag
    assert records.get(table, "p1", "other") is None
    assert records.get(table, "other", "r1") is None


def test_get_from_table_never_written_is_none(records: RecordStore, table: str) -> None:
    assert records.get(table, "p", "r") is None
    assert records.query(table) == []
    assert records.delete(table, "p", "r") is False


def test_table_names_are_case_insensitive(records: RecordStore, table: str) -> None:
    records.insert(table.lower(), "p", "r", {"v": 1})
    fetched = records.get(table.upper(), "p", "r")
    assert fetched is not None and fetched.value == {"v": 1}


def test_conditional_insert_conflict_keeps_original(records: RecordStore, table: str) -> None:
    records.insert(table, "p", "r", {"v": "first"})
    with pytest.raises(RecordExists) as info:
        records.insert(table, "p", "r", {"v": "second"})
    assert isinstance(info.value, PermanentError)
    fetched = records.get(table, "p", "r")
    assert fetched is not None and fetched.value == {"v": "first"}


def test_update_with_current_etag_replaces_value(records: RecordStore, table: str) -> None:
    created = records.insert(table, "p", "r", {"old": 1, "keep": 2})
    updated = records.update(table, "p", "r", {"new": 3}, etag=created.etag)
    assert updated.value == {"new": 3}
    assert updated.etag != created.etag
    fetched = records.get(table, "p", "r")
    assert fetched is not None
    assert fetched.value == {"new": 3}  # replace, not merge
    assert fetched.etag == updated.etag


def test_update_with_stale_etag_conflicts(records: RecordStore, table: str) -> None:
    created = records.insert(table, "p", "r", {"v": 1})
    current = records.update(table, "p", "r", {"v": 2}, etag=created.etag)
    with pytest.raises(ConcurrencyConflict) as info:
        records.update(table, "p", "r", {"v": 3}, etag=created.etag)
    assert isinstance(info.value, TransientError)
    fetched = records.get(table, "p", "r")
    assert fetched is not None and fetched.value == {"v": 2} and fetched.etag == current.etag


def test_update_of_missing_record_is_not_found(records: RecordStore, table: str) -> None:
    created = records.insert(table, "p", "r", {"v": 1})
    assert records.delete(table, "p", "r")
    with pytest.raises(RecordNotFound):
        records.update(table, "p", "r", {"v": 2}, etag=created.etag)
    assert records.get(table, "p", "r") is None


def test_upsert_creates_then_replaces(records: RecordStore, table: str) -> None:
    first = records.upsert(table, "p", "r", {"a": 1})
    assert records.get(table, "p", "r") is not None
    second = records.upsert(table, "p", "r", {"b": 2})
    assert second.etag != first.etag
    fetched = records.get(table, "p", "r")
    assert fetched is not None and fetched.value == {"b": 2} and fetched.etag == second.etag
    with pytest.raises(ConcurrencyConflict):
        records.update(table, "p", "r", {"c": 3}, etag=first.etag)


def test_unconditional_delete_reports_whether_something_was_deleted(records: RecordStore, table: str) -> None:
    records.insert(table, "p", "r", {"v": 1})
    assert records.delete(table, "p", "r") is True
    assert records.get(table, "p", "r") is None
    assert records.delete(table, "p", "r") is False


def test_conditional_delete(records: RecordStore, table: str) -> None:
    created = records.insert(table, "p", "r", {"v": 1})
    current = records.update(table, "p", "r", {"v": 2}, etag=created.etag)
    with pytest.raises(ConcurrencyConflict):
        records.delete(table, "p", "r", etag=created.etag)
    assert records.get(table, "p", "r") is not None
    assert records.delete(table, "p", "r", etag=current.etag) is True
    assert records.get(table, "p", "r") is None
    assert records.delete(table, "p", "r", etag=current.etag) is False


# -- records: query -----------------------------------------------------------------------------------


def test_query_orders_by_partition_then_row_key(records: RecordStore, table: str) -> None:
    keys = [(pk, rk) for pk in ("b", "A", "a", "10", "9") for rk in ("x", "10", "2", "X", "x-1")]
    shuffled = keys[:]
    random.Random(7).shuffle(shuffled)
    for pk, rk in shuffled:
        records.insert(table, pk, rk, {"pk": pk, "rk": rk})
    everything = records.query(table)
    assert [(r.partition_key, r.row_key) for r in everything] == sorted(keys)
    assert all(r.value == {"pk": r.partition_key, "rk": r.row_key} for r in everything)
    assert all(r.table == table and r.etag for r in everything)

    partition = records.query(table, "a")
    assert [r.row_key for r in partition] == sorted(rk for pk, rk in keys if pk == "a")


def test_query_prefix_and_limit(records: RecordStore, table: str) -> None:
    for rk in ("2026-01-01T10", "2026-01-01T09", "2026-01-02T00", "2026-01-0", "2026-01-011", "2025-12-31"):
        records.insert(table, "p", rk, {})
    records.insert(table, "q", "2026-01-01T11", {})  # other partition, same prefix

    day = records.query(table, "p", row_key_prefix="2026-01-01")
    assert [r.row_key for r in day] == ["2026-01-011", "2026-01-01T09", "2026-01-01T10"]
    assert [r.row_key for r in records.query(table, "p", row_key_prefix="2026-01-01", limit=2)] == [
        "2026-01-011",
        "2026-01-01T09",
    ]
    assert [r.row_key for r in records.query(table, "p", limit=1)] == ["2025-12-31"]
    assert records.query(table, "p", row_key_prefix="2027") == []
    assert records.query(table, "p", limit=0) == []
    assert records.query(table, "nobody") == []
    across = records.query(table, row_key_prefix="2026-01-01T1")
    assert [(r.partition_key, r.row_key) for r in across] == [("p", "2026-01-01T10"), ("q", "2026-01-01T11")]
    assert len(records.query(table, limit=3)) == 3
    assert len(records.query(table)) == 7


def test_query_prefix_on_safe_keys_finds_encoded_identifiers(records: RecordStore, table: str) -> None:
    identifiers = ["ward/7#a", "ward/7#b", "ward/70", "ward?7", "ward'7"]
    for identifier in identifiers:
        records.insert(table, "p", safe_key(identifier), {"id": identifier})
    found = records.query(table, "p", row_key_prefix=safe_key("ward/7#"))
    assert sorted(r.value["id"] for r in found) == ["ward/7#a", "ward/7#b"]
    assert sorted(restore_key(r.row_key) for r in found) == ["ward/7#a", "ward/7#b"]


# -- records: concurrency -----------------------------------------------------------------------------


def insert_as(store: RecordStore, table: str, row_key: str, contender: int) -> Record:
    return store.insert(table, "p", row_key, {"winner": contender})


def update_as(store: RecordStore, table: str, row_key: str, etag: str, contender: int) -> Record:
    return store.update(table, "p", row_key, {"winner": contender}, etag=etag)


@pytest.mark.parametrize("contenders", [2, 4])
def test_racing_inserts_exactly_one_wins(records: RecordStore, table: str, contenders: int) -> None:
    for round_number in range(3):
        row_key = f"r{round_number}"
        results = race(contenders, partial(insert_as, records, table, row_key))
        winners = [i for i, result in enumerate(results) if not isinstance(result, BaseException)]
        losers = [result for result in results if isinstance(result, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(loser, RecordExists) for loser in losers), losers
        stored = records.get(table, "p", row_key)
        assert stored is not None and stored.value == {"winner": winners[0]}


def test_racing_updates_from_same_etag_exactly_one_wins(records: RecordStore, table: str) -> None:
    for round_number in range(3):
        row_key = f"r{round_number}"
        base = records.insert(table, "p", row_key, {"winner": -1})
        results = race(2, partial(update_as, records, table, row_key, base.etag))
        winners = [i for i, result in enumerate(results) if not isinstance(result, BaseException)]
        losers = [result for result in results if isinstance(result, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(loser, ConcurrencyConflict) for loser in losers), losers
        stored = records.get(table, "p", row_key)
        assert stored is not None and stored.value == {"winner": winners[0]}


def increment(store: RecordStore, table: str, times: int) -> int:
    """Optimistic read-modify-write loop; returns how many conflicts it retried."""
    conflicts = 0
    for _ in range(times):
        while True:
            current = store.get(table, "p", "counter")
            assert current is not None
            try:
                store.update(table, "p", "counter", {"n": current.value["n"] + 1}, etag=current.etag)
                break
            except ConcurrencyConflict:
                conflicts += 1
    return conflicts


def test_optimistic_increments_lose_no_updates(records: RecordStore, table: str) -> None:
    threads, times = 4, 6
    records.insert(table, "p", "counter", {"n": 0})
    results = race(threads, lambda _i: increment(records, table, times))
    assert not [r for r in results if isinstance(r, BaseException)], results
    final = records.get(table, "p", "counter")
    assert final is not None and final.value == {"n": threads * times}


def _increment_in_subprocess(path: str, table: str, times: int) -> None:
    store = SqliteRecordStore(path)
    try:
        increment(store, table, times)
    finally:
        store.close()


def test_sqlite_records_are_safe_across_processes(tmp_path: Path, table: str) -> None:
    path = str(tmp_path / "shared.sqlite3")
    store = SqliteRecordStore(path)
    store.insert(table, "p", "counter", {"n": 0})
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_increment_in_subprocess, args=(path, table, 15)) for _ in range(2)]
    for process in processes:
        process.start()
    increment(store, table, 15)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    final = store.get(table, "p", "counter")
    store.close()
    assert final is not None and final.value == {"n": 45}


# -- records: keys and values -------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", NASTY_IDENTIFIERS, ids=range(len(NASTY_IDENTIFIERS)))
def test_safe_key_round_trip_is_a_valid_key(identifier: str) -> None:
    encoded = safe_key(identifier)
    assert validate_key(encoded) == encoded
    assert not set(encoded) & set("/\\#?%'")
    assert restore_key(encoded) == identifier


@given(
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=80),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=5),
)
@settings(max_examples=300, deadline=None)
def test_safe_key_is_reversible_injective_and_prefix_preserving(first: str, second: str) -> None:
    encoded = safe_key(first)
    assert restore_key(encoded) == first
    if first:
        validate_key(encoded)
    assert safe_key(first + second).startswith(encoded)
    assert (safe_key(second) == encoded) == (second == first)


def test_safe_key_rejects_identifiers_too_long_once_encoded() -> None:
    assert len(safe_key("a" * MAX_KEY_LENGTH)) == MAX_KEY_LENGTH
    with pytest.raises(InvalidKey, match="513"):
        safe_key("a" * (MAX_KEY_LENGTH + 1))
    with pytest.raises(InvalidKey):
        safe_key("/" * 200)  # 600 once escaped
    with pytest.raises(InvalidKey):
        safe_key("😀" * 257)  # 514 UTF-16 code units


@pytest.mark.parametrize("malformed", ["!", "!2", "!zz", "!41", "!u12", "!uD80", "!u0041", "abc!"])
def test_restore_key_rejects_text_safe_key_cannot_produce(malformed: str) -> None:
    with pytest.raises(InvalidKey):
        restore_key(malformed)


def test_nasty_identifiers_round_trip_through_store(records: RecordStore, table: str) -> None:
    for index, identifier in enumerate(NASTY_IDENTIFIERS):
        pk, rk = safe_key(identifier), safe_key(f"{index}:{identifier}")
        records.insert(table, pk, rk, {"index": index})  # (a lone surrogate is not valid in JSON)
        fetched = records.get(table, pk, rk)
        assert fetched is not None, index
        assert fetched.value == {"index": index}
        assert restore_key(fetched.partition_key) == identifier
        assert restore_key(fetched.row_key) == f"{index}:{identifier}"
    stored = records.query(table)
    assert len(stored) == len(NASTY_IDENTIFIERS)
    assert {restore_key(r.partition_key) for r in stored} == set(NASTY_IDENTIFIERS)
    for record in stored:
        assert records.delete(table, record.partition_key, record.row_key, etag=record.etag)
    assert records.query(table) == []


@pytest.mark.parametrize("raw_key", ["it's", "50%", "a%2Fb", "~tilde", "sp ace", "ü", "😀"])
def test_raw_keys_allowed_by_the_port_work(records: RecordStore, table: str, raw_key: str) -> None:
    created = records.insert(table, raw_key, raw_key, {"v": 1})
    assert records.get(table, raw_key, raw_key) is not None
    assert [r.row_key for r in records.query(table, raw_key, row_key_prefix=raw_key)] == [raw_key]
    updated = records.update(table, raw_key, raw_key, {"v": 2}, etag=created.etag)
    assert records.delete(table, raw_key, raw_key, etag=updated.etag) is True
    assert records.get(table, raw_key, raw_key) is None


SECRET = "9434765919"  # looks like an NHS number: must never appear in exception text


@pytest.mark.parametrize(
    ("partition_key", "row_key"),
    [
        (f"{SECRET}/x", "r"),
        ("p", f"{SECRET}#"),
        (f"{SECRET}?", "r"),
        ("p", f"back\\{SECRET}"),
        ("p", f"{SECRET}\n"),
        ("", "r"),
        ("p", ""),
        ("p", SECRET * 52),
    ],
)
def test_invalid_keys_are_rejected_without_echoing_them(
    records: RecordStore, table: str, partition_key: str, row_key: str
) -> None:
    for operation in (
        lambda: records.insert(table, partition_key, row_key, {}),
        lambda: records.upsert(table, partition_key, row_key, {}),
        lambda: records.get(table, partition_key, row_key),
        lambda: records.delete(table, partition_key, row_key),
    ):
        with pytest.raises(InvalidKey) as info:
            operation()
        assert SECRET not in str(info.value)
    assert records.query(table) == []


@pytest.mark.parametrize("name", ["ab", "1abc", "has-dash", "has_underscore", "x" * 64, "tables", "Tables"])
def test_invalid_table_names_are_rejected(records: RecordStore, name: str) -> None:
    with pytest.raises(InvalidKey):
        records.insert(name, "p", "r", {})


def test_value_near_the_limit_round_trips(records: RecordStore, table: str) -> None:
    overhead = len(encode_value({"s": ""}).encode("utf-8"))
    ascii_value = {"s": "a" * (MAX_VALUE_BYTES - overhead)}
    assert len(encode_value(ascii_value).encode("utf-8")) == MAX_VALUE_BYTES
    records.insert(table, "p", "ascii", ascii_value)
    # 4-byte UTF-8 / 2 UTF-16 unit characters, mixed with ASCII so chunk boundaries fall everywhere.
    mixed = {"s": ("😀x" * ((MAX_VALUE_BYTES - overhead) // 5))}
    records.insert(table, "p", "mixed", mixed)
    for row_key, value in (("ascii", ascii_value), ("mixed", mixed)):
        fetched = records.get(table, "p", row_key)
        assert fetched is not None and fetched.value == value
    fetched_all = records.query(table, "p")
    assert [r.value for r in fetched_all] == [ascii_value, mixed]
    updated = records.upsert(table, "p", "ascii", {"small": True})
    assert updated.value == {"small": True}
    fetched = records.get(table, "p", "ascii")
    assert fetched is not None and fetched.value == {"small": True}


def test_value_over_the_limit_is_rejected(records: RecordStore, table: str) -> None:
    overhead = len(encode_value({"s": ""}).encode("utf-8"))
    too_big = {"s": "a" * (MAX_VALUE_BYTES - overhead + 1)}
    with pytest.raises(ValueTooLarge) as info:
        records.insert(table, "p", "r", too_big)
    assert isinstance(info.value, PermanentError)
    created = records.insert(table, "p", "r", {"v": 1})
    with pytest.raises(ValueTooLarge):
        records.update(table, "p", "r", too_big, etag=created.etag)
    with pytest.raises(ValueTooLarge):
        records.upsert(table, "p", "r", too_big)
    fetched = records.get(table, "p", "r")
    assert fetched is not None and fetched.value == {"v": 1}


@pytest.mark.parametrize(
    "value", [{"f": float("nan")}, {"o": object()}, {"s": "\udcff"}, ["not", "a", "dict"]]
)
def test_non_json_values_are_rejected(records: RecordStore, table: str, value: Any) -> None:
    with pytest.raises(InvalidValue):
        records.insert(table, "p", "r", value)
    assert records.get(table, "p", "r") is None


# -- blobs ----------------------------------------------------------------------------------------------


def test_blob_store_satisfies_protocol(blobs: BlobStore) -> None:
    assert isinstance(blobs, BlobStore)


def test_blob_put_get_info(blobs: BlobStore, container: str) -> None:
    data = bytes(range(256)) * 10
    info = blobs.put(
        container,
        "inbound/2026/msg 1 ü.hl7",
        data,
        content_type="x-application/hl7-v2+er7",
        metadata={"k": "v 1"},
    )
    assert (info.container, info.name, info.size) == (container, "inbound/2026/msg 1 ü.hl7", len(data))
    assert info.etag and info.last_modified.tzinfo is not None
    assert blobs.get(container, "inbound/2026/msg 1 ü.hl7") == data
    stored = blobs.info(container, "inbound/2026/msg 1 ü.hl7")
    assert stored is not None
    assert stored.size == len(data)
    assert stored.etag == info.etag
    assert stored.content_type == "x-application/hl7-v2+er7"
    assert dict(stored.metadata) == {"k": "v 1"}


def test_blob_without_content_type_or_metadata(blobs: BlobStore, container: str) -> None:
    info = blobs.put(container, "empty", b"")
    assert info.size == 0 and info.content_type == "application/octet-stream"
    assert blobs.get(container, "empty") == b""
    stored = blobs.info(container, "empty")
    assert stored is not None
    assert (stored.size, stored.content_type, dict(stored.metadata)) == (0, "application/octet-stream", {})


def test_blob_overwrite(blobs: BlobStore, container: str) -> None:
    first = blobs.put(container, "a/b", b"one", metadata={"v": "1"})
    with pytest.raises(BlobExists) as info:
        blobs.put(container, "a/b", b"two", overwrite=False)
    assert isinstance(info.value, PermanentError)
    assert blobs.get(container, "a/b") == b"one"
    second = blobs.put(container, "a/b", b"three", content_type="text/plain")
    assert second.etag != first.etag
    assert blobs.get(container, "a/b") == b"three"
    stored = blobs.info(container, "a/b")
    assert stored is not None
    assert (stored.size, stored.content_type, dict(stored.metadata)) == (5, "text/plain", {})


def test_blob_racing_creates_exactly_one_wins(blobs: BlobStore, container: str) -> None:
    blobs.put(container, "warm-up", b"")  # container exists, so only the blob create races
    results = race(3, lambda i: blobs.put(container, "race", str(i).encode(), overwrite=False))
    winners = [i for i, result in enumerate(results) if not isinstance(result, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, BlobExists) for r in results if isinstance(r, BaseException)), results
    assert blobs.get(container, "race") == str(winners[0]).encode()


def test_blob_list_prefix(blobs: BlobStore, container: str) -> None:
    names = ["b/2", "a/1", "a/10", "a/2/x", "a-1", "ab", "b/1"]
    for name in names:
        blobs.put(container, name, name.encode(), metadata={"name_len": str(len(name))})
    listed = blobs.list(container)
    assert [b.name for b in listed] == sorted(names)
    assert all(b.container == container and b.size == len(b.name) for b in listed)
    assert all(dict(b.metadata) == {"name_len": str(len(b.name))} for b in listed)
    assert [b.name for b in blobs.list(container, "a/")] == ["a/1", "a/10", "a/2/x"]
    assert [b.name for b in blobs.list(container, "a")] == ["a-1", "a/1", "a/10", "a/2/x", "ab"]
    assert blobs.list(container, "zzz") == []
    assert blobs.list("c-never-created-" + uuid.uuid4().hex[:8]) == []


def test_blob_delete_and_missing(blobs: BlobStore, container: str) -> None:
    blobs.put(container, "x/y", b"data")
    assert blobs.delete(container, "x/y") is True
    assert blobs.delete(container, "x/y") is False
    assert blobs.info(container, "x/y") is None
    with pytest.raises(BlobNotFound):
        blobs.get(container, "x/y")
    assert blobs.list(container) == []
    missing = "c-never-created-" + uuid.uuid4().hex[:8]
    with pytest.raises(BlobNotFound):
        blobs.get(missing, "x")
    assert blobs.info(missing, "x") is None
    assert blobs.delete(missing, "x") is False


def test_blob_of_a_few_megabytes(blobs: BlobStore, container: str) -> None:
    data = random.Random(1).randbytes(3 * 1024 * 1024 + 17)
    blobs.put(container, "big.bin", data)
    assert blobs.get(container, "big.bin") == data


@pytest.mark.parametrize(
    "name", ["", "/leading", "trailing/", "a//b", "a/./b", "a/../b", "dot.", "back\\slash", "c\x00"]
)
def test_invalid_blob_names_are_rejected(blobs: BlobStore, container: str, name: str) -> None:
    with pytest.raises(InvalidKey):
        blobs.put(container, name, b"x")
    with pytest.raises(InvalidKey):
        blobs.get(container, name)


@pytest.mark.parametrize("name", ["ab", "-abc", "abc-", "a--b", "UPPER", "under_score", "x" * 64])
def test_invalid_container_names_are_rejected(blobs: BlobStore, name: str) -> None:
    with pytest.raises(InvalidKey):
        blobs.put(name, "blob", b"x")


@pytest.mark.parametrize(
    "metadata", [{"Upper": "v"}, {"1st": "v"}, {"k": "ü"}, {"k": " padded "}, {"k": ""}, {"k": "a\nb"}]
)
def test_invalid_metadata_is_rejected(blobs: BlobStore, container: str, metadata: dict[str, str]) -> None:
    with pytest.raises(InvalidKey):
        blobs.put(container, "blob", b"x", metadata=metadata)
    assert blobs.info(container, "blob") is None


# -- Azure adapters: service unavailable ----------------------------------------------------------------


def _dead_endpoint_connection_string() -> str:
    from tests.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME

    # Port 9 (discard) on loopback: nothing listens there in the test environment.
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};AccountKey={DEV_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:9/{DEV_ACCOUNT_NAME};TableEndpoint=http://127.0.0.1:9/{DEV_ACCOUNT_NAME};"
    )


def test_azure_tables_unreachable_is_transient_and_leaks_no_keys() -> None:
    from shared.adapters.azure.tables import AzureTableRecordStore

    store = AzureTableRecordStore.from_connection_string(
        _dead_endpoint_connection_string(), retry_total=0, connection_timeout=2
    )
    try:
        with pytest.raises(StorageUnavailable) as info:
            store.insert("Patients", SECRET, SECRET, {"nhs": SECRET})
        assert isinstance(info.value, TransientError)
        assert SECRET not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__
    finally:
        store.close()


def test_azure_blobs_unreachable_is_transient_and_leaks_no_names() -> None:
    from shared.adapters.azure.blobs import AzureBlobStore

    store = AzureBlobStore.from_connection_string(
        _dead_endpoint_connection_string(), retry_total=0, connection_timeout=2
    )
    try:
        with pytest.raises(StorageUnavailable) as info:
            store.get("patients", f"{SECRET}.hl7")
        assert SECRET not in str(info.value)
        with pytest.raises(StorageUnavailable):
            store.put("patients", f"{SECRET}.hl7", b"x")
    finally:
        store.close()
