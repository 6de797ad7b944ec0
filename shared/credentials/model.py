"""Credential values and their public identity.

:class:`CertificateInfo` and :class:`CredentialIdentity` hold only what may be printed, logged and
audited (name, version, SHA-256 thumbprint, subject common name, validity). Secret material lives in
:class:`CertificateMaterial` / :class:`SecretValue`, whose ``repr`` never shows it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

CredentialKind = Literal["certificate", "secret", "key"]

#: A credential name: Key Vault's rule (letters, digits, hyphens; up to 127), so no local name can leave
#: its folder.
NAME_RE: Final = re.compile(r"^[A-Za-z0-9-]{1,127}$")


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """Public facts about the current version of a certificate."""

    name: str
    version: str
    #: SHA-256 of the leaf certificate's DER encoding, lower-case hex.
    thumbprint: str
    subject: str
    not_before: datetime
    not_after: datetime
    #: ``local`` (files) or ``keyvault``.
    source: str

    def days_remaining(self, now: datetime) -> int:
        """Whole days until expiry, rounded down (negative once expired: -1 = expired within a day)."""
        return math.floor((self.not_after - now) / timedelta(days=1))

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now < self.not_after


@dataclass(frozen=True, slots=True)
class CertificateMaterial:
    """A certificate chain (leaf first) and its private key, PEM. ``key_pem`` is ``None`` for a trust
    anchor (CA certificate) stored without a key."""

    info: CertificateInfo
    chain_pem: bytes = field(repr=False)
    key_pem: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SecretValue:
    name: str
    version: str
    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CredentialIdentity:
    """Which credential a call used: what the per-call audit records. Never the secret itself."""

    kind: CredentialKind
    name: str
    version: str
    thumbprint: str = ""

    def as_detail(self) -> dict[str, str]:
        out = {"credential_kind": self.kind, "credential_name": self.name, "credential_version": self.version}
        if self.thumbprint:
            out["credential_thumbprint"] = self.thumbprint
        return out
