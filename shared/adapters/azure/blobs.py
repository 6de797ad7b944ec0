"""Azure Blob Storage :class:`~shared.storage.ports.BlobStore` (azure-storage-blob).

* Containers are created on first ``put`` by this process (remembered; re-created if a put finds the
  container gone). Reads from a missing container behave like reads of a missing blob.
* ``overwrite=False`` is the service's conditional create (``If-None-Match: *``): 409 -> :class:`BlobExists`.
* A blob uploaded without a content type reports ``application/octet-stream`` (the service default, and
  what :mod:`shared.adapters.embedded.sqlite_blobs` reports too).
* Errors are mapped as in :mod:`shared.adapters.azure.tables`: 404 -> :class:`BlobNotFound` (``get``) or a
  ``None``/``False``/empty answer; timeouts, connection failures, 408/429/5xx -> :class:`StorageUnavailable`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, BlobServiceClient, ContentSettings

from shared.adapters.azure._storage_errors import error_code, translated
from shared.storage.errors import BlobExists, BlobNotFound
from shared.storage.keys import validate_blob_name, validate_container_name, validate_metadata
from shared.storage.ports import BlobInfo

DEFAULT_CONTENT_TYPE = "application/octet-stream"


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _info(container: str, props: BlobProperties) -> BlobInfo:
    settings = props.content_settings
    return BlobInfo(
        container=container,
        name=str(props.name),
        size=int(props.size),
        etag=str(props.etag),
        content_type=(settings.content_type if settings else None) or DEFAULT_CONTENT_TYPE,
        last_modified=_as_datetime(props.last_modified),
        metadata=dict(props.metadata or {}),
    )


class AzureBlobStore:
    """:class:`~shared.storage.ports.BlobStore` over an Azure Storage account's Blob service. Thread-safe."""

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service
        self._containers: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, conn_str: str, **client_kwargs: Any) -> AzureBlobStore:
        """Key-based access, for Azurite (``UseDevelopmentStorage=true`` or an explicit dev string)."""
        return cls(BlobServiceClient.from_connection_string(conn_str, **client_kwargs))

    @classmethod
    def from_endpoint(
        cls, endpoint: str, credential: TokenCredential, **client_kwargs: Any
    ) -> AzureBlobStore:
        """Identity-based access (production): ``https://<account>.blob.core.windows.net``."""
        return cls(BlobServiceClient(account_url=endpoint, credential=credential, **client_kwargs))

    def _ensure_container(self, container: str) -> None:
        with self._lock:
            if container in self._containers:
                return
        with translated("create container", container), contextlib.suppress(ResourceExistsError):
            self._service.get_container_client(container).create_container()
        with self._lock:
            self._containers.add(container)

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
        settings = ContentSettings(content_type=content_type or DEFAULT_CONTENT_TYPE)
        blob = self._service.get_blob_client(container, name)
        for attempt in (1, 2):
            self._ensure_container(container)
            with translated("put blob", container):
                try:
                    result = blob.upload_blob(
                        payload,
                        overwrite=overwrite,
                        content_settings=settings,
                        metadata=clean_metadata or None,
                    )
                    break
                except ResourceExistsError:
                    raise BlobExists(f"blob already exists in container {container}") from None
                except ResourceNotFoundError as exc:
                    if attempt == 2 or error_code(exc) != "ContainerNotFound":
                        raise
            with self._lock:
                self._containers.discard(container)
        return BlobInfo(
            container=container,
            name=name,
            size=len(payload),
            etag=str(result["etag"]),
            content_type=settings.content_type,
            last_modified=_as_datetime(result.get("last_modified")),
            metadata=clean_metadata,
        )

    def get(self, container: str, name: str) -> bytes:
        validate_container_name(container)
        validate_blob_name(name)
        with translated("get blob", container):
            try:
                return self._service.get_blob_client(container, name).download_blob().readall()
            except ResourceNotFoundError:
                raise BlobNotFound(f"blob not found in container {container}") from None

    def info(self, container: str, name: str) -> BlobInfo | None:
        validate_container_name(container)
        validate_blob_name(name)
        with translated("get blob properties", container):
            try:
                props = self._service.get_blob_client(container, name).get_blob_properties()
            except ResourceNotFoundError:
                return None
        return _info(container, props)

    def delete(self, container: str, name: str) -> bool:
        validate_container_name(container)
        validate_blob_name(name)
        with translated("delete blob", container):
            try:
                self._service.get_blob_client(container, name).delete_blob(delete_snapshots="include")
            except ResourceNotFoundError:
                return False
        return True

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        validate_container_name(container)
        validate_blob_name(prefix, allow_empty=True)
        client = self._service.get_container_client(container)
        with translated("list blobs", container):
            try:
                return [
                    _info(container, props)
                    for props in client.list_blobs(name_starts_with=prefix or None, include=["metadata"])
                ]
            except ResourceNotFoundError:
                return []

    def close(self) -> None:
        self._service.close()
