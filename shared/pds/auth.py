"""Token sources until the downstream credential registry provides the signed-JWT client-credentials flow."""

from __future__ import annotations


class NoToken:
    """No ``Authorization`` header (the local stand-in, the open sandbox)."""

    def token(self) -> str | None:
        return None


class StaticTokenSource:
    """A token handed in by configuration (integration testing only; it expires)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str | None:
        return self._token

    def __repr__(self) -> str:
        return "StaticTokenSource(<redacted>)"
