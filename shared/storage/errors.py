"""Exceptions for the storage package."""

from __future__ import annotations

from shared.errors import PermanentError, TransientError


class StorageError(Exception):
    """Marker mixin for every storage error."""


class RecordExists(StorageError, PermanentError):
    """Conditional insert found an existing record with the same key."""

    code = "record-exists"


class RecordNotFound(StorageError, PermanentError):
    code = "record-not-found"


class ConcurrencyConflict(StorageError, TransientError):
    """Optimistic concurrency check failed: the record's ETag changed since it was read."""

    code = "concurrency-conflict"


class BlobExists(StorageError, PermanentError):
    code = "blob-exists"


class BlobNotFound(StorageError, PermanentError):
    code = "blob-not-found"


class StorageUnavailable(StorageError, TransientError):
    code = "storage-unavailable"


class InvalidKey(StorageError, PermanentError):
    """A table, key or blob name is not acceptable to every backend (see the port docs)."""

    code = "invalid-key"
