"""Every transformation and every write-back leaves exactly its audit record: through the real HL7 v2
edge, the ingest processor and both write-back subscribers (FHIR store; HL7 v2 over MLLP to a loopback
receiver), in process. Records are compared field by field - digests of what was received, what the
canonical event was and what was sent to each downstream, the pseudonymous patient token, the outcome."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_audit import SqliteAuditLog
from shared.audit.chain import verify_chain
from shared.audit.payloads import CANONICAL, OUTBOUND, RECEIVED, REPLY, LocalPayloadStore, Retention
from shared.audit.trail import AuditTrail
from shared.backbone.fhir_writeback import FhirDownstream
from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.backbone.runtime import Backbone, WriteBackOptions, build_backbone
from shared.canonical.identity import content_digest
from shared.ingest import ingest
from shared.ingest.hl7v2 import Hl7Ingest
from shared.journal import Journal
from shared.messaging.ports import MessageBus, OutboundMessage
from shared.messaging.topology import (
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_CLINICAL,
    TOPIC_INGEST,
)
from tests.integration.test_backbone_faults import drain, pump_ingest
from tests.integration.test_clinical_safety import a01, oru
from tests.unit.backbone import support as s

pytestmark = pytest.mark.timeout(120)

KEY = b"p" * 32
(NHS,) = s.nhs_numbers(1)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Capturing:
    """The bus as the ingest processor sees it, keeping what it publishes to clinical-events."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.clinical: list[OutboundMessage] = []

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> None:
        if topic == TOPIC_CLINICAL:
            self.clinical.extend(messages)
        self._bus.publish(topic, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


@dataclass
class Rig:
    env: s.Env
    edge: Hl7Ingest
    context: ingest.ProcessorContext
    bus: Capturing
    bb: Backbone
    log: SqliteAuditLog
    sent: list[bytes]
    acks: list[bytes]
    payloads: LocalPayloadStore

    def send(self, raw: bytes, corr: str) -> None:
        assert self.edge.handle(raw, source="mllp", correlation_id=corr).code == "AA"
        pump_ingest(self.env, self.context)
        drain(self.env, self.bb, workers=1)

    def records(self, corr: str) -> list[dict[str, Any]]:
        out = []
        for entry in self.log.search(correlation_id=corr, limit=1000):
            record = json.loads(entry.body)
            del record["id"], record["recorded"]
            out.append(record)
        return out


@contextmanager
def rig(tmp_path: Path, script: s.ReceiverScript | None = None) -> Iterator[Rig]:
    options = WriteBackOptions(
        operational_events=False,
        timeout_seconds=0.5,
        max_attempts=2,
        backoff_base_seconds=0.01,  # type: ignore[call-arg]
    )
    with s.embedded(tmp_path, lock_seconds=5.0, max_delivery=2) as env, s.FakeHl7Receiver(script) as receiver:
        log = SqliteAuditLog(tmp_path / "audit.sqlite3", key=KEY)
        payloads = LocalPayloadStore(
            tmp_path / "payloads", Retention.parse("received=1,canonical=1,outbound=1,reply=1")
        )
        trail = AuditTrail(log, payloads=payloads)
        hl7 = Hl7MllpDownstream(MllpSender("127.0.0.1", receiver.port, connect_timeout=0.5), ack_timeout=2)
        sent: list[bytes] = []
        acks: list[bytes] = []
        assert hl7.sender is not None
        real_send = hl7.sender.send

        def send(payload: bytes, *, timeout: float) -> bytes:
            sent.append(payload)
            acks.append(real_send(payload, timeout=timeout))
            return acks[-1]

        hl7.sender.send = send  # type: ignore[method-assign]
        bb = build_backbone(
            bus=env.bus,
            records=env.records,
            downstreams={SUB_WRITEBACK_FHIR: FhirDownstream(env.fhir), SUB_WRITEBACK_HL7V2: hl7},
            options=options,
            topology=env.topology,
            sleep=lambda _s: None,
            audit=trail,
        )
        bus = Capturing(env.bus)
        context = ingest.ProcessorContext(bus=bus, journal=Journal(env.records), audit=trail)  # type: ignore[arg-type]
        try:
            yield Rig(env, Hl7Ingest(env.bus, env.records), context, bus, bb, log, sent, acks, payloads)
        finally:
            hl7.close()
            bb.close()
            log.close()


def _ingest_message_id(env: s.Env, corr: str) -> str:
    (entry,) = [
        e
        for e in Journal(env.records).trace(corr)
        if e.stage == "published" and e.attributes["topic"] == TOPIC_INGEST
    ]
    return str(entry.attributes["message_id"])


def _expected(r: Rig, raw: bytes, corr: str, hl7_status: str, fhir_status: str) -> list[dict[str, Any]]:
    (clinical,) = r.bus.clinical
    r.bus.clinical.clear()
    key = str(clinical.application_properties["tie_event_key"])
    patient = clinical.session_id
    assert patient and patient.startswith("patient-")
    event_digest = content_digest(json.loads(clinical.body)["data"])
    (payload,) = r.sent
    (ack,) = r.acks
    r.sent.clear()
    r.acks.clear()
    system = {"category": "transform", "correlation_id": corr, "patients": [patient]}

    def writeback(
        sub: str, downstream: str, status: str, output: str | None, error: str | None, reply: str | None
    ) -> dict[str, Any]:
        digests = {"input": event_digest, **({"output": output} if output else {})}
        if reply:
            digests["reply"] = reply
        detail: dict[str, Any] = {"attempts": 1, "downstream": downstream}
        if error:
            detail["error_code"] = error
        return {
            **system,
            "action": "C",
            "interaction": "write-back",
            "outcome": "0" if error is None else "8",
            "status": status,
            "agent": {"type": "system", "id": sub, "verified": True},
            "source": sub,
            "entities": [{"type": "ClinicalEvent", "id": key}],
            "digests": digests,
            "detail": detail,
        }

    fhir = [r for r in r.records(corr) if r.get("source") == SUB_WRITEBACK_FHIR]
    fhir_output = fhir[0]["digests"].get("output", "") if fhir else ""
    assert len(fhir_output) == 64 and fhir_output not in (event_digest, sha(payload))
    fhir_reply = fhir[0]["digests"].get("reply", "") if fhir else ""
    # The four-part answer: each digest names its body in the payload store.
    assert r.payloads.get(RECEIVED, sha(raw)) == raw
    assert r.payloads.get(CANONICAL, sha(clinical.body)) == clinical.body
    fhir_sent = json.loads(r.payloads.get(OUTBOUND, fhir_output) or b"null")
    assert [e["request"]["method"] for e in fhir_sent] and "Patient" in {
        e["resource"]["resourceType"] for e in fhir_sent
    }
    if hl7_status == "AA":
        assert r.payloads.get(OUTBOUND, sha(payload)) == payload
        assert r.payloads.get(REPLY, sha(ack)) == ack
    else:  # refused: what was sent and the refusal are not kept (no response reached the subscriber)
        assert r.payloads.get(OUTBOUND, sha(payload)) is None
    fhir_answer = json.loads(r.payloads.get(REPLY, fhir_reply) or b"null")
    assert fhir_answer["type"] == "transaction-response"
    assert fhir_answer["entry"][0]["response"]["status"].startswith(fhir_status)
    hl7_error = None if hl7_status == "AA" else "downstream-rejected"
    return [
        {
            **system,
            "action": "E",
            "interaction": "transform",
            "outcome": "0",
            "status": "",
            "agent": {"type": "system", "id": "ingest-processor", "verified": True},
            "source": "ingest-processor",
            "entities": [
                {"type": "Message", "id": _ingest_message_id(r.env, corr)},
                {"type": "ClinicalEvent", "id": key},
            ],
            "digests": {"input": sha(raw), "output": sha(clinical.body)},
            "detail": {"channel": "hl7v2"},
        },
        writeback(SUB_WRITEBACK_FHIR, "fhir", fhir_status, fhir_output, None, fhir_reply),
        writeback(
            SUB_WRITEBACK_HL7V2,
            "hl7v2",
            hl7_status,
            None if hl7_error else sha(payload),
            hl7_error,
            None if hl7_error else sha(ack),
        ),
    ]


def _sorted(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {"ingest-processor": 0, SUB_WRITEBACK_FHIR: 1, SUB_WRITEBACK_HL7V2: 2}
    return sorted(records, key=lambda r: order[r["source"]])


def test_admission_and_result_each_leave_a_transform_and_one_record_per_downstream(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        admission = a01("A1", nhs=NHS)
        r.send(admission, "adm-1")
        assert _sorted(r.records("adm-1")) == _expected(r, admission, "adm-1", "AA", "201")
        result = oru("R1", value="12", flag="N", status="F", reported="20260701110000", nhs=NHS)
        r.send(result, "res-1")
        assert _sorted(r.records("res-1")) == _expected(r, result, "res-1", "AA", "201")
        # The same patient in both: one pseudonymous token, never the NHS number.
        tokens = {p for c in ("adm-1", "res-1") for rec in r.records(c) for p in rec["patients"]}
        assert len(tokens) == 1
        raw = b"".join(e.body.encode() for e in r.log.entries())
        assert NHS.encode() not in raw and b"TESTPATIENT" not in raw
        assert verify_chain(r.log.entries(), r.log.checkpoints(), key=KEY).checked == 6


def test_a_rejected_write_back_is_audited_as_a_failure(tmp_path: Path) -> None:
    script = s.ReceiverScript(decide=lambda _cid, _n: "AR")
    with rig(tmp_path, script) as r:
        admission = a01("A2", nhs=NHS)
        r.send(admission, "adm-2")
        records = _sorted(r.records("adm-2"))
        assert records == _expected(r, admission, "adm-2", "AR", "201")
