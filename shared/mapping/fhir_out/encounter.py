"""Encounter (ADT events), and the Location entries it refers to."""

from __future__ import annotations

from urllib.parse import quote

from shared.canonical.model import (
    Coded,
    DataAbsent,
    Encounter,
    EncounterStatus,
    EventKind,
    Location,
)
from shared.fhir import profiles
from shared.fhir.ids import resource_id, urn
from shared.mapping.fhir_out._build import (
    JSON,
    RULE_ABSENT,
    RULE_REF,
    Lin,
    absent_extension,
    codeable,
    fixed_coding,
    identifier,
    period,
)
from shared.mapping.fhir_out._bundle import (
    Builder,
    cached_object,
    ref_query,
    remember_object,
    remember_reference,
    worth_caching,
)
from shared.mapping.fhir_out._frozen import freeze
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.fhir_out.patient import party_ref
from shared.terminology import systems

_PARTICIPANT_ROLES = (("attending", "ATND"), ("referring", "REF"), ("admitting", "ADM"))
_CANCEL_STATUS = {
    EventKind.CANCEL_ADMISSION: EncounterStatus.CANCELLED,
    EventKind.CANCEL_DISCHARGE: EncounterStatus.IN_PROGRESS,
}
_CLOSED = frozenset({EncounterStatus.FINISHED, EncounterStatus.CANCELLED, EncounterStatus.ENTERED_IN_ERROR})
_LOCATION_SYSTEM = "urn:tie:location"


