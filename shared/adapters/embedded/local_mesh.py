"""The embedded MESH default: mailboxes as folders, for ``make run`` without a MESH account.

Layout under ``root``: ``<mailbox>/in/<id>.dat`` (body) and ``<id>.json`` (headers) for each message in
the inbox; ``acknowledge`` moves both to ``<mailbox>/acked/``; ``send`` writes into the recipient's
``in/`` (body first, headers last, each by atomic rename, so a half-written message is never listed) and
records ``<sender>/sent/<id>.json`` for tracking. Drop a file into ``<mailbox>/in/`` by hand (or with
``tie mesh put``) and the inbound timer picks it up; a file without headers gets workflow ``UNKNOWN``.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.mesh.errors import MeshMessageGone, MeshRejected
from shared.mesh.ports import MeshMessage
from shared.storage.private_files import private_directory

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _new_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")[:17] + "_" + secrets.token_hex(3).upper()


def _check_id(message_id: str) -> str:
    if not message_id or not set(message_id.upper()) <= _ID_CHARS or len(message_id) > 64:
        raise MeshRejected("not a MESH message id")
    return message_id


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # message bodies: owner only
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class LocalFilesMailbox:
    def __init__(self, root: Path, mailbox: str) -> None:
        self.mailbox = mailbox
        self._root = root
        self._box = root / mailbox
        for sub in ("in", "acked", "sent"):
            private_directory(self._box / sub)

    def handshake(self) -> None:
        return None

    def inbox(self, limit: int = 500) -> list[str]:
        folder = self._box / "in"
        ids = sorted(p.stem for p in folder.iterdir() if p.suffix == ".dat" and not p.name.startswith("."))
        return [i for i in ids if set(i.upper()) <= _ID_CHARS][:limit]

    def _headers(self, folder: Path, message_id: str) -> dict[str, Any]:
        meta = folder / f"{message_id}.json"
        if not meta.exists():
            return {}
        data: dict[str, Any] = json.loads(meta.read_text("utf-8"))
        return data

    def download(self, message_id: str) -> MeshMessage:
        folder = self._box / "in"
        body_path = folder / f"{_check_id(message_id)}.dat"
        try:
            body = body_path.read_bytes()
        except FileNotFoundError:
            raise MeshMessageGone(f"MESH message {message_id} is gone") from None
        h = self._headers(folder, message_id)
        return MeshMessage(
            message_id=message_id,
            body=body,
            workflow_id=h.get("workflow_id") or "UNKNOWN",
            subject=h.get("subject"),
            local_id=h.get("local_id"),
            sender=h.get("sender"),
            content_type=h.get("content_type"),
            filename=h.get("filename"),
        )

    def acknowledge(self, message_id: str) -> None:
        src = self._box / "in"
        body = src / f"{_check_id(message_id)}.dat"
        if not body.exists():
            raise MeshMessageGone(f"MESH message {message_id} is gone")
        meta = src / f"{message_id}.json"
        if meta.exists():
            os.replace(meta, self._box / "acked" / meta.name)
        os.replace(body, self._box / "acked" / body.name)

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
        if not recipient or "/" in recipient or "\\" in recipient or recipient.startswith("."):
            raise MeshRejected("not a MESH mailbox id")
        message_id = _new_id()
        inbox = self._root / recipient / "in"
        private_directory(inbox)
        headers = {
            "workflow_id": workflow_id,
            "subject": subject,
            "local_id": local_id,
            "sender": self.mailbox,
            "recipient": recipient,
            "content_type": content_type,
            "filename": filename,
        }
        _write_atomic(inbox / f"{message_id}.dat", body)
        _write_atomic(inbox / f"{message_id}.json", json.dumps(headers).encode())
        sent = {"recipient": recipient, "workflow_id": workflow_id, "local_id": local_id}
        _write_atomic(self._box / "sent" / f"{message_id}.json", json.dumps(sent).encode())
        return message_id

    def track(self, message_id: str) -> str:
        sent = self._box / "sent" / f"{_check_id(message_id)}.json"
        if not sent.exists():
            raise MeshMessageGone(f"MESH message {message_id} was not sent from this mailbox")
        recipient = json.loads(sent.read_text("utf-8"))["recipient"]
        if (self._root / recipient / "acked" / f"{message_id}.dat").exists():
            return "acknowledged"
        return "accepted"

    def close(self) -> None:
        return None
