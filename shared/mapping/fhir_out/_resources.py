"""Canonical -> FHIR R4 (UK Core) resources, collected as transaction Bundle entries.

See :mod:`shared.mapping.fhir_out` for the entry/reference scheme. One :class:`Builder` maps one event.
"""

from __future__ import annotations

import functools
from datetime import UTC
from typing import Any
from urllib.parse import quote

from shared.canonical.identity import IdentityError, encounter_identifier, patient_key
from shared.canonical.model import (
    AllergyIntolerance,
    Attachment,
    ClinicalDateTime,
    ClinicalEvent,
    Coded,
    Concept,
    Condition,
    DataAbsent,
    DocumentReference,
    Encounter,
    EncounterStatus,
    EventKind,
    Identifier,
    Location,
    MedicationRequest,
    MedicationStatement,
    Observation,
    Organization,
    Practitioner,
    Quantity,
    Range,
    Referral,
    ResultReport,
    Sensitivity,
    ServiceRequest,
    Specimen,
)
from shared.fhir import profiles
from shared.fhir.ids import child_id, keyed_id, resource_id, urn
from shared.mapping.fhir_out._build import (
    _CODEABLE,
    JSON,
    RULE_ABSENT,
    RULE_COPY,
    RULE_ID,
    RULE_PROFILE,
    RULE_REF,
    Lin,
    absent_extension,
    address,
    attachment,
    codeable,
    contact_point,
    date_time,
    display_name,
    fixed_coding,
    human_name,
    identifier,
    identifier_query,
    identifier_with_type,
    instant,
    period,
    quantity,
    range_,
)
from shared.mapping.fhir_out._frozen import freeze
from shared.mapping.fhir_out.errors import FhirOutError
from shared.mapping.lineage import LineageEntry
from shared.terminology import systems
from shared.terminology.valuesets import load_value_set

#: Events that state the patient record itself: the Patient entry is a conditional *update* (PUT
#: ``Patient?identifier=...``: create if absent, replace if present). Every other event carries the
#: patient as context: conditional *create* (POST + ``ifNoneExist``), which never overwrites a record.
PATIENT_UPSERT_KINDS = frozenset(
    {
        EventKind.PATIENT_CREATED,
        EventKind.PATIENT_UPDATED,
        EventKind.PATIENT_MERGE,
        EventKind.ENCOUNTER_UPDATE,
    }
)

#: Events that state the encounter: the Encounter is PUT (by its deterministic id). Other events that
#: name an encounter (a result with a PV1) refer to it by identifier and leave it untouched.
ENCOUNTER_KINDS = frozenset(
    {
        EventKind.ADMISSION,
        EventKind.TRANSFER,
        EventKind.DISCHARGE,
        EventKind.REGISTRATION,
        EventKind.PRE_ADMISSION,
        EventKind.ENCOUNTER_UPDATE,
        EventKind.CANCEL_ADMISSION,
        EventKind.CANCEL_DISCHARGE,
    }
)

# Structural codes: fixed FHIR codes chosen by *which canonical field* holds a value (not translations of
# source codes, which happen in shared.terminology before the canonical model).
_CONFIDENTIALITY: dict[Sensitivity, str] = {
    Sensitivity.NORMAL: "U",
    Sensitivity.RESTRICTED: "R",
    Sensitivity.VERY_RESTRICTED: "V",
}
_PARTICIPANT_ROLES = (("attending", "ATND"), ("referring", "REF"), ("admitting", "ADM"))
_CANCEL_STATUS = {
    EventKind.CANCEL_ADMISSION: EncounterStatus.CANCELLED,
    EventKind.CANCEL_DISCHARGE: EncounterStatus.IN_PROGRESS,
}
_CLOSED = frozenset({EncounterStatus.FINISHED, EncounterStatus.CANCELLED, EncounterStatus.ENTERED_IN_ERROR})
_CONFIDENTIALITY_VS = "pds-confidentiality"
_LOCATION_SYSTEM = "urn:tie:location"
_EVENT_KEY_SYSTEM = "urn:tie:event-key"
#: FHIR cross-version extension for R5 ``DiagnosticReport.note`` used from R4 (report-level comments).
_EXT_REPORT_NOTE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-DiagnosticReport.note"


@functools.cache
def _security_coding(sensitivity: Sensitivity) -> JSON:
    """v3-Confidentiality coding; the display comes from the PDS confidentiality value set."""
    code = _CONFIDENTIALITY[sensitivity]
    coding: JSON = {"system": profiles.CONFIDENTIALITY_SYSTEM, "code": code}
    display = load_value_set(_CONFIDENTIALITY_VS).display(profiles.CONFIDENTIALITY_SYSTEM, code)
    if display is not None:
        coding["display"] = display
    return coding


@functools.lru_cache(maxsize=16384)
def _reference_url(resource_type: str, system: str, value: str) -> str:
    """``urn:uuid:<id>`` of a conditionally created (reference data) entry: the same practitioners,
    organisations and wards recur message after message, so their uuid5 is computed once."""
    return urn(resource_id(resource_type, system, value))


@functools.lru_cache(maxsize=16384)
def _query(system: str, value: str) -> str:
    return identifier_query(system, value)


#: Reference-data resources (Practitioner / Organization / Location) built for a canonical value, lineage
#: off: (read-only resource, ifNoneExist query). They never carry patient data or meta.security, so the
#: same value always gives the same resource, shared read-only between bundles (see ``_frozen``).
_REFERENCE: dict[object, tuple[JSON, str]] = {}
_REFERENCE_MAX = 1024


_REFERENCE_BY_ID: dict[int, tuple[object, tuple[JSON, str]]] = {}


def _remember_by_id(value: object, hit: tuple[JSON, str]) -> None:
    if len(_REFERENCE_BY_ID) >= _REFERENCE_MAX:
        _REFERENCE_BY_ID.clear()
    _REFERENCE_BY_ID[id(value)] = (value, hit)


def _remember_reference(key: tuple[str, object], resource: JSON, query: str) -> JSON:
    """Freeze ``resource``, keep it for the next bundle naming the same value, and return it."""
    if len(_REFERENCE) >= _REFERENCE_MAX:
        _REFERENCE.clear()
    frozen: JSON = freeze(resource)
    _REFERENCE[key] = (frozen, query)
    _remember_by_id(key[1], (frozen, query))
    return frozen


#: Patient / Encounter resources by the canonical object they were built from (lineage off): the HL7
#: mapper hands the same immutable object back for a repeated PID / PV1, so the resource is built once and
#: shared read-only (``_frozen``). Keyed by ``id`` and checked by identity (the entry holds the object, so
#: its id cannot be reused while cached); the key also holds what else the resource depends on. An object
#: is only cached when it is seen a second time: one-off patients never pay for freezing.
_BY_OBJECT: dict[int, tuple[object, object, Any]] = {}
_SEEN_ONCE = object()


#: Small on purpose: every cached object stays alive, and Python's garbage collector walks them all.
_BY_OBJECT_MAX = 256


def _worth_caching(obj: object, kind: object) -> bool:
    """True when ``obj`` (with the same dependencies) was built before; remembers this sighting."""
    seen = _BY_OBJECT.get(id(obj))
    if seen is not None and seen[0] is obj and seen[1] == kind:
        return True
    if len(_BY_OBJECT) >= _BY_OBJECT_MAX:
        _BY_OBJECT.clear()
    _BY_OBJECT[id(obj)] = (obj, kind, _SEEN_ONCE)
    return False


