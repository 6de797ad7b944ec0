"""MESH mailboxes for the tests: the embedded folder mailbox and NHS mesh-sandbox on loopback.

The sandbox is started once per module by the test itself (127.0.0.1, AUTH_MODE=none, STORE_MODE=memory)
and stopped afterwards. Missing mesh-sandbox: skipped locally, a failure under CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.mesh.ports import MailboxCredentials, MeshMailbox

MailboxFactory = Callable[[str], MeshMailbox]


class SandboxCredentials:
    def for_mailbox(self, mailbox: str) -> MailboxCredentials:
        return MailboxCredentials("password", b"TestKey")


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    from tests.helpers import free_port
    from tie.localhost.mesh_sandbox import running, sandbox_installed

    if not sandbox_installed():
        if os.environ.get("CI") == "true":
            pytest.fail("mesh-sandbox is not installed (CI=true: required)", pytrace=False)
        pytest.skip("mesh-sandbox is not installed")
    with running(free_port()) as url:
        yield url


@pytest.fixture(params=["local", "sandbox"])
def mailboxes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MailboxFactory]:
    opened: list[MeshMailbox] = []
    if request.param == "local":
        from shared.adapters.embedded.local_mesh import LocalFilesMailbox

        def factory(name: str) -> MeshMailbox:
            box = LocalFilesMailbox(tmp_path / "mesh", name)
            opened.append(box)
            return box
    else:
        from shared.mesh.client_adapter import MeshClientMailbox

        url = request.getfixturevalue("sandbox_url")

        def factory(name: str) -> MeshMailbox:
            box = MeshClientMailbox(url, name, SandboxCredentials(), chunk_bytes=64 * 1024, compress=True)
            opened.append(box)
            return box

    yield factory
    for box in opened:
        box.close()
    if request.param == "sandbox":
        # The sandbox outlives one test: leave every inbox empty for the next.
        from shared.mesh.client_adapter import MeshClientMailbox

        for name in ("X26ABC1", "X26ABC2", "X26ABC3"):
            box = MeshClientMailbox(url, name, SandboxCredentials())
            for message_id in box.inbox():
                box.acknowledge(message_id)
            box.close()
