"""MESH inbound (persist, ingest, then acknowledge) and outbound (once per event, tracked) on the folder
mailbox and on NHS mesh-sandbox, with the real ingest pipeline over the embedded stores."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.journal import Journal
from shared.mesh.errors import MeshUnavailable
from shared.mesh.inbound import ACKNOWLEDGED, QUARANTINED, MeshInbound
from shared.mesh.outbound import MeshOutbound
from shared.mesh.pipeline import PipelineIngestor
from shared.mesh.ports import MeshMailbox, MeshMessage
from shared.messaging.topology import SUB_INGEST_PROCESSOR, SUB_PLATFORM_AUDIT, TOPIC_INGEST, TOPIC_PLATFORM
from tests.unit.mesh.conftest import MailboxFactory

ADT = (
    "MSH|^~\\&|PAS|RGT01|TIE|RGT01|20260315103000||ADT^A01^ADT_A01|{control}|P|2.5.1\r"
    "EVN|A01|20260315102900\r"
    "PID|1||9434765919^^^NHS^NH~H123456^^^RGT01^MR||TESTPATIENT^ALEX^J^^MX||19800101|F|||"
    "1 TEST STREET^^LEEDS^^LS1 4AP^GBR||01130000000\r"
    "PV1|1|I|WARD1^BED2^^RGT01||||C1234567^CONSULTANT^ANNA|||MED||||1|||C1234567^CONSULTANT^ANNA|IP|"
    "V000123|||||||||||||||||||||||||20260315102900\r"
)


def adt(control: str, padding: int = 0) -> bytes:
    # NTE-free padding: a long PID-11 other-designation would be content; a Z segment is ignored.
    body = ADT.format(control=control)
    if padding:
        body += "ZXX|" + "A" * padding + "\r"
    return body.encode()


def ingest_count(container: Any) -> int:
    return len(container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, max_messages=100))


def inbound(container: Any) -> MeshInbound:
    ingestor = PipelineIngestor(container.bus, container.records)
    return MeshInbound(container.records, container.blobs, ingestor, bus=container.bus)


def test_hl7_message_is_ingested_once_then_acknowledged(container: Any, mailboxes: MailboxFactory) -> None:
    sender, receiver = mailboxes("X26ABC2"), mailboxes("X26ABC1")
    message_id = sender.send("X26ABC1", adt("MESH0001"), workflow_id="TIE_HL7V2", local_id="ev-1")
    report = inbound(container).poll(receiver)
    assert (report.listed, report.ingested, report.acknowledged, report.failed) == (1, 1, 1, 0)
    assert receiver.inbox() == []
    assert ingest_count(container) == 1
    stages = [e.stage for e in Journal(container.records).trace(message_id)]
    assert stages[0] == "mesh-received" and "mesh-acknowledged" in stages


def test_large_message_arrives_whole_through_chunks(container: Any, mailboxes: MailboxFactory) -> None:
    sender, receiver = mailboxes("X26ABC2"), mailboxes("X26ABC1")
    body = adt("MESH0002", padding=300_000)  # > 4 chunks of 64 KiB on the sandbox, gzip on the wire
    message_id = sender.send("X26ABC1", body, workflow_id="TIE_HL7V2")
    downloaded = receiver.download(message_id)
    assert downloaded.body == body and downloaded.workflow_id == "TIE_HL7V2"


class CrashOnAck:
    """The host dies between download and acknowledgement (not a TieError: nothing handles it)."""

    def __init__(self, inner: MeshMailbox) -> None:
        self.inner = inner
        self.mailbox = inner.mailbox

    def inbox(self, limit: int = 500) -> list[str]:
        return self.inner.inbox(limit)

    def download(self, message_id: str) -> MeshMessage:
        return self.inner.download(message_id)

    def acknowledge(self, message_id: str) -> None:
        raise SystemExit("killed")


def test_killed_between_download_and_ack_is_ingested_exactly_once(
    container: Any, mailboxes: MailboxFactory
) -> None:
    sender, receiver = mailboxes("X26ABC2"), mailboxes("X26ABC1")
    sender.send("X26ABC1", adt("MESH0003"), workflow_id="TIE_HL7V2")
    with pytest.raises(SystemExit):
        inbound(container).poll(CrashOnAck(receiver))  # type: ignore[arg-type]
    assert len(receiver.inbox()) == 1  # not acknowledged: still there
    report = inbound(container).poll(receiver)  # the restarted host
    assert (report.acknowledged, report.ingested) == (1, 0)  # acknowledged from the durable record
    assert receiver.inbox() == [] and ingest_count(container) == 1


class FailingDownload(CrashOnAck):
    def download(self, message_id: str) -> MeshMessage:
        raise MeshUnavailable("connection reset mid-chunk")

    def acknowledge(self, message_id: str) -> None:
        self.inner.acknowledge(message_id)


def test_interrupted_download_is_not_acknowledged_and_is_fetched_next_poll(
    container: Any, mailboxes: MailboxFactory
) -> None:
    sender, receiver = mailboxes("X26ABC2"), mailboxes("X26ABC1")
    sender.send("X26ABC1", adt("MESH0004"), workflow_id="TIE_HL7V2")
    first = inbound(container).poll(FailingDownload(receiver))  # type: ignore[arg-type]
    assert (first.failed, first.acknowledged) == (1, 0) and len(receiver.inbox()) == 1
    second = inbound(container).poll(receiver)
    assert (second.ingested, second.acknowledged) == (1, 1) and ingest_count(container) == 1


# (body, workflow, quarantine reason)
QUARANTINE = [
    (adt("MESH0005"), "SOME_UNKNOWN_WORKFLOW", "unknown-workflow"),
    (b"this is not HL7 at all", "TIE_HL7V2", "refused:AR"),
]


@pytest.mark.parametrize(("body", "workflow", "reason"), QUARANTINE)
def test_unknown_workflow_and_malformed_payload_are_quarantined_then_acknowledged(
    container: Any, mailboxes: MailboxFactory, body: bytes, workflow: str, reason: str
) -> None:
    sender, receiver = mailboxes("X26ABC2"), mailboxes("X26ABC1")
    message_id = sender.send("X26ABC1", body, workflow_id=workflow)
    service = inbound(container)
    report = service.poll(receiver)
    assert (report.quarantined, report.acknowledged) == (1, 1)
    (entry,) = service.entries("X26ABC1")
    assert entry["reason"] == reason and entry["state"] == ACKNOWLEDGED
    assert ingest_count(container) == 0
    stages = {e.stage: e.attributes for e in Journal(container.records).trace(message_id)}
    assert stages[QUARANTINED]["reason"] == reason
    (event,) = container.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT)
    document = json.loads(event.body)
    assert document["type"] == "uk.nhs.tie.platform.mesh.quarantined"
    assert document["data"]["reason"] == reason and document["subject"] == message_id


def test_outbound_is_sent_once_per_event_and_tracked_to_acknowledgement(
    container: Any, mailboxes: MailboxFactory
) -> None:
    sender, receiver = mailboxes("X26ABC1"), mailboxes("X26ABC2")
    outbound = MeshOutbound(container.records)
    first = outbound.send(sender, "X26ABC2", adt("RES1"), local_id="event-key-1", workflow_id="TIE_HL7V2")
    again = outbound.send(sender, "X26ABC2", adt("RES1"), local_id="event-key-1", workflow_id="TIE_HL7V2")
    assert (again.message_id, again.duplicate, first.duplicate) == (first.message_id, True, False)
    assert receiver.inbox() == [first.message_id]
    outbound.refresh(sender)
    (pending,) = outbound.outstanding("X26ABC1")
    assert pending["message_id"] == first.message_id and pending["tracking"] == "accepted"
    receiver.acknowledge(first.message_id)
    assert outbound.refresh(sender) == 1
    assert outbound.outstanding("X26ABC1") == []


class Counting:
    """A mailbox that counts handshakes and has an empty inbox."""

    def __init__(self, name: str) -> None:
        self.mailbox = name
        self.handshakes = 0

    def handshake(self) -> None:
        self.handshakes += 1

    def inbox(self, limit: int = 500) -> list[str]:
        return []

    def close(self) -> None:
        return None


def test_handshake_once_a_day_per_mailbox(container: Any) -> None:
    from shared.mesh import service

    box = Counting("X26HS01")
    now = [0.0]

    def poll() -> None:
        service.poll_mailboxes(
            ("X26HS01",),
            lambda _: box,  # type: ignore[arg-type,return-value]
            bus=container.bus,
            records=container.records,
            blobs=container.blobs,
            clock=lambda: now[0],
        )

    poll()
    poll()
    assert box.handshakes == 1
    now[0] += service.HANDSHAKE_EVERY_SECONDS
    poll()
    assert box.handshakes == 2
