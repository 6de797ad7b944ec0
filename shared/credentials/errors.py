"""Credential errors: what failed, for which credential *name* - never a secret, a key or a PEM block.

* :class:`CredentialNotFound` (permanent, a configuration error): the store holds no credential by that
  name, or the registry names no credential for the downstream in this environment.
* :class:`CredentialExpired` (permanent): the current version is outside its validity period; rotating
  the certificate in the store fixes it without a restart.
* :class:`CredentialInvalid` (permanent): the stored material cannot be read (not PEM / PKCS#12, key does
  not match the certificate).
* :class:`CredentialUnavailable` (transient): the store could not be reached (Key Vault throttled or
  down, a file being replaced): retry later.
"""

from __future__ import annotations

from shared.errors import ConfigurationError, PermanentError, TransientError


class CredentialNotFound(ConfigurationError):
    code = "credential-not-found"

    def __init__(self, name: str, *, where: str = "credential store") -> None:
        super().__init__(f"credential {name!r} not found in the {where}")
        self.name = name


class CredentialExpired(PermanentError):
    code = "credential-expired"

    def __init__(self, name: str, version: str, *, state: str = "expired") -> None:
        super().__init__(f"certificate {name!r} (version {version}) is {state}")
        self.name = name
        self.version = version


class CredentialInvalid(PermanentError):
    code = "credential-invalid"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"credential {name!r} cannot be used: {reason}")
        self.name = name


class CredentialUnavailable(TransientError):
    code = "credential-unavailable"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"credential {name!r} is unavailable: {reason}")
        self.name = name


class RegistryInvalid(ConfigurationError):
    code = "downstream-registry-invalid"
