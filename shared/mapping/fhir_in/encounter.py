"""FHIR R4 Encounter -> canonical :class:`~shared.canonical.model.Encounter`.

Rules
-----
* ``identifier`` -> ``identifiers`` verbatim (system, value, v2-0203 type). The visit number — the identifier
  typed ``VN``, else the first — is what clinical-event identity uses, so a FHIR writer must send the same
  system the HL7 feed's visit number maps to (see :mod:`shared.mapping.hl7v2_in`).
* ``status`` must be one of the canonical :class:`~shared.canonical.model.EncounterStatus` codes (FHIR's
  ``triaged``/``unknown`` have no canonical meaning and are rejected, not defaulted).
* ``class`` (a Coding) -> ``encounter_class`` (a Concept with that coding).
* ``class`` with the data-absent-reason extension -> DataAbsent (its code kept as ``source``).
* ``location``: the entry whose status is ``active`` (else the last one without status ``planned``) ->
  ``location``; the most recent ``completed`` one -> ``prior_location``. A referenced Location resource
  (contained, or supplied in ``context``) is read by the engine's own identifier convention
  (``urn:tie:location[:<site>]|<point of care>/<room>/<bed>``, or an ODS site code), else along its
  ``partOf`` chain by ``physicalType`` (bd bed, ro room, wa ward = point of care, si/bu site = facility);
  an unresolved reference keeps its display as ``description``.
* ``participant`` typed ATND / REF / ADM (v3-ParticipationType) -> attending / referring / admitting.
* ``serviceType``, ``priority``, ``hospitalization.admitSource`` / ``dischargeDisposition`` -> Concepts;
  ``serviceProvider`` -> Organization; ``partOf`` (a logical identifier) -> ``spell_identifier``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from shared.canonical.model import (
    ClinicalDateTime,
    Coded,
    Encounter,
    EncounterStatus,
    Location,
    Organization,
    Practitioner,
)
from shared.mapping.errors import MissingRequiredField
from shared.mapping.fhir_in import _read as r
from shared.mapping.fhir_in.patient import _check_type
from shared.mapping.lineage import LineageRecorder, Mapped
from shared.terminology import systems

__all__ = ["EncounterLocations", "encounter_from_fhir", "encounter_locations"]

#: Statuses a FHIR Encounter write may carry: ``unknown`` is refused (an encounter event must say what
#: state it is in; the canonical UNKNOWN only names the encounter of an HL7 result/order message).
_STATUSES = frozenset(s.value for s in EncounterStatus if s is not EncounterStatus.UNKNOWN)
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
#: Identifier system of the engine's own Location entries (written by ``shared.mapping.fhir_out``).
TIE_LOCATION = "urn:tie:location"
#: Location.physicalType code -> the canonical Location slot it fills (structure, not a code translation).
_SLOT = {"bd": "bed", "ro": "room", "wa": "point_of_care", "si": "facility", "bu": "facility"}
_ROLES = {"ATND": "attending", "REF": "referring", "ADM": "admitting"}


def encounter_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "encounter",
    full_url: str | None = None,
) -> Mapped[Encounter]:
    """Map a FHIR Encounter resource (JSON object) to the canonical Encounter (see module rules)."""
    rec = LineageRecorder(enabled=lineage)
    with rec.scope(f"{target}.", resource=full_url):
        encounter = map_encounter(resource, rec, r.Resolver(resource, context))
    return Mapped(encounter, rec.freeze())


@dataclass(frozen=True, slots=True)
class EncounterLocations:
    """Indexes into ``Encounter.location`` of the current and prior locations, and when the current
    one started (a transfer's time)."""

    current: int | None
    prior: int | None
    current_start: ClinicalDateTime | None


def encounter_locations(resource: r.JsonObj) -> EncounterLocations:
    """Which ``Encounter.location`` entries are the current and the prior location.

    Current: an ``active`` entry, else (a closed encounter) a ``completed`` one, else any entry not
    ``planned``; prior: a ``completed`` entry other than the current one. Among candidates the latest
    ``period.start`` wins; without periods the first listed wins (the engine writes the current location
    first, then the prior one).
    """
    entries = [
        r.obj(e, f"Encounter.location[{i}]") for i, e in enumerate(r.arr(resource, "location", "Encounter"))
    ]
    starts: list[ClinicalDateTime | None] = []
    for i, entry in enumerate(entries):
        p = r.opt_obj(entry, "period", f"Encounter.location[{i}]")
        starts.append(r.opt_date_time(p, "start", f"Encounter.location[{i}].period") if p else None)

    def pick(candidates: list[int]) -> int | None:
        if not candidates:
            return None
        timed = [i for i in candidates if starts[i] is not None]
        if timed:
            return max(timed, key=lambda i: starts[i].value)  # type: ignore[union-attr]
        return candidates[0]

    statuses = [e.get("status") for e in entries]
    everything = range(len(entries))
    current = (
        pick([i for i in everything if statuses[i] == "active"])
        if "active" in statuses
        else pick([i for i in everything if statuses[i] == "completed"])
        if "completed" in statuses
        else pick([i for i in everything if statuses[i] != "planned"])
    )
    prior = pick([i for i in everything if statuses[i] == "completed" and i != current])
    return EncounterLocations(current, prior, starts[current] if current is not None else None)


def map_encounter(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> Encounter:
    _check_type(resource, "Encounter")
    src = "Encounter"
    idents = r.identifiers(resource, "identifier", src, "identifiers", rec)
    status = r.req_code_in(resource, "status", src, _STATUSES)
    rec.add("Encounter.status", "status", "copy", table="encounter-status")
    class_node = resource.get("class")
    if class_node is None:
        raise MissingRequiredField("Encounter.class")
    encounter_class = _encounter_class(class_node, rec)
    enc_period = (
        r.period(resource["period"], "Encounter.period", "period", rec) if resource.get("period") else None
    )

    locs = encounter_locations(resource)
    entries = r.arr(resource, "location", src)
    location = (
        _location(entries[locs.current], f"Encounter.location[{locs.current}]", "location", rec, resolver)
        if locs.current is not None
        else None
    )
    prior = (
        _location(entries[locs.prior], f"Encounter.location[{locs.prior}]", "prior_location", rec, resolver)
        if locs.prior is not None
        else None
    )

    roles: dict[str, list[Practitioner]] = {"attending": [], "referring": [], "admitting": []}
    for i, node in enumerate(r.arr(resource, "participant", src)):
        path = f"Encounter.participant[{i}]"
        participant = r.obj(node, path)
        role = _participant_role(participant, path)
        individual = participant.get("individual")
        if role is None or individual is None:
            continue
        found = r.party(individual, f"{path}.individual", f"{role}[{len(roles[role])}]", rec, resolver)
        if isinstance(found, Practitioner):
            roles[role].append(found)

    service_type = r.opt_concept(resource, "serviceType", src, "service_type", rec)
    priority = r.opt_concept(resource, "priority", src, "priority", rec)
    hosp = r.opt_obj(resource, "hospitalization", src)
    admit_source = discharge = admission_method = None
    if hosp is not None:
        for i, node in enumerate(r.arr(hosp, "extension", f"{src}.hospitalization")):
            path = f"{src}.hospitalization.extension[{i}]"
            ext = r.obj(node, path)
            if ext.get("url") == systems.EXT_ADMISSION_METHOD and admission_method is None:
                admission_method = r.concept(
                    ext.get("valueCodeableConcept"), f"{path}.valueCodeableConcept", "admission_method", rec
                )
        admit_source = r.opt_concept(hosp, "admitSource", f"{src}.hospitalization", "admit_source", rec)
        discharge = r.opt_concept(
            hosp, "dischargeDisposition", f"{src}.hospitalization", "discharge_disposition", rec
        )
    provider = None
    if resource.get("serviceProvider") is not None:
        found_provider = r.party(
            resource["serviceProvider"], "Encounter.serviceProvider", "service_provider", rec, resolver
        )
        provider = found_provider if isinstance(found_provider, Organization) else None
    spell = None
    part_of = r.opt_obj(resource, "partOf", src)
    if part_of is not None and part_of.get("identifier") is not None:
        spell = r.identifier(part_of["identifier"], "Encounter.partOf.identifier", "spell_identifier", rec)

    return Encounter(
        identifiers=idents,
        status=EncounterStatus(status),
        encounter_class=encounter_class,
        period=enc_period,
        location=location,
        prior_location=prior,
        attending=tuple(roles["attending"]),
        referring=tuple(roles["referring"]),
        admitting=tuple(roles["admitting"]),
        service_type=service_type,
        priority=priority,
        admission_method=admission_method,
        admit_source=admit_source,
        discharge_disposition=discharge,
        service_provider=provider,
        spell_identifier=spell,
    )


def _encounter_class(node: object, rec: LineageRecorder) -> Coded:
    """``class`` (a Coding) -> Concept; a class carrying the data-absent-reason extension -> DataAbsent,
    with the source code beside it kept as ``source`` (how fhir_out writes an unmappable PV1-2)."""
    cls = r.obj(node, "Encounter.class")
    absent = r.absent_extension(cls, "Encounter.class")
    if absent is None:
        return r.coding_concept(cls, "Encounter.class", "encounter_class", rec)
    rec.add("Encounter.class.extension", "encounter_class.reason", "data-absent-reason extension")
    if cls.get("code") is not None:
        absent = absent.model_copy(update={"source": r.coding(cls, "Encounter.class")})
        rec.add("Encounter.class.code", "encounter_class.source.code", "copy")
        if cls.get("system") is not None:
            rec.add("Encounter.class.system", "encounter_class.source.system", "copy")
    return absent


def _participant_role(participant: r.JsonObj, path: str) -> str | None:
    for i, node in enumerate(r.arr(participant, "type", path)):
        cc = r.obj(node, f"{path}.type[{i}]")
        for j, item in enumerate(r.arr(cc, "coding", f"{path}.type[{i}]")):
            c = r.coding(item, f"{path}.type[{i}].coding[{j}]")
            if c.system == systems.V3_PARTICIPATION_TYPE and c.code in _ROLES:
                return _ROLES[c.code]
    return None


def _location(
    node: object, src: str, tgt: str, rec: LineageRecorder, resolver: r.Resolver
) -> Location | None:
    entry = r.obj(node, src)
    ref_node = entry.get("location")
    if ref_node is None:
        raise MissingRequiredField(f"{src}.location")
    ref_path = f"{src}.location"
    ref = r.obj(ref_node, ref_path)
    slots: dict[str, str] = {}
    resolved = resolver.resolve(r.opt_str(ref, "reference", ref_path))
    path = f"{ref_path}.resolve()"
    description: str | None = None
    if resolved is not None:
        tie = _tie_location(resolved, path, tgt, rec)
        if tie is not None:
            slots, description = tie
            resolved = None
    seen = 0
    while resolved is not None and seen < 6:  # a partOf chain: bed -> room -> ward -> site
        seen += 1
        slot = _physical_slot(resolved, path)
        value = _location_value(resolved, path, rec, f"{tgt}.{slot}" if slot else None)
        if slot is not None and value is not None and slot not in slots:
            slots[slot] = value
        parent = r.opt_obj(resolved, "partOf", path)
        if parent is None:
            break
        path = f"{path}.partOf.resolve()"
        resolved = resolver.resolve(r.opt_str(parent, "reference", path))
    display = description
    if display is None:
        display = r.opt_str(ref, "display", ref_path)
        if display is not None:
            rec.add(f"{ref_path}.display", f"{tgt}.description", "copy")
    if not slots and display is None:
        return None
    return Location(
        point_of_care=slots.get("point_of_care"),
        room=slots.get("room"),
        bed=slots.get("bed"),
        facility=slots.get("facility"),
        description=display,
    )


def _tie_location(
    location: r.JsonObj, path: str, tgt: str, rec: LineageRecorder
) -> tuple[dict[str, str], str | None] | None:
    """The engine's own Location convention (see ``shared.mapping.fhir_out``): identifier
    ``urn:tie:location[:<site>]`` | ``<point of care>/<room>/<bed>``, or a bare site by ODS site code;
    ``name`` is the description unless it only repeats the identifier value. ``None`` for other Locations."""
    for i, node in enumerate(r.arr(location, "identifier", path)):
        ipath = f"{path}.identifier[{i}]"
        ident = r.obj(node, ipath)
        system = ident.get("system")
        if not isinstance(system, str):
            continue
        slots: dict[str, str] = {}
        value = r.req_str(ident, "value", ipath)
        if system == TIE_LOCATION or system.startswith(TIE_LOCATION + ":"):
            for slot, part in zip(("point_of_care", "room", "bed"), value.split("/"), strict=False):
                if part:
                    slots[slot] = part
                    rec.add(f"{ipath}.value", f"{tgt}.{slot}", "location identifier part")
            if system != TIE_LOCATION:
                slots["facility"] = unquote(system[len(TIE_LOCATION) + 1 :])
                rec.add(f"{ipath}.system", f"{tgt}.facility", "site in the location identifier system")
        elif system == systems.ODS_SITE_CODE:
            slots["facility"] = value
            rec.add(f"{ipath}.value", f"{tgt}.facility", "ODS site code")
        else:
            continue
        name = r.opt_str(location, "name", path)
        if name is not None and name == value:
            name = None  # the name only repeats the identifier
        if name is not None:
            rec.add(f"{path}.name", f"{tgt}.description", "copy")
        return slots, name
    return None


def _physical_slot(location: r.JsonObj, path: str) -> str | None:
    physical = r.opt_obj(location, "physicalType", path)
    if physical is None:
        return None
    for i, item in enumerate(r.arr(physical, "coding", f"{path}.physicalType")):
        c = r.coding(item, f"{path}.physicalType.coding[{i}]")
        if c.system == LOCATION_PHYSICAL_TYPE and c.code in _SLOT:
            return _SLOT[c.code]
    return None


def _location_value(location: r.JsonObj, path: str, rec: LineageRecorder, tgt: str | None) -> str | None:
    for i, node in enumerate(r.arr(location, "identifier", path)):
        value = r.opt_str(r.obj(node, f"{path}.identifier[{i}]"), "value", f"{path}.identifier[{i}]")
        if value is not None:
            if tgt is not None:
                rec.add(f"{path}.identifier[{i}].value", tgt, "location-part")
            return value
    name = r.opt_str(location, "name", path)
    if name is not None and tgt is not None:
        rec.add(f"{path}.name", tgt, "location-part")
    return name
