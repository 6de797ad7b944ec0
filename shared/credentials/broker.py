"""Registry + provider + audit: the TLS contexts transports use, per downstream.

:meth:`CredentialBroker.client_tls` returns a :class:`ClientTls` for a registry downstream. Transports
(:class:`shared.mllp.client.MllpClient`, the FHIR HTTP adapter) call :meth:`ClientTls.context` when they
connect and :meth:`ClientTls.record_use` before each call:

* **rotation without restart**: the provider is asked for the current version at most every
  ``refresh_seconds``; a new version builds a new context (the next connection uses it);
* **expiry**: a certificate past its ``notAfter`` (or before its ``notBefore``) fails the call with
  :class:`~shared.credentials.errors.CredentialExpired` (permanent) even while cached; a store that cannot
  be reached fails it with :class:`~shared.credentials.errors.CredentialUnavailable` (transient);
* **audit**: every call records the downstream, the credential name, version and thumbprint and the
  correlation id through the :class:`~shared.credentials.audit.CredentialAudit` port.

:meth:`CredentialBroker.server_tls` does the same for a listener (``mllp-listener`` in the registry):
server certificate plus, when the registry names a trust CA, required client certificates (mutual TLS).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.credentials import pem
from shared.credentials.audit import CredentialAudit, CredentialUse, current_correlation_id
from shared.credentials.errors import CredentialExpired, CredentialNotFound, CredentialUnavailable
from shared.credentials.model import CertificateInfo, CertificateMaterial, CredentialIdentity
from shared.credentials.oauth import (
    PrivateKeyJwtTokenSource,
    RsaKeySigner,
    TokenTransport,
    Urllib3TokenTransport,
)
from shared.credentials.ports import CredentialProvider
from shared.credentials.registry import CredentialRef, Downstream, DownstreamRegistry

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Built:
    identity: CertificateInfo | None
    trust: CertificateInfo | None
    context: ssl.SSLContext
    checked_at: datetime


class _TlsSource:
    """Shared by client and server sources: cache, refresh, expiry check."""

    def __init__(
        self,
        broker: CredentialBroker,
        downstream: Downstream,
        *,
        server: bool,
        client_auth: bool | None = None,
    ) -> None:
        self._broker = broker
        self.downstream = downstream
        self._server = server
        env = broker.environment
        self._identity_name = _name(downstream.credential, env, "certificate")
        self._trust_name = _name(downstream.trust, env, "certificate")
        if server and self._identity_name is None:
            raise CredentialNotFound(downstream.name, where=f"registry (no server certificate for {env})")
        if server and client_auth is False:
            self._trust_name = None  # server authentication only: no client certificate asked for
        if server and client_auth and self._trust_name is None:
            raise CredentialNotFound(downstream.name, where=f"registry (no client CA for {env})")
        self._built: _Built | None = None
        self._lock = threading.Lock()

    @property
    def identity_name(self) -> str | None:
        return self._identity_name

    def _current(self, name: str | None) -> CertificateInfo | None:
        return None if name is None else self._broker.provider.certificate_info(name)

    def _material(self, name: str | None) -> CertificateMaterial | None:
        return None if name is None else self._broker.provider.certificate(name)

    def context(self) -> ssl.SSLContext:
        """The TLS context for the next connection (rebuilt when the stored version changed)."""
        now = self._broker.clock()
        with self._lock:
            built = self._built
            if built is None or now - built.checked_at >= self._broker.refresh:
                try:
                    identity, trust = self._current(self._identity_name), self._current(self._trust_name)
                except CredentialUnavailable:
                    if built is None:
                        raise
                    identity, trust = built.identity, built.trust  # store unreachable: keep the cached one
                if (
                    built is None
                    or _version(identity) != _version(built.identity)
                    or _version(trust) != _version(built.trust)
                ):
                    built = self._build(now)
                else:
                    built.checked_at = now
                self._built = built
            if built.identity is not None:
                info = built.identity
                if now >= info.not_after:
                    raise CredentialExpired(info.name, info.version)
                if now < info.not_before:
                    raise CredentialExpired(info.name, info.version, state="not yet valid")
            return built.context

    def _build(self, now: datetime) -> _Built:
        identity, trust = self._material(self._identity_name), self._material(self._trust_name)
        if self._server:
            assert identity is not None
            context = pem.server_context(identity, trust, now=now)
        else:
            context = pem.client_context(identity, trust, now=now)
        return _Built(
            identity.info if identity else None, trust.info if trust else None, context, checked_at=now
        )

    def identity(self) -> CredentialIdentity:
        """The credential the current context presents (``none`` for server-auth-only TLS)."""
        self.context()
        built = self._built
        assert built is not None
        info = built.identity
        if info is None:
            return CredentialIdentity("certificate", "-", "-")
        return CredentialIdentity("certificate", info.name, info.version, info.thumbprint)


class ClientTls(_TlsSource):
    """TLS for one outbound downstream (see the module docs)."""

    def record_use(self, operation: str) -> CredentialIdentity:
        """Audit one call about to be made with the current credential; returns what was recorded."""
        identity = self.identity()
        audit = self._broker.audit
        if audit is not None:
            audit.credential_used(
                CredentialUse(self.downstream.name, operation, identity, current_correlation_id())
            )
        return identity


class ServerTls(_TlsSource):
    """TLS for a listener; :meth:`context` picks up a rotated certificate for new connections."""

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate issued by the registry's trust CA."""
        return self._trust_name is not None


