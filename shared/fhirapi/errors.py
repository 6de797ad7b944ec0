"""Errors the FHIR API answers itself (protocol problems found before the repository is called).

Each carries the HTTP status, the OperationOutcome ``issue.code`` (http://hl7.org/fhir/issue-type) and,
when there is one, the FHIRPath ``expression`` of the culprit - the same shape as the repository errors
(:class:`shared.fhirstore.errors.FhirStoreError`), so the service maps both the same way. Texts name
headers, media types, parameter names and element paths, never values from the request.
"""

from __future__ import annotations

from typing import Any

from shared.errors import PermanentError


class FhirApiError(PermanentError):
    """Base of the API's own errors."""

    code = "fhir-api"
    http_status = 400
    issue_code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        expression: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.expression = expression
        #: Extra response headers (``Allow`` for 405, ``WWW-Authenticate``...).
        self.headers = dict(headers or {})

    def operation_outcome(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": "error", "code": self.issue_code, "diagnostics": str(self)}
        if self.expression:
            issue["expression"] = [self.expression]
        return {"resourceType": "OperationOutcome", "issue": [issue]}


class BadRequest(FhirApiError):
    """Malformed request: unparseable JSON, wrong resourceType for the URL, id mismatch, bad header."""

    code = "fhir-bad-request"


class MalformedBody(BadRequest):
    """The body is not a JSON object."""

    code = "fhir-malformed-body"
    issue_code = "structure"


class GatewayRequired(FhirApiError):
    """The request did not come through API Management (the injected header is missing)."""

    code = "fhir-gateway-required"
    http_status = 403
    issue_code = "forbidden"


class MethodNotAllowed(FhirApiError):
    code = "fhir-method-not-allowed"
    http_status = 405
    issue_code = "not-supported"


class NotAcceptable(FhirApiError):
    """The client accepts no format we produce (we produce FHIR JSON only)."""

    code = "fhir-not-acceptable"
    http_status = 406
    issue_code = "not-supported"


class PayloadTooLarge(FhirApiError):
    code = "fhir-payload-too-large"
    http_status = 413
    issue_code = "too-long"


class UnsupportedMediaType(FhirApiError):
    code = "fhir-unsupported-media-type"
    http_status = 415
    issue_code = "not-supported"


class Unprocessable(FhirApiError):
    """Well-formed, but the content breaks a rule (e.g. a clinical write that cannot become an event)."""

    code = "fhir-unprocessable"
    http_status = 422
    issue_code = "business-rule"
