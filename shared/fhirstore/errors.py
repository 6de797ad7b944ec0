"""Exceptions of the FHIR repository port (:mod:`shared.fhirstore.ports`) and its adapters.

Every error carries the HTTP status and the OperationOutcome ``issue.code`` the FHIR API answers with, so
the HTTP layer maps errors without branching on types: ``exc.http_status``, ``exc.issue_code`` and
:meth:`FhirStoreError.operation_outcome`. Texts name resource types, ids, versions, search parameter
names and element paths - never field values (a search value or identifier can be an NHS number).
"""

from __future__ import annotations

from typing import Any

from shared.errors import PermanentError, TransientError


class FhirStoreError(Exception):
    """Marker mixin for every FHIR repository error."""

    #: HTTP status the FHIR API answers with.
    http_status: int = 500
    #: OperationOutcome ``issue.code`` (value set http://hl7.org/fhir/issue-type).
    issue_code: str = "exception"
    #: FHIRPath of the offending element or the offending search parameter name, when known.
    expression: str | None = None

    def operation_outcome(self) -> dict[str, Any]:
        """An OperationOutcome describing this error (diagnostics = the exception text, value-free)."""
        severity = "error"
        issue: dict[str, Any] = {"severity": severity, "code": self.issue_code, "diagnostics": str(self)}
        if self.expression:
            issue["expression"] = [self.expression]
        return {"resourceType": "OperationOutcome", "issue": [issue]}


class ResourceNotFound(FhirStoreError, PermanentError):
    """No resource (or no such version) with this type and id."""

    code = "fhir-not-found"
    http_status = 404
    issue_code = "not-found"

    def __init__(self, resource_type: str, resource_id: str, version_id: str | None = None) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.version_id = version_id
        what = f"{resource_type}/{resource_id}" + (f"/_history/{version_id}" if version_id else "")
        super().__init__(f"{what} not found")


class ResourceGone(FhirStoreError, PermanentError):
    """The resource (or the requested version) is deleted; ``version_id`` is the deletion's version."""

    code = "fhir-gone"
    http_status = 410
    issue_code = "deleted"

    def __init__(self, resource_type: str, resource_id: str, version_id: str) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.version_id = version_id
        super().__init__(f"{resource_type}/{resource_id} is deleted (version {version_id})")


class VersionConflict(FhirStoreError, PermanentError):
    """``If-Match`` named a version that is not the current one (or the resource does not exist)."""

    code = "fhir-version-conflict"
    http_status = 412
    issue_code = "conflict"

    def __init__(self, resource_type: str, resource_id: str, expected: str, actual: str | None) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.expected = expected
        self.actual = actual
        current = f"current version {actual}" if actual is not None else "no current version"
        if expected:
            super().__init__(f"{resource_type}/{resource_id}: If-Match version {expected} but {current}")
        else:
            super().__init__(f"{resource_type}/{resource_id}: If-Match precondition failed")


class MultipleMatches(FhirStoreError, PermanentError):
    """A conditional create/update/reference criterion matched more than one resource."""

    code = "fhir-multiple-matches"
    http_status = 412
    issue_code = "multiple-matches"

    def __init__(self, resource_type: str, context: str = "conditional operation") -> None:
        self.resource_type = resource_type
        super().__init__(f"{context} on {resource_type}: criteria matched more than one resource")


class ResourceConflict(FhirStoreError, PermanentError):
    """The request conflicts with the server state (409), e.g. two transaction entries write one resource."""

    code = "fhir-conflict"
    http_status = 409
    issue_code = "conflict"


class InvalidSearch(FhirStoreError, PermanentError):
    """A search (or conditional criterion) cannot be evaluated; ``parameter`` names the culprit."""

    code = "fhir-invalid-search"
    http_status = 400
    issue_code = "invalid"

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.expression = parameter
        super().__init__(f"search parameter '{parameter}': {reason}")