def _name(ref: CredentialRef | None, environment: str, kind: str) -> str | None:
    if ref is None or ref.kind != kind:
        return None
    return ref.name_for(environment)


def _version(info: CertificateInfo | None) -> str | None:
    return None if info is None else info.version


class CredentialBroker:
    def __init__(
        self,
        registry: DownstreamRegistry,
        provider: CredentialProvider,
        *,
        environment: str,
        audit: CredentialAudit | None = None,
        clock: Clock | None = None,
        refresh_seconds: float = 300.0,
    ) -> None:
        self.registry = registry
        self.provider = provider
        self.environment = environment
        self.audit = audit
        self.clock: Clock = clock or _utcnow
        self.refresh = timedelta(seconds=refresh_seconds)

    def endpoint(self, downstream: str) -> str | None:
        return self.registry.get(downstream).endpoint(self.environment)

    def client_tls(self, downstream: str) -> ClientTls:
        return ClientTls(self, self.registry.get(downstream), server=False)

    def server_tls(self, downstream: str = "mllp-listener", *, client_auth: bool | None = None) -> ServerTls:
        """Server TLS of a listener entry. ``client_auth``: ``None`` = as the registry says (a trust CA
        means mutual TLS), ``True`` = mutual TLS (the entry must name a trust CA, else
        :class:`CredentialNotFound`), ``False`` = server authentication only."""
        return ServerTls(self, self.registry.get(downstream), server=True, client_auth=client_auth)

    def token_source(
        self, downstream: str, *, transport: TokenTransport | None = None
    ) -> PrivateKeyJwtTokenSource:
        """The OAuth 2.0 signed-JWT token source of an ``oauth2-private-key-jwt`` downstream (PDS ...):
        token URL, client id and kid from the registry for this environment, the signing key from the
        provider (embedded: the secret holding the PEM key). Implements the PDS ``TokenSource`` port."""
        entry = self.registry.get(downstream)
        key_name = _name(
            entry.credential, self.environment, entry.credential.kind if entry.credential else ""
        )
        client = entry.oauth.for_environment(self.environment) if entry.oauth is not None else None
        if entry.auth != "oauth2-private-key-jwt" or key_name is None or client is None:
            raise CredentialNotFound(downstream, where=f"registry (no OAuth client for {self.environment})")
        token_url, client_id, kid = client
        return PrivateKeyJwtTokenSource(
            token_url=token_url,
            client_id=client_id,
            signer=RsaKeySigner(self.provider.secret(key_name), kid=kid),
            transport=transport or Urllib3TokenTransport(),
            downstream=downstream,
            audit=self.audit,
            clock=self.clock,
            timeout=entry.timeout_seconds,
        )

    def close(self) -> None:
        self.provider.close()
