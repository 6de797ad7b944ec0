"""Translation of azure-core exceptions into :mod:`shared.storage.errors`, shared by the storage adapters.

Azure's exception text can contain request URLs, and entity/blob URLs contain partition keys, row keys
and blob names (identifiers, possibly NHS numbers). So the translated exceptions carry only the
operation, the table/container name, the HTTP status and the service's error code, and are raised
``from None`` so the original text does not reach logs through the exception chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import AzureError, HttpResponseError

from shared.errors import PermanentError
from shared.storage.errors import StorageError, StorageUnavailable

#: HTTP statuses worth retrying: request timeout, throttling, and every server-side error.
_TRANSIENT_STATUSES = frozenset({408, 429})


class StorageRequestRejected(StorageError, PermanentError):
    """Azure Storage refused a request for a reason retrying cannot fix (bad request, forbidden...)."""

    code = "storage-request-rejected"


def error_code(exc: HttpResponseError) -> str:
    """The service's error code (``UpdateConditionNotSatisfied``, ``TableNotFound``...) or ``""``."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def translate(exc: AzureError, *, operation: str, resource: str) -> StorageError:
    """Map an Azure exception that the caller did not handle specifically to a storage error."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        detail = f"{operation} on {resource} failed: HTTP {status} {error_code(exc)}".rstrip()
        if status >= 500 or status in _TRANSIENT_STATUSES:
            return StorageUnavailable(detail)
        return StorageRequestRejected(detail)
    # No response at all: connection refused/reset, DNS, timeouts (ServiceRequestError,
    # ServiceResponseError and their *TimeoutError subclasses).
    return StorageUnavailable(f"{operation} on {resource} failed: {type(exc).__name__}")


@contextmanager
def translated(operation: str, resource: str) -> Iterator[None]:
    """Re-raise any :class:`AzureError` escaping the block as a storage error (see :func:`translate`)."""
    try:
        yield
    except AzureError as exc:
        raise translate(exc, operation=operation, resource=resource) from None
