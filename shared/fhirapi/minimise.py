"""Data minimisation: ``_elements`` (asked for by the client) and a per-client policy point (default off).

Two sources restrict which top-level elements of a returned resource are sent:

* the client's own ``_elements`` search/read parameter (FHIR R4 search.html#elements), applied to the
  resources a search matched and to a read;
* an :class:`ElementsPolicy` chosen when the API is built (:class:`~shared.fhirapi.service.FhirApi`'s
  ``elements_policy``): for a client (the value of :data:`CLIENT_HEADER`, which API Management sets from
  the caller's token - ``azp``/``appid`` - and a caller cannot forge through the gateway) and a resource
  type it answers the allowed elements, or ``None`` for no restriction. It applies to every resource the
  API returns to that client (reads, searches including ``_include``d resources, history, write
  representations and transaction/batch responses). The default, :class:`NoPolicy`, restricts nothing.
  Example: a reporting app that may see Patient demographics but not addresses or telecoms::

      FhirApi(..., elements_policy=StaticElementsPolicy(
          {"reporting-app": {"Patient": {"identifier", "name", "birthDate", "gender"}}}))

Both together: the intersection. ``resourceType``, ``id`` and ``meta`` are always kept (FHIR mandatory
elements for a server's resources), and a resource that lost anything is tagged ``SUBSETTED``
(http://terminology.hl7.org/CodeSystem/v3-ObservationValue) so nobody mistakes it for the whole record.
Only top-level elements are selected (``name``, or ``Patient.name``); deeper paths are not supported.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

CLIENT_HEADER = "X-TIE-Client-Id"
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
ALWAYS_KEPT = frozenset({"resourceType", "id", "meta"})


class ElementsPolicy(Protocol):
    """Per-client element allow-list (the data-minimisation policy point)."""

    def elements(self, client: str | None, resource_type: str) -> frozenset[str] | None:
        """Top-level elements ``client`` may receive for ``resource_type``; ``None``: everything."""
        ...


class NoPolicy:
    """The default: no restriction."""

    def elements(self, client: str | None, resource_type: str) -> frozenset[str] | None:
        return None


class StaticElementsPolicy:
    """A fixed table ``{client: {resource type: elements}}``. Clients or types not listed are not
    restricted unless ``default`` is given (then an unknown client gets ``default`` for every type)."""

    def __init__(
        self,
        table: Mapping[str, Mapping[str, Iterable[str]]],
        *,
        default: Iterable[str] | None = None,
    ) -> None:
        self._table = {
            client: {rtype: frozenset(names) for rtype, names in types.items()}
            for client, types in table.items()
        }
        self._default = frozenset(default) if default is not None else None

    def elements(self, client: str | None, resource_type: str) -> frozenset[str] | None:
        types = self._table.get(client or "")
        if types is None:
            return self._default
        return types.get(resource_type)


def parse_elements(values: Iterable[str], resource_type: str) -> frozenset[str] | None:
    """``_elements`` values (comma-separated, possibly repeated) -> element names; ``None`` if absent."""
    names: set[str] = set()
    seen = False
    for value in values:
        for item in value.split(","):
            name = item.strip()
            if not name:
                continue
            seen = True
            if "." in name:
                prefix, _, rest = name.partition(".")
                if prefix != resource_type or "." in rest:
                    continue  # another type's element or a nested path: not selectable here
                name = rest
            names.add(name)
    return frozenset(names) if seen else None


def combine(*allowed: frozenset[str] | None) -> frozenset[str] | None:
    """Intersection of the restrictions given (``None`` = unrestricted)."""
    result: frozenset[str] | None = None
    for item in allowed:
        if item is None:
            continue
        result = item if result is None else result & item
    return result


def subset(resource: dict[str, Any], allowed: frozenset[str] | None) -> dict[str, Any]:
    """``resource`` limited to ``allowed`` top-level elements (plus the mandatory ones), tagged
    SUBSETTED when anything was removed. Returns ``resource`` itself when nothing changes."""
    if allowed is None:
        return resource
    keep = allowed | ALWAYS_KEPT
    if all(key in keep for key in resource):
        return resource
    out = {key: value for key, value in resource.items() if key in keep}
    current = out.get("meta")
    meta: dict[str, Any] = copy.deepcopy(current) if isinstance(current, dict) else {}
    tags = list(meta.get("tag") or [])
    if not any(isinstance(t, dict) and t.get("code") == "SUBSETTED" for t in tags):
        tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    out["meta"] = meta
    # Keep the canonical order: resourceType, id, meta first.
    ordered: dict[str, Any] = {key: out[key] for key in ("resourceType", "id", "meta") if key in out}
    ordered.update((key, value) for key, value in out.items() if key not in ordered)
    return ordered
