"""HL7 v2 write-back over MESH: results rendered as ORU^R01, sent once per event version, tracked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.local_mesh import LocalFilesMailbox
from shared.canonical.model import ClinicalEvent
from shared.config.settings import get_settings, reset_settings
from shared.hl7v2.parser import parse_message
from shared.mapping.hl7v2_in import map_message
from shared.mesh.outbound import MeshOutbound
from shared.mesh.writeback import MeshHl7Downstream
from tests.helpers import REPO_ROOT


def sample(name: str) -> ClinicalEvent:
    raw = (REPO_ROOT / "samples" / name).read_text().replace("\n", "\r")
    return map_message(parse_message(raw), correlation_id="wb-1").value


def downstream(root: Path, container: Any) -> MeshHl7Downstream:
    return MeshHl7Downstream(
        lambda: LocalFilesMailbox(root, "X26ABC1"),
        MeshOutbound(container.records),
        recipient="X26ABC2",
        workflow_id="PATH_MEDRPT_V3",
    )


def test_result_is_sent_once_and_tracked(tmp_path: Path, container: Any) -> None:
    d = downstream(tmp_path, container)
    event = sample("oru-r01.hl7")
    assert d.skip_reason(event) is None
    first = d.apply(event)
    again = d.apply(event)
    assert first.details["mesh_message_id"] == again.details["mesh_message_id"]
    assert again.details["duplicate"] is True
    inbox = LocalFilesMailbox(tmp_path, "X26ABC2")
    (message_id,) = inbox.inbox()
    message = inbox.download(message_id)
    assert message.body.startswith(b"MSH|") and b"ORU^R01" in message.body
    assert message.workflow_id == "PATH_MEDRPT_V3"
    (pending,) = MeshOutbound(container.records).outstanding("X26ABC1")
    assert pending["message_id"] == message_id


def test_admissions_are_not_sent_by_mesh(tmp_path: Path, container: Any) -> None:
    assert (
        downstream(tmp_path, container).skip_reason(sample("adt-a01.hl7"))
        == "kind-not-sent-by-mesh:admission"
    )


MESH_OUT = {"TIE_MESH_OUTBOUND_MAILBOX": "X26ABC1", "TIE_MESH_OUTBOUND_RECIPIENT": "X26ABC2"}


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, "Hl7MllpDownstream"),
        (
            {"TIE_MESH_OUTBOUND_MAILBOX": "X26ABC1", "TIE_MESH_OUTBOUND_RECIPIENT": "X26ABC2"},
            "MeshHl7Downstream",
        ),
        (
            {
                "TIE_MESH_OUTBOUND_MAILBOX": "X26ABC1",
                "TIE_MESH_OUTBOUND_RECIPIENT": "X26ABC2",
                "TIE_WRITEBACK_MLLP_HOST": "127.0.0.1",
            },
            "Hl7MllpDownstream",
        ),
    ],
)
def test_hl7_writeback_transport_follows_the_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kind: str
) -> None:
    from shared.backbone.runtime import default_downstreams
    from shared.messaging.topology import SUB_WRITEBACK_HL7V2
    from shared.wiring import build_container, build_national_downstreams

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    container = build_container(get_settings())
    try:
        built = default_downstreams(container.settings, container.fhir)
        out = build_national_downstreams(container, built)
        assert type(out[SUB_WRITEBACK_HL7V2]).__name__ == kind
        for d in out.values():
            d.close()
    finally:
        container.close()
