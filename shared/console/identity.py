"""Who is using the console, and what they may do.

Roles (Entra ID app roles, validated by API Management, which forwards them to the app):

* ``TIE.Console.Read`` - dashboard, message search by correlation id / control id, journeys, dead-letter
  lists, health;
* ``TIE.Console.Operate`` - replay and purge dead letters;
* ``TIE.Console.ViewContent`` - message content and patient-identifying search (not offered yet: see
  ``docs/console.md``).

Where the identity comes from:

* behind the gateway (``TIE_REQUIRE_APIM_HEADER=true``, checked before the console runs): the headers
  ``X-TIE-Console-User`` and ``X-TIE-Console-Roles`` that the gateway policy sets from the validated token
  (and strips from the client's request); a request that passed the gateway check is the only one whose
  headers are believed;
* on the local host (``tie run``): a local-only operator with Read and Operate, and a banner saying so -
  only for requests addressed to a loopback name (``Host`` 127.0.0.1, ::1 or localhost), so a host
  started with ``--host 0.0.0.0`` does not hand the console to its network, and a DNS-rebound name gets
  nothing;
* anywhere else: nobody (every page 403) - the console never trusts a caller's own claim.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

READ: Final = "TIE.Console.Read"
OPERATE: Final = "TIE.Console.Operate"
VIEW_CONTENT: Final = "TIE.Console.ViewContent"
ROLES: Final = (READ, OPERATE, VIEW_CONTENT)

USER_HEADER: Final = "X-TIE-Console-User"
ROLES_HEADER: Final = "X-TIE-Console-Roles"

#: The local operator's roles: everything but content (nothing on the console shows content yet).
LOCAL_ROLES: Final = frozenset({READ, OPERATE})


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    roles: frozenset[str]
    #: True for the local-only operator of ``tie run`` (the page shows a banner).
    local: bool = False
    #: True when a trusted party (the gateway, or the local machine's user) established the identity.
    verified: bool = True

    def may(self, role: str) -> bool:
        return role in self.roles


NOBODY: Final = Operator("anonymous", frozenset(), verified=False)


def _roles(value: str | None) -> frozenset[str]:
    return frozenset(r.strip() for r in (value or "").replace(";", ",").split(",") if r.strip() in ROLES)


def resolve_operator(
    header: Callable[[str], str | None],
    *,
    behind_gateway: bool,
    local_host: bool,
    local_user: str = "operator",
) -> Operator:
    """The operator of one request. ``behind_gateway``: the gateway check is on and passed."""
    if behind_gateway:
        user = (header(USER_HEADER) or "").strip()
        roles = _roles(header(ROLES_HEADER))
        if not user or not roles:
            return NOBODY
        return Operator(user[:128], roles)
    if local_host and _loopback(header("Host")):
        return Operator(f"local:{local_user}", LOCAL_ROLES, local=True)
    return NOBODY


_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _loopback(host: str | None) -> bool:
    name = (host or "").strip().lower()
    if name.startswith("["):
        name = name.split("]", 1)[0] + "]"
    else:
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    return name in _LOOPBACK


def describe_roles(roles: Iterable[str]) -> str:
    short = [r.rsplit(".", 1)[-1] for r in ROLES if r in set(roles)]
    return ", ".join(short) or "none"
