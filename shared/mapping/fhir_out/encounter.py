"""Encounter (ADT events), and the Location entries it refers to."""

from __future__ import annotations

from urllib.parse import quote

from shared.canonical.model import (
    Coded,
    Coding,
    DataAbsent,
    Encounter,
    EncounterStatus,
    EventKind,
    Identifier,
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
    each,
    fixed_concept,
    identifier,
    period,
    set_built,
    set_field,
    set_opt,
    trace,
)
from shared.mapping.fhir_out._bundle import (
    Builder,
    ref_query,
)
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.fhir_out.patient import party_ref
from shared.terminology import systems

# Structural codes: fixed FHIR codes chosen by *which canonical field* holds a value (not translations of
# source codes, which happen in shared.terminology before the canonical model).
_PARTICIPANT_ROLES = (("attending", "ATND"), ("referring", "REF"), ("admitting", "ADM"))
_ROLE_RULES = {attr: f"derived: {attr} -> {role}" for attr, role in _PARTICIPANT_ROLES}
_CANCEL_STATUS = {
    EventKind.CANCEL_ADMISSION: EncounterStatus.CANCELLED,
    EventKind.CANCEL_DISCHARGE: EncounterStatus.IN_PROGRESS,
}
_CLOSED = frozenset({EncounterStatus.FINISHED, EncounterStatus.CANCELLED, EncounterStatus.ENTERED_IN_ERROR})
_LOCATION_SYSTEM = "urn:tie:location"
_LOCATION_DERIVED = "derived: site + point of care/room/bed"
_ODS_SITE_SYSTEM = "constant: ODS site code system"


def encounter(b: Builder) -> None:
    ev = b.event
    enc = ev.encounter
    if enc is None:
        raise FhirOutError("encounter event without an encounter", field="encounter")
    visit, vn = b.visit(enc)
    rid = resource_id("Encounter", visit.system, visit.value)
    lin = b.lin("Encounter", urn(rid))
    res: JSON = {"resourceType": "Encounter", "id": rid, "meta": b.meta("Encounter", lin)}
    res["identifier"] = each(identifier, enc.identifiers, lin, "encounter.identifiers", "identifier")
    status = _status(res, ev.kind, enc.status, lin)
    res["class"] = _encounter_class(enc.encounter_class, lin)
    if enc.priority is not None:
        res["priority"] = codeable(enc.priority, lin, "encounter.priority", "priority")
    if enc.service_type is not None:
        res["serviceType"] = codeable(enc.service_type, lin, "encounter.service_type", "serviceType")
    b.add_subject(res, lin)
    set_built(res, "participant", _participants(b, enc, lin))
    # A13 (cancel discharge): the encounter is open again, so the end of the period is not written.
    keep_end = ev.kind is not EventKind.CANCEL_DISCHARGE
    if enc.period is not None:
        set_built(res, "period", period(enc.period, lin, "encounter.period", "period", keep_end=keep_end))
    set_built(res, "hospitalization", _hospitalization(enc, lin, keep_end=keep_end))
    keep_prior = ev.kind is not EventKind.CANCEL_TRANSFER
    set_built(res, "location", _locations(b, enc, lin, closed=status in _CLOSED, keep_prior=keep_prior))
    if enc.service_provider is not None:
        provider = party_ref(b, enc.service_provider, "encounter.service_provider", lin, "serviceProvider")
        set_built(res, "serviceProvider", provider)
    _spell(res, enc.spell_identifier, visit, lin)
    key_src = f"encounter.identifiers[{vn}]"
    b.put("Encounter", rid, res, lin, key_src)


def _status(res: JSON, kind: EventKind, status: EncounterStatus, lin: Lin | None) -> EncounterStatus:
    """Encounter.status; A11 / A13 put the same Encounter with the status the cancellation implies."""
    forced = _CANCEL_STATUS.get(kind)
    if forced is None:
        set_field(res, "status", status.value, lin, "encounter.status")
        return status
    rule = f"derived: {kind.value} -> the same Encounter, status {forced.value}"
    set_field(res, "status", forced.value, lin, "kind", rule)
    return forced


