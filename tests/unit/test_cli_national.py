"""``tie mesh put|poll|status`` and ``tie review list|resolve`` on the embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.config.settings import reset_settings
from tests.helpers import REPO_ROOT
from tie import cli

ADT = (REPO_ROOT / "samples" / "adt-a01.hl7").read_text()


@pytest.fixture
def mesh_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer local.settings.json
    monkeypatch.setenv("TIE_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("TIE_MESH_MAILBOXES", "X26ABC1")
    monkeypatch.setenv("TIE_MESH_OUTBOUND_MAILBOX", "X26ABC2")
    reset_settings()
    hl7 = tmp_path / "adt.hl7"
    hl7.write_bytes(ADT.replace("\n", "\r").encode())
    return hl7


def test_put_poll_status(mesh_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["mesh", "put", str(mesh_env), "--to", "X26ABC1", "--workflow", "UNLISTED_WF"]) == 0
    assert cli.main(["mesh", "put", str(mesh_env), "--to", "X26ABC1", "--workflow", "TIE_HL7V2"]) == 0
    assert cli.main(["mesh", "poll"]) == 0
    out = capsys.readouterr().out
    assert "X26ABC1: listed=2 ingested=1 quarantined=1 acknowledged=2" in out
    assert cli.main(["mesh", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["X26ABC1"]["inbound_unacknowledged"] == []
    assert "TESTPATIENT" not in json.dumps(status)


def test_review_list_and_resolve_refusals(mesh_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["review", "list"]) == 0
    assert "0 item(s)" in capsys.readouterr().out
    assert cli.main(["review", "resolve", "nosuchitem", "--nhs-number", "9000000000"]) == 2
    assert cli.main(["review", "resolve", "nosuchitem", "--nhs-number", "9000000009"]) == 1


def test_status_lists_unacknowledged_sends_and_review_lists_items(
    mesh_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.hl7v2.parser import parse_message
    from shared.mapping.hl7v2_in import map_message
    from shared.mesh.outbound import MeshOutbound
    from shared.pds.model import TraceOutcome
    from shared.pds.review import ReviewQueue
    from shared.wiring import build_mesh_mailbox, get_container

    container = get_container()
    box = build_mesh_mailbox(container.settings, "X26ABC2")
    sent = MeshOutbound(container.records).send(
        box, "X26ABC3", b"MSH|", local_id="ev-9", workflow_id="TIE_HL7V2"
    )
    assert cli.main(["mesh", "status", "X26ABC2"]) == 0
    out = capsys.readouterr().out
    assert "1 sent not acknowledged" in out and sent.message_id in out

    event = map_message(parse_message(ADT.replace("\n", "\r")), correlation_id="cli-r").value
    outcome = TraceOutcome("no-match", None, ("exact", "fuzzy", "history"), reason="no-match")
    item = ReviewQueue(container.records, container.blobs).hold(event, outcome, subscription="writeback-fhir")
    assert cli.main(["review", "list"]) == 0
    out = capsys.readouterr().out
    assert item in out and "reason=no-match" in out and "1 item(s)" in out
    assert "TESTPATIENT" not in out
    assert cli.main(["review", "resolve", item, "--nhs-number", "9000000009"]) == 0
    assert cli.main(["review", "list", "--resolved"]) == 0
    assert item in capsys.readouterr().out
