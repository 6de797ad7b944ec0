"""The API gateway check: with ``TIE_REQUIRE_APIM_HEADER=true`` only requests that came through API
Management reach the app's HTTP routes (every route but ``/health``).

API Management sets the header ``TIE_APIM_HEADER_NAME`` (``X-TIE-Gateway``) to a shared secret from a Key
Vault-backed named value; the app reads the same secret from ``TIE_APIM_SHARED_SECRET`` (a Key Vault
reference in Azure) and compares the two in constant time (:func:`hmac.compare_digest`). Presence alone
proves nothing: any caller can send the header. A missing header is 401, a wrong value 403, and with the
check on but no secret configured (or a Key Vault reference App Service could not resolve) every request
is refused (403: fail closed). Neither the presented nor the expected value ever appears in a response or a
log line.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from shared.config.settings import Settings


class GatewayVerdict(StrEnum):
    PASSED = "passed"
    MISSING = "missing"
    WRONG = "wrong"
    UNCONFIGURED = "unconfigured"

    @property
    def status(self) -> int:
        """HTTP status of a refusal (200 when passed)."""
        return {"passed": 200, "missing": 401}.get(self.value, 403)

    @property
    def message(self) -> str:
        """A fixed, value-free explanation for the caller."""
        return _MESSAGES[self]


_MESSAGES = {
    GatewayVerdict.PASSED: "",
    GatewayVerdict.MISSING: "Requests must come through the API gateway.",
    GatewayVerdict.WRONG: "The API gateway credential is not valid.",
    GatewayVerdict.UNCONFIGURED: "Requests cannot be accepted: the API gateway credential is not configured.",
}


_UNRESOLVED_REFERENCE = "@Microsoft.KeyVault("


def _bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def check_gateway(presented: str | None, secret: str | None) -> GatewayVerdict:
    """Compare the header value a request presented with the configured secret, in constant time."""
    if not secret:
        return GatewayVerdict.UNCONFIGURED
    value = (presented or "").strip()
    if not value:
        return GatewayVerdict.MISSING
    if hmac.compare_digest(_bytes(value), _bytes(secret)):
        return GatewayVerdict.PASSED
    return GatewayVerdict.WRONG


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    """The check as configured: the header's name and the expected value (kept out of ``repr``)."""

    header: str
    secret: str | None = field(default=None, repr=False)

    def check(self, header_value: Callable[[str], str | None]) -> GatewayVerdict:
        """``header_value(name)`` looks a request header up (case-insensitively)."""
        return check_gateway(header_value(self.header), self.secret)


def gateway_policy(settings: Settings) -> GatewayPolicy | None:
    """The policy when ``TIE_REQUIRE_APIM_HEADER`` is on, else ``None`` (no check)."""
    if not settings.require_apim_header:
        return None
    secret = settings.apim_shared_secret.get_secret_value() if settings.apim_shared_secret else None
    if secret is not None and secret.startswith(_UNRESOLVED_REFERENCE):
        # App Service leaves the reference text in place when it cannot read the vault: not a secret.
        secret = None
    return GatewayPolicy(settings.apim_header_name, secret)
