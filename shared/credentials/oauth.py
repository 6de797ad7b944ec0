"""OAuth 2.0 client credentials with a signed JWT (``private_key_jwt``), as NHS England's API platform uses
for application-restricted access (PDS FHIR API and others).

:class:`PrivateKeyJwtTokenSource` implements the PDS ``TokenSource`` port (``token() -> str``): it signs a
client assertion - header ``{"alg": "RS512", "typ": "JWT", "kid": <kid>}``, claims ``iss`` = ``sub`` = the
client id (API key), ``aud`` = the token URL, a fresh ``jti``, ``exp`` = now + 5 minutes (the platform's
maximum) - posts it to the token endpoint (``grant_type=client_credentials``,
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``) and caches the access
token until ``refresh_margin`` before it expires. Each assertion signed is recorded through the
credential audit port (key name, version, ``kid``).

Signing goes through the :class:`JwtSigner` port. :class:`RsaKeySigner` signs with an RSA private key held
in memory (embedded provider: the secret ``<name>`` holds the PEM key). In Azure the key should stay in
Key Vault and be used through its *sign* operation (``azure-keyvault-keys``' ``CryptographyClient.sign``
with ``RS512``); that adapter is not written yet (docs/credentials.md).

Errors: the token endpoint answering 400/401/403 -> :class:`TokenRefused` (permanent: the key, kid or
client id is wrong); 429, 5xx or no answer -> :class:`TokenUnavailable` (transient). Neither quotes the
response body, the assertion or the token.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.credentials.audit import CredentialAudit, CredentialUse, current_correlation_id
from shared.credentials.errors import CredentialInvalid
from shared.credentials.model import CredentialIdentity, SecretValue
from shared.errors import PermanentError, TransientError

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: NHS England's API platform refuses assertions that live longer than 5 minutes.
ASSERTION_LIFETIME: Final = timedelta(minutes=5)


class TokenRefused(PermanentError):
    code = "oauth-token-refused"


class TokenUnavailable(TransientError):
    code = "oauth-token-unavailable"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class JwtSigner(Protocol):
    kid: str

    def sign(self, signing_input: bytes) -> bytes:
        """RS512 (RSASSA-PKCS1-v1_5 with SHA-512) signature of ``signing_input``."""
        ...

    def identity(self) -> CredentialIdentity: ...


class RsaKeySigner:
    """RS512 with an RSA private key in memory (the PEM text of a secret)."""

    def __init__(self, secret: SecretValue, *, kid: str) -> None:
        try:
            key = serialization.load_pem_private_key(secret.value.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise CredentialInvalid(secret.name, "not a PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialInvalid(secret.name, "RS512 needs an RSA key")
        self._key = key
        self._name = secret.name
        self._version = secret.version
        self.kid = kid

    def sign(self, signing_input: bytes) -> bytes:
        return self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA512())

    def identity(self) -> CredentialIdentity:
        return CredentialIdentity("key", self._name, self._version, thumbprint=f"kid:{self.kid}")

    def __repr__(self) -> str:
        return f"RsaKeySigner({self._name!r}, kid={self.kid!r})"


@dataclass(frozen=True, slots=True)
class TokenReply:
    status: int
    body: bytes = field(repr=False)


class TokenTransport(Protocol):
    def post_form(self, url: str, fields: Mapping[str, str], *, timeout: float) -> TokenReply:
        """POST ``application/x-www-form-urlencoded``; raises :class:`TokenUnavailable` when no answer."""
        ...


class Urllib3TokenTransport:
    def __init__(self) -> None:
        import urllib3

        self._urllib3 = urllib3
        self._pool = urllib3.PoolManager(retries=False)

    def post_form(self, url: str, fields: Mapping[str, str], *, timeout: float) -> TokenReply:
        try:
            resp = self._pool.request(
                "POST",
                url,
                body=urlencode(dict(fields)).encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                timeout=self._urllib3.Timeout(connect=min(5.0, timeout), read=timeout),
                redirect=False,
            )
        except self._urllib3.exceptions.HTTPError as exc:
            raise TokenUnavailable(f"token endpoint unreachable ({type(exc).__name__})") from None
        return TokenReply(resp.status, resp.data or b"")

    def close(self) -> None:
        self._pool.clear()


class PrivateKeyJwtTokenSource:
    """A cached access token from the client-credentials flow with a signed JWT assertion. Thread-safe."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        signer: JwtSigner,
        transport: TokenTransport,
        downstream: str = "",
        audit: CredentialAudit | None = None,
        clock: Callable[[], datetime] | None = None,
        refresh_margin: timedelta = timedelta(seconds=60),
        timeout: float = 10.0,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._signer = signer
        self._transport = transport
        self._downstream = downstream
        self._audit = audit
        self._clock = clock or (lambda: datetime.now(UTC))
        self._margin = refresh_margin
        self._timeout = timeout
        self._token: str | None = None
        self._expires = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def assertion(self) -> str:
        """A signed client assertion (compact JWS)."""
        now = self._clock()
        header = {"alg": "RS512", "typ": "JWT", "kid": self._signer.kid}
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "jti": str(uuid.uuid4()),
            "exp": int((now + ASSERTION_LIFETIME).timestamp()),
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._signer.sign(signing_input.encode("ascii"))
        return signing_input + "." + b64url(signature)

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._expires - self._margin:
                return self._token
            assertion = self.assertion()
            if self._audit is not None:
                self._audit.credential_used(
                    CredentialUse(
                        self._downstream, "oauth-token", self._signer.identity(), current_correlation_id()
                    )
                )
            reply = self._transport.post_form(
                self.token_url,
                {
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
                timeout=self._timeout,
            )
            if reply.status in (400, 401, 403):
                raise TokenRefused(f"token endpoint refused the client assertion ({reply.status})")
            if reply.status != 200:
                raise TokenUnavailable(f"token endpoint answered {reply.status}")
            try:
                body = json.loads(reply.body)
                token = str(body["access_token"])
                lifetime = int(body.get("expires_in", 0))
            except (ValueError, KeyError, TypeError):
                raise TokenUnavailable("token endpoint answered without an access token") from None
            self._token, self._expires = token, now + timedelta(seconds=lifetime)
            return token

    def __repr__(self) -> str:
        return f"PrivateKeyJwtTokenSource(client_id={self.client_id!r}, kid={self._signer.kid!r})"
