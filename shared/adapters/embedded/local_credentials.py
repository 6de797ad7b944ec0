"""Embedded credential provider: PEM / PKCS#12 / secret files in one folder (``TIE_CREDENTIALS_DIR``).

Certificate ``name`` is ``<dir>/<name>.pem`` (the chain, leaf first, with its private key when it has
one) or ``<dir>/<name>.pfx`` (PKCS#12 without a password); secret ``name`` is ``<dir>/<name>.secret``.
Names follow Key Vault's rule (letters, digits, hyphens; up to 127), so a registry works unchanged
against both providers and no name can leave the folder. The version of a local certificate is the
first 32 hex digits of its SHA-256 thumbprint: replacing the file is a rotation.

``tie certs init-local`` fills the folder with self-signed certificates for the sample registry
(:mod:`shared.credentials.selfsigned`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from shared.credentials import pem
from shared.credentials.errors import CredentialInvalid, CredentialNotFound, CredentialUnavailable
from shared.credentials.model import NAME_RE, CertificateInfo, CertificateMaterial, SecretValue

_CERT_SUFFIXES: Final = (".pem", ".pfx")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise CredentialInvalid(name[:40], "names are letters, digits and hyphens (up to 127)")
    return name


class LocalCredentialProvider:
    source = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _read(self, path: Path, name: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise CredentialNotFound(name) from None
        except OSError as exc:
            raise CredentialUnavailable(name, f"cannot read the file ({type(exc).__name__})") from None

    def _cert_path(self, name: str) -> Path:
        check_name(name)
        for suffix in _CERT_SUFFIXES:
            path = self.root / f"{name}{suffix}"
            if path.exists():
                return path
        raise CredentialNotFound(name)

    def certificate(self, name: str) -> CertificateMaterial:
        path = self._cert_path(name)
        content_type = "application/x-pkcs12" if path.suffix == ".pfx" else None
        return pem.parse(
            name, self._read(path, name), version=None, source=self.source, content_type=content_type
        )

    def certificate_info(self, name: str) -> CertificateInfo:
        return self.certificate(name).info

    def list_certificates(self) -> list[CertificateInfo]:
        if not self.root.is_dir():
            return []
        names = sorted(
            {p.stem for p in self.root.iterdir() if p.suffix in _CERT_SUFFIXES and NAME_RE.match(p.stem)}
        )
        return [self.certificate_info(n) for n in names]

    def secret(self, name: str) -> SecretValue:
        check_name(name)
        data = self._read(self.root / f"{name}.secret", name)
        return SecretValue(name, hashlib.sha256(data).hexdigest()[:32], data.decode("utf-8").strip())

    def close(self) -> None:
        return None
