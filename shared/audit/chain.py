"""Hash chain and signed checkpoints: how tampering with the audit log is detected.

Each entry's hash is ``SHA-256(seq "\\n" prev "\\n" canonical JSON)``, where ``prev`` is the previous
entry's hash (:data:`GENESIS` for the first). Editing a record changes its hash; deleting or re-ordering
records breaks a ``seq`` or a ``prev`` link. Cutting records off the end leaves a shorter chain that is
still consistent, so the log also keeps checkpoints - ``(seq, hash, time)`` signed with HMAC-SHA256 under
a key held outside the log - and the latest one (the head, re-signed on every append) must still be in
the chain. :func:`verify_chain` reports the first bad record.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from shared.audit.ports import ChainedEntry, Checkpoint

GENESIS: Final = "0" * 64


def entry_hash(seq: int, prev: str, body: str) -> str:
    return hashlib.sha256(f"{seq}\n{prev}\n{body}".encode()).hexdigest()


def sign(key: bytes, seq: int, hash_: str, at: str) -> str:
    return hmac.new(key, f"{seq}\n{hash_}\n{at}".encode(), hashlib.sha256).hexdigest()


def checkpoint(key: bytes, seq: int, hash_: str, at: str) -> Checkpoint:
    return Checkpoint(seq=seq, hash=hash_, at=at, signature=sign(key, seq, hash_, at))


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    #: Entries checked.
    checked: int
    last_seq: int
    last_hash: str
    #: The first bad record's seq (``None`` when ok).
    first_bad: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} records, head {self.last_hash[:16]}"
        return f"audit chain broken at record {self.first_bad}: {self.reason}"


def verify_chain(
    entries: Iterable[ChainedEntry],
    checkpoints: Sequence[Checkpoint] = (),
    *,
    key: bytes | None = None,
) -> Verification:
    """Re-compute the chain; check every checkpoint's signature (when ``key`` is given) and that each
    checkpoint is still in the chain. Stops at the first break."""
    expected, prev, checked = 1, GENESIS, 0
    hashes: dict[int, str] = {}
    wanted = {cp.seq for cp in checkpoints}

    def broken(seq: int, reason: str) -> Verification:
        return Verification(False, checked, expected - 1, prev, seq, reason)

    for entry in entries:
        if entry.seq != expected:
            if entry.seq > expected:
                return broken(expected, f"missing: the log goes from record {expected - 1} to {entry.seq}")
            return broken(entry.seq, f"out of order: found after record {expected - 1}")
        if entry_hash(entry.seq, entry.prev, entry.body) != entry.hash:
            return broken(entry.seq, "its content does not match its hash (edited)")
        if entry.prev != prev:
            return broken(
                entry.seq, f"does not follow record {expected - 1} (removed, inserted or re-ordered)"
            )
        if entry.seq in wanted:
            hashes[entry.seq] = entry.hash
        prev, expected, checked = entry.hash, expected + 1, checked + 1
    last = expected - 1
    for cp in checkpoints:
        if key is not None and not hmac.compare_digest(cp.signature, sign(key, cp.seq, cp.hash, cp.at)):
            return Verification(False, checked, last, prev, cp.seq, "a checkpoint's signature is not valid")
        if cp.seq > last:
            return Verification(
                False,
                checked,
                last,
                prev,
                last + 1,
                f"truncated: a signed checkpoint covers record {cp.seq}, the log ends at {last}",
            )
        if cp.seq > 0 and hashes.get(cp.seq) != cp.hash:
            return Verification(
                False, checked, last, prev, cp.seq, "differs from the signed checkpoint taken at it"
            )
    return Verification(True, checked, last, prev)
