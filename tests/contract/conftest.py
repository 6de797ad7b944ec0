"""Fixtures shared by the contract suites (ports x backends)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.storage.ports import RecordStore
from tests.azurite import AzuriteEndpoints, AzuriteUnavailable, azurite_process, unavailable
from tests.contract.backends import BACKENDS


@pytest.fixture(scope="session")
def azurite_endpoints() -> Iterator[AzuriteEndpoints]:
    """A running Azurite (blob, queue and table endpoints) shared by the whole session.

    Started on first request only, so request it (or :func:`azurite`) from tests marked ``azurite``,
    lazily where a test is parametrised over backends (``request.getfixturevalue("azurite")``). Skips,
    or fails under ``CI=true``, when Azurite cannot be installed or started; see :mod:`tests.azurite`.
    """
    manager = azurite_process()
    try:
        endpoints = manager.__enter__()
    except AzuriteUnavailable as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() skips or raises
    try:
        yield endpoints
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def azurite(azurite_endpoints: AzuriteEndpoints) -> str:
    """Connection string for Azurite's development account (blob, queue and table endpoints)."""
    return azurite_endpoints.connection_string


@pytest.fixture(params=BACKENDS)
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordStore]:
    """A :class:`RecordStore` on each backend (closed after the test)."""
    store: RecordStore
    if request.param == "sqlite":
        store = SqliteRecordStore(tmp_path / "records.sqlite3")
    else:
        from shared.adapters.azure.tables import AzureTableRecordStore

        store = AzureTableRecordStore.from_connection_string(request.getfixturevalue("azurite"))
    yield store
    store.close()
