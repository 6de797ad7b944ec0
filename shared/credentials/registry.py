"""The downstream registry: every system the engine talks to, as versioned data (``docs/credentials.md``).

One JSON file (``TIE_DOWNSTREAMS_FILE``; default: the packaged ``downstreams.sample.json``) validated at
start-up by :func:`load_registry`. Each downstream names its endpoint and its credentials **by
reference** per environment (a Key Vault certificate / secret / key name, or a local file name); the
secret itself is never in the registry. Transports ask the registry (through
:class:`~shared.credentials.broker.CredentialBroker`) for their endpoint and TLS context.

Validation errors name the JSON path and the rule, never the offending value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.credentials.errors import CredentialNotFound, RegistryInvalid
from shared.credentials.model import NAME_RE

Environment = Literal["local", "dev", "test", "prod"]
ENVIRONMENTS: Final[tuple[Environment, ...]] = ("local", "dev", "test", "prod")
REGISTRY_VERSION: Final = "1.0"
SAMPLE_FILE: Final = "downstreams.sample.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CredentialRef(_Strict):
    """A credential by reference: kind and its name per environment (absent environment: none there)."""

    kind: Literal["certificate", "secret", "key"]
    names: dict[Environment, str]

    @field_validator("names")
    @classmethod
    def _names(cls, value: dict[Environment, str]) -> dict[Environment, str]:
        for name in value.values():
            if not NAME_RE.match(name):
                raise ValueError("credential names are letters, digits and hyphens (up to 127)")
        return value

    def name_for(self, environment: str) -> str | None:
        return next((n for env, n in self.names.items() if env == environment), None)


class RetryPolicy(_Strict):
    max_attempts: int = Field(3, ge=1, le=10)
    backoff_base_seconds: float = Field(0.5, ge=0, le=30)


class OAuthClient(_Strict):
    """OAuth 2.0 client credentials with a signed JWT (auth ``oauth2-private-key-jwt``), per environment:
    the token endpoint, the client id (the platform's API key; an identifier, not a secret) and the ``kid``
    the public key was registered under. The signing key is the downstream's ``credential``."""

    token_url: dict[Environment, str] = Field(default_factory=dict)
    client_id: dict[Environment, str] = Field(default_factory=dict)
    kid: dict[Environment, str] = Field(default_factory=dict)

    @field_validator("token_url")
    @classmethod
    def _https(cls, value: dict[Environment, str]) -> dict[Environment, str]:
        if any(
            not url.startswith(("https://", "http://127.0.0.1", "http://localhost")) for url in value.values()
        ):
            raise ValueError("token endpoints are https URLs")
        return value

    def for_environment(self, environment: str) -> tuple[str, str, str] | None:
        """(token URL, client id, kid), or ``None`` when any of them is not set for ``environment``."""
        parts = [
            next((v for env, v in m.items() if env == environment), None)
            for m in (self.token_url, self.client_id, self.kid)
        ]
        if any(p is None for p in parts):
            return None
        return (str(parts[0]), str(parts[1]), str(parts[2]))


class Downstream(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = Field("", max_length=200)
    direction: Literal["outbound", "inbound", "both"]
    transport: Literal["mllp", "http-fhir", "mesh", "nhs-api", "sftp"]
    message_format: str = Field(min_length=1, max_length=60)
    format_version: str = Field(min_length=1, max_length=20)
    auth: Literal["mtls", "oauth2-private-key-jwt", "api-key", "network-only"]
    #: The client certificate (mtls), the JWT signing key (oauth2-private-key-jwt) or the API key secret.
    credential: CredentialRef | None = None
    #: CA certificate(s) that issue the peer's certificate; absent: the system trust store.
    trust: CredentialRef | None = None
    endpoints: dict[Environment, str] = Field(default_factory=dict)
    oauth: OAuthClient | None = None
    owner: str = Field(min_length=1, max_length=120)
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    @model_validator(mode="after")
    def _auth_needs_credential(self) -> Downstream:
        allowed = {
            "mtls": ("certificate",),
            "oauth2-private-key-jwt": ("key", "certificate"),
            "api-key": ("secret",),
        }
        kinds = allowed.get(self.auth)
        if kinds is not None and (self.credential is None or self.credential.kind not in kinds):
            raise ValueError(f"auth {self.auth} needs a credential of kind {' or '.join(kinds)}")
        if kinds is None and self.credential is not None:
            raise ValueError("auth network-only takes no credential")
        if self.oauth is not None and self.auth != "oauth2-private-key-jwt":
            raise ValueError("oauth settings belong to auth oauth2-private-key-jwt")
        if self.trust is not None and self.trust.kind != "certificate":
            raise ValueError("trust is a certificate reference")
        for url in self.endpoints.values():
            if self.transport == "mllp":
                if not url.startswith(("mllp://", "mllps://")):
                    raise ValueError("mllp endpoints are mllp://host:port or mllps://host:port")
            elif not url.startswith(("https://", "http://", "sftp://")):
                raise ValueError("endpoints are absolute URLs")
        return self

    def endpoint(self, environment: str) -> str | None:
        return next((u for env, u in self.endpoints.items() if env == environment), None)


class _RegistryFile(_Strict):
    version: Literal["1.0"]
    downstreams: list[Downstream]

    @model_validator(mode="after")
    def _unique(self) -> _RegistryFile:
        names = [d.name for d in self.downstreams]
        if len(names) != len(set(names)):
            raise ValueError("downstream names must be unique")
        return self


class DownstreamRegistry:
    """The validated inventory, read-only."""

    def __init__(self, downstreams: list[Downstream], *, source: str = "") -> None:
        self._by_name = {d.name: d for d in downstreams}
        self.source = source

    def __iter__(self) -> Iterator[Downstream]:
        return iter(sorted(self._by_name.values(), key=lambda d: d.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Downstream:
        try:
            return self._by_name[name]
        except KeyError:
            raise CredentialNotFound(name, where="downstream registry") from None

    def certificate_names(self, environment: str) -> set[str]:
        """Every certificate the registry references in ``environment`` (client certificates and trust)."""
        out: set[str] = set()
        for d in self._by_name.values():
            for ref in (d.credential, d.trust):
                if ref is not None and ref.kind == "certificate":
                    name = ref.name_for(environment)
                    if name:
                        out.add(name)
        return out

    def table(self, environment: str) -> list[dict[str, str]]:
        """``tie downstreams``: one row per downstream (names and references only, no secrets)."""
        rows = []
        for d in self:
            cred = d.credential.name_for(environment) if d.credential else None
            rows.append(
                {
                    "name": d.name,
                    "direction": d.direction,
                    "transport": d.transport,
                    "format": f"{d.message_format} {d.format_version}",
                    "auth": d.auth,
                    "credential": f"{d.credential.kind}:{cred}" if d.credential and cred else "-",
                    "endpoint": d.endpoint(environment) or "-",
                    "owner": d.owner,
                }
            )
        return rows


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{path}: {err['msg']}")
    return "; ".join(parts[:10])


def parse_registry(data: Mapping[str, object], *, source: str = "") -> DownstreamRegistry:
    try:
        model = _RegistryFile.model_validate(data)
    except ValidationError as exc:
        raise RegistryInvalid(
            f"downstream registry {source or ''} is invalid: {_errors(exc)}".replace("  ", " ")
        ) from None
    return DownstreamRegistry(model.downstreams, source=source)


def load_registry(path: Path | None = None) -> DownstreamRegistry:
    """Read and validate the registry (``path`` or the packaged sample)."""
    try:
        if path is None:
            text = resources.files("shared.credentials").joinpath(SAMPLE_FILE).read_text("utf-8")
            source = SAMPLE_FILE
        else:
            text = Path(path).read_text("utf-8")
            source = Path(path).name
        data = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryInvalid(f"downstream registry cannot be read ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise RegistryInvalid("downstream registry must be a JSON object")
    return parse_registry(data, source=source)
