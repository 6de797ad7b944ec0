"""Azure :class:`~shared.audit.payloads.PayloadStore`: block blobs ``<class>/<digest>`` in the
``audit-payloads`` container, metadata ``stored`` = when the body was (last) stored (the injected clock).

In Azure the container is encrypted with a customer-managed key through its default encryption scope,
and a lifecycle-management rule per class prefix deletes what is past retention (docs/audit.md);
:meth:`BlobPayloadStore.expire` does the same from the code (and is what the tests exercise on Azurite).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.adapters.azure._storage_errors import translated
from shared.audit.payloads import (
    PAYLOAD_CLASSES,
    PAYLOAD_CONTAINER,
    Retention,
    check_class,
    check_digest,
    verified,
)


class BlobPayloadStore:
    """Thread-safe (the SDK clients are); safe across instances (content-addressed, idempotent puts)."""

    def __init__(
        self,
        service: BlobServiceClient,
        retention: Retention,
        *,
        container: str = PAYLOAD_CONTAINER,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._container: ContainerClient = service.get_container_client(container)
        self._name = container
        self.retention = retention
        self._clock = clock or (lambda: datetime.now(UTC))
        self._created = False

    @classmethod
    def from_connection_string(cls, conn_str: str, retention: Retention, **kwargs: Any) -> BlobPayloadStore:
        """Azurite (development) only."""
        return cls(BlobServiceClient.from_connection_string(conn_str), retention, **kwargs)

    @classmethod
    def from_endpoint(
        cls, endpoint: str, credential: TokenCredential, retention: Retention, **kwargs: Any
    ) -> BlobPayloadStore:
        return cls(BlobServiceClient(account_url=endpoint, credential=credential), retention, **kwargs)

    def _ensure_container(self) -> None:
        if self._created:
            return
        with translated("create container", self._name), contextlib.suppress(ResourceExistsError):
            self._container.create_container()
        self._created = True

    def put(self, record_class: str, data: bytes) -> str | None:
        check_class(record_class)
        if not self.retention.keeps(record_class):
            return None
        digest = hashlib.sha256(data).hexdigest()
        self._ensure_container()
        with translated("upload", self._name):
            self._container.upload_blob(
                f"{record_class}/{digest}",
                data,
                overwrite=True,
                metadata={"stored": self._clock().isoformat()},
            )
        return digest

    def _expired(self, record_class: str, metadata: dict[str, str] | None) -> bool:
        if not self.retention.keeps(record_class):
            return True
        stored = datetime.fromisoformat((metadata or {}).get("stored", "1970-01-01T00:00:00+00:00"))
        return stored < self._clock() - self.retention.period(record_class)

    def get(self, record_class: str, digest: str) -> bytes | None:
        name = f"{check_class(record_class)}/{check_digest(digest)}"
        client = self._container.get_blob_client(name)
        with translated("read", self._name):
            try:
                download = client.download_blob()
            except ResourceNotFoundError:
                return None
            if self._expired(record_class, download.properties.metadata):
                return None
            data = download.readall()
        return verified(data, digest)

    def expire(self) -> dict[str, int]:
        removed = dict.fromkeys(PAYLOAD_CLASSES, 0)
        for record_class in PAYLOAD_CLASSES:
            with translated("list", self._name):
                try:
                    blobs = list(
                        self._container.list_blobs(name_starts_with=f"{record_class}/", include=["metadata"])
                    )
                except ResourceNotFoundError:
                    return removed  # no container yet: nothing stored
            for blob in blobs:
                if not self._expired(record_class, blob.metadata):
                    continue
                with translated("delete", self._name), contextlib.suppress(ResourceNotFoundError):
                    self._container.delete_blob(blob.name)
                    removed[record_class] += 1
        return removed

    def close(self) -> None:
        self._container.close()
