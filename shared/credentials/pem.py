"""Parse certificate material (PEM or PKCS#12) and build ``ssl.SSLContext`` s from it in memory.

Python's ``ssl`` loads a certificate chain and key only from a path. To keep key material off disk the
chain and key are written to an anonymous in-memory file (``memfd_create``, Linux: the Functions host)
and loaded through ``/proc/self/fd/N``; the descriptor is closed at once. Without ``memfd_create``
(developer machines other than Linux) a private temporary file is used and removed immediately - the
embedded provider's keys are on disk there anyway. Trust anchors go in through ``cadata`` (no file).

Every context requires TLS 1.2 or later.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from shared.credentials.errors import CredentialExpired, CredentialInvalid
from shared.credentials.model import CertificateInfo, CertificateMaterial

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


def thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _subject(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else cert.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def describe(name: str, version: str | None, cert: x509.Certificate, *, source: str) -> CertificateInfo:
    """Public facts of ``cert``; ``version=None`` uses the first 32 hex digits of its thumbprint."""
    digest = thumbprint(cert)
    return CertificateInfo(
        name=name,
        version=version or digest[:32],
        thumbprint=digest,
        subject=_subject(cert),
        not_before=cert.not_valid_before_utc.astimezone(UTC),
        not_after=cert.not_valid_after_utc.astimezone(UTC),
        source=source,
    )


def parse(
    name: str, data: bytes, *, version: str | None, source: str, content_type: str | None = None
) -> CertificateMaterial:
    """PEM (certificates, optionally with a private key) or PKCS#12 (``content_type`` says so, or the
    data is not PEM). Raises :class:`CredentialInvalid` without quoting the data."""
    try:
        if content_type == "application/x-pkcs12" or _PEM_CERT not in data:
            return _parse_pkcs12(name, data, version=version, source=source)
        certs = x509.load_pem_x509_certificates(data)
        key_pem: bytes | None = None
        if b"PRIVATE KEY-----" in data:
            key = serialization.load_pem_private_key(data, password=None)
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            if key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ) != certs[0].public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ):
                raise CredentialInvalid(name, "the private key does not match the certificate")
    except CredentialInvalid:
        raise
    except (ValueError, TypeError) as exc:
        raise CredentialInvalid(name, f"not a readable certificate ({type(exc).__name__})") from None
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return CertificateMaterial(describe(name, version, certs[0], source=source), chain, key_pem)


def _parse_pkcs12(name: str, data: bytes, *, version: str | None, source: str) -> CertificateMaterial:
    key, cert, extra = pkcs12.load_key_and_certificates(data, None)
    if cert is None:
        raise CredentialInvalid(name, "PKCS#12 bundle holds no certificate")
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *extra])
    key_pem = (
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if key is not None
        else None
    )
    return CertificateMaterial(describe(name, version, cert, source=source), chain, key_pem)


@contextlib.contextmanager
def _in_memory_file(data: bytes) -> Iterator[str]:
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fd = memfd("tie-credential", getattr(os, "MFD_CLOEXEC", 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    handle, path = tempfile.mkstemp(prefix="tie-credential-")  # pragma: no cover - non-Linux only
    try:  # pragma: no cover
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        yield path
    finally:  # pragma: no cover
        os.unlink(path)


def _check_valid(material: CertificateMaterial, now_utc: datetime) -> None:
    info = material.info
    if now_utc >= info.not_after:
        raise CredentialExpired(info.name, info.version)
    if now_utc < info.not_before:
        raise CredentialExpired(info.name, info.version, state="not yet valid")


def _load_identity(context: ssl.SSLContext, material: CertificateMaterial) -> None:
    if material.key_pem is None:
        raise CredentialInvalid(material.info.name, "no private key stored with the certificate")
    try:
        with _in_memory_file(material.chain_pem + material.key_pem) as path:
            context.load_cert_chain(path)
    except ssl.SSLError as exc:
        raise CredentialInvalid(material.info.name, f"TLS library refused it ({exc.reason})") from None


def _trust(context: ssl.SSLContext, trust: CertificateMaterial | None) -> None:
    if trust is not None:
        context.load_verify_locations(cadata=trust.chain_pem.decode("ascii"))


def client_context(
    identity: CertificateMaterial | None,
    trust: CertificateMaterial | None,
    *,
    now: datetime,
) -> ssl.SSLContext:
    """TLS client: verifies the server (system roots, or ``trust`` when given), presents ``identity``
    when given (mutual TLS). An expired or not-yet-valid identity raises :class:`CredentialExpired`."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if trust is not None:
        context.load_default_certs()
    _trust(context, trust)
    if identity is not None:
        _check_valid(identity, now)
        _load_identity(context, identity)
    return context


def server_context(
    identity: CertificateMaterial, client_ca: CertificateMaterial | None, *, now: datetime
) -> ssl.SSLContext:
    """TLS server presenting ``identity``; with ``client_ca`` clients must present a certificate issued by
    it (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _check_valid(identity, now)
    _load_identity(context, identity)
    if client_ca is not None:
        _trust(context, client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
