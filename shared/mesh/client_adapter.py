"""The MESH API through NHS England's ``mesh-client`` (chunking, gzip, auth tokens and mutual TLS are the
library's). This module maps its outcomes onto the engine's transient / permanent split."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from mesh_client import MeshClient, MeshError

from shared.errors import ConfigurationError
from shared.mesh.errors import MeshMessageGone, MeshRejected, MeshUnavailable
from shared.mesh.ports import MailboxCredentials, MeshCredentialSource, MeshMessage

if TYPE_CHECKING:
    from shared.config.settings import Settings

T = TypeVar("T")
#: Chunk size for outbound messages (MESH's limit is 100 MB per chunk; the library's default is 75 MiB).
DEFAULT_CHUNK_BYTES = 20 * 1024 * 1024
#: The public mesh-sandbox's documented test credentials (its AUTH_MODE=none accepts any).
SANDBOX_SECRET = "password"  # noqa: S105 - a public sandbox value, used only for TIE_MESH_BACKEND=sandbox
SANDBOX_SHARED_KEY = b"TestKey"


class SettingsCredentials:
    """Credentials from settings, one set for every mailbox, until the downstream credential registry."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def for_mailbox(self, mailbox: str) -> MailboxCredentials:
        s = self._settings
        secret = s.mesh_mailbox_secret.get_secret_value() if s.mesh_mailbox_secret else ""
        key = s.mesh_shared_key.get_secret_value().encode() if s.mesh_shared_key else b""
        if s.mesh_backend == "sandbox":
            return MailboxCredentials(secret or SANDBOX_SECRET, key or SANDBOX_SHARED_KEY)
        if not secret or not key:
            raise ConfigurationError("MESH needs TIE_MESH_MAILBOX_SECRET and TIE_MESH_SHARED_KEY")
        cert = (s.mesh_client_cert, s.mesh_client_key) if s.mesh_client_cert and s.mesh_client_key else None
        return MailboxCredentials(secret, key, cert, s.mesh_ca_cert)


@contextmanager
def _mapped(message_id: str | None = None) -> Iterator[None]:
    try:
        yield
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (404, 410) and message_id is not None:
            raise MeshMessageGone(f"MESH message {message_id} is gone (HTTP {status})") from None
        if status == 429 or status >= 500:
            raise MeshUnavailable(f"MESH answered HTTP {status}") from None
        raise MeshRejected(f"MESH refused the request (HTTP {status})") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise MeshUnavailable(f"MESH unreachable ({type(exc).__name__})") from None
    except requests.RequestException as exc:  # interrupted chunk stream, decoding errors
        raise MeshUnavailable(f"MESH transfer failed ({type(exc).__name__})") from None
    except MeshError:
        raise MeshRejected("MESH refused the message") from None


class MeshClientMailbox:
    """:class:`shared.mesh.ports.MeshMailbox` over ``mesh_client.MeshClient``."""

    def __init__(
        self,
        url: str,
        mailbox: str,
        credentials: MeshCredentialSource,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        timeout: float = 120.0,
        compress: bool = False,
        client_factory: Callable[..., Any] = MeshClient,
    ) -> None:
        self.mailbox = mailbox
        creds = credentials.for_mailbox(mailbox)
        kwargs: dict[str, Any] = {
            "shared_key": creds.shared_key,
            "max_chunk_size": chunk_bytes,
            "timeout": timeout,
            "max_retries": 2,
            "transparent_compress": compress,
            "application_name": "serverless-tie",
        }
        if creds.cert is not None:
            kwargs["cert"] = creds.cert
        if creds.verify is not None:
            kwargs["verify"] = creds.verify
        self._client = client_factory(url, mailbox, creds.secret, **kwargs)

    def handshake(self) -> None:
        with _mapped():
            self._client.handshake()

    def inbox(self, limit: int = 500) -> list[str]:
        with _mapped():
            ids: list[str] = list(self._client.list_messages(max_results=max(10, limit)))
        return ids[:limit]

    def download(self, message_id: str) -> MeshMessage:
        with _mapped(message_id):
            message = self._client.retrieve_message(message_id)
            try:
                body = message.read()
            finally:
                message.close()
        return MeshMessage(
            message_id=message_id,
            body=body,
            workflow_id=message.workflow_id,
            subject=message.subject,
            local_id=message.local_id,
            sender=message.sender,
            content_type=message.content_type,
            filename=message.filename,
        )

    def acknowledge(self, message_id: str) -> None:
        with _mapped(message_id):
            self._client.acknowledge_message(message_id)

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
        headers = {
            k: v
            for k, v in {
                "subject": subject,
                "local_id": local_id,
                "content_type": content_type,
                "filename": filename,
            }.items()
            if v
        }
        with _mapped():
            message_id: str = self._client.send_message(recipient, body, workflow_id=workflow_id, **headers)
        return message_id

    def track(self, message_id: str) -> str:
        with _mapped(message_id):
            tracking = self._client.track_message(message_id)
        return str(tracking.get("status") or "unknown").lower()

    def close(self) -> None:
        self._client.close()
