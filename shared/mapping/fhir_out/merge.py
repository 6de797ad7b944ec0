"""HL7 v2 updates of stored resources: what to write instead of a whole-record PUT.

An HL7 v2 message changes only what it carries: an empty field is "no change", the null ``""`` is
"delete" (the canonical ``cleared``), and a value the mapper defaulted because the sender did not say it
is not a change (the canonical ``defaulted``). The resources :func:`~shared.mapping.fhir_out.to_entries`
builds from one message are therefore *partial*; :func:`merge_update` turns one into the resource to write
over the stored one. The tables below are the rules (data); ``docs/update-semantics.md`` says why.

Only :data:`MERGED_TYPES` (the records ADT maintains) are merged. A result (Observation,
DiagnosticReport), order or other clinical statement is the sender's whole statement and is replaced.
Events from FHIR are not merged: a FHIR update is a full replacement by FHIR's own semantics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from shared.canonical.model import ClinicalEvent, EventKind
from shared.fhir import profiles
from shared.terminology import systems

__all__ = ["CLEARED_ELEMENTS", "KIND_CLEARS", "KIND_UNDOES_MOVE", "MERGED_TYPES", "merge_update", "retire"]

JSON = dict[str, Any]
#: A step of an element path: an element name, or ``(list element, item path, value)`` = the items of
#: that list whose dotted ``item path`` (flattened over lists) holds ``value``.
Step = str | tuple[str, str, str]
ElementPath = tuple[Step, ...]

#: Resource types an HL7 v2 update is merged into (read, merge, write with If-Match).
MERGED_TYPES: Final = frozenset({"Patient", "Encounter"})

_CONFIDENTIALITY: Final[ElementPath] = ("meta", ("security", "system", profiles.CONFIDENTIALITY_SYSTEM))


def _participant(role: str) -> tuple[ElementPath, ...]:
    return ((("participant", "type.coding.code", role),),)


#: Canonical field -> the element(s) fhir_out writes it to, per resource type. A cleared field's
#: elements are removed from the stored resource; a defaulted field's are kept as stored.
CLEARED_ELEMENTS: Final[Mapping[str, Mapping[str, tuple[ElementPath, ...]]]] = {
    "Patient": {
        "patient.names": (("name",),),
        "patient.birth_date": (("birthDate",), ("_birthDate",)),
        "patient.gender": (("gender",), ("_gender",)),
        "patient.deceased": (("deceasedBoolean",), ("deceasedDateTime",)),
        "patient.addresses": (("address",),),
        "patient.telecom": (("telecom",),),
        "patient.marital_status": (("maritalStatus",),),
        "patient.ethnicity": ((("extension", "url", profiles.EXT_ETHNIC_CATEGORY),),),
        "patient.nhs_number.verification_status": (
            (
                ("identifier", "system", profiles.NHS_NUMBER_SYSTEM),
                ("extension", "url", profiles.EXT_NHS_NUMBER_VERIFICATION),
            ),
        ),
        "patient.general_practitioner": (("generalPractitioner",),),
        "patient.registered_gp": (("generalPractitioner",),),
        "patient.sensitivity": (_CONFIDENTIALITY,),
    },
    "Encounter": {
        "encounter.status": (("status",),),
        "encounter.priority": (("priority",),),
        "encounter.admission_method": (
            ("hospitalization", ("extension", "url", systems.EXT_ADMISSION_METHOD)),
        ),
        "encounter.service_type": (("serviceType",),),
        "encounter.admit_source": (("hospitalization", "admitSource"),),
        "encounter.discharge_disposition": (("hospitalization", "dischargeDisposition"),),
        "encounter.attending": _participant("ATND"),
        "encounter.referring": _participant("REF"),
        "encounter.admitting": _participant("ADM"),
        "encounter.period.end": (("period", "end"),),
        "patient.sensitivity": (_CONFIDENTIALITY,),
    },
}

#: Triggers whose FHIR form removes stored content (fhir_out: A13 cancels the discharge - the stay is
#: open again, so its end and discharge disposition go).
KIND_CLEARS: Final[Mapping[EventKind, tuple[str, ...]]] = {
    EventKind.CANCEL_DISCHARGE: ("encounter.period.end", "encounter.discharge_disposition"),
}

#: Triggers that undo a move (A12 cancels the transfer): the location the cancelled transfer made current
#: (stored ``active``, not the place the message names as current) is removed, not ``completed`` - the
#: patient never moved there, and R4's Encounter.location.status (planned | active | reserved |
#: completed, a required binding) has no entered-in-error. The message's current place is active again.
KIND_UNDOES_MOVE: Final = frozenset({EventKind.CANCEL_TRANSFER})

#: Elements whose members are merged one level down (the message may carry some of them).
_NESTED: Final[Mapping[str, frozenset[str]]] = {
    "Patient": frozenset(),
    "Encounter": frozenset({"period", "hospitalization"}),
}
#: Choice elements (``deceasedBoolean`` / ``deceasedDateTime``): one value, whichever type.
_CHOICES: Final[Mapping[str, tuple[str, ...]]] = {"Patient": ("deceased", "multipleBirth"), "Encounter": ()}
_VOLATILE_META: Final = ("versionId", "lastUpdated")


# ---------------------------------------------------------------------------------------- entry points
def merge_update(event: ClinicalEvent, stored: JSON, new: JSON) -> JSON:
    """The resource to write for ``new`` (built from ``event``, an HL7 v2 message) over ``stored``.

    1. the stored resource, without the elements the message deleted (``cleared``, the trigger's
       :data:`KIND_CLEARS`, and the confidentiality label when the sensitivity was stated);
    2. overlaid by what ``new`` carries, element by element: identifiers by system (the same identifier
       merged, so its verification status survives a message that does not repeat it), extensions by
       url, links by the record they name, participants by role, locations by place (history kept; an
       A12 first removes the location of the transfer it cancels, :data:`KIND_UNDOES_MOVE`),
       ``period`` / ``hospitalization`` member by member, ``meta`` profiles, tags and labels merged;
       anything else replaced;
    3. the elements of ``defaulted`` fields as stored (an ADT without PD1 does not lift a restriction;
       an A08 without PV1-45 does not reopen a discharged stay).
    """
    rtype = str(new["resourceType"])
    if rtype not in MERGED_TYPES:
        raise ValueError(f"{rtype} updates are whole replacements")
    table = CLEARED_ELEMENTS[rtype]
    cleared, defaulted = _directives(event)
    result = _without_volatile(copy.deepcopy(stored))
    for name in sorted(cleared):
        for path in table.get(name, ()):
            _remove(result, path)
    if rtype == "Encounter" and event.kind in KIND_UNDOES_MOVE:
        _drop_cancelled_location(result, new)
    _overlay(rtype, result, new)
    for name in sorted(defaulted):
        for path in table.get(name, ()):
            _restore(result, stored, path)
    if rtype == "Encounter" and "encounter.status" in defaulted and result.get("status") in _CLOSED:
        _keep_closed_locations(result, stored)
    pruned: JSON = _pruned(result)
    return pruned


def retire(stored: JSON, survivor: JSON) -> JSON:
    """The merged-away Patient ``stored`` retired: ``active`` false and ``link`` ``replaced-by`` the
    surviving record (``survivor``: a Reference); everything else as stored."""
    result = _without_volatile(copy.deepcopy(stored))
    result["active"] = False
    result["link"] = _links(result.get("link", []), [{"other": survivor, "type": "replaced-by"}])
    pruned: JSON = _pruned(result)
    return pruned


def _directives(event: ClinicalEvent) -> tuple[set[str], set[str]]:
    cleared = {f"patient.{n}" for n in event.patient.cleared}
    defaulted = {f"patient.{n}" for n in event.patient.defaulted}
    if event.encounter is not None:
        cleared |= {f"encounter.{n}" for n in event.encounter.cleared}
        defaulted |= {f"encounter.{n}" for n in event.encounter.defaulted}
    cleared |= set(KIND_CLEARS.get(event.kind, ()))
    if "patient.sensitivity" not in defaulted:
        # A stated sensitivity replaces the stored label - also by its absence on a clinical resource
        # (fhir_out labels only a restricted patient's).
        cleared.add("patient.sensitivity")
    return cleared, defaulted


# ------------------------------------------------------------------------------------------ overlaying
def _group(rtype: str, key: str) -> str:
    """Keys that hold one element: ``gender`` / ``_gender``, ``deceasedBoolean`` / ``deceasedDateTime``."""
    name = key.lstrip("_")
    return next((c for c in _CHOICES[rtype] if name.startswith(c)), name)


def _overlay(rtype: str, result: JSON, new: JSON) -> None:
    lists = _LISTS[rtype]
    nested = _NESTED[rtype]
    carried = {_group(rtype, k) for k in new if k not in ("resourceType", "id", "meta")}
    for key in [k for k in result if k not in new and _group(rtype, k) in carried]:
        del result[key]  # the other type of a choice, the other half of a primitive with extensions
    for key, value in new.items():
        if key in ("resourceType", "id"):
            continue
        if key == "meta":
            result["meta"] = _meta(result.get("meta") or {}, value)
        elif key in lists:
            result[key] = lists[key](result.get(key) or [], value)
        elif key in nested and isinstance(value, dict):
            merged = dict(result.get(key) or {})
            merged.update(copy.deepcopy(value))
            result[key] = merged
        else:
            result[key] = copy.deepcopy(value)


def _grouped(
    stored: list[Any],
    new: list[Any],
    key: Callable[[Any], object],
    combine: Callable[[list[Any], list[Any]], list[Any]] | None = None,
) -> list[Any]:
    """``new`` items replace the stored items of the same key (in the first one's place); stored items of
    other keys stay; new keys are appended."""
    by_key: dict[object, list[Any]] = {}
    for item in new:
        by_key.setdefault(key(item), []).append(copy.deepcopy(item))
    out: list[Any] = []
    placed: set[object] = set()
    for item in stored:
        k = key(item)
        if k not in by_key:
            out.append(item)
        elif k not in placed:
            placed.add(k)
            same = [s for s in stored if key(s) == k]
            out.extend(combine(same, by_key[k]) if combine else by_key[k])
    for k, items in by_key.items():
        if k not in placed:
            out.extend(items)
    return out


def _element(stored: Any, new: Any) -> Any:
    """One element merged: members of ``new`` over ``stored``; extensions by url, objects recursively."""
    if not isinstance(stored, dict) or not isinstance(new, dict):
        return copy.deepcopy(new)
    out = dict(stored)
    for k, v in new.items():
        if k == "extension" and isinstance(v, list):
            out[k] = _by_url(out.get(k) or [], v)
        elif isinstance(v, dict):
            out[k] = _element(out.get(k), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _same_value(stored: list[Any], new: list[Any]) -> list[Any]:
    """Identifiers of one system: the same value is one identifier (merged), another value replaces."""
    out = []
    for item in new:
        match = next((s for s in stored if s.get("value") == item.get("value")), None)
        out.append(_element(match, item) if match is not None else item)
    return out


def _identifiers(stored: list[Any], new: list[Any]) -> list[Any]:
    return _grouped(stored, new, lambda i: i.get("system"), _same_value)


def _by_url(stored: list[Any], new: list[Any]) -> list[Any]:
    return _grouped(stored, new, lambda e: e.get("url"))


def _link_key(link: Any) -> object:
    other = link.get("other") or {}
    ident = other.get("identifier")
    if isinstance(ident, dict):
        return ("identifier", ident.get("system"), ident.get("value"))
    return ("reference", other.get("reference"))


def _links(stored: list[Any], new: list[Any]) -> list[Any]:
    return _grouped(stored, new, _link_key, lambda old, items: [_element(old[0], i) for i in items])


def _participants(stored: list[Any], new: list[Any]) -> list[Any]:
    return _grouped(stored, new, lambda p: tuple(sorted(map(str, _values(p, "type.coding.code")))))


def _location_key(entry: Any) -> object:
    loc = entry.get("location") or {}
    return loc.get("reference") or repr(sorted((k, repr(v)) for k, v in loc.items()))


#: Encounter statuses in which no location is current.
_CLOSED: Final = frozenset({"finished", "cancelled", "entered-in-error"})


def _keep_closed_locations(result: JSON, stored: JSON) -> None:
    """A message that does not state the encounter's status (an A08 without PV1-45 after the A03) leaves a
    closed stay closed: a location it names as current keeps the status stored for that place (else
    ``completed``), so no ward of a finished stay is made active again."""
    before = {_location_key(e): e.get("status") for e in stored.get("location") or []}
    for entry in result.get("location") or []:
        if entry.get("status") == "active":
            entry["status"] = before.get(_location_key(entry)) or "completed"


def _drop_cancelled_location(result: JSON, new: JSON) -> None:
    """:data:`KIND_UNDOES_MOVE`: the stored current (``active``) locations other than the places ``new``
    names go; the rest of the history stays."""
    restored = {_location_key(e) for e in new.get("location") or []}
    stored = result.get("location") or []
    result["location"] = [e for e in stored if e.get("status") != "active" or _location_key(e) in restored]


def _locations(stored: list[Any], new: list[Any]) -> list[Any]:
    """The message's locations first (current, then prior: fhir_in reads them in that order), then the
    stored history it does not name. A new current (``active``) location completes the stored one."""
    keys = {_location_key(e) for e in new}
    moved = any(e.get("status") == "active" for e in new)
    out = [copy.deepcopy(e) for e in new]
    for entry in stored:
        if _location_key(entry) in keys:
            continue
        if moved and entry.get("status") == "active":
            entry = dict(entry, status="completed")
        out.append(entry)
    return out


_LISTS: Final[Mapping[str, Mapping[str, Callable[[list[Any], list[Any]], list[Any]]]]] = {
    "Patient": {"identifier": _identifiers, "extension": _by_url, "link": _links},
    "Encounter": {
        "identifier": _identifiers,
        "extension": _by_url,
        "participant": _participants,
        "location": _locations,
    },
}


def _meta(stored: JSON, new: JSON) -> JSON:
    out = {k: copy.deepcopy(v) for k, v in stored.items() if k not in _VOLATILE_META}
    for k, v in new.items():
        if k in _VOLATILE_META:
            continue
        if k == "profile":
            out[k] = [*v, *(p for p in out.get(k, []) if p not in v)]
        elif k == "security":
            out[k] = _grouped(out.get(k, []), v, lambda c: c.get("system"))
        elif k == "tag":
            out[k] = [*out.get(k, []), *(t for t in v if t not in out.get(k, []))]
        else:
            out[k] = copy.deepcopy(v)
    return out


# ------------------------------------------------------------------------------------- element paths
def _values(node: Any, path: str) -> list[Any]:
    """The values at a dotted path, flattened over lists."""
    nodes = [node]
    for name in path.split("."):
        found: list[Any] = []
        for n in nodes:
            v = n.get(name) if isinstance(n, dict) else None
            if isinstance(v, list):
                found.extend(v)
            elif v is not None:
                found.append(v)
        nodes = found
    return nodes


def _matches(item: Any, step: tuple[str, str, str]) -> bool:
    return step[2] in _values(item, step[1])


def _parents(node: JSON, steps: Iterable[Step]) -> list[JSON]:
    nodes: list[Any] = [node]
    for step in steps:
        found: list[Any] = []
        for n in nodes:
            if not isinstance(n, dict):
                continue
            if isinstance(step, str):
                if isinstance(n.get(step), dict):
                    found.append(n[step])
            else:
                found.extend(i for i in n.get(step[0]) or [] if isinstance(i, dict) and _matches(i, step))
        nodes = found
    return nodes


def _remove(resource: JSON, path: ElementPath) -> None:
    *head, last = path
    for parent in _parents(resource, head):
        if isinstance(last, str):
            parent.pop(last, None)
        elif isinstance(parent.get(last[0]), list):
            parent[last[0]] = [i for i in parent[last[0]] if not _matches(i, last)]


def _restore(result: JSON, stored: JSON, path: ElementPath) -> None:
    """The element at ``path`` (element names, then at most one selector) as stored."""
    _remove(result, path)
    *head, last = path
    src: Any = stored
    dst = result
    for step in head:
        if not isinstance(step, str):
            raise ValueError("a kept element path selects at its last step only")
        src = src.get(step) if isinstance(src, dict) else None
        if not isinstance(src, dict):
            return
        dst = dst.setdefault(step, {})
    if isinstance(last, str):
        if last in src:
            dst[last] = copy.deepcopy(src[last])
    else:
        kept = [copy.deepcopy(i) for i in src.get(last[0]) or [] if isinstance(i, dict) and _matches(i, last)]
        if kept:
            dst[last[0]] = [*(dst.get(last[0]) or []), *kept]


def _without_volatile(resource: JSON) -> JSON:
    meta = resource.get("meta")
    if isinstance(meta, dict):
        for k in _VOLATILE_META:
            meta.pop(k, None)
    return resource


def _pruned(node: Any) -> Any:
    """FHIR has no empty objects or arrays: drop the ones a removal left."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            v = _pruned(v)
            if v != {} and v != []:
                out[k] = v
        return out
    if isinstance(node, list):
        return [p for p in (_pruned(v) for v in node) if p != {} and p != []]
    return node
