"""OAuth 2.0 client credentials with a signed JWT (RS512, kid): the assertion verifies with the public key,
the token is cached until near expiry, refusals are permanent and outages transient, each signing is
audited - all with an injected clock."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.adapters.embedded.local_credentials import LocalCredentialProvider
from shared.credentials.audit import RecordingCredentialAudit
from shared.credentials.broker import CredentialBroker
from shared.credentials.errors import CredentialInvalid, CredentialNotFound
from shared.credentials.model import SecretValue
from shared.credentials.oauth import (
    ASSERTION_TYPE,
    PrivateKeyJwtTokenSource,
    RsaKeySigner,
    TokenRefused,
    TokenReply,
    TokenUnavailable,
    Urllib3TokenTransport,
)
from shared.credentials.registry import parse_registry
from shared.errors import PermanentError, TransientError
from tests.unit.credentials.conftest import Clock

TOKEN_URL = "https://int.api.service.nhs.uk/oauth2/token"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeEndpoint:
    def __init__(self, *replies: TokenReply) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, str]] = []

    def post_form(self, url: str, fields: Mapping[str, str], *, timeout: float) -> TokenReply:
        assert url == TOKEN_URL
        self.calls.append(dict(fields))
        return self.replies.pop(0)


def ok(token: str, expires_in: int = 599) -> TokenReply:
    return TokenReply(
        200, json.dumps({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}).encode()
    )


def source(endpoint: Any, clock: Clock, audit: Any = None) -> PrivateKeyJwtTokenSource:
    return PrivateKeyJwtTokenSource(
        token_url=TOKEN_URL,
        client_id="api-key-123",
        signer=RsaKeySigner(SecretValue("tie-pds-jwt", "v7", KEY_PEM), kid="tie-pds-int-1"),
        transport=endpoint,
        downstream="pds",
        audit=audit,
        clock=clock,
    )


def test_the_assertion_is_rs512_with_kid_and_verifies_with_the_public_key(clock: Clock) -> None:
    endpoint = FakeEndpoint(ok("tok-1"))
    assert source(endpoint, clock).token() == "tok-1"
    [fields] = endpoint.calls
    assert fields["grant_type"] == "client_credentials"
    assert fields["client_assertion_type"] == ASSERTION_TYPE
    header_b64, claims_b64, signature_b64 = fields["client_assertion"].split(".")
    assert json.loads(unb64(header_b64)) == {"alg": "RS512", "typ": "JWT", "kid": "tie-pds-int-1"}
    claims = json.loads(unb64(claims_b64))
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("api-key-123", "api-key-123", TOKEN_URL)
    assert claims["exp"] == int((clock() + timedelta(minutes=5)).timestamp())
    assert len(claims["jti"]) == 36
    KEY.public_key().verify(
        unb64(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA512()
    )
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "x"}).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):  # and the signature covers the claims
        KEY.public_key().verify(
            unb64(signature_b64), f"{header_b64}.{forged}".encode(), padding.PKCS1v15(), hashes.SHA512()
        )


def test_the_token_is_cached_until_a_minute_before_expiry(clock: Clock) -> None:
    endpoint = FakeEndpoint(ok("tok-1", 600), ok("tok-2", 600))
    tokens = source(endpoint, clock)
    assert tokens.token() == "tok-1"
    clock.advance(timedelta(seconds=539))
    assert tokens.token() == "tok-1" and len(endpoint.calls) == 1
    clock.advance(timedelta(seconds=1))
    assert tokens.token() == "tok-2" and len(endpoint.calls) == 2
    jtis = {json.loads(unb64(c["client_assertion"].split(".")[1]))["jti"] for c in endpoint.calls}
    assert len(jtis) == 2  # a fresh jti per assertion


# (reply, expected error, permanent?)
FAILURES = [
    (TokenReply(401, b'{"error":"invalid_client","assertion":"eyJ..."}'), TokenRefused, True),
    (TokenReply(400, b'{"error":"invalid_request"}'), TokenRefused, True),
    (TokenReply(503, b"busy"), TokenUnavailable, False),
    (TokenReply(429, b"slow down"), TokenUnavailable, False),
    (TokenReply(200, b"<html>not json</html>"), TokenUnavailable, False),
]


@pytest.mark.parametrize(("reply", "error", "permanent"), FAILURES)
def test_refusals_are_permanent_outages_transient_and_nothing_is_quoted(
    reply: TokenReply, error: type, permanent: bool, clock: Clock
) -> None:
    with pytest.raises(error) as caught:
        source(FakeEndpoint(reply), clock).token()
    assert isinstance(caught.value, PermanentError) == permanent
    assert isinstance(caught.value, TransientError) == (not permanent)
    text = str(caught.value)
    assert "eyJ" not in text and "invalid_client" not in text and "html" not in text


def test_each_signing_is_audited_with_key_name_version_and_kid(clock: Clock) -> None:
    audit = RecordingCredentialAudit()
    tokens = source(FakeEndpoint(ok("tok-1", 120), ok("tok-2", 120)), clock, audit)
    tokens.token()
    tokens.token()
    clock.advance(timedelta(minutes=2))
    tokens.token()
    assert [(u.downstream, u.operation, u.identity.as_detail()) for u in audit.uses] == [
        (
            "pds",
            "oauth-token",
            {
                "credential_kind": "key",
                "credential_name": "tie-pds-jwt",
                "credential_version": "v7",
                "credential_thumbprint": "kid:tie-pds-int-1",
            },
        )
    ] * 2
    assert KEY_PEM not in repr(tokens) and "BEGIN" not in repr(tokens._signer)


def test_the_signer_refuses_keys_that_cannot_sign_rs512() -> None:
    with pytest.raises(CredentialInvalid, match="not a PEM private key"):
        RsaKeySigner(SecretValue("k", "v", "not a key"), kid="x")
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CredentialInvalid, match="RSA"):
        RsaKeySigner(SecretValue("k", "v", ec_pem.decode()), kid="x")


def registry(client_id: dict[str, str]) -> Any:
    return parse_registry(
        {
            "version": "1.0",
            "downstreams": [
                {
                    "name": "pds",
                    "direction": "outbound",
                    "transport": "nhs-api",
                    "message_format": "FHIR",
                    "format_version": "R4",
                    "auth": "oauth2-private-key-jwt",
                    "owner": "tests",
                    "credential": {"kind": "key", "names": {"local": "tie-pds-jwt"}},
                    "oauth": {
                        "token_url": {"local": TOKEN_URL},
                        "client_id": client_id,
                        "kid": {"local": "k1"},
                    },
                }
            ],
        }
    )


def test_the_broker_builds_the_token_source_from_the_registry(tmp_path: Path, clock: Clock) -> None:
    (tmp_path / "tie-pds-jwt.secret").write_text(KEY_PEM)
    provider = LocalCredentialProvider(tmp_path)
    endpoint = FakeEndpoint(ok("tok-9"))
    broker = CredentialBroker(registry({"local": "api-key-9"}), provider, environment="local", clock=clock)
    tokens = broker.token_source("pds", transport=endpoint)
    assert tokens.token() == "tok-9"
    claims = json.loads(unb64(endpoint.calls[0]["client_assertion"].split(".")[1]))
    assert claims["iss"] == "api-key-9"
    unconfigured = CredentialBroker(registry({}), provider, environment="local", clock=clock)
    with pytest.raises(CredentialNotFound, match="no OAuth client for local"):
        unconfigured.token_source("pds", transport=endpoint)


class TokenHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = parse_qs(self.rfile.read(length).decode())
        self.server.forms.append((self.headers["Content-Type"], form))  # type: ignore[attr-defined]
        body = json.dumps({"access_token": "loopback-token", "expires_in": 599}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def token_server() -> Iterator[tuple[str, list[Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    server.forms = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/token", server.forms  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_urllib3_transport_posts_a_form(token_server: tuple[str, list[Any]], clock: Clock) -> None:
    url, forms = token_server
    transport = Urllib3TokenTransport()
    tokens = PrivateKeyJwtTokenSource(
        token_url=url,
        client_id="c",
        signer=RsaKeySigner(SecretValue("k", "v", KEY_PEM), kid="k1"),
        transport=transport,
        clock=clock,
    )
    assert tokens.token() == "loopback-token"
    [(content_type, form)] = forms
    assert content_type == "application/x-www-form-urlencoded"
    assert form["grant_type"] == ["client_credentials"] and form["client_assertion_type"] == [ASSERTION_TYPE]
    transport.close()
