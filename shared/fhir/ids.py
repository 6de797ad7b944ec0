"""Deterministic FHIR resource ids: the same business identity always gives the same id.

Scheme
------
Every id is a name-based UUID (RFC 4122 version 5, SHA-1) in one fixed project namespace::

    FHIR_ID_NAMESPACE = ef535bf2-e121-5ab1-9117-0dda00852afb
                      = uuid5(NAMESPACE_URL, "urn:serverless-tie:fhir:resource-id")

The name hashed is ``"<ResourceType>|<identifier system>|<identifier value>"`` for a resource identified
by a business identifier (:func:`resource_id`), e.g. ``"Encounter|urn:tie:authority:RX1|V123"``. A
resource keyed on several parts uses :func:`keyed_id` (``"DiagnosticReport|<filler system>|<filler
number>|<code system>|<code>"``); things without an identifier of their own are named after their
parent's id (:func:`child_id`), e.g. an Observation is
``"Observation|<DiagnosticReport id>|<OBX sequence>|<code system>|<code>"``.

The namespace is part of the contract: changing it (or the name layout) re-keys every resource a FHIR
server holds, so replays would create duplicates. Tests pin it. The ids are opaque: they carry no
patient data (a SHA-1 of the name), but they are stable, so treat them as pseudonymous identifiers.

Ambiguity: ``|`` separates the parts, so in every part except the last, backslashes and ``|`` are
escaped with a backslash; the last part is used as is. Identifier systems are URIs, which cannot contain
a raw ``|`` or backslash, so :func:`resource_id` names are exactly the documented ``type|system|value``.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

__all__ = ["FHIR_ID_NAMESPACE", "NAMESPACE_NAME", "child_id", "keyed_id", "name_uuid", "resource_id", "urn"]

#: The name the namespace UUID was derived from (under ``uuid.NAMESPACE_URL``).
NAMESPACE_NAME: Final = "urn:serverless-tie:fhir:resource-id"
FHIR_ID_NAMESPACE: Final = uuid.UUID("ef535bf2-e121-5ab1-9117-0dda00852afb")

_NS_BYTES = FHIR_ID_NAMESPACE.bytes


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def name_uuid(name: str) -> str:
    """``str(uuid.uuid5(FHIR_ID_NAMESPACE, name))``, computed without building UUID objects (hot path)."""
    h = hashlib.sha1(_NS_BYTES + name.encode("utf-8"), usedforsecurity=False).hexdigest()
    # version nibble -> 5; the two high bits of the variant nibble -> 10 (RFC 4122)
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def _escape(part: str) -> str:
    if "|" in part or "\\" in part:
        return part.replace("\\", "\\\\").replace("|", "\\|")
    return part


def keyed_id(resource_type: str, *parts: str) -> str:
    """Id named ``"<resource_type>|<part>|...|<last part>"`` (non-last parts escaped, see module doc)."""
    if not parts:
        raise ValueError("a resource id needs at least one key part")
    names = [_escape(resource_type), *(_escape(p) for p in parts[:-1]), parts[-1]]
    return name_uuid("|".join(names))


def resource_id(resource_type: str, system: str, value: str) -> str:
    """Id of the ``resource_type`` resource whose business identifier is ``system|value``."""
    if "|" in system or "\\" in system or "|" in resource_type or "\\" in resource_type:
        return keyed_id(resource_type, system, value)
    return name_uuid(f"{resource_type}|{system}|{value}")


def child_id(resource_type: str, parent_id: str, *parts: str) -> str:
    """Id of a ``resource_type`` resource that exists only within a parent (e.g. an Observation within a
    DiagnosticReport): named by the parent's id and the parts that tell the children apart."""
    return keyed_id(resource_type, parent_id, *parts)


def urn(resource_id_: str) -> str:
    """``urn:uuid:<id>`` (a transaction Bundle ``fullUrl``)."""
    return "urn:uuid:" + resource_id_
