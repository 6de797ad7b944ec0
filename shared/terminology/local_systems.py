"""Sender-scoped local code systems (docs/conformance.md "Senders' local codes").

A Trust's PAS fills HL7 table fields (PV1-10 hospital service, PV1-14 admit source, PID-22 ethnic group...)
with its own codes: ``110`` (an NHS treatment function), ``Usual``, ``Z2``. They are not codes of the HL7
table, so labelling them ``http://terminology.hl7.org/CodeSystem/v2-0069`` would be a false claim. A code
that no concept map translates and that is not a code of the field's table (``shared.terminology.v2tables``)
goes under the sending facility's local code system for that table:

* configured: the URI the Trust publishes, from the JSON file named by ``TIE_LOCAL_CODE_SYSTEMS_FILE``
  (empty: the packaged ``data/local_code_systems.json``, which configures no facility);
* else the documented default ``urn:tie:codesystem:<facility>:<table>`` (facility percent-encoded) - a URN
  that says "this sender's own code, no published system" - counted by field (:func:`unmapped_counts`; the
  field name only, never a code or patient data).

The facility is MSH-4.1, else MSH-3.1 (as for identifiers: docs/identifier-systems.md).
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
    "InvalidLocalCodeSystems",
    "LocalCodeSystems",
    "configured",
    "default_system",
    "load_file",
    "override",
    "parse",
    "record_unmapped",
    "reset_unmapped",
    "table_of",
    "unmapped_counts",
]

#: The documented default: ``urn:tie:codesystem:<facility>:<table>``.
DEFAULT_PREFIX = "urn:tie:codesystem:"
#: The facility of a message that names neither a sending facility nor a sending application.
NO_SENDER = "unknown-sender"
_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._&-]{0,59}")
_TABLE = re.compile(r"\d{4}")
_DEFAULT = re.compile(r"urn:tie:codesystem:([A-Za-z0-9%._~-]{1,180}):(\d{4})")


class InvalidLocalCodeSystems(ConfigurationError):
    """The local-code-systems file breaks the format (a deployment defect: refuse to start)."""

    code = "local-code-systems"


@dataclass(frozen=True)
class LocalCodeSystems:
    version: str
    source: str
    #: FACILITY (upper case) -> HL7 table number -> URI.
    by_facility: Mapping[str, Mapping[str, str]]
    #: URI -> (facility as configured, table).
    reverse: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def system(self, facility: str, table: str) -> str | None:
        """The configured URI of ``facility``'s own codes in HL7 table ``table`` (None: not configured)."""
        return self.by_facility.get(facility.upper(), {}).get(table)

    def table_of(self, uri: str) -> str | None:
        """The HL7 table whose local codes ``uri`` holds (configured URI or default URN), else ``None``."""
        hit = self.reverse.get(uri)
        if hit is not None:
            return hit[1]
        m = _DEFAULT.fullmatch(uri)
        return m.group(2) if m else None

    def canonical(self, uri: str) -> str:
        """The default URN of a configured facility and table -> its configured URI; anything else as is
        (FHIR in: a client that still sends ``urn:tie:codesystem:RX1:0069``)."""
        m = _DEFAULT.fullmatch(uri)
        if m is None:
            return uri
        return self.system(unquote(m.group(1)), m.group(2)) or uri


def default_system(facility: str, table: str) -> str:
    return f"{DEFAULT_PREFIX}{quote(facility, safe='-._~')}:{table}"


def _fail(where: str, problem: str) -> InvalidLocalCodeSystems:
    return InvalidLocalCodeSystems(f"{where}: {problem}")


