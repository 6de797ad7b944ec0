"""The payload store: the bodies behind the audit records' digests (issue 15, the four-part answer).

An audit record never holds a body, only SHA-256 digests (``digests["input"]``, ``["output"]``,
``["reply"]``). The bodies themselves - the raw message received, its canonical form, each payload sent to
a downstream and the downstream's reply - are kept here, content-addressed by record class and digest, so
``tie audit show --body`` can show them while the retention of their class lasts. Records outlive payloads:
after expiry the record still carries the digest.

Record classes and what stores them:

* ``received``  - the raw bytes the ingest processor mapped (the transform record's ``input``);
* ``canonical`` - the clinical-event message it produced (the transform record's ``output``);
* ``outbound``  - the payload sent to a downstream (the write-back record's ``output``);
* ``reply``     - what the downstream answered (the write-back record's ``reply``).

Adapters: :class:`LocalPayloadStore` (files 0600 under ``<TIE_LOCAL_DIR>/payloads``) and
:class:`shared.adapters.azure.audit_payloads.BlobPayloadStore` (the ``audit-payloads`` container).
Retention and the customer-managed key: docs/audit.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

from shared.errors import PermanentError
from shared.storage.errors import StorageUnavailable
from shared.storage.private_files import private_directory

RECEIVED: Final = "received"
CANONICAL: Final = "canonical"
OUTBOUND: Final = "outbound"
REPLY: Final = "reply"
PAYLOAD_CLASSES: Final = (RECEIVED, CANONICAL, OUTBOUND, REPLY)
#: Which digest of an audit record names the body of which class, by record interaction.
DIGEST_CLASSES: Final[Mapping[str, Mapping[str, str]]] = {
    "transform": {"input": RECEIVED, "output": CANONICAL},
    "write-back": {"output": OUTBOUND, "reply": REPLY},
}
#: Blob container of the Azure adapter (declared for infra in docs/audit.md).
PAYLOAD_CONTAINER: Final = "audit-payloads"
_HEX = frozenset("0123456789abcdef")


class PayloadIntegrityError(PermanentError):
    """A stored payload no longer matches its digest (changed or damaged in storage)."""

    code = "payload-integrity"


class InvalidRetention(ValueError):
    """A retention setting that is not ``<class>=<days>`` pairs over the known classes."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each record class is kept (``0`` days: not stored at all)."""

    days: Mapping[str, int]

    def __post_init__(self) -> None:
        unknown = set(self.days) - set(PAYLOAD_CLASSES)
        if unknown:
            raise InvalidRetention(f"unknown payload class(es): {', '.join(sorted(unknown))}")
        if any(d < 0 for d in self.days.values()):
            raise InvalidRetention("retention days must not be negative")

    def keeps(self, record_class: str) -> bool:
        return self.days.get(record_class, 0) > 0

    def period(self, record_class: str) -> timedelta:
        return timedelta(days=self.days.get(record_class, 0))

    @classmethod
    def parse(cls, text: str) -> Retention:
        """``received=90,canonical=90,outbound=90,reply=90``; a class left out is not stored."""
        days: dict[str, int] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep or not value.strip().isdigit():
                raise InvalidRetention("use <class>=<days> pairs, comma-separated")
            if name.strip() in days:
                raise InvalidRetention(f"payload class {name.strip()} given twice")
            days[name.strip()] = int(value)
        return cls(days)


def check_digest(digest: str) -> str:
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise ValueError("a payload digest is 64 lowercase hex digits")
    return digest


def check_class(record_class: str) -> str:
    if record_class not in PAYLOAD_CLASSES:
        raise ValueError(f"unknown payload class {record_class!r}")
    return record_class


def verified(data: bytes, digest: str) -> bytes:
    if hashlib.sha256(data).hexdigest() != digest:
        raise PayloadIntegrityError(f"stored payload {digest[:12]} does not match its digest")
    return data


class PayloadStore(Protocol):
    """Content-addressed bodies by record class; thread-safe; every adapter behaves the same
    (``tests/contract/test_audit_payloads_contract.py``)."""

    retention: Retention

    def put(self, record_class: str, data: bytes) -> str | None:
        """Keep ``data`` under its SHA-256 (returned); ``None`` when the class is not kept (retention 0).
        Storing the same body again renews its retention. Raises a transient error when unavailable."""
        ...

    def get(self, record_class: str, digest: str) -> bytes | None:
        """The body, verified against ``digest``; ``None`` when absent or expired. Raises
        :class:`PayloadIntegrityError` when the stored bytes do not match."""
        ...

    def expire(self) -> dict[str, int]:
        """Delete the bodies older than their class's retention; how many per class."""
        ...

    def close(self) -> None: ...


class LocalPayloadStore:
    """Files ``<root>/<class>/<digest>``, 0600 in 0700 directories, written atomically (temporary file +
    rename); the file's modification time is when it was (last) stored, from the injected clock."""

    def __init__(
        self, root: Path, retention: Retention, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.root = root
        self.retention = retention
        self._clock = clock or (lambda: datetime.now(UTC))

    def _path(self, record_class: str, digest: str) -> Path:
        return self.root / check_class(record_class) / check_digest(digest)

    def put(self, record_class: str, data: bytes) -> str | None:
        check_class(record_class)
        if not self.retention.keeps(record_class):
            return None
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(record_class, digest)
        stamp = self._clock().timestamp()
        try:
            private_directory(path.parent)
            if not path.exists():
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mkstemp: mode 0600
                try:
                    # No fsync, like the embedded SQLite stores (synchronous=NORMAL): a killed process
                    # loses nothing written, a power cut may (docs/audit.md).
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                    os.replace(tmp, path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                    raise
            os.utime(path, (stamp, stamp))
        except OSError as exc:
            raise StorageUnavailable(f"payload store: cannot write ({type(exc).__name__})") from None
        return digest

    def get(self, record_class: str, digest: str) -> bytes | None:
        path = self._path(record_class, digest)
        try:
            if self._expired(record_class, path.stat().st_mtime):
                return None
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable(f"payload store: cannot read ({type(exc).__name__})") from None
        return verified(data, digest)

    def _expired(self, record_class: str, stored: float) -> bool:
        cutoff = self._clock() - self.retention.period(record_class)
        return stored < cutoff.timestamp() or not self.retention.keeps(record_class)

    def expire(self) -> dict[str, int]:
        removed: dict[str, int] = {}
        for record_class in PAYLOAD_CLASSES:
            folder = self.root / record_class
            count = 0
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.name.startswith(".tmp-"):
                        continue  # another writer's file in progress
                    with contextlib.suppress(FileNotFoundError):
                        if self._expired(record_class, path.stat().st_mtime):
                            path.unlink()
                            count += 1
            removed[record_class] = count
        return removed

    def close(self) -> None:
        return None
