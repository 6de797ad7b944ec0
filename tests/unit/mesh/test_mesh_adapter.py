"""mesh-client outcomes mapped onto transient / permanent (against mesh-sandbox), credentials from settings,
and the ingestor's non-HL7 channels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.embedded.local_mesh import LocalFilesMailbox
from shared.config.settings import get_settings, reset_settings
from shared.errors import ConfigurationError
from shared.mesh.client_adapter import MeshClientMailbox, SettingsCredentials
from shared.mesh.errors import MeshMessageGone, MeshRejected, MeshUnavailable
from shared.mesh.inbound import MeshInbound
from shared.mesh.pipeline import PipelineIngestor
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tests.unit.mesh.conftest import SandboxCredentials

UNKNOWN_ID = "20260101000000000_ABCDEF"

# (what is done, the error it must raise)
FAULTS: list[tuple[str, Callable[[MeshClientMailbox], Any], type[Exception]]] = [
    ("acknowledge an unknown message", lambda box: box.acknowledge(UNKNOWN_ID), MeshMessageGone),
    ("download an unknown message", lambda box: box.download(UNKNOWN_ID), MeshMessageGone),
    (
        "send to an unknown mailbox",
        lambda box: box.send("NOSUCHBOX", b"x", workflow_id="TIE_HL7V2"),
        MeshRejected,
    ),
]


@pytest.mark.parametrize(("what", "action", "error"), FAULTS, ids=[f[0] for f in FAULTS])
def test_sandbox_refusals_are_permanent(
    sandbox_url: str, what: str, action: Callable[[MeshClientMailbox], Any], error: type[Exception]
) -> None:
    box = MeshClientMailbox(sandbox_url, "X26ABC1", SandboxCredentials())
    try:
        with pytest.raises(error):
            action(box)
    finally:
        box.close()


def test_unreachable_mesh_is_transient() -> None:
    from tests.helpers import free_port

    box = MeshClientMailbox(f"http://127.0.0.1:{free_port()}", "X26ABC1", SandboxCredentials(), timeout=2)
    try:
        with pytest.raises(MeshUnavailable):
            box.inbox()
    finally:
        box.close()


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"TIE_MESH_BACKEND": "sandbox"}, ("password", b"TestKey", None)),
        ({"TIE_MESH_BACKEND": "mesh"}, ConfigurationError),
        (
            {
                "TIE_MESH_BACKEND": "mesh",
                "TIE_MESH_MAILBOX_SECRET": "s3",
                "TIE_MESH_SHARED_KEY": "k3",
                "TIE_MESH_CLIENT_CERT": "/c.pem",
                "TIE_MESH_CLIENT_KEY": "/k.pem",
            },
            ("s3", b"k3", ("/c.pem", "/k.pem")),
        ),
    ],
)
def test_settings_credentials(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], outcome: Any) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    source = SettingsCredentials(get_settings())
    if outcome is ConfigurationError:
        with pytest.raises(ConfigurationError):
            source.for_mailbox("X26ABC1")
        return
    creds = source.for_mailbox("X26ABC1")
    assert (creds.secret, creds.shared_key, creds.cert) == outcome
    assert "s3" not in repr(creds) and "k3" not in repr(creds)


def test_raw_channel_is_published_and_an_unregistered_channel_quarantined(
    container: Any, tmp_path: Any
) -> None:
    sender, receiver = LocalFilesMailbox(tmp_path, "X26ABC2"), LocalFilesMailbox(tmp_path, "X26ABC1")
    routes = {"TIE_RAW": "raw", "FHIR_WF": "fhir-bundle"}
    inbound = MeshInbound(
        container.records, container.blobs, PipelineIngestor(container.bus, container.records), routes=routes
    )
    sender.send("X26ABC1", b"anything", workflow_id="TIE_RAW")
    sender.send("X26ABC1", b"{}", workflow_id="FHIR_WF")
    report = inbound.poll(receiver)
    assert (report.ingested, report.quarantined, report.acknowledged) == (1, 1, 2)
    assert len(container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)) == 1
    reasons = sorted(str(e.get("reason")) for e in inbound.entries("X26ABC1"))
    assert reasons == ["None", "refused:unknown-channel"]
