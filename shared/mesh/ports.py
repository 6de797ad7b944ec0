"""The MESH port: one mailbox's inbox, outbox and tracking."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class MeshMessage:
    """A downloaded message (chunks joined, transfer compression undone). ``repr`` omits the body."""

    message_id: str
    body: bytes = field(repr=False)
    workflow_id: str | None = None
    subject: str | None = field(default=None, repr=False)
    local_id: str | None = None
    sender: str | None = None
    content_type: str | None = None
    filename: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class MailboxCredentials:
    """What a mailbox needs to authenticate. ``repr`` shows none of it."""

    secret: str = field(repr=False)
    shared_key: bytes = field(repr=False)
    #: (client certificate PEM, private key PEM) paths for mutual TLS; ``None`` on loopback sandboxes.
    cert: tuple[str, str] | None = field(default=None, repr=False)
    #: CA bundle path, or ``None`` for the library's default for the endpoint.
    verify: str | None = None


class MeshCredentialSource(Protocol):
    """Credential lookup per mailbox (the downstream credential registry implements this when it exists)."""

    def for_mailbox(self, mailbox: str) -> MailboxCredentials: ...


class MeshMailbox(Protocol):
    """Raises :mod:`shared.mesh.errors` types."""

    mailbox: str

    def handshake(self) -> None: ...

    def inbox(self, limit: int = 500) -> list[str]:
        """Message ids waiting in the inbox (oldest first, at most ``limit``)."""
        ...

    def download(self, message_id: str) -> MeshMessage:
        """The whole message (every chunk). Does not acknowledge it."""
        ...

    def acknowledge(self, message_id: str) -> None: ...

    def send(
        self,
        recipient: str,
        body: bytes,
        *,
        workflow_id: str,
        subject: str | None = None,
        local_id: str | None = None,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> str:
        """Send (chunked when large); returns the MESH message id."""
        ...

    def track(self, message_id: str) -> str:
        """Delivery status of a sent message as MESH reports it (``accepted``, ``acknowledged`` ...)."""
        ...

    def close(self) -> None: ...
