"""``tie audit show --body`` (the bodies behind the digests, audited before anything is printed),
``tie audit expire`` and the payload retention setting."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest

from shared.audit.payloads import OUTBOUND, REPLY, InvalidRetention, Retention
from shared.config.settings import Settings
from shared.storage.errors import StorageUnavailable
from shared.wiring import get_container
from tie.cli import main

RAW = b"MSH|^~\\&|PAS|RBZ|||20260701||ADT^A01|1|P|2.4\rPID|1||BODY-MARKER\r"
CANONICAL = b'{"type":"uk.nhs.tie.clinical.admission"}'
SENT = b"MSH|^~\\&|TIE|RBZ|||20260701||ADT^A08|2|P|2.4\r"
ACK = b"MSH|^~\\&|LAB|RBZ|||20260701||ACK|3|P|2.4\rMSA|AA|2\r"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _seed() -> None:
    trail = get_container().audit
    trail.transformed(
        correlation_id="m-1",
        channel="hl7v2",
        message_id="msg-1",
        received=RAW,
        produced=CANONICAL,
        patient="patient-abc",
        event_key="admission-1",
    )
    trail.keep(OUTBOUND, SENT)  # as the write-back subscriber does when the downstream answers
    trail.keep(REPLY, ACK)
    trail.written_back(
        correlation_id="m-1",
        subscription="writeback-hl7v2",
        downstream="hl7v2",
        event_key="admission-1",
        patient="patient-abc",
        event_digest="e" * 64,
        payload_digest=sha(SENT),
        reply_digest=sha(ACK),
        status="AA",
        attempts=1,
    )
    trail.written_back(  # a send whose bodies were never kept (e.g. expired)
        correlation_id="m-1",
        subscription="writeback-fhir",
        downstream="fhir",
        event_key="admission-1",
        patient="patient-abc",
        event_digest="e" * 64,
        payload_digest="f" * 64,
        status="201",
        attempts=1,
    )


def test_show_body_prints_each_body_behind_its_digest_and_is_audited(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed()
    assert main(["audit", "show", "m-1", "--body", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["bodies"] == [
        {"class": "received", "digest": sha(RAW), "downstream": "", "body": RAW.decode()},
        {"class": "canonical", "digest": sha(CANONICAL), "downstream": "", "body": CANONICAL.decode()},
        {"class": "outbound", "digest": sha(SENT), "downstream": "hl7v2", "body": SENT.decode()},
        {"class": "reply", "digest": sha(ACK), "downstream": "hl7v2", "body": ACK.decode()},
        {"class": "outbound", "digest": "f" * 64, "downstream": "fhir", "body": None},
    ]
    last = json.loads(list(get_container().audit.log.entries())[-1].body)
    assert (last["interaction"], last["correlation_id"], last["patients"]) == (
        "audit-show-body",
        "m-1",
        ["patient-abc"],
    )
    assert main(["audit", "show", "m-1", "--body"]) == 0
    text = capsys.readouterr().out
    assert f"--- reply to hl7v2 sha256={sha(ACK)[:16]}\nMSH|" in text
    assert "PID|1||BODY-MARKER\n" in text  # segments one per line
    assert "--- outbound to fhir sha256=ffffffffffffffff\n(not kept: expired or never stored)" in text


def test_show_without_body_prints_no_body(capsys: pytest.CaptureFixture[str]) -> None:
    _seed()
    assert main(["audit", "show", "m-1", "--json"]) == 0
    out = capsys.readouterr().out
    assert "BODY-MARKER" not in out and "bodies" not in json.loads(out)
    last = json.loads(list(get_container().audit.log.entries())[-1].body)
    assert last["interaction"] == "audit-show"


def test_show_body_prints_nothing_when_its_own_audit_record_cannot_be_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed()
    trail = get_container().audit

    def refuse(**_kwargs: object) -> None:
        raise StorageUnavailable("audit log unavailable")

    monkeypatch.setattr(trail, "record", refuse)
    with pytest.raises(StorageUnavailable):
        main(["audit", "show", "m-1", "--body"])
    assert "BODY-MARKER" not in capsys.readouterr().out


def test_expire_deletes_what_is_past_retention_and_is_audited(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed()
    assert main(["audit", "expire", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"canonical": 0, "outbound": 0, "received": 0, "reply": 0}
    # A day's retention, seen from three days later: everything goes.
    payloads = get_container().audit.payloads
    assert payloads is not None
    payloads.retention = Retention.parse("received=1,canonical=1,outbound=1,reply=1")
    later = get_container().audit.now()
    monkeypatch.setattr(payloads, "_clock", lambda: later + timedelta(days=3))
    assert main(["audit", "expire", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"canonical": 1, "outbound": 1, "received": 1, "reply": 1}
    last = json.loads(list(get_container().audit.log.entries())[-1].body)
    assert (last["interaction"], last["action"], last["detail"]) == (
        "payload-expire",
        "D",
        {"canonical": 1, "outbound": 1, "received": 1, "reply": 1},
    )


@pytest.mark.parametrize(
    ("text", "days"),
    [
        (
            "received=90,canonical=90,outbound=90,reply=90",
            {"received": 90, "canonical": 90, "outbound": 90, "reply": 90},
        ),
        (" received = 7 , reply=0 ", {"received": 7, "reply": 0}),
        ("", {}),
    ],
)
def test_retention_setting_parses(text: str, days: dict[str, int]) -> None:
    assert dict(Retention.parse(text).days) == days


@pytest.mark.parametrize(
    "text",
    ["received", "received=x", "received=-1", "bodies=3", "received=1,received=2", "received=1;reply=2"],
)
def test_retention_setting_refuses(text: str) -> None:
    with pytest.raises(InvalidRetention):
        Retention.parse(text)
    with pytest.raises(ValueError, match="TIE_AUDIT_PAYLOAD_RETENTION_DAYS"):
        Settings(TIE_AUDIT_PAYLOAD_RETENTION_DAYS=text)  # type: ignore[call-arg]
