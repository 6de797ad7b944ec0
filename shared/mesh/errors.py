"""MESH failures, split transient vs permanent. Texts carry mailbox ids, message ids and status codes."""

from __future__ import annotations

from shared.errors import PermanentError, TransientError


class MeshUnavailable(TransientError):
    """MESH could not be reached or answered 429/5xx; the next poll or retry may succeed."""

    code = "mesh-unavailable"


class MeshRejected(PermanentError):
    """MESH refused the request (4xx other than 429): wrong mailbox, unknown message, bad headers."""

    code = "mesh-rejected"


class MeshMessageGone(MeshRejected):
    """The message is no longer in the inbox (already acknowledged or expired: 404 / 410)."""

    code = "mesh-message-gone"