def parse(doc: Any, where: str) -> LocalCodeSystems:
    """Validate a parsed local-code-systems document: semver ``version``; facilities that look like HD
    namespaces (no two differing only in case); four-digit HL7 table numbers; https URIs; one URI per
    facility and table (so a URI names one sender's table and maps back to it)."""
    if not isinstance(doc, dict):
        raise _fail(where, "top level must be an object")
    unknown = sorted(set(doc) - {"version", "description", "facilities"})
    if unknown:
        raise _fail(where, f"unknown member(s) {unknown}")
    version = doc.get("version")
    if not isinstance(version, str) or not _SEMVER.fullmatch(version):
        raise _fail(where, "version must be a semantic version")
    facilities = doc.get("facilities")
    if not isinstance(facilities, dict):
        raise _fail(where, "facilities must be an object")
    by_facility: dict[str, Mapping[str, str]] = {}
    reverse: dict[str, tuple[str, str]] = {}
    for facility, spec in facilities.items():
        at = f"facilities.{str(facility)[:60]}"
        if not isinstance(facility, str) or not _NAMESPACE.fullmatch(facility):
            raise _fail(where, f"{at} is not a sending-facility namespace")
        if facility.upper() in by_facility:
            raise _fail(where, f"{at} is configured twice")
        if not isinstance(spec, dict) or set(spec) - {"name", "systems", "comment"}:
            raise _fail(where, f"{at} may only have 'name', 'systems' and 'comment'")
        systems = spec.get("systems")
        if not isinstance(systems, dict) or not systems:
            raise _fail(where, f"{at}.systems must be a non-empty object")
        table_map: dict[str, str] = {}
        for table, uri in systems.items():
            if not isinstance(table, str) or not _TABLE.fullmatch(table):
                raise _fail(where, f"{at}.systems keys must be HL7 table numbers (four digits)")
            if not isinstance(uri, str) or not uri.startswith("https://") or any(c.isspace() for c in uri):
                raise _fail(where, f"{at}.systems.{table} must be an https URI")
            if uri in reverse:
                raise _fail(where, f"{at}.systems.{table} reuses a URI configured elsewhere")
            reverse[uri] = (facility, table)
            table_map[table] = uri
        by_facility[facility.upper()] = MappingProxyType(table_map)
    return LocalCodeSystems(version, where, MappingProxyType(by_facility), MappingProxyType(reverse))


_FILE: SettingsFile[LocalCodeSystems] = SettingsFile(
    label="local-code-systems",
    package="shared.terminology.data",
    resource="local_code_systems.json",
    setting=lambda settings: settings.local_code_systems_file,
    parse=parse,
    error=InvalidLocalCodeSystems,
)

#: ``configured()``: the deployment's file (setting ``TIE_LOCAL_CODE_SYSTEMS_FILE``, read once), else the
#: packaged one; ``override(config)`` (tests, the local host) replaces it (``None``: back to the file).
#: Mappers cache coded values per sender: callers of ``override`` clear those caches
#: (``shared.mapping.hl7v2_in``: ``CodedRule.memo``, keyed on the field text and the sender).
load_file = _FILE.load_file
packaged = _FILE.packaged
configured = _FILE.configured
override = _FILE.override


def table_of(uri: str | None) -> str | None:
    """The HL7 table of a sender-scoped local code system (configured or default), else ``None``."""
    return None if uri is None else configured().table_of(uri)


def local_system(facility: str | None, table: str) -> tuple[str, bool]:
    """(URI of ``facility``'s own codes in ``table``, configured?)."""
    name = facility or NO_SENDER
    uri = configured().system(name, table)
    return (uri, True) if uri is not None else (default_system(name, table), False)


# ------------------------------------------------------------------------------------- unmapped codes
_LOCK = threading.Lock()
_UNMAPPED: dict[str, int] = {}
_UNMAPPED_MAX = 256


def record_unmapped(field_name: str) -> None:
    """Count one code carried under a local code system because no map and no HL7 table knows it."""
    key = field_name[:80]
    with _LOCK:
        if key in _UNMAPPED or len(_UNMAPPED) < _UNMAPPED_MAX:
            _UNMAPPED[key] = _UNMAPPED.get(key, 0) + 1


def unmapped_counts() -> Mapping[str, int]:
    """Fields (``encounter.service_type``...) with how many local codes they carried (since start or the
    last reset)."""
    with _LOCK:
        return dict(_UNMAPPED)


def reset_unmapped() -> None:
    with _LOCK:
        _UNMAPPED.clear()
