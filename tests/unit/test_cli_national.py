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
