"""Behavioural contract of the audit payload store on every backend: local files (0600) and block blobs
on Azurite (marked ``azurite``). Bodies come back verified against their digest, retention is per record
class on an injected clock, a class with retention 0 is never stored, and a changed body is refused."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.audit.payloads import (
    CANONICAL,
    OUTBOUND,
    PAYLOAD_CLASSES,
    RECEIVED,
    REPLY,
    LocalPayloadStore,
    PayloadIntegrityError,
    PayloadStore,
    Retention,
)

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
RETENTION = Retention({RECEIVED: 1, CANONICAL: 7, OUTBOUND: 30, REPLY: 0})
BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("azure", id="azure", marks=pytest.mark.azurite),
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


Tamper = Callable[[str, str, bytes], None]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[PayloadStore, Clock, Tamper]]:
    """A store on a fake clock, and a way to overwrite a stored body behind the store's back."""
    clock = Clock()
    if request.param == "local":
        local = LocalPayloadStore(tmp_path / "payloads", RETENTION, clock=clock)

        def tamper_file(record_class: str, digest: str, data: bytes) -> None:
            path = tmp_path / "payloads" / record_class / digest
            stamp = path.stat().st_mtime
            path.write_bytes(data)
            os.utime(path, (stamp, stamp))

        yield local, clock, tamper_file
        local.close()
        return
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure.audit_payloads import BlobPayloadStore

    connection = request.getfixturevalue("azurite")
    container = f"payloads-{uuid.uuid4().hex[:12]}"
    blobs = BlobPayloadStore.from_connection_string(connection, RETENTION, container=container, clock=clock)

    def tamper_blob(record_class: str, digest: str, data: bytes) -> None:
        client = BlobServiceClient.from_connection_string(connection).get_blob_client(
            container, f"{record_class}/{digest}"
        )
        metadata = client.get_blob_properties().metadata
        client.upload_blob(data, overwrite=True, metadata=metadata)

    yield blobs, clock, tamper_blob
    blobs.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_bodies_come_back_by_class_and_digest(store: tuple[PayloadStore, Clock, Tamper]) -> None:
    payloads, _clock, _tamper = store
    raw = b"MSH|^~\\&|PAS|RBZ|||20260701||ADT^A01|1|P|2.4\rPID|1||X\r"
    assert payloads.put(RECEIVED, raw) == sha(raw)
    assert payloads.put(RECEIVED, raw) == sha(raw)  # again: the same body, one copy
    assert payloads.put(OUTBOUND, b'{"a":1}') == sha(b'{"a":1}')
    assert payloads.get(RECEIVED, sha(raw)) == raw
    assert payloads.get(OUTBOUND, sha(b'{"a":1}')) == b'{"a":1}'
    # Content-addressed per class: the same digest under another class is not there.
    assert payloads.get(CANONICAL, sha(raw)) is None
    assert payloads.get(RECEIVED, sha(b"never stored")) is None
    # Retention 0: the class is not stored at all.
    assert payloads.put(REPLY, b"MSA|AA|1") is None
    assert payloads.get(REPLY, sha(b"MSA|AA|1")) is None


def test_retention_is_per_record_class(store: tuple[PayloadStore, Clock, Tamper]) -> None:
    payloads, clock, _tamper = store
    bodies = {RECEIVED: b"received", CANONICAL: b"canonical", OUTBOUND: b"outbound"}
    for record_class, data in bodies.items():
        payloads.put(record_class, data)
    clock.now = T0 + timedelta(days=2)  # past received (1 day), within canonical (7) and outbound (30)
    assert {c: payloads.get(c, sha(d)) for c, d in bodies.items()} == {
        RECEIVED: None,
        CANONICAL: b"canonical",
        OUTBOUND: b"outbound",
    }
    assert payloads.expire() == {RECEIVED: 1, CANONICAL: 0, OUTBOUND: 0, REPLY: 0}
    assert payloads.expire() == dict.fromkeys(PAYLOAD_CLASSES, 0)
    # Storing a body again renews its retention.
    payloads.put(CANONICAL, b"canonical")
    clock.now = T0 + timedelta(days=8)
    assert payloads.get(CANONICAL, sha(b"canonical")) == b"canonical"
    clock.now = T0 + timedelta(days=31)
    assert payloads.expire() == {RECEIVED: 0, CANONICAL: 1, OUTBOUND: 1, REPLY: 0}
    assert [payloads.get(c, sha(d)) for c, d in bodies.items()] == [None, None, None]


def test_a_changed_body_is_refused(store: tuple[PayloadStore, Clock, Tamper]) -> None:
    payloads, _clock, tamper = store
    digest = payloads.put(OUTBOUND, b"what was sent")
    assert digest is not None
    tamper(OUTBOUND, digest, b"what was not sent")
    with pytest.raises(PayloadIntegrityError):
        payloads.get(OUTBOUND, digest)


@pytest.mark.parametrize(
    ("record_class", "digest"),
    [("nonsense", "a" * 64), (RECEIVED, "A" * 64), (RECEIVED, "a" * 63), (RECEIVED, "../" + "a" * 61)],
)
def test_bad_class_or_digest_is_refused(
    store: tuple[PayloadStore, Clock, Tamper], record_class: str, digest: str
) -> None:
    payloads, _clock, _tamper = store
    with pytest.raises(ValueError):
        payloads.get(record_class, digest)


def test_local_files_are_owner_only(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX modes only")
    payloads = LocalPayloadStore(tmp_path / "data" / "payloads", RETENTION)
    digest = payloads.put(RECEIVED, b"patient data")
    assert digest is not None
    path = tmp_path / "data" / "payloads" / RECEIVED / digest
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [digest]  # no temporary file left behind