class UnsupportedResourceType(FhirStoreError, PermanentError):
    code = "fhir-unsupported-type"
    http_status = 404
    issue_code = "not-supported"

    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type
        # The type comes from a URL/body: keep it short and printable, it is not patient data.
        shown = resource_type if resource_type.isidentifier() and len(resource_type) <= 64 else "(invalid)"
        super().__init__(f"resource type {shown} is not supported")


class UnsupportedInteraction(FhirStoreError, PermanentError):
    """An interaction this repository does not implement (e.g. PATCH inside a bundle)."""

    code = "fhir-unsupported-interaction"
    http_status = 405
    issue_code = "not-supported"


class InvalidResource(FhirStoreError, PermanentError):
    """The resource is structurally unusable (not an object, wrong/missing ``resourceType`` or ``id``).

    Content validation (profiles, value sets) is not the repository's job; that is done before a write.
    ``http_status`` is 400 by default; 422 when the request was well-formed but the content is not.
    """

    code = "fhir-invalid-resource"
    http_status = 400
    issue_code = "invalid"

    def __init__(self, reason: str, *, expression: str | None = None, http_status: int = 400) -> None:
        self.expression = expression
        self.http_status = http_status
        super().__init__(reason)


class InvalidBundle(InvalidResource):
    """A transaction/batch Bundle (or one of its entries) is malformed."""

    code = "fhir-invalid-bundle"


class BundleTooLarge(FhirStoreError, PermanentError):
    """A transaction has more entries than the repository can apply atomically."""

    code = "fhir-bundle-too-large"
    http_status = 413
    issue_code = "too-costly"

    def __init__(self, entries: int, limit: int, reason: str = "") -> None:
        self.entries = entries
        self.limit = limit
        suffix = f": {reason}" if reason else ""
        super().__init__(f"bundle has {entries} entries, limit is {limit}{suffix}")


class TransactionFailed(FhirStoreError, PermanentError):
    """A transaction entry failed; nothing was written. ``index`` is the entry's position in the bundle.

    ``index`` is -1 when a remote service did not say which entry failed.
    Status, issue code and expression are the failing entry's. A transient cause (store unavailable,
    throttled) is raised as itself instead: it is not the entry's fault and the whole bundle may be retried.
    """

    code = "fhir-transaction-failed"

    def __init__(self, index: int, cause: FhirStoreError) -> None:
        self.index = index
        self.cause = cause
        self.http_status = cause.http_status
        self.issue_code = cause.issue_code
        self.expression = f"Bundle.entry[{index}]"
        super().__init__(f"transaction entry {index} failed: {cause}")


class TransactionPartiallyApplied(FhirStoreError, PermanentError):
    """A transaction that was split into several upstream transactions (opt-in) failed part-way.

    ``committed_entries`` lists the indexes (in the original bundle) of entries already committed; the
    others were not applied. Only raised by adapters configured to split oversized transactions.
    """

    code = "fhir-transaction-partial"
    http_status = 500
    issue_code = "incomplete"

    def __init__(self, committed_entries: list[int], cause: FhirStoreError) -> None:
        self.committed_entries = committed_entries
        self.cause = cause
        super().__init__(
            f"split transaction failed after {len(committed_entries)} committed entries: {cause}"
        )


class UpstreamError(FhirStoreError, PermanentError):
    """A remote FHIR service answered in a way the adapter cannot map (401/403, unexpected status)."""

    code = "fhir-upstream"
    http_status = 502
    issue_code = "exception"


class StoreUnavailable(FhirStoreError, TransientError):
    """The store cannot be reached or is busy (SQLite lock timeout, 5xx, network error)."""

    code = "fhir-store-unavailable"
    http_status = 503
    issue_code = "transient"


class Throttled(FhirStoreError, TransientError):
    """The remote store asked us to slow down (429); ``retry_after`` seconds if it said how long."""

    code = "fhir-throttled"
    http_status = 429
    issue_code = "throttled"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)