def _cached_object(obj: object, kind: object) -> Any:
    hit = _BY_OBJECT.get(id(obj))
    if hit is not None and hit[0] is obj and hit[1] == kind and hit[2] is not _SEEN_ONCE:
        return hit[2]
    return None


def _remember_object(obj: object, kind: object, value: Any) -> None:
    _BY_OBJECT[id(obj)] = (obj, kind, value)


def clear_caches() -> None:
    """Forget every cached resource and id (tests: a fresh build must equal a cached one)."""
    _REFERENCE.clear()
    _REFERENCE_BY_ID.clear()
    _BY_OBJECT.clear()
    _CODEABLE.clear()
    _reference_url.cache_clear()
    _query.cache_clear()


def _utc(t: ClinicalDateTime | None) -> str:
    return "" if t is None else t.value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _code_token(c: Coded) -> str:
    """``system|code`` of the first coding (or a data-absent / text marker) for child ids."""
    if isinstance(c, DataAbsent):
        src = c.source
        return f"absent:{c.reason.value}:{src.system or ''}|{src.code}" if src else f"absent:{c.reason.value}"
    if c.codings:
        first = c.codings[0]
        return f"{first.system or ''}|{first.code}"
    return f"text:{c.text}"


class Builder:
    """Maps one :class:`ClinicalEvent` into transaction entries (``fullUrl`` -> entry, insertion-ordered)."""

    def __init__(self, event: ClinicalEvent, *, lineage: bool) -> None:
        self.event = event
        self.sink: list[LineageEntry] | None = [] if lineage else None
        self.entries: dict[str, JSON] = {}
        self._security = _security_coding(event.patient.sensitivity)
        self._restricted = event.patient.sensitivity is not Sensitivity.NORMAL
        self.patient_ref: JSON = {}
        self.encounter_ref: JSON | None = None
        self._encounter_ref_source: tuple[str, ...] = ()
        self._positions: dict[str, int] = {}
        self._seen: dict[tuple[str, str, str], str] = {}

    # ------------------------------------------------------------------------------ entry plumbing
    def lin(self, resource_type: str, full_url: str) -> Lin | None:
        return None if self.sink is None else Lin(self.sink, f"{resource_type}.", full_url)

    def meta(
        self, resource_type: str, lin: Lin | None, *, patient: bool = False, reference_data: bool = False
    ) -> JSON:
        """``meta.profile`` (UK Core); ``meta.security`` v3-Confidentiality on the Patient always (as PDS
        does) and on every clinical resource of a restricted (R/V) patient - not on reference data
        (Practitioner, Organization, Location), which is shared by every patient who refers to it."""
        meta: JSON = {"profile": [profiles.UK_CORE_PROFILES[resource_type]]}
        if lin is not None:
            lin.add(None, "meta.profile[0]", RULE_PROFILE)
        if patient or (self._restricted and not reference_data):
            meta["security"] = [dict(self._security)]
            if lin is not None:
                for key in ("system", "code", "display"):
                    lin.add(
                        "patient.sensitivity",
                        f"meta.security[0].{key}",
                        "Sensitivity -> v3-Confidentiality U/R/V (as PDS)",
                    )
        return meta

    def reserve(self, full_url: str) -> None:
        """Hold the next entry position for ``full_url`` (the Patient comes first, before the GP it
        refers to)."""
        self._positions[full_url] = len(self.entries)
        self.entries[full_url] = {}

    def _entry(self, full_url: str, resource: JSON, request: JSON, key_source: str | None) -> None:
        n = self._positions.get(full_url, len(self.entries))
        self.entries[full_url] = {"fullUrl": full_url, "resource": resource, "request": request}
        if self.sink is not None:
            base = f"Bundle.entry[{n}]"
            add = self.sink.append
            add(LineageEntry(key_source, f"{base}.fullUrl", RULE_ID, resource=full_url))
            add(
                LineageEntry(
                    None, f"{base}.request.method", "constant: transaction method", resource=full_url
                )
            )
            add(LineageEntry(key_source, f"{base}.request.url", RULE_ID, resource=full_url))
            if "ifNoneExist" in request:
                rule = "derived: conditional create on the business identifier"
                add(LineageEntry(key_source, f"{base}.request.ifNoneExist", rule, resource=full_url))

    def put(self, resource_type: str, rid: str, resource: JSON, lin: Lin | None, key_source: str) -> str:
        """PUT ``<Type>/<id>`` with a deterministic id; referenced as ``<Type>/<id>``."""
        full_url = urn(rid)
        if full_url in self.entries:
            # e.g. two OBX with the same set id and code in one report: writing both to one id would
            # silently drop one result, so the event is refused instead
            raise FhirOutError(f"two {resource_type} resources have the same identity", field=key_source)
        if lin is not None:
            lin.add(key_source, "id", RULE_ID)
        self._entry(full_url, resource, {"method": "PUT", "url": f"{resource_type}/{rid}"}, key_source)
        return full_url

    def create(self, resource_type: str, full_url: str, resource: JSON, query: str, key_source: str) -> None:
        """Conditional create (POST + ifNoneExist); referenced by its ``urn:uuid`` fullUrl."""
        request = {"method": "POST", "url": resource_type, "ifNoneExist": query}
        self._entry(full_url, resource, request, key_source)

    # ----------------------------------------------------------------------------------- parties
    def party_ref(
        self, party: Practitioner | Organization, src: str, lin: Lin | None, dst: str
    ) -> JSON | None:
        """Reference to a Practitioner/Organization entry (conditional create on its identifier), or a
        display-only reference when it has no identifier; ``None`` when there is nothing to say."""
        if isinstance(party, Practitioner):
            if party.identifiers:
                ref: JSON = {"reference": self.practitioner(party, src)}
            elif party.name is not None and (text := display_name(party.name)):
                ref = {"display": text}
                if lin is not None:
                    lin.add(f"{src}.name", f"{dst}.display", "derived: display text of the name")
                return ref
            else:
                return None
        elif party.ods_code is not None or party.identifiers:
            ref = {"reference": self.organization(party, src)}
        elif party.name is not None:
            if lin is not None:
                lin.add(f"{src}.name", f"{dst}.display")
            return {"display": party.name}
        else:
            return None
        if lin is not None:
            lin.add(src, f"{dst}.reference", RULE_REF)
        return ref

    def _ref_url(self, resource_type: str, system: str, value: str) -> tuple[str, bool]:
        """(fullUrl, already in the bundle) for a conditionally created entry."""
        seen = self._seen.get((resource_type, system, value))
        if seen is not None:
            return seen, True
        full_url = _reference_url(resource_type, system, value)
        self._seen[(resource_type, system, value)] = full_url
        return full_url, False

    def _cached_reference(self, resource_type: str, value: object, full_url: str, key_src: str) -> bool:
        """Add the entry for reference-data ``value`` from the cache (lineage off); False on a miss."""
        if self.sink is not None:
            return False
        # the same object (the HL7 mapper's memo hands it back) is found by identity, without hashing or
        # comparing the model tree; an equal but distinct object by value
        same = _REFERENCE_BY_ID.get(id(value))
        if same is not None and same[0] is value:
            hit: tuple[JSON, str] | None = same[1]
        else:
            hit = _REFERENCE.get((resource_type, value))
            if hit is None:
                return False
            _remember_by_id(value, hit)
        assert hit is not None
        self.create(resource_type, full_url, hit[0], hit[1], key_src)
        return True

    def practitioner(self, pr: Practitioner, src: str) -> str:
        key = pr.identifiers[0]
        full_url, seen = self._ref_url("Practitioner", key.system, key.value)
        if seen or self._cached_reference("Practitioner", pr, full_url, f"{src}.identifiers[0]"):
            return full_url
        lin = self.lin("Practitioner", full_url)
        res: JSON = {
            "resourceType": "Practitioner",
            "meta": self.meta("Practitioner", lin, reference_data=True),
        }
        if lin is None:
            res["identifier"] = [identifier(i, None, "", "") for i in pr.identifiers]
        else:
            res["identifier"] = [
                identifier(i, lin, f"{src}.identifiers[{n}]", f"identifier[{n}]")
                for n, i in enumerate(pr.identifiers)
            ]
        if pr.name is not None:
            name = human_name(pr.name, lin, f"{src}.name", "name[0]")
            if name:
                res["name"] = [name]
        query = _query(key.system, key.value)
        if lin is None:
            res = _remember_reference(("Practitioner", pr), res, query)
        self.create("Practitioner", full_url, res, query, f"{src}.identifiers[0]")
        return full_url

    def organization(self, org: Organization, src: str) -> str:
        if org.ods_code is not None:
            key_system, key_value = profiles.ODS_ORGANIZATION_SYSTEM, org.ods_code
            key_src = f"{src}.ods_code"
        else:
            key_system, key_value = org.identifiers[0].system, org.identifiers[0].value
            key_src = f"{src}.identifiers[0]"
        full_url, seen = self._ref_url("Organization", key_system, key_value)
        if seen or self._cached_reference("Organization", org, full_url, key_src):
            return full_url
        lin = self.lin("Organization", full_url)
        res: JSON = {
            "resourceType": "Organization",
            "meta": self.meta("Organization", lin, reference_data=True),
        }
        idents: list[JSON] = []
        if org.ods_code is not None:
            idents.append({"system": profiles.ODS_ORGANIZATION_SYSTEM, "value": org.ods_code})
            if lin is not None:
                lin.add(None, "identifier[0].system", "constant: ODS organisation code system")
                lin.add(f"{src}.ods_code", "identifier[0].value")
        for n, i in enumerate(org.identifiers):
            if org.ods_code is not None and i.system == key_system and i.value == key_value:
                continue
            k = len(idents)
            idents.append(identifier(i, lin, f"{src}.identifiers[{n}]", f"identifier[{k}]"))
        res["identifier"] = idents
        if org.name is not None:
            res["name"] = org.name
            if lin is not None:
                lin.add(f"{src}.name", "name")
        query = _query(key_system, key_value)
        if lin is None:
            res = _remember_reference(("Organization", org), res, query)
        self.create("Organization", full_url, res, query, key_src)
        return full_url

    def location_ref(self, loc: Location, src: str, lin: Lin | None, dst: str) -> JSON | None:
        """Reference to a Location entry keyed on site + point of care/room/bed (conditional create).

        A place within a site is ``urn:tie:location[:<site>]`` | ``<point of care>/<room>/<bed>``, part of
        the site (ODS site code, by identifier); a bare site is identified by its ODS site code.
        """
        parts = (loc.point_of_care, loc.room, loc.bed)
        if any(parts):
            system = (
                f"{_LOCATION_SYSTEM}:{quote(loc.facility, safe='')}" if loc.facility else _LOCATION_SYSTEM
            )
            value = "/".join(p or "" for p in parts).rstrip("/")
        elif loc.facility:
            system, value = profiles.ODS_SITE_SYSTEM, loc.facility
        elif loc.description:
            if lin is not None:
                lin.add(f"{src}.description", f"{dst}.display")
            return {"display": loc.description}
        else:
            return None
        full_url, seen = self._ref_url("Location", system, value)
        if lin is not None:
            lin.add(src, f"{dst}.reference", RULE_REF)
        if seen or self._cached_reference("Location", loc, full_url, src):
            return {"reference": full_url}
        llin = self.lin("Location", full_url)
        res: JSON = {
            "resourceType": "Location",
            "meta": self.meta("Location", llin, reference_data=True),
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
        query = _query(system, value)
        if llin is None:
            res = _remember_reference(("Location", loc), res, query)
        self.create("Location", full_url, res, query, src)
        return {"reference": full_url}

    # ---------------------------------------------------------------------------------- patient
    def patient(self) -> None:
        ev = self.event
        p = ev.patient
        cacheable = self.sink is None and not ev.merged_identifiers
        if cacheable:
            hit = _cached_object(p, "Patient")
            if hit is not None:
                cached_url, cached, cached_query, cached_src = hit
                self.patient_ref = {"reference": cached_url}
                self.reserve(cached_url)
                if p.general_practitioner is not None:  # its Organization entry, after the Patient
                    self.party_ref(p.general_practitioner, "patient.general_practitioner", None, "")
                if p.registered_gp is not None:  # and the GP's Practitioner entry
                    self.party_ref(p.registered_gp, "patient.registered_gp", None, "")
                self._entry(cached_url, cached, self._patient_request(cached_query), cached_src)
                return
        if p.nhs_number is not None:
            key_system, key_value, key_src = (
                profiles.NHS_NUMBER_SYSTEM,
                p.nhs_number.value,
                "patient.nhs_number",
            )
        else:
            first = p.identifiers[0]
            key_system, key_value, key_src = first.system, first.value, "patient.identifiers[0]"
        full_url = urn(resource_id("Patient", key_system, key_value))
        self.patient_ref = {"reference": full_url}
        self.reserve(full_url)
        lin = self.lin("Patient", full_url)
        res: JSON = {"resourceType": "Patient", "meta": self.meta("Patient", lin, patient=True)}
        if p.ethnicity is not None:
            res["extension"] = [
                {
                    "url": profiles.EXT_ETHNIC_CATEGORY,
                    "valueCodeableConcept": codeable(
                        p.ethnicity, lin, "patient.ethnicity", "extension[0].valueCodeableConcept"
                    ),
                }
            ]
            if lin is not None:
                lin.add(None, "extension[0].url", "constant: UK Core ethnic category extension")
        idents: list[JSON] = []
        if p.nhs_number is not None:
            nhs: JSON = {}
            status = p.nhs_number.verification_status
            if status is not None:
                nhs["extension"] = [
                    {
                        "url": profiles.EXT_NHS_NUMBER_VERIFICATION,
                        "valueCodeableConcept": {
                            "coding": [{"system": profiles.NHS_NUMBER_VERIFICATION_SYSTEM, "code": status}]
                        },
                    }
                ]
            nhs["system"] = profiles.NHS_NUMBER_SYSTEM
            nhs["value"] = p.nhs_number.value
            idents.append(nhs)
            if lin is not None:
                if status is not None:
                    ext = "identifier[0].extension[0]"
                    lin.add(None, f"{ext}.url", "constant: UK Core NHS number verification status extension")
                    lin.add(
                        None,
                        f"{ext}.valueCodeableConcept.coding[0].system",
                        "constant: UK Core (England) system",
                    )
                    lin.add(
                        "patient.nhs_number.verification_status", f"{ext}.valueCodeableConcept.coding[0].code"
                    )
                lin.add(None, "identifier[0].system", "constant: NHS number system")
                lin.add("patient.nhs_number.value", "identifier[0].value")
        for n, i in enumerate(p.identifiers):
            k = len(idents)
            idents.append(identifier(i, lin, f"patient.identifiers[{n}]", f"identifier[{k}]"))
        res["identifier"] = idents
        if p.names:
            if lin is None:
                res["name"] = [human_name(n, None, "", "") for n in p.names]
            else:
                res["name"] = [
                    human_name(n, lin, f"patient.names[{i}]", f"name[{i}]") for i, n in enumerate(p.names)
                ]
        if p.telecom:
            if lin is None:
                res["telecom"] = [contact_point(c, None, "", "") for c in p.telecom]
            else:
                res["telecom"] = [
                    contact_point(c, lin, f"patient.telecom[{i}]", f"telecom[{i}]")
                    for i, c in enumerate(p.telecom)
                ]
        gender = p.gender
        if isinstance(gender, DataAbsent):
            res["_gender"] = {"extension": absent_extension(gender.reason.value)}
            if lin is not None:
                lin.add("patient.gender.reason", "_gender.extension[0]", RULE_ABSENT)
        elif gender is not None:
            res["gender"] = gender
            if lin is not None:
                lin.add("patient.gender", "gender")
        if p.birth_date is not None:
            res["birthDate"] = p.birth_date.iso()
            if lin is not None:
                lin.add("patient.birth_date", "birthDate", "PartialDate -> FHIR date at its precision")
        if p.deceased is not None:
            if isinstance(p.deceased, bool):
                res["deceasedBoolean"] = p.deceased
                if lin is not None:
                    lin.add("patient.deceased", "deceasedBoolean")
            else:
                res["deceasedDateTime"] = date_time(p.deceased, lin, "patient.deceased", "deceasedDateTime")
        if p.addresses:
            if lin is None:
                res["address"] = [address(a, None, "", "") for a in p.addresses]
            else:
                res["address"] = [
                    address(a, lin, f"patient.addresses[{i}]", f"address[{i}]")
                    for i, a in enumerate(p.addresses)
                ]
        if p.marital_status is not None:
            res["maritalStatus"] = codeable(p.marital_status, lin, "patient.marital_status", "maritalStatus")
        gps: list[JSON] = []
        for attr, party in (
            ("general_practitioner", p.general_practitioner),
            ("registered_gp", p.registered_gp),
        ):
            if party is not None:
                ref = self.party_ref(party, f"patient.{attr}", lin, f"generalPractitioner[{len(gps)}]")
                if ref is not None:
                    gps.append(ref)
        if gps:
            res["generalPractitioner"] = gps
        links = self._links(lin)
        if links:
            res["link"] = links
        query = identifier_query(key_system, key_value)
        if cacheable and _worth_caching(p, "Patient"):
            res = freeze(res)
            _remember_object(p, "Patient", (full_url, res, query, key_src))
        self._entry(full_url, res, self._patient_request(query), key_src)

    def _patient_request(self, query: str) -> JSON:
        if self.event.kind in PATIENT_UPSERT_KINDS:
            return {"method": "PUT", "url": f"Patient?{query}"}
        return {"method": "POST", "url": "Patient", "ifNoneExist": query}

    def _links(self, lin: Lin | None) -> list[JSON]:
        """Patient.link from the canonical MergeLinks, plus ``replaces`` for each merged-away identifier
        (MRG-1) the links do not already name."""
        ev = self.event
        out: list[JSON] = []
        named: set[tuple[str, str]] = set()
        for n, link in enumerate(ev.patient.links):
            k = len(out)
            out.append(
                {
                    "other": {
                        "type": "Patient",
                        "identifier": {"system": link.other.system, "value": link.other.value},
                    },
                    "type": link.kind,
                }
            )
            named.add((link.other.system, link.other.value))
            if lin is not None:
                src = f"patient.links[{n}]"
                lin.add(None, f"link[{k}].other.type", "constant: linked record is a Patient")
                lin.add(f"{src}.other.system", f"link[{k}].other.identifier.system")
                lin.add(f"{src}.other.value", f"link[{k}].other.identifier.value")
                lin.add(f"{src}.kind", f"link[{k}].type")
        for n, merged in enumerate(ev.merged_identifiers):
            if (merged.system, merged.value) in named:
                continue
            named.add((merged.system, merged.value))
            k = len(out)
            out.append(
                {
                    "other": {
                        "type": "Patient",
                        "identifier": {"system": merged.system, "value": merged.value},
                    },
                    "type": "replaces",
                }
            )
            if lin is not None:
                src = f"merged_identifiers[{n}]"
                lin.add(None, f"link[{k}].other.type", "constant: linked record is a Patient")
                lin.add(f"{src}.system", f"link[{k}].other.identifier.system")
                lin.add(f"{src}.value", f"link[{k}].other.identifier.value")
                lin.add(src, f"link[{k}].type", "derived: merged-away record is replaced by this one")
        return out

    # -------------------------------------------------------------------------------- encounter
    def _visit(self, enc: Encounter) -> tuple[Identifier, int]:
        try:
            visit = encounter_identifier(enc)
        except IdentityError:
            raise FhirOutError(
                "encounter needs an identifier (visit number)", field="encounter.identifiers"
            ) from None
        return visit, enc.identifiers.index(visit)

    def encounter_context(self) -> None:
        """Decide how other resources refer to the event's encounter (before building them)."""
        enc = self.event.encounter
        if enc is None or not enc.identifiers:
            return
        visit, n = self._visit(enc)
        if self.event.kind in ENCOUNTER_KINDS:
            self.encounter_ref = {
                "reference": f"Encounter/{resource_id('Encounter', visit.system, visit.value)}"
            }
            self._encounter_ref_source = ("encounter",)
        else:
            self.encounter_ref = {
                "type": "Encounter",
                "identifier": {"system": visit.system, "value": visit.value},
            }
            self._encounter_ref_source = (f"encounter.identifiers[{n}]",)

    def encounter_reference(self, lin: Lin | None, dst: str) -> JSON | None:
        """The event's encounter as a reference at ``dst`` (``None`` when the event names none)."""
        if self.encounter_ref is None:
            return None
        if lin is not None:
            if "reference" in self.encounter_ref:
                lin.add("encounter", f"{dst}.reference", RULE_REF)
            else:
                src = self._encounter_ref_source[0]
                lin.add(None, f"{dst}.type", "constant: logical reference to an encounter not in this bundle")
                lin.add(f"{src}.system", f"{dst}.identifier.system")
                lin.add(f"{src}.value", f"{dst}.identifier.value")
        return dict(self.encounter_ref)

    def add_encounter_ref(self, res: JSON, lin: Lin | None, key: str = "encounter") -> None:
        ref = self.encounter_reference(lin, key)
        if ref is not None:
            res[key] = ref

    def add_subject(self, res: JSON, lin: Lin | None, key: str = "subject") -> None:
        res[key] = dict(self.patient_ref)
        if lin is not None:
            lin.add("patient", f"{key}.reference", RULE_REF)

    def encounter(self) -> None:
        ev = self.event
        enc = ev.encounter
        if enc is None:
            raise FhirOutError("encounter event without an encounter", field="encounter")
        depends = (ev.kind, self.patient_ref.get("reference"), ev.patient.sensitivity)
        if self.sink is None:
            hit = _cached_object(enc, depends)
            if hit is not None:
                cached_rid, cached, cached_src = hit
                self._encounter_parties(enc)  # their entries, as a first build adds them
                self.put("Encounter", cached_rid, cached, None, cached_src)
                return
        visit, vn = self._visit(enc)
        rid = resource_id("Encounter", visit.system, visit.value)
        full_url = urn(rid)
        lin = self.lin("Encounter", full_url)
        res: JSON = {"resourceType": "Encounter", "id": rid, "meta": self.meta("Encounter", lin)}
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
        res["class"] = self._encounter_class(enc.encounter_class, lin)
        if enc.priority is not None:
            res["priority"] = codeable(enc.priority, lin, "encounter.priority", "priority")
        if enc.service_type is not None:
            res["serviceType"] = codeable(enc.service_type, lin, "encounter.service_type", "serviceType")
        self.add_subject(res, lin)
        participants: list[JSON] = []
        for attr, role in _PARTICIPANT_ROLES:
            for n, pr in enumerate(getattr(enc, attr)):
                k = len(participants)
                src = f"encounter.{attr}[{n}]"
                ref = self.party_ref(pr, src, lin, f"participant[{k}].individual")
                if ref is None:
                    continue
                participants.append(
                    {
                        "type": [{"coding": [fixed_coding(profiles.PARTICIPATION_TYPE_SYSTEM, role)]}],
                        "individual": ref,
                    }
                )
                if lin is not None:
                    lin.add(
                        None, f"participant[{k}].type[0].coding[0].system", "constant: v3-ParticipationType"
                    )
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
            ref = self.location_ref(loc, f"encounter.{attr}", lin, f"location[{k}].location")
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
            ref = self.party_ref(enc.service_provider, "encounter.service_provider", lin, "serviceProvider")
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
        if lin is None and _worth_caching(enc, depends):
            res = freeze(res)
            _remember_object(enc, depends, (rid, res, f"encounter.identifiers[{vn}]"))
        self.put("Encounter", rid, res, lin, f"encounter.identifiers[{vn}]")

    def _encounter_parties(self, enc: Encounter) -> None:
        """The entries :meth:`encounter` adds for the practitioners, locations and provider it refers to,
        in the same order (for a resource taken from the cache)."""
        for attr, _role in _PARTICIPANT_ROLES:
            for pr in getattr(enc, attr):
                self.party_ref(pr, "", None, "")
        for loc in (enc.location, enc.prior_location):
            if loc is not None:
                self.location_ref(loc, "", None, "")
        if enc.service_provider is not None:
            self.party_ref(enc.service_provider, "", None, "")

    def _encounter_class(self, c: Coded, lin: Lin | None) -> JSON:
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

    # ---------------------------------------------------------------------------------- results
    def report(self, r: ResultReport, n: int) -> None:
        src = f"reports[{n}]"
        if r.filler_order_number is not None:
            key, key_src = r.filler_order_number, f"{src}.filler_order_number"
        elif r.placer_order_number is not None:
            key, key_src = r.placer_order_number, f"{src}.placer_order_number"
        elif r.identifiers:
            key, key_src = r.identifiers[0], f"{src}.identifiers[0]"
        else:
            raise FhirOutError(
                "a result report needs a filler or placer order number", field=f"{src}.filler_order_number"
            )
        rid = keyed_id("DiagnosticReport", key.system, key.value, _code_token(r.code))
        full_url = urn(rid)
        lin = self.lin("DiagnosticReport", full_url)
        res: JSON = {
            "resourceType": "DiagnosticReport",
            "id": rid,
            "meta": self.meta("DiagnosticReport", lin),
        }
        if r.notes:
            # R4 DiagnosticReport has no note: the R5 element via its cross-version extension
            res["extension"] = [{"url": _EXT_REPORT_NOTE, "valueAnnotation": {"text": t}} for t in r.notes]
            if lin is not None:
                for k in range(len(r.notes)):
                    lin.add(
                        None,
                        f"extension[{k}].url",
                        "constant: R5 DiagnosticReport.note cross-version extension",
                    )
                    lin.add(f"{src}.notes[{k}]", f"extension[{k}].valueAnnotation.text")
        idents: list[JSON] = []
        for m, i in enumerate(r.identifiers):
            idents.append(identifier(i, lin, f"{src}.identifiers[{m}]", f"identifier[{m}]"))
        if r.filler_order_number is not None:
            k = len(idents)
            idents.append(
                identifier_with_type(
                    r.filler_order_number, "FILL", lin, f"{src}.filler_order_number", f"identifier[{k}]"
                )
            )
        if idents:
            res["identifier"] = idents
        if r.placer_order_number is not None:
            placer = r.placer_order_number
            res["basedOn"] = [
                {
                    "type": "ServiceRequest",
                    "identifier": identifier_with_type(
                        placer, "PLAC", lin, f"{src}.placer_order_number", "basedOn[0].identifier"
                    ),
                }
            ]
            if lin is not None:
                lin.add(None, "basedOn[0].type", "constant: the order, by placer number")
        res["status"] = r.status
        if lin is not None:
            lin.add(f"{src}.status", "status")
        if r.category is not None:
            res["category"] = [codeable(r.category, lin, f"{src}.category", "category[0]")]
        res["code"] = codeable(r.code, lin, f"{src}.code", "code")
        self.add_subject(res, lin)
        self.add_encounter_ref(res, lin)
        if r.effective is not None:
            res["effectiveDateTime"] = date_time(r.effective, lin, f"{src}.effective", "effectiveDateTime")
        if r.issued is not None:
            issued = instant(r.issued, lin, f"{src}.issued", "issued")
            if issued is not None:
                res["issued"] = issued
        performers = self._performers(r.performer, src, lin)
        if performers:
            res["performer"] = performers
        specimens = [self.specimen(sp, k, rid, f"{src}.specimens[{k}]") for k, sp in enumerate(r.specimens)]
        if specimens:
            res["specimen"] = [{"reference": ref} for ref in specimens]
            if lin is not None:
                for k in range(len(specimens)):
                    lin.add(f"{src}.specimens[{k}]", f"specimen[{k}].reference", RULE_REF)
        # a result names its specimen only when the report has one: with several, which one a result
        # was measured on is not said
        one_specimen = (specimens[0], f"{src}.specimens[0]") if len(specimens) == 1 else None
        results: list[JSON] = []
        presented: list[JSON] = []
        for m, obs in enumerate(r.results):
            osrc = f"{src}.results[{m}]"
            if isinstance(obs.value, Attachment):
                k = len(presented)
                presented.append(attachment(obs.value, lin, f"{osrc}.value", f"presentedForm[{k}]"))
                continue
            k = len(results)
            results.append({"reference": self.observation(obs, m, rid, osrc, one_specimen)})
            if lin is not None:
                lin.add(osrc, f"result[{k}].reference", RULE_REF)
        if results:
            res["result"] = results
        if r.conclusion is not None:
            res["conclusion"] = r.conclusion
            if lin is not None:
                lin.add(f"{src}.conclusion", "conclusion")
        if presented:
            res["presentedForm"] = presented
        self.put("DiagnosticReport", rid, res, lin, key_src)

    def _performers(
        self, performers: tuple[Practitioner | Organization, ...], src: str, lin: Lin | None
    ) -> list[JSON]:
        out: list[JSON] = []
        for m, party in enumerate(performers):
            ref = self.party_ref(party, f"{src}.performer[{m}]", lin, f"performer[{len(out)}]")
            if ref is not None:
                out.append(ref)
        return out

    def specimen(self, sp: Specimen, k: int, report_id: str, src: str) -> str:
        """PUT Specimen/<id>: id from its first identifier (SPM-2), else the report id + its sequence;
        returns ``Specimen/<id>``. The same specimen named by two reports of one event is written once."""
        if sp.identifiers:
            key = sp.identifiers[0]
            rid, key_src = resource_id("Specimen", key.system, key.value), f"{src}.identifiers[0]"
        else:
            seq = sp.sequence if sp.sequence is not None else k + 1
            rid, key_src = child_id("Specimen", report_id, str(seq)), src
        lin = self.lin("Specimen", urn(rid))
        res: JSON = {"resourceType": "Specimen", "id": rid, "meta": self.meta("Specimen", lin)}
        if sp.identifiers:
            res["identifier"] = [
                identifier(i, lin, f"{src}.identifiers[{n}]", f"identifier[{n}]")
                for n, i in enumerate(sp.identifiers)
            ]
        if sp.type is not None:
            res["type"] = codeable(sp.type, lin, f"{src}.type", "type")
        self.add_subject(res, lin)
        if sp.received is not None:
            res["receivedTime"] = date_time(sp.received, lin, f"{src}.received", "receivedTime")
        if sp.collected is not None:
            res["collection"] = {
                "collectedDateTime": date_time(
                    sp.collected, lin, f"{src}.collected", "collection.collectedDateTime"
                )
            }
        full_url = urn(rid)
        existing = self.entries.get(full_url)
        if existing is not None and existing.get("resource") == res:
            return f"Specimen/{rid}"
        self.put("Specimen", rid, res, lin, key_src)
        return f"Specimen/{rid}"

    def observation(
        self,
        obs: Observation,
        m: int,
        report_id: str,
        src: str,
        specimen: tuple[str, str] | None = None,
    ) -> str:
        """PUT Observation/<id>, id from the report id + OBX sequence + code; returns ``Observation/<id>``.
        ``specimen``: (reference, canonical path) of the report's single specimen."""
        seq = obs.sequence if obs.sequence is not None else m + 1
        rid = child_id("Observation", report_id, str(seq), _code_token(obs.code))
        lin = self.lin("Observation", urn(rid))
        res: JSON = {"resourceType": "Observation", "id": rid, "meta": self.meta("Observation", lin)}
        if obs.identifiers:
            res["identifier"] = [
                identifier(i, lin, f"{src}.identifiers[{k}]", f"identifier[{k}]")
                for k, i in enumerate(obs.identifiers)
            ]
        res["status"] = obs.status
        if lin is not None:
            lin.add(f"{src}.status", "status")
        if obs.category is not None:
            res["category"] = [codeable(obs.category, lin, f"{src}.category", "category[0]")]
        res["code"] = codeable(obs.code, lin, f"{src}.code", "code")
        self.add_subject(res, lin)
        self.add_encounter_ref(res, lin)
        if obs.effective is not None:
            res["effectiveDateTime"] = date_time(obs.effective, lin, f"{src}.effective", "effectiveDateTime")
        if obs.issued is not None:
            issued = instant(obs.issued, lin, f"{src}.issued", "issued")
            if issued is not None:
                res["issued"] = issued
        performers = self._performers(obs.performer, src, lin)
        if performers:
            res["performer"] = performers
        if specimen is not None:
            res["specimen"] = {"reference": specimen[0]}
            if lin is not None:
                lin.add(specimen[1], "specimen.reference", "reference: the report's only specimen")
        self._value(obs, res, lin, src)
        if obs.data_absent is not None:
            res["dataAbsentReason"] = {
                "coding": [fixed_coding(profiles.DATA_ABSENT_REASON_SYSTEM, obs.data_absent.reason.value)]
            }
            if lin is not None:
                lin.add(None, "dataAbsentReason.coding[0].system", "constant: data-absent-reason code system")
                lin.add(f"{src}.data_absent.reason", "dataAbsentReason.coding[0].code", RULE_ABSENT)
            if obs.data_absent.source is not None:
                res["dataAbsentReason"]["text"] = "source code could not be mapped"
                if lin is not None:
                    lin.add(
                        f"{src}.data_absent.source", "dataAbsentReason.text", "derived: unmapped source code"
                    )
        if obs.interpretation:
            res["interpretation"] = [
                codeable(c, lin, f"{src}.interpretation[{k}]", f"interpretation[{k}]")
                for k, c in enumerate(obs.interpretation)
            ]
        if obs.notes:
            res["note"] = [{"text": t} for t in obs.notes]
            if lin is not None:
                for k in range(len(obs.notes)):
                    lin.add(f"{src}.notes[{k}]", f"note[{k}].text")
        if obs.reference_range:
            ranges: list[JSON] = []
            for k, rr in enumerate(obs.reference_range):
                item: JSON = {}
                rsrc, rdst = f"{src}.reference_range[{k}]", f"referenceRange[{len(ranges)}]"
                if rr.low is not None:
                    item["low"] = quantity(rr.low, lin, f"{rsrc}.low", f"{rdst}.low", simple=True)
                if rr.high is not None:
                    item["high"] = quantity(rr.high, lin, f"{rsrc}.high", f"{rdst}.high", simple=True)
                if rr.text is not None:
                    item["text"] = rr.text
                    if lin is not None:
                        lin.add(f"{rsrc}.text", f"{rdst}.text")
                if item:
                    ranges.append(item)
            if ranges:
                res["referenceRange"] = ranges
        self.put("Observation", rid, res, lin, src)
        return f"Observation/{rid}"

    def _value(self, obs: Observation, res: JSON, lin: Lin | None, src: str) -> None:
        v = obs.value
        if v is None:
            return
        vsrc = f"{src}.value"
        if isinstance(v, Quantity):
            res["valueQuantity"] = quantity(v, lin, vsrc, "valueQuantity")
        elif isinstance(v, Concept):
            res["valueCodeableConcept"] = codeable(v, lin, vsrc, "valueCodeableConcept")
        elif isinstance(v, str):
            res["valueString"] = v
            if lin is not None:
                lin.add(vsrc, "valueString")
        elif isinstance(v, ClinicalDateTime):
            res["valueDateTime"] = date_time(v, lin, vsrc, "valueDateTime")
        elif isinstance(v, Range):
            res["valueRange"] = range_(v, lin, vsrc, "valueRange")
        else:  # Attachment values are routed to DiagnosticReport.presentedForm by the caller
            raise FhirOutError("an attachment result must be mapped with its report", field=vsrc)

    # ----------------------------------------------------------------------------------- orders
    def service_request(self, o: ServiceRequest, n: int) -> None:
        src = f"orders[{n}]"
        if o.placer_order_number is not None:
            key, key_src = o.placer_order_number, f"{src}.placer_order_number"
        else:
            assert o.filler_order_number is not None  # the model requires one of the two
            key, key_src = o.filler_order_number, f"{src}.filler_order_number"
        rid = resource_id("ServiceRequest", key.system, key.value)
        lin = self.lin("ServiceRequest", urn(rid))
        res: JSON = {"resourceType": "ServiceRequest", "id": rid, "meta": self.meta("ServiceRequest", lin)}
        idents: list[JSON] = []
        if o.placer_order_number is not None:
            idents.append(
                identifier_with_type(
                    o.placer_order_number, "PLAC", lin, f"{src}.placer_order_number", "identifier[0]"
                )
            )
        if o.filler_order_number is not None:
            k = len(idents)
            idents.append(
                identifier_with_type(
                    o.filler_order_number, "FILL", lin, f"{src}.filler_order_number", f"identifier[{k}]"
                )
            )
        res["identifier"] = idents
        res["status"] = o.status
        res["intent"] = o.intent
        if o.priority is not None:
            res["priority"] = o.priority
        if lin is not None:
            lin.add(f"{src}.status", "status")
            lin.add(f"{src}.intent", "intent")
            if o.priority is not None:
                lin.add(f"{src}.priority", "priority")
        res["code"] = codeable(o.code, lin, f"{src}.code", "code")
        self.add_subject(res, lin)
        self.add_encounter_ref(res, lin)
        if o.authored_on is not None:
            res["authoredOn"] = date_time(o.authored_on, lin, f"{src}.authored_on", "authoredOn")
        if o.requester is not None:
            ref = self.party_ref(o.requester, f"{src}.requester", lin, "requester")
            if ref is not None:
                res["requester"] = ref
        if isinstance(o.occurrence, ClinicalDateTime):
            res["occurrenceDateTime"] = date_time(
                o.occurrence, lin, f"{src}.occurrence", "occurrenceDateTime"
            )
        elif o.occurrence is not None:
            res["occurrencePeriod"] = period(o.occurrence, lin, f"{src}.occurrence", "occurrencePeriod")
        reasons = [codeable(c, lin, f"{src}.reason[{k}]", f"reasonCode[{k}]") for k, c in enumerate(o.reason)]
        if o.clinical_information is not None:
            # OBR-13 as a text-only reasonCode: UK Core's lab request carries the clinical reason there
            if lin is not None:
                k = len(reasons)
                lin.add(
                    f"{src}.clinical_information", f"reasonCode[{k}].text", "relevant clinical information"
                )
            reasons.append({"text": o.clinical_information})
        if reasons:
            res["reasonCode"] = reasons
        if o.notes:
            res["note"] = [{"text": t} for t in o.notes]
            if lin is not None:
                for k in range(len(o.notes)):
                    lin.add(f"{src}.notes[{k}]", f"note[{k}].text")
        self.put("ServiceRequest", rid, res, lin, key_src)

    def referral(self, r: Referral, n: int) -> None:
        """A referral (e-RS, keyed on its UBRN / first identifier) as a ServiceRequest (intent order)."""
        src = f"referrals[{n}]"
        key = r.identifiers[0]
        rid = resource_id("ServiceRequest", key.system, key.value)
        lin = self.lin("ServiceRequest", urn(rid))
        res: JSON = {"resourceType": "ServiceRequest", "id": rid, "meta": self.meta("ServiceRequest", lin)}
        res["identifier"] = [
            identifier(i, lin, f"{src}.identifiers[{k}]", f"identifier[{k}]")
            for k, i in enumerate(r.identifiers)
        ]
        res["status"] = r.status
        res["intent"] = "order"
        if lin is not None:
            lin.add(f"{src}.status", "status")
            lin.add(src, "intent", "constant: a referral is an order for a service")
        if r.priority is not None:
            res["priority"] = r.priority
            if lin is not None:
                lin.add(f"{src}.priority", "priority")
        if r.service is not None:
            res["code"] = codeable(r.service, lin, f"{src}.service", "code")
        self.add_subject(res, lin)
        self.add_encounter_ref(res, lin)
        if r.authored_on is not None:
            res["authoredOn"] = date_time(r.authored_on, lin, f"{src}.authored_on", "authoredOn")
        if r.requester is not None:
            ref = self.party_ref(r.requester, f"{src}.requester", lin, "requester")
            if ref is not None:
                res["requester"] = ref
        if r.recipient is not None:
            ref = self.party_ref(r.recipient, f"{src}.recipient", lin, "performer[0]")
            if ref is not None:
                res["performer"] = [ref]
        if r.reason:
            res["reasonCode"] = [
                codeable(c, lin, f"{src}.reason[{k}]", f"reasonCode[{k}]") for k, c in enumerate(r.reason)
            ]
        self.put("ServiceRequest", rid, res, lin, f"{src}.identifiers[0]")

    # ------------------------------------------------------------------------- other clinical
    def _business_id(self, resource_type: str, idents: tuple[Identifier, ...], src: str) -> tuple[str, str]:
        if not idents:
            raise FhirOutError(f"a {resource_type} needs a business identifier", field=f"{src}.identifiers")
        return resource_id(resource_type, idents[0].system, idents[0].value), f"{src}.identifiers[0]"

    def _identifiers(self, res: JSON, idents: tuple[Identifier, ...], lin: Lin | None, src: str) -> None:
        if idents:
            res["identifier"] = [
                identifier(i, lin, f"{src}.identifiers[{k}]", f"identifier[{k}]")
                for k, i in enumerate(idents)
            ]

    def _status_cc(
        self, res: JSON, key: str, system: str, code: str | None, lin: Lin | None, src: str
    ) -> None:
        if code is None:
            return
        res[key] = {"coding": [fixed_coding(system, code)]}
        if lin is not None:
            lin.add(None, f"{key}.coding[0].system", "constant: FHIR code system of the element")
            lin.add(src, f"{key}.coding[0].code")

    def allergy(self, a: AllergyIntolerance, n: int) -> None:
        src = f"allergies[{n}]"
        if a.identifiers:
            rid, key_src = self._business_id("AllergyIntolerance", a.identifiers, src)
        else:
            rid = keyed_id("AllergyIntolerance", patient_key(self.event.patient), _code_token(a.code))
            key_src = f"{src}.code"
        lin = self.lin("AllergyIntolerance", urn(rid))
        res: JSON = {
            "resourceType": "AllergyIntolerance",
            "id": rid,
            "meta": self.meta("AllergyIntolerance", lin),
        }
        self._identifiers(res, a.identifiers, lin, src)
        self._status_cc(
            res,
            "clinicalStatus",
            profiles.ALLERGY_CLINICAL_SYSTEM,
            a.clinical_status,
            lin,
            f"{src}.clinical_status",
        )
        self._status_cc(
            res,
            "verificationStatus",
            profiles.ALLERGY_VERIFICATION_SYSTEM,
            a.verification_status,
            lin,
            f"{src}.verification_status",
        )
        if a.type is not None:
            res["type"] = a.type
            if lin is not None:
                lin.add(f"{src}.type", "type")
        if a.category:
            res["category"] = list(a.category)
            if lin is not None:
                for k in range(len(a.category)):
                    lin.add(f"{src}.category[{k}]", f"category[{k}]")
        if a.criticality is not None:
            res["criticality"] = a.criticality
            if lin is not None:
                lin.add(f"{src}.criticality", "criticality")
        res["code"] = codeable(a.code, lin, f"{src}.code", "code")
        self.add_subject(res, lin, "patient")
        self.add_encounter_ref(res, lin)
        if a.onset is not None:
            res["onsetDateTime"] = date_time(a.onset, lin, f"{src}.onset", "onsetDateTime")
        if a.recorded is not None:
            res["recordedDate"] = date_time(a.recorded, lin, f"{src}.recorded", "recordedDate")
        if a.reactions:
            reactions: list[JSON] = []
            for k, rx in enumerate(a.reactions):
                rsrc, rdst = f"{src}.reactions[{k}]", f"reaction[{k}]"
                item: JSON = {}
                if rx.manifestation:
                    item["manifestation"] = [
                        codeable(c, lin, f"{rsrc}.manifestation[{j}]", f"{rdst}.manifestation[{j}]")
                        for j, c in enumerate(rx.manifestation)
                    ]
                else:  # manifestation is 1..* in R4: say explicitly that it is not known
                    item["manifestation"] = [{"extension": absent_extension("unknown")}]
                    if lin is not None:
                        lin.add(
                            rsrc,
                            f"{rdst}.manifestation[0]",
                            "derived: no manifestation given -> data-absent unknown",
                        )
                if rx.description is not None:
                    item["description"] = rx.description
                    if lin is not None:
                        lin.add(f"{rsrc}.description", f"{rdst}.description")
                if rx.severity is not None:
                    item["severity"] = rx.severity
                    if lin is not None:
                        lin.add(f"{rsrc}.severity", f"{rdst}.severity")
                reactions.append(item)
            res["reaction"] = reactions
        self.put("AllergyIntolerance", rid, res, lin, key_src)

    def condition(self, c: Condition, n: int) -> None:
        src = f"conditions[{n}]"
        if c.identifiers:
            rid, key_src = self._business_id("Condition", c.identifiers, src)
        else:
            rid = keyed_id("Condition", patient_key(self.event.patient), _utc(c.onset), _code_token(c.code))
            key_src = f"{src}.code"
        lin = self.lin("Condition", urn(rid))
        res: JSON = {"resourceType": "Condition", "id": rid, "meta": self.meta("Condition", lin)}
        self._identifiers(res, c.identifiers, lin, src)
        self._status_cc(
            res,
            "clinicalStatus",
            profiles.CONDITION_CLINICAL_SYSTEM,
            c.clinical_status,
            lin,
            f"{src}.clinical_status",
        )
        self._status_cc(
            res,
            "verificationStatus",
            profiles.CONDITION_VERIFICATION_SYSTEM,
            c.verification_status,
            lin,
            f"{src}.verification_status",
        )
        if c.category is not None:
            res["category"] = [{"coding": [fixed_coding(profiles.CONDITION_CATEGORY_SYSTEM, c.category)]}]
            if lin is not None:
                lin.add(None, "category[0].coding[0].system", "constant: condition-category code system")
                lin.add(f"{src}.category", "category[0].coding[0].code")
        res["code"] = codeable(c.code, lin, f"{src}.code", "code")
        self.add_subject(res, lin)
        self.add_encounter_ref(res, lin)
        if c.onset is not None:
            res["onsetDateTime"] = date_time(c.onset, lin, f"{src}.onset", "onsetDateTime")
        if c.recorded is not None:
            res["recordedDate"] = date_time(c.recorded, lin, f"{src}.recorded", "recordedDate")
        self.put("Condition", rid, res, lin, key_src)

    def medication_request(self, m: MedicationRequest, n: int) -> None:
        src = f"medication_requests[{n}]"
        rid, key_src = self._business_id("MedicationRequest", m.identifiers, src)
        lin = self.lin("MedicationRequest", urn(rid))
        res: JSON = {
            "resourceType": "MedicationRequest",
            "id": rid,
            "meta": self.meta("MedicationRequest", lin),
        }
        self._identifiers(res, m.identifiers, lin, src)
        res["status"] = m.status
        res["intent"] = m.intent
        if lin is not None:
            lin.add(f"{src}.status", "status")
            lin.add(f"{src}.intent", "intent")
        res["medicationCodeableConcept"] = codeable(
            m.medication, lin, f"{src}.medication", "medicationCodeableConcept"
        )
        self.add_subject(res, lin)
        self.add_encounter_ref(res, lin)
        if m.authored_on is not None:
            res["authoredOn"] = date_time(m.authored_on, lin, f"{src}.authored_on", "authoredOn")
        if m.requester is not None:
            ref = self.party_ref(m.requester, f"{src}.requester", lin, "requester")
            if ref is not None:
                res["requester"] = ref
        if m.dosage_text is not None:
            res["dosageInstruction"] = [{"text": m.dosage_text}]
            if lin is not None:
                lin.add(f"{src}.dosage_text", "dosageInstruction[0].text")
        self.put("MedicationRequest", rid, res, lin, key_src)

    def medication_statement(self, m: MedicationStatement, n: int) -> None:
        src = f"medication_statements[{n}]"
        rid, key_src = self._business_id("MedicationStatement", m.identifiers, src)
        lin = self.lin("MedicationStatement", urn(rid))
        res: JSON = {
            "resourceType": "MedicationStatement",
            "id": rid,
            "meta": self.meta("MedicationStatement", lin),
        }
        self._identifiers(res, m.identifiers, lin, src)
        res["status"] = m.status
        if lin is not None:
            lin.add(f"{src}.status", "status")
        res["medicationCodeableConcept"] = codeable(
            m.medication, lin, f"{src}.medication", "medicationCodeableConcept"
        )
        self.add_subject(res, lin)
        self.add_encounter_ref(res, lin, "context")
        if m.effective is not None:
            p = period(m.effective, lin, f"{src}.effective", "effectivePeriod")
            if p:
                res["effectivePeriod"] = p
        if m.dosage_text is not None:
            res["dosage"] = [{"text": m.dosage_text}]
            if lin is not None:
                lin.add(f"{src}.dosage_text", "dosage[0].text")
        self.put("MedicationStatement", rid, res, lin, key_src)

    def document(self, d: DocumentReference, n: int) -> None:
        src = f"documents[{n}]"
        rid, key_src = self._business_id("DocumentReference", d.identifiers, src)
        if not d.content:
            raise FhirOutError("a document needs at least one content attachment", field=f"{src}.content")
        lin = self.lin("DocumentReference", urn(rid))
        res: JSON = {
            "resourceType": "DocumentReference",
            "id": rid,
            "meta": self.meta("DocumentReference", lin),
        }
        self._identifiers(res, d.identifiers, lin, src)
        res["status"] = d.status
        if lin is not None:
            lin.add(f"{src}.status", "status")
        res["type"] = codeable(d.type, lin, f"{src}.type", "type")
        self.add_subject(res, lin)
        if d.date is not None:
            when = instant(d.date, lin, f"{src}.date", "date")
            if when is not None:
                res["date"] = when
        authors: list[JSON] = []
        for k, party in enumerate(d.author):
            ref = self.party_ref(party, f"{src}.author[{k}]", lin, f"author[{len(authors)}]")
            if ref is not None:
                authors.append(ref)
        if authors:
            res["author"] = authors
        if d.description is not None:
            res["description"] = d.description
            if lin is not None:
                lin.add(f"{src}.description", "description")
        res["content"] = [
            {"attachment": attachment(a, lin, f"{src}.content[{k}]", f"content[{k}].attachment")}
            for k, a in enumerate(d.content)
        ]
        ref = self.encounter_reference(lin, "context.encounter[0]")
        if ref is not None:
            res["context"] = {"encounter": [ref]}
        self.put("DocumentReference", rid, res, lin, key_src)

    # ------------------------------------------------------------------------------------ bundle
    def bundle_header(self) -> JSON:
        ev = self.event
        if self.sink is not None:
            self.sink.append(LineageEntry(None, "Bundle.type", "constant: transaction"))
            self.sink.append(LineageEntry(None, "Bundle.identifier.system", "constant: event key system"))
            self.sink.append(LineageEntry("key.value", "Bundle.identifier.value", RULE_COPY))
        return {
            "resourceType": "Bundle",
            "identifier": {"system": _EVENT_KEY_SYSTEM, "value": ev.key.value},
            "type": "transaction",
        }

    def build(self) -> None:
        ev = self.event
        self.patient()
        self.encounter_context()
        if ev.kind in ENCOUNTER_KINDS:
            self.encounter()
        for n, r in enumerate(ev.reports):
            self.report(r, n)
        for n, o in enumerate(ev.orders):
            self.service_request(o, n)
        for n, ref in enumerate(ev.referrals):
            self.referral(ref, n)
        for n, a in enumerate(ev.allergies):
            self.allergy(a, n)
        for n, c in enumerate(ev.conditions):
            self.condition(c, n)
        for n, mr in enumerate(ev.medication_requests):
            self.medication_request(mr, n)
        for n, ms in enumerate(ev.medication_statements):
            self.medication_statement(ms, n)
        for n, d in enumerate(ev.documents):
            self.document(d, n)