def encounter(b: Builder) -> None:
    ev = b.event
    enc = ev.encounter
    if enc is None:
        raise FhirOutError("encounter event without an encounter", field="encounter")
    depends = (ev.kind, b.patient_ref.get("reference"), ev.patient.sensitivity)
    if b.sink is None:
        hit = cached_object(enc, depends)
        if hit is not None:
            cached_rid, cached, cached_src = hit
            _encounter_parties(b, enc)  # their entries, as a first build adds them
            b.put("Encounter", cached_rid, cached, None, cached_src)
            return
    visit, vn = b.visit(enc)
    rid = resource_id("Encounter", visit.system, visit.value)
    full_url = urn(rid)
    lin = b.lin("Encounter", full_url)
    res: JSON = {"resourceType": "Encounter", "id": rid, "meta": b.meta("Encounter", lin)}
    if lin is None:
        res["identifier"] = [identifier(i, None, "", "") for i in enc.identifiers]
    else:
        res["identifier"] = [
            identifier(i, lin, f"encounter.identifiers[{n}]", f"identifier[{n}]")
            for n, i in enumerate(enc.identifiers)
        ]
    forced = _CANCEL_STATUS.get(ev.kind)
    status = forced or enc.status
    res["status"] = status.value
    if lin is not None:
        if forced is not None:
            lin.add(
                "kind", "status", f"derived: {ev.kind.value} -> the same Encounter, status {forced.value}"
            )
        else:
            lin.add("encounter.status", "status")
    res["class"] = _encounter_class(b, enc.encounter_class, lin)
    if enc.priority is not None:
        res["priority"] = codeable(enc.priority, lin, "encounter.priority", "priority")
    if enc.service_type is not None:
        res["serviceType"] = codeable(enc.service_type, lin, "encounter.service_type", "serviceType")
    b.add_subject(res, lin)
    participants: list[JSON] = []
    for attr, role in _PARTICIPANT_ROLES:
        for n, pr in enumerate(getattr(enc, attr)):
            k = len(participants)
            src = f"encounter.{attr}[{n}]"
            ref = party_ref(b, pr, src, lin, f"participant[{k}].individual")
            if ref is None:
                continue
            participants.append(
                {
                    "type": [{"coding": [fixed_coding(profiles.PARTICIPATION_TYPE_SYSTEM, role)]}],
                    "individual": ref,
                }
            )
            if lin is not None:
                lin.add(None, f"participant[{k}].type[0].coding[0].system", "constant: v3-ParticipationType")
                lin.add(src, f"participant[{k}].type[0].coding[0].code", f"derived: {attr} -> {role}")
    if participants:
        res["participant"] = participants
    # A13 (cancel discharge): the encounter is open again, so the end of the period is not written.
    keep_end = ev.kind is not EventKind.CANCEL_DISCHARGE
    if enc.period is not None:
        p = period(enc.period, lin, "encounter.period", "period", keep_end=keep_end)
        if p:
            res["period"] = p
    hosp: JSON = {}
    if enc.admission_method is not None:
        hosp["extension"] = [
            {
                "url": systems.EXT_ADMISSION_METHOD,
                "valueCodeableConcept": codeable(
                    enc.admission_method,
                    lin,
                    "encounter.admission_method",
                    "hospitalization.extension[0].valueCodeableConcept",
                ),
            }
        ]
        if lin is not None:
            lin.add(None, "hospitalization.extension[0].url", "constant: UK Core admission method")
    if enc.admit_source is not None:
        hosp["admitSource"] = codeable(
            enc.admit_source, lin, "encounter.admit_source", "hospitalization.admitSource"
        )
    if enc.discharge_disposition is not None and keep_end:
        hosp["dischargeDisposition"] = codeable(
            enc.discharge_disposition,
            lin,
            "encounter.discharge_disposition",
            "hospitalization.dischargeDisposition",
        )
    if hosp:
        res["hospitalization"] = hosp
    locations: list[JSON] = []
    closed = status in _CLOSED
    for attr, loc_status in (
        ("location", "completed" if closed else "active"),
        ("prior_location", "completed"),
    ):
        loc = getattr(enc, attr)
        if loc is None:
            continue
        k = len(locations)
        ref = location_ref(b, loc, f"encounter.{attr}", lin, f"location[{k}].location")
        if ref is None:
            continue
        locations.append({"location": ref, "status": loc_status})
        if lin is not None:
            lin.add(
                f"encounter.{attr}",
                f"location[{k}].status",
                "derived: current/prior location and encounter status",
            )
    if locations:
        res["location"] = locations
    if enc.service_provider is not None:
        ref = party_ref(b, enc.service_provider, "encounter.service_provider", lin, "serviceProvider")
        if ref is not None:
            res["serviceProvider"] = ref
    spell = enc.spell_identifier
    if spell is not None and (spell.system, spell.value) != (visit.system, visit.value):
        res["partOf"] = {
            "type": "Encounter",
            "identifier": {"system": spell.system, "value": spell.value},
        }
        if lin is not None:
            lin.add(None, "partOf.type", "constant: the hospital spell, by identifier")
            lin.add("encounter.spell_identifier.system", "partOf.identifier.system")
            lin.add("encounter.spell_identifier.value", "partOf.identifier.value")
    if lin is None and worth_caching(enc, depends):
        res = freeze(res)
        remember_object(enc, depends, (rid, res, f"encounter.identifiers[{vn}]"))
    b.put("Encounter", rid, res, lin, f"encounter.identifiers[{vn}]")


def _encounter_parties(b: Builder, enc: Encounter) -> None:
    """The entries :meth:`encounter` adds for the practitioners, locations and provider it refers to,
    in the same order (for a resource taken from the cache)."""
    for attr, _role in _PARTICIPANT_ROLES:
        for pr in getattr(enc, attr):
            party_ref(b, pr, "", None, "")
    for loc in (enc.location, enc.prior_location):
        if loc is not None:
            location_ref(b, loc, "", None, "")
    if enc.service_provider is not None:
        party_ref(b, enc.service_provider, "", None, "")