def _participants(b: Builder, enc: Encounter, lin: Lin | None) -> list[JSON]:
    out: list[JSON] = []
    for attr, role in _PARTICIPANT_ROLES:
        for n, pr in enumerate(getattr(enc, attr)):
            k = len(out)
            src = f"encounter.{attr}[{n}]"
            ref = party_ref(b, pr, src, lin, f"participant[{k}].individual")
            if ref is None:
                continue
            role_type = fixed_concept(
                profiles.PARTICIPATION_TYPE_SYSTEM,
                role,
                lin,
                src,
                f"participant[{k}].type[0]",
                "constant: v3-ParticipationType",
                _ROLE_RULES[attr],
            )
            out.append({"type": [role_type], "individual": ref})
    return out


def _hospitalization(enc: Encounter, lin: Lin | None, *, keep_end: bool) -> JSON:
    hosp: JSON = {}
    if enc.admission_method is not None:
        method = codeable(
            enc.admission_method,
            lin,
            "encounter.admission_method",
            "hospitalization.extension[0].valueCodeableConcept",
        )
        hosp["extension"] = [{"url": systems.EXT_ADMISSION_METHOD, "valueCodeableConcept": method}]
        trace(lin, None, "hospitalization.extension[0].url", "constant: UK Core admission method")
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
    return hosp


def _locations(b: Builder, enc: Encounter, lin: Lin | None, *, closed: bool, keep_prior: bool) -> list[JSON]:
    """The current location (active, or completed once the encounter is closed) and the prior one - not
    for A12 (``keep_prior`` false), whose PV1-6 is the location of the cancelled transfer: the patient
    never moved there, so it is not history (merge.py drops it from the stored Encounter)."""
    out: list[JSON] = []
    slots = [("location", "completed" if closed else "active")]
    if keep_prior:
        slots.append(("prior_location", "completed"))
    for attr, loc_status in slots:
        loc = getattr(enc, attr)
        if loc is None:
            continue
        k = len(out)
        ref = location_ref(b, loc, f"encounter.{attr}", lin, f"location[{k}].location")
        if ref is None:
            continue
        out.append({"location": ref, "status": loc_status})
        rule = "derived: current/prior location and encounter status"
        trace(lin, f"encounter.{attr}", f"location[{k}].status", rule)
    return out


def _spell(res: JSON, spell: Identifier | None, visit: Identifier, lin: Lin | None) -> None:
    """Encounter.partOf: the hospital spell, by identifier, when it is not the visit itself."""
    if spell is None or (spell.system, spell.value) == (visit.system, visit.value):
        return
    res["partOf"] = {
        "type": "Encounter",
        "identifier": {"system": spell.system, "value": spell.value},
    }
    trace(lin, None, "partOf.type", "constant: the hospital spell, by identifier")
    trace(lin, "encounter.spell_identifier.system", "partOf.identifier.system")
    trace(lin, "encounter.spell_identifier.value", "partOf.identifier.value")


def _encounter_parties(b: Builder, enc: Encounter) -> None:
    """The entries :func:`encounter` adds for the practitioners, locations and provider it refers to,
    in the same order (for a resource taken from the cache)."""
    for attr, _role in _PARTICIPANT_ROLES:
        for pr in getattr(enc, attr):
            party_ref(b, pr, "", None, "")
    for loc in (enc.location, enc.prior_location):
        if loc is not None:
            location_ref(b, loc, "", None, "")
    if enc.service_provider is not None:
        party_ref(b, enc.service_provider, "", None, "")


def _encounter_class(c: Coded, lin: Lin | None) -> JSON:
    """Encounter.class (a Coding): the canonical v3-ActCode coding. A data-absent class keeps the
    data-absent-reason extension (and the unmapped source code beside it)."""
    if isinstance(c, DataAbsent):
        out: JSON = {"extension": absent_extension(c.reason.value)}
        trace(lin, "encounter.encounter_class.reason", "class.extension[0]", RULE_ABSENT)
        if c.source is not None:
            src = "encounter.encounter_class.source."
            set_opt(out, "system", c.source.system, lin, src + "system", at="class.")
            set_field(out, "code", c.source.code, lin, src + "code", at="class.")
        return out
    for n, cd in enumerate(c.codings):
        if cd.system == profiles.ACT_CODE_SYSTEM:
            return _class_coding(cd, lin, f"encounter.encounter_class.codings[{n}].")
    raise FhirOutError(
        "encounter class has no v3-ActCode coding (map it in shared.terminology)",
        field="encounter.encounter_class",
    )


