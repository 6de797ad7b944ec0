"""One poll of every configured mailbox (the timer in ``functions/mesh.py`` and ``tie mesh poll``)."""

from __future__ import annotations

from collections.abc import Callable

from shared.errors import TieError
from shared.mesh.inbound import MeshInbound, PollReport
from shared.mesh.outbound import MeshOutbound
from shared.mesh.pipeline import PipelineIngestor
from shared.mesh.ports import MeshMailbox
from shared.messaging.ports import MessageBus
from shared.storage.ports import BlobStore, RecordStore


def poll_mailboxes(
    mailboxes: tuple[str, ...],
    open_mailbox: Callable[[str], MeshMailbox],
    *,
    bus: MessageBus,
    records: RecordStore,
    blobs: BlobStore,
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
                report = inbound.poll(mailbox)
                outbound.refresh(mailbox)
            finally:
                mailbox.close()
        except TieError as exc:
            report.failed += 1
            report.errors.append(exc.code)
        reports.append(report)
    return reports