def _encounter_class(b: Builder, c: Coded, lin: Lin | None) -> JSON:
    """Encounter.class (a Coding): the canonical v3-ActCode coding. A data-absent class keeps the
    data-absent-reason extension (and the unmapped source code beside it)."""
    if isinstance(c, DataAbsent):
        out: JSON = {"extension": absent_extension(c.reason.value)}
        if lin is not None:
            lin.add("encounter.encounter_class.reason", "class.extension[0]", RULE_ABSENT)
        if c.source is not None:
            if c.source.system is not None:
                out["system"] = c.source.system
            out["code"] = c.source.code
            if lin is not None:
                for key in ("system", "code"):
                    if key in out:
                        lin.add(f"encounter.encounter_class.source.{key}", f"class.{key}")
        return out
    for n, cd in enumerate(c.codings):
        if cd.system == profiles.ACT_CODE_SYSTEM:
            out = {"system": cd.system, "code": cd.code}
            if cd.display is not None:
                out["display"] = cd.display
            if lin is not None:
                for key in out:
                    lin.add(f"encounter.encounter_class.codings[{n}].{key}", f"class.{key}")
            return out
    raise FhirOutError(
        "encounter class has no v3-ActCode coding (map it in shared.terminology)",
        field="encounter.encounter_class",
    )


def location_ref(b: Builder, loc: Location, src: str, lin: Lin | None, dst: str) -> JSON | None:
    """Reference to a Location entry keyed on site + point of care/room/bed (conditional create).

    A place within a site is ``urn:tie:location[:<site>]`` | ``<point of care>/<room>/<bed>``, part of
    the site (ODS site code, by identifier); a bare site is identified by its ODS site code.
    """
    parts = (loc.point_of_care, loc.room, loc.bed)
    if any(parts):
        system = f"{_LOCATION_SYSTEM}:{quote(loc.facility, safe='')}" if loc.facility else _LOCATION_SYSTEM
        value = "/".join(p or "" for p in parts).rstrip("/")
    elif loc.facility:
        system, value = profiles.ODS_SITE_SYSTEM, loc.facility
    elif loc.description:
        if lin is not None:
            lin.add(f"{src}.description", f"{dst}.display")
        return {"display": loc.description}
    else:
        return None
    full_url, seen = b.ref_url("Location", system, value)
    if lin is not None:
        lin.add(src, f"{dst}.reference", RULE_REF)
    if seen or b.cached_reference("Location", loc, full_url, src):
        return {"reference": full_url}
    llin = b.lin("Location", full_url)
    res: JSON = {
        "resourceType": "Location",
        "meta": b.meta("Location", llin, reference_data=True),
        "identifier": [{"system": system, "value": value}],
    }
    if loc.description:
        res["name"] = loc.description
    elif any(parts):
        res["name"] = value
    if any(parts) and loc.facility:
        res["partOf"] = {
            "type": "Location",
            "identifier": {"system": profiles.ODS_SITE_SYSTEM, "value": loc.facility},
        }
    if llin is not None:
        derived = "derived: site + point of care/room/bed"
        for attr in ("point_of_care", "room", "bed"):
            if getattr(loc, attr):
                llin.add(f"{src}.{attr}", "identifier[0].value", derived)
        if any(parts):
            llin.add(None, "identifier[0].system", "constant: location identifier system")
        if loc.facility:
            rule = derived if any(parts) else "copy: the site's ODS site code"
            llin.add(
                f"{src}.facility",
                "identifier[0].value" if not any(parts) else "identifier[0].system",
                rule,
            )
        if not any(parts):
            llin.add(None, "identifier[0].system", "constant: ODS site code system")
        if loc.description:
            llin.add(f"{src}.description", "name")
        elif "name" in res:
            llin.add(src, "name", "derived: point of care/room/bed")
        if "partOf" in res:
            llin.add(None, "partOf.type", "constant")
            llin.add(None, "partOf.identifier.system", "constant: ODS site code system")
            llin.add(f"{src}.facility", "partOf.identifier.value")
    query = ref_query(system, value)
    if llin is None:
        res = remember_reference(("Location", loc), res, query)
    b.create("Location", full_url, res, query, src)
    return {"reference": full_url}