def _class_coding(cd: Coding, lin: Lin | None, src: str) -> JSON:
    out: JSON = {}
    set_field(out, "system", cd.system, lin, src + "system", at="class.")
    set_field(out, "code", cd.code, lin, src + "code", at="class.")
    set_opt(out, "display", cd.display, lin, src + "display", at="class.")
    return out


def location_ref(b: Builder, loc: Location, src: str, lin: Lin | None, dst: str) -> JSON | None:
    """Reference to a Location entry keyed on site + point of care/room/bed (conditional create).

    A place within a site is ``urn:tie:location[:<site>]`` | ``<point of care>/<room>/<bed>``, part of
    the site (ODS site code, by identifier); a bare site is identified by its ODS site code.
    """
    key = _location_key(loc)
    if key is None:
        if not loc.description:
            return None
        trace(lin, f"{src}.description", f"{dst}.display")
        return {"display": loc.description}
    system, value = key
    full_url, seen = b.ref_url("Location", system, value)
    trace(lin, src, f"{dst}.reference", RULE_REF)
    if not seen:
        _location(b, loc, src, key, full_url)
    return {"reference": full_url}


def _location_key(loc: Location) -> tuple[str, str] | None:
    """(system, value) identifying the place, ``None`` when it names neither a place nor a site."""
    parts = (loc.point_of_care, loc.room, loc.bed)
    if any(parts):
        system = f"{_LOCATION_SYSTEM}:{quote(loc.facility, safe='')}" if loc.facility else _LOCATION_SYSTEM
        return system, "/".join(p or "" for p in parts).rstrip("/")
    if loc.facility:
        return profiles.ODS_SITE_SYSTEM, loc.facility
    return None


def _location(b: Builder, loc: Location, src: str, key: tuple[str, str], full_url: str) -> None:
    """The Location entry (reference data: conditional create)."""
    system, value = key
    within = any((loc.point_of_care, loc.room, loc.bed))  # a place within a site, not the site
    llin = b.lin("Location", full_url)
    res: JSON = {
        "resourceType": "Location",
        "meta": b.meta("Location", llin, reference_data=True),
        "identifier": [{"system": system, "value": value}],
    }
    _trace_location_key(llin, loc, src, within=within)
    if loc.description:
        set_field(res, "name", loc.description, llin, f"{src}.description")
    elif within:
        set_field(res, "name", value, llin, src, "derived: point of care/room/bed")
    if within and loc.facility:
        res["partOf"] = {
            "type": "Location",
            "identifier": {"system": profiles.ODS_SITE_SYSTEM, "value": loc.facility},
        }
        trace(llin, None, "partOf.type", "constant")
        trace(llin, None, "partOf.identifier.system", _ODS_SITE_SYSTEM)
        trace(llin, f"{src}.facility", "partOf.identifier.value")
    query = ref_query(system, value)
    b.create("Location", full_url, res, query, src)


def _trace_location_key(llin: Lin | None, loc: Location, src: str, *, within: bool) -> None:
    """Lineage of the Location identifier (derived from the place's parts, or the site's ODS code)."""
    for attr in ("point_of_care", "room", "bed"):
        if getattr(loc, attr):
            trace(llin, f"{src}.{attr}", "identifier[0].value", _LOCATION_DERIVED)
    if within:
        trace(llin, None, "identifier[0].system", "constant: location identifier system")
        if loc.facility:
            trace(llin, f"{src}.facility", "identifier[0].system", _LOCATION_DERIVED)
    else:
        trace(llin, f"{src}.facility", "identifier[0].value", "copy: the site's ODS site code")
        trace(llin, None, "identifier[0].system", _ODS_SITE_SYSTEM)
