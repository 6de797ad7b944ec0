"""One poll of every configured mailbox (the timer in ``functions/mesh.py`` and ``tie mesh poll``).

MESH asks clients to handshake (``POST /messageexchange/{mailbox}``: client version, OS) at least once a day:
each process does so before its first poll of a mailbox and again every 24 hours.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.errors import TieError
from shared.mesh.inbound import MeshInbound, PollReport
from shared.mesh.outbound import MeshOutbound
from shared.mesh.pipeline import PipelineIngestor
from shared.mesh.ports import MeshMailbox
from shared.messaging.ports import MessageBus
from shared.storage.ports import BlobStore, RecordStore

HANDSHAKE_EVERY_SECONDS = 24 * 3600.0
_handshakes: dict[str, float] = {}
_handshake_lock = threading.Lock()


def _handshake_due(mailbox: str, now: float) -> bool:
    with _handshake_lock:
        last = _handshakes.get(mailbox)
        return last is None or now - last >= HANDSHAKE_EVERY_SECONDS


def _handshaken(mailbox: str, now: float) -> None:
    with _handshake_lock:
        _handshakes[mailbox] = now


def poll_mailboxes(
    mailboxes: tuple[str, ...],
    open_mailbox: Callable[[str], MeshMailbox],
    *,
    bus: MessageBus,
    records: RecordStore,
    blobs: BlobStore,
    clock: Callable[[], float] = time.monotonic,
) -> list[PollReport]:
    """Poll each mailbox's inbox and refresh the tracking of what it sent. A mailbox that fails is
    reported (``errors``) and the others still run."""
    inbound = MeshInbound(records, blobs, PipelineIngestor(bus, records), bus=bus)
    outbound = MeshOutbound(records)
    reports = []
    for name in mailboxes:
        report = PollReport(name)
        try:
            mailbox = open_mailbox(name)
            try:
                now = clock()
                if _handshake_due(name, now):
                    mailbox.handshake()
                    _handshaken(name, now)
                report = inbound.poll(mailbox)
                outbound.refresh(mailbox)
            finally:
                mailbox.close()
        except TieError as exc:
            report.failed += 1
            report.errors.append(exc.code)
        reports.append(report)
    return reports
