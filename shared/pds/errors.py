"""PDS failures, split transient vs permanent. Texts carry status codes and PDS error codes only."""

from __future__ import annotations

from shared.errors import PermanentError, TransientError


class PdsUnavailable(TransientError):
    """PDS did not answer usefully (timeout, connection, 429/5xx after the retries)."""

    code = "pds-unavailable"

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"PDS unavailable: {reason}" + (f" (HTTP {status})" if status else ""))
        self.status = status


class PdsRejected(PermanentError):
    """PDS refused the request (400/401/403/409/412/422 ...); retrying the same call cannot help."""

    code = "pds-rejected"

    def __init__(self, status: int, pds_code: str | None) -> None:
        super().__init__(f"PDS refused the request: HTTP {status} {pds_code or ''}".rstrip())
        self.status = status
        self.pds_code = pds_code


class PatientNotFound(PermanentError):
    """No PDS record for the NHS number (404 RESOURCE_NOT_FOUND), or invalidated without a successor
    (404 INVALIDATED_RESOURCE / 410)."""

    code = "pds-not-found"

    def __init__(self, pds_code: str | None) -> None:
        super().__init__(f"PDS has no current record ({pds_code or 'not found'})")
        self.pds_code = pds_code


class PdsResponseInvalid(PermanentError):
    """PDS answered 2xx with a body this client cannot read."""

    code = "pds-response-invalid"


class PdsVersionConflict(PdsRejected):
    """An update without ``If-Match`` (412) or naming a version that is no longer current (409)."""

    code = "pds-version-conflict"
