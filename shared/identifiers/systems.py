"""Identifier systems of local assigning authorities as configuration (docs/identifier-systems.md).

A Trust's MRN, visit numbers, order numbers and consultant codes have no national identifier system: each
Trust publishes its own (``https://fhir.<trust>.nhs.uk/Id/...``). Which URI belongs to which assigning
authority (and identifier type) is data: ``data/identifier_systems.json`` (packaged: no Trust), or the
file named by the ``TIE_IDENTIFIER_SYSTEMS_FILE`` setting. An authority the file does not name keeps the
default ``urn:tie:authority:<namespace>`` - a URN that says "not registered", never a made-up https URI -
and every such lookup is counted (:func:`unregistered_counts`; no patient data: the namespace only).

Identity: the URI is the identifier's system, so an HL7 visit number and a FHIR Encounter.identifier with
the same configured URI are one identity. :meth:`IdentifierSystems.canonical` maps the default URN of a
configured authority to its URI (a FHIR client still sending ``urn:tie:authority:RX1``) and
:meth:`IdentifierSystems.authority_of` maps a URI back to its namespace (HL7 write-back).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, unquote

from shared.config.json_file import SettingsFile
from shared.errors import ConfigurationError

__all__ = [
    "DEFAULT_PREFIX",
    "PRACTITIONER",
    "IdentifierSystems",
    "InvalidIdentifierSystems",
    "configured",
    "load_file",
    "override",
    "parse",
    "record_unregistered",
    "reset_unregistered",
    "unregistered_counts",
]

#: The documented default for an assigning authority with no configured URI.
DEFAULT_PREFIX = "urn:tie:authority:"
#: The ``systems`` key for practitioner identifiers (XCN: consultant / GP codes).
PRACTITIONER = "practitioner"
ANY = "*"
_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._&-]{0,59}")


class InvalidIdentifierSystems(ConfigurationError):
    """The identifier-systems file breaks the format (a deployment defect: refuse to start)."""

    code = "identifier-systems"


@dataclass(frozen=True)
class IdentifierSystems:
    version: str
    source: str
    #: NAMESPACE (upper case) -> identifier type (upper case; ``*``; ``practitioner``) -> URI.
    by_authority: Mapping[str, Mapping[str, str]]
    #: URI -> the namespace as configured.
    reverse: Mapping[str, str] = field(default_factory=dict)

    def system(self, namespace: str, id_type: str | None) -> str | None:
        """The configured URI for ``namespace`` and identifier type ``id_type`` (else the authority's
        ``*``); ``None`` when the authority is not configured."""
        table = self.by_authority.get(namespace.upper())
        if table is None:
            return None
        if id_type is not None:
            hit = table.get(id_type.upper() if id_type != PRACTITIONER else PRACTITIONER)
            if hit is not None:
                return hit
        return table.get(ANY)

    def authority_of(self, uri: str) -> str | None:
        """The namespace whose configured URI ``uri`` is (HL7 write-back: the HD namespace)."""
        return self.reverse.get(uri)

    def canonical(self, system: str, id_type: str | None) -> str:
        """``urn:tie:authority:<ns>`` of a configured authority -> its URI; any other system as it is."""
        if not system.startswith(DEFAULT_PREFIX):
            return system
        return self.system(unquote(system[len(DEFAULT_PREFIX) :]), id_type) or system


def default_system(namespace: str) -> str:
    return DEFAULT_PREFIX + quote(namespace, safe="-._~")


def _fail(where: str, problem: str) -> InvalidIdentifierSystems:
    return InvalidIdentifierSystems(f"{where}: {problem}")


def parse(doc: Any, where: str) -> IdentifierSystems:
    """Validate a parsed identifier-systems document: semver ``version``; namespaces that look like HD
    namespaces (no two differing only in case); https URIs (never the default URN); one URI per
    authority (so a URI names one issuer and maps back to it)."""
    if not isinstance(doc, dict):
        raise _fail(where, "top level must be an object")
    unknown = sorted(set(doc) - {"version", "description", "authorities"})
    if unknown:
        raise _fail(where, f"unknown member(s) {unknown}")
    version = doc.get("version")
    if not isinstance(version, str) or not _SEMVER.fullmatch(version):
        raise _fail(where, "version must be a semantic version")
    authorities = doc.get("authorities")
    if not isinstance(authorities, dict):
        raise _fail(where, "authorities must be an object")
    by_authority: dict[str, Mapping[str, str]] = {}
    reverse: dict[str, str] = {}
    for namespace, spec in authorities.items():
        at = f"authorities.{str(namespace)[:60]}"
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise _fail(where, f"{at} is not an assigning-authority namespace")
        if namespace.upper() in by_authority:
            raise _fail(where, f"{at} is configured twice")
        if not isinstance(spec, dict) or set(spec) - {"name", "systems", "comment"}:
            raise _fail(where, f"{at} may only have 'name', 'systems' and 'comment'")
        systems = spec.get("systems")
        if not isinstance(systems, dict) or not systems:
            raise _fail(where, f"{at}.systems must be a non-empty object")
        table: dict[str, str] = {}
        for id_type, uri in systems.items():
            if not isinstance(id_type, str) or not id_type.strip():
                raise _fail(where, f"{at}.systems has an empty identifier type")
            if not isinstance(uri, str) or not uri.startswith("https://") or any(c.isspace() for c in uri):
                raise _fail(where, f"{at}.systems.{id_type[:20]} must be an https URI")
            owner = reverse.setdefault(uri, namespace)
            if owner != namespace:
                raise _fail(where, f"{at}.systems.{id_type[:20]} reuses another authority's URI")
            table[id_type if id_type in (ANY, PRACTITIONER) else id_type.upper()] = uri
        by_authority[namespace.upper()] = MappingProxyType(table)
    return IdentifierSystems(version, where, MappingProxyType(by_authority), MappingProxyType(reverse))


_FILE: SettingsFile[IdentifierSystems] = SettingsFile(
    label="identifier-systems",
    package="shared.identifiers.data",
    resource="identifier_systems.json",
    setting=lambda settings: settings.identifier_systems_file,
    parse=parse,
    error=InvalidIdentifierSystems,
)

#: ``configured()``: the deployment's file (setting ``TIE_IDENTIFIER_SYSTEMS_FILE``, read once), else the
#: packaged one; ``override(config)`` (tests, the local host) replaces it (``None``: back to the file).
#: Mappers cache what they derived from it: callers of ``override`` clear those caches (tests use a fixture
#: that does).
load_file = _FILE.load_file
packaged = _FILE.packaged
configured = _FILE.configured
override = _FILE.override


# ------------------------------------------------------------------------------ unregistered authorities
_LOCK = threading.Lock()
_UNREGISTERED: dict[str, int] = {}
_UNREGISTERED_MAX = 1024


def record_unregistered(namespace: str) -> None:
    """Count one identifier given the default URN because its authority is not configured."""
    key = namespace.upper()[:60]
    with _LOCK:
        if key in _UNREGISTERED or len(_UNREGISTERED) < _UNREGISTERED_MAX:
            _UNREGISTERED[key] = _UNREGISTERED.get(key, 0) + 1


def unregistered_counts() -> Mapping[str, int]:
    """Namespaces that got the default URN, with how many lookups did (since start or the last reset)."""
    with _LOCK:
        return dict(_UNREGISTERED)


def reset_unregistered() -> None:
    with _LOCK:
        _UNREGISTERED.clear()
