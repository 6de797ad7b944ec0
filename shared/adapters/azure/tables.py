"""Azure Table Storage :class:`~shared.storage.ports.RecordStore` (azure-data-tables).

Entity layout: ``PartitionKey``, ``RowKey``, ``chunks`` (Int32) and ``data0`` .. ``data{chunks-1}``
(String), the concatenation of which is the record value as compact JSON. Azure limits a String property
to 64 KiB (UTF-16, i.e. 32 Ki code units) and an entity to 1 MiB; values are capped at 256 KiB of UTF-8
JSON by :func:`shared.storage.keys.encode_value` (:class:`~shared.storage.keys.ValueTooLarge`), which
is at most 512 KiB of UTF-16, split into chunks of 16,000 code points (at most 64,000 bytes each).

Concurrency is the service's: ``create_entity`` is a conditional insert (409 -> :class:`RecordExists`),
``update_entity(mode=REPLACE, etag=..., match_condition=IfNotModified)`` and conditional delete fail with
412 (:class:`ConcurrencyConflict`). Timeouts, connection failures, 408/429 and 5xx become
:class:`StorageUnavailable` (after the SDK's own retries); other 4xx become
:class:`~shared.adapters.azure._storage_errors.StorageRequestRejected`.

Tables are created on first use by this process (remembered, and re-created if a write finds the table
gone). Query filters are parameterised (the SDK quotes values), never built from key text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline import PipelineResponse
from azure.data.tables import TableClient, TableEntity, TableServiceClient, UpdateMode

from shared.adapters.azure._storage_errors import error_code, translated
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.keys import (
    decode_value,
    encode_value,
    prefix_upper_bound,
    validate_key,
    validate_table_name,
)
from shared.storage.ports import JsonDict, Record

#: Code points per ``dataN`` property: at most 32,000 UTF-16 code units = 64,000 bytes < 64 KiB.
CHUNK_CODE_POINTS = 16_000
_PAGE_SIZE = 1000  # the service's maximum page size


def _to_entity(partition_key: str, row_key: str, text: str) -> dict[str, Any]:
    chunks = [text[i : i + CHUNK_CODE_POINTS] for i in range(0, len(text), CHUNK_CODE_POINTS)]
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key, "chunks": len(chunks)}
    for index, chunk in enumerate(chunks):
        entity[f"data{index}"] = chunk
    return entity


def _from_entity(table: str, entity: TableEntity) -> Record:
    count = int(entity["chunks"])
    text = "".join(str(entity[f"data{index}"]) for index in range(count))
    timestamp = entity.metadata.get("timestamp")
    return Record(
        table=table,
        partition_key=str(entity["PartitionKey"]),
        row_key=str(entity["RowKey"]),
        value=decode_value(text),
        etag=str(entity.metadata["etag"]),
        updated_at=_as_datetime(timestamp),
    )


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _written(table: str, partition_key: str, row_key: str, text: str, meta: Mapping[str, Any]) -> Record:
    return Record(
        table, partition_key, row_key, decode_value(text), str(meta["etag"]), _as_datetime(meta.get("date"))
    )


class AzureTableRecordStore:
    """:class:`~shared.storage.ports.RecordStore` over an Azure Storage account's Table service.

    Thread-safe: the SDK clients are, and the table cache is guarded by a lock.
    """

    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, conn_str: str, **client_kwargs: Any) -> AzureTableRecordStore:
        """Key-based access, for Azurite (``UseDevelopmentStorage=true`` or an explicit dev string)."""
        return cls(TableServiceClient.from_connection_string(conn_str, **client_kwargs))

    @classmethod
    def from_endpoint(
        cls, endpoint: str, credential: TokenCredential, **client_kwargs: Any
    ) -> AzureTableRecordStore:
        """Identity-based access (production): ``https://<account>.table.core.windows.net``."""
        return cls(TableServiceClient(endpoint=endpoint, credential=credential, **client_kwargs))

    # -- helpers -------------------------------------------------------------------------------------

    def _client(self, table: str) -> TableClient:
        """The client for ``table``, creating the table the first time this store touches it."""
        validate_table_name(table)
        key = table.lower()
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        with translated("create table", table):
            client = self._service.create_table_if_not_exists(table)
        with self._lock:
            return self._clients.setdefault(key, client)

    def _forget(self, table: str) -> None:
        with self._lock:
            self._clients.pop(table.lower(), None)

    @staticmethod
    def _keys(partition_key: str, row_key: str) -> None:
        validate_key(partition_key, what="partition key")
        validate_key(row_key, what="row key")

    def _write_with_table(
        self, table: str, operation: str, write: Callable[[TableClient], Mapping[str, Any]]
    ) -> Mapping[str, Any]:
        """Run a create/upsert; if the table vanished since it was cached, re-create it and retry once."""
        for attempt in (1, 2):
            client = self._client(table)
            with translated(operation, table):
                try:
                    return write(client)
                except ResourceExistsError:
                    raise RecordExists(f"record already exists in table {table}") from None
                except ResourceNotFoundError as exc:
                    if attempt == 2 or error_code(exc) != "TableNotFound":
                        raise
            self._forget(table)
        raise AssertionError("unreachable")

    # -- RecordStore ---------------------------------------------------------------------------------

    def get(self, table: str, partition_key: str, row_key: str) -> Record | None:
        client = self._client(table)
        self._keys(partition_key, row_key)
        with translated("get", table):
            try:
                entity = client.get_entity(partition_key, row_key)
            except ResourceNotFoundError:
                return None
        return _from_entity(table, entity)

    def insert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        self._keys(partition_key, row_key)
        text = encode_value(value)
        entity = _to_entity(partition_key, row_key, text)
        meta = self._write_with_table(table, "insert", lambda client: client.create_entity(entity))
        return _written(table, partition_key, row_key, text, meta)

    def update(self, table: str, partition_key: str, row_key: str, value: JsonDict, *, etag: str) -> Record:
        client = self._client(table)
        self._keys(partition_key, row_key)
        text = encode_value(value)
        with translated("update", table):
            try:
                meta = client.update_entity(
                    _to_entity(partition_key, row_key, text),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                raise ConcurrencyConflict(f"record in table {table} was changed since it was read") from None
            except ResourceNotFoundError:
                raise RecordNotFound(f"record not found in table {table}") from None
        return _written(table, partition_key, row_key, text, meta)

    def upsert(self, table: str, partition_key: str, row_key: str, value: JsonDict) -> Record:
        self._keys(partition_key, row_key)
        text = encode_value(value)
        entity = _to_entity(partition_key, row_key, text)
        meta = self._write_with_table(
            table, "upsert", lambda client: client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        )
        return _written(table, partition_key, row_key, text, meta)

    def delete(self, table: str, partition_key: str, row_key: str, *, etag: str | None = None) -> bool:
        client = self._client(table)
        self._keys(partition_key, row_key)
        statuses: list[int] = []

        def record_status(response: PipelineResponse[Any, Any]) -> None:
            # The SDK swallows 404 on delete; the raw response tells us whether anything was deleted.
            statuses.append(response.http_response.status_code)

        with translated("delete", table):
            try:
                if etag is None:
                    client.delete_entity(partition_key, row_key, raw_response_hook=record_status)
                else:
                    client.delete_entity(
                        partition_key,
                        row_key,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                        raw_response_hook=record_status,
                    )
            except ResourceModifiedError:
                raise ConcurrencyConflict(f"record in table {table} was changed since it was read") from None
        return bool(statuses) and statuses[-1] != 404

    def query(
        self,
        table: str,
        partition_key: str | None = None,
        *,
        row_key_prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        client = self._client(table)
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        if limit == 0:
            return []
        clauses: list[str] = []
        parameters: dict[str, str] = {}
        if partition_key is not None:
            validate_key(partition_key, what="partition key")
            clauses.append("PartitionKey eq @pk")
            parameters["pk"] = partition_key
        if row_key_prefix:
            validate_key(row_key_prefix, what="row key prefix")
            clauses.append("RowKey ge @lo")
            parameters["lo"] = row_key_prefix
            bound = prefix_upper_bound(row_key_prefix)
            if bound is not None:
                clauses.append("RowKey lt @hi")
                parameters["hi"] = bound
        page_size = min(limit, _PAGE_SIZE) if limit is not None else _PAGE_SIZE
        records: list[Record] = []
        with translated("query", table):
            entities: Iterable[TableEntity]
            if clauses:
                entities = client.query_entities(
                    " and ".join(clauses), parameters=parameters, results_per_page=page_size
                )
            else:
                entities = client.list_entities(results_per_page=page_size)
            try:
                for entity in entities:
                    records.append(_from_entity(table, entity))
                    if limit is not None and len(records) >= limit:
                        break
            except ResourceNotFoundError:
                return []
        return records

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        self._service.close()
