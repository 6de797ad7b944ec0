"""Patient, and the parties other resources refer to: Practitioner / Organization (the registered
GP and practice, performers, requesters, authors) as conditionally created reference data."""

from __future__ import annotations

from shared.canonical.model import (
    ClinicalDateTime,
    Coded,
    DataAbsent,
    Identifier,
    NhsNumber,
    Organization,
    Patient,
    Practitioner,
)
from shared.fhir import profiles
from shared.fhir.ids import resource_id, urn
from shared.mapping.fhir_out._build import (
    JSON,
    RULE_ABSENT,
    RULE_COPY,
    RULE_REF,
    Lin,
    absent_extension,
    address,
    codeable,
    contact_point,
    date_time,
    display_name,
    each,
    fixed_concept,
    human_name,
    identifier,
    identifier_query,
    set_built,
    set_field,
    set_opt,
    trace,
)
from shared.mapping.fhir_out._bundle import (
    PATIENT_UPSERT_KINDS,
    Builder,
    ref_query,
)

_BIRTH_DATE_RULE = "PartialDate -> FHIR date at its precision"
_LINKED_PATIENT = "constant: linked record is a Patient"


def patient(b: Builder) -> None:
    ev = b.event
    p = ev.patient
    key_system, key_value, key_src = _patient_key(p)
    full_url = urn(resource_id("Patient", key_system, key_value))
    b.patient_ref = {"reference": full_url}
    b.reserve(full_url)
    lin = b.lin("Patient", full_url)
    res: JSON = {"resourceType": "Patient", "meta": b.meta("Patient", lin, patient=True)}
    _ethnicity(res, p.ethnicity, lin)
    res["identifier"] = _identifiers(p, lin)
    set_built(res, "name", each(human_name, p.names, lin, "patient.names", "name"))
    set_built(res, "telecom", each(contact_point, p.telecom, lin, "patient.telecom", "telecom"))
    _gender(res, p.gender, lin)
    if p.birth_date is not None:
        set_field(res, "birthDate", p.birth_date.iso(), lin, "patient.birth_date", _BIRTH_DATE_RULE)
    _deceased(res, p.deceased, lin)
    set_built(res, "address", each(address, p.addresses, lin, "patient.addresses", "address"))
    if p.marital_status is not None:
        res["maritalStatus"] = codeable(p.marital_status, lin, "patient.marital_status", "maritalStatus")
    set_built(res, "generalPractitioner", _general_practitioners(b, p, lin))
    set_built(res, "link", _links(b, lin))
    query = identifier_query(key_system, key_value)
    b.entry(full_url, res, _patient_request(b, query), key_src)


def _patient_key(p: Patient) -> tuple[str, str, str]:
    """(system, value, canonical path) of the patient key: the NHS number, else the first identifier."""
    if p.nhs_number is not None:
        return profiles.NHS_NUMBER_SYSTEM, p.nhs_number.value, "patient.nhs_number"
    first = p.identifiers[0]
    return first.system, first.value, "patient.identifiers[0]"


def _ethnicity(res: JSON, ethnicity: Coded | None, lin: Lin | None) -> None:
    if ethnicity is None:
        return
    concept = codeable(ethnicity, lin, "patient.ethnicity", "extension[0].valueCodeableConcept")
    res["extension"] = [{"url": profiles.EXT_ETHNIC_CATEGORY, "valueCodeableConcept": concept}]
    trace(lin, None, "extension[0].url", "constant: UK Core ethnic category extension")


def _identifiers(p: Patient, lin: Lin | None) -> list[JSON]:
    """The NHS number first (with its verification status), then the local identifiers."""
    idents = [] if p.nhs_number is None else [_nhs_number(p.nhs_number, lin)]
    for n, i in enumerate(p.identifiers):
        idents.append(identifier(i, lin, f"patient.identifiers[{n}]", f"identifier[{len(idents)}]"))
    return idents


def _nhs_number(nhs_number: NhsNumber, lin: Lin | None) -> JSON:
    nhs: JSON = {}
    status = nhs_number.verification_status
    if status is not None:
        ext = "identifier[0].extension[0]"
        trace(lin, None, f"{ext}.url", "constant: UK Core NHS number verification status extension")
        concept = fixed_concept(
            profiles.NHS_NUMBER_VERIFICATION_SYSTEM,
            status,
            lin,
            "patient.nhs_number.verification_status",
            f"{ext}.valueCodeableConcept",
            "constant: UK Core (England) system",
        )
        nhs["extension"] = [{"url": profiles.EXT_NHS_NUMBER_VERIFICATION, "valueCodeableConcept": concept}]
    at = "identifier[0]."
    set_field(nhs, "system", profiles.NHS_NUMBER_SYSTEM, lin, None, "constant: NHS number system", at=at)
    set_field(nhs, "value", nhs_number.value, lin, "patient.nhs_number.value", at=at)
    return nhs


def _gender(res: JSON, gender: str | DataAbsent | None, lin: Lin | None) -> None:
    if isinstance(gender, DataAbsent):
        res["_gender"] = {"extension": absent_extension(gender.reason.value)}
        trace(lin, "patient.gender.reason", "_gender.extension[0]", RULE_ABSENT)
    else:
        set_opt(res, "gender", gender, lin, "patient.gender")


def _deceased(res: JSON, deceased: bool | ClinicalDateTime | None, lin: Lin | None) -> None:
    if isinstance(deceased, bool):
        set_field(res, "deceasedBoolean", deceased, lin, "patient.deceased")
    elif deceased is not None:
        res["deceasedDateTime"] = date_time(deceased, lin, "patient.deceased", "deceasedDateTime")


def _general_practitioners(b: Builder, p: Patient, lin: Lin | None) -> list[JSON]:
    """The registered practice (an Organization) and the registered GP (a Practitioner)."""
    gps: list[JSON] = []
    for attr, party in (
        ("general_practitioner", p.general_practitioner),
        ("registered_gp", p.registered_gp),
    ):
        if party is not None:
            ref = party_ref(b, party, f"patient.{attr}", lin, f"generalPractitioner[{len(gps)}]")
            if ref is not None:
                gps.append(ref)
    return gps


def _patient_request(b: Builder, query: str) -> JSON:
    if b.event.kind in PATIENT_UPSERT_KINDS:
        return {"method": "PUT", "url": f"Patient?{query}"}
    return {"method": "POST", "url": "Patient", "ifNoneExist": query}


def _links(b: Builder, lin: Lin | None) -> list[JSON]:
    """Patient.link from the canonical MergeLinks, plus ``replaces`` for each merged-away identifier
    (MRG-1) the links do not already name."""
    ev = b.event
    out: list[JSON] = []
    named: set[tuple[str, str]] = set()
    for n, link in enumerate(ev.patient.links):
        src = f"patient.links[{n}]"
        out.append(_link(link.other, f"{src}.other", link.kind, len(out), lin, f"{src}.kind"))
        named.add((link.other.system, link.other.value))
    for n, merged in enumerate(ev.merged_identifiers):
        if (merged.system, merged.value) in named:
            continue
        named.add((merged.system, merged.value))
        src = f"merged_identifiers[{n}]"
        rule = "derived: merged-away record is replaced by this one"
        out.append(_link(merged, src, "replaces", len(out), lin, src, rule))
    return out


def _link(
    other: Identifier, src: str, kind: str, k: int, lin: Lin | None, kind_src: str, kind_rule: str = RULE_COPY
) -> JSON:
    """One Patient.link to the record ``other`` names (by identifier)."""
    dst = f"link[{k}]"
    trace(lin, None, f"{dst}.other.type", _LINKED_PATIENT)
    trace(lin, f"{src}.system", f"{dst}.other.identifier.system")
    trace(lin, f"{src}.value", f"{dst}.other.identifier.value")
    trace(lin, kind_src, f"{dst}.type", kind_rule)
    return {
        "other": {"type": "Patient", "identifier": {"system": other.system, "value": other.value}},
        "type": kind,
    }


def party_ref(
    b: Builder, party: Practitioner | Organization, src: str, lin: Lin | None, dst: str
) -> JSON | None:
    """Reference to a Practitioner/Organization entry (conditional create on its identifier), or a
    display-only reference when it has no identifier; ``None`` when there is nothing to say."""
    if isinstance(party, Practitioner):
        if party.identifiers:
            ref: JSON = {"reference": practitioner(b, party, src)}
        elif party.name is not None and (text := display_name(party.name)):
            trace(lin, f"{src}.name", f"{dst}.display", "derived: display text of the name")
            return {"display": text}
        else:
            return None
    elif party.ods_code is not None or party.identifiers:
        ref = {"reference": organization(b, party, src)}
    elif party.name is not None:
        trace(lin, f"{src}.name", f"{dst}.display")
        return {"display": party.name}
    else:
        return None
    trace(lin, src, f"{dst}.reference", RULE_REF)
    return ref


def set_party(
    b: Builder,
    res: JSON,
    key: str,
    party: Practitioner | Organization | None,
    lin: Lin | None,
    src: str,
) -> None:
    """``res[key]`` = a reference to ``party`` (nothing when there is none or nothing to say)."""
    if party is not None:
        set_built(res, key, party_ref(b, party, src, lin, key))


def party_refs(
    b: Builder, parties: tuple[Practitioner | Organization, ...], lin: Lin | None, src: str, dst: str
) -> list[JSON]:
    """References to ``parties`` (performers, authors): the m-th from ``<src>[m]``, those with nothing to
    say left out."""
    out: list[JSON] = []
    for m, party in enumerate(parties):
        ref = party_ref(b, party, f"{src}[{m}]", lin, f"{dst}[{len(out)}]")
        if ref is not None:
            out.append(ref)
    return out


def practitioner(b: Builder, pr: Practitioner, src: str) -> str:
    key = pr.identifiers[0]
    full_url, seen = b.ref_url("Practitioner", key.system, key.value)
    if seen:
        return full_url
    lin = b.lin("Practitioner", full_url)
    res: JSON = {
        "resourceType": "Practitioner",
        "meta": b.meta("Practitioner", lin, reference_data=True),
    }
    res["identifier"] = each(identifier, pr.identifiers, lin, f"{src}.identifiers", "identifier")
    name = None if pr.name is None else human_name(pr.name, lin, f"{src}.name", "name[0]")
    if name:
        res["name"] = [name]
    query = ref_query(key.system, key.value)
    b.create("Practitioner", full_url, res, query, f"{src}.identifiers[0]")
    return full_url


def organization(b: Builder, org: Organization, src: str) -> str:
    if org.ods_code is not None:
        key_system, key_value = profiles.ODS_ORGANIZATION_SYSTEM, org.ods_code
        key_src = f"{src}.ods_code"
    else:
        key_system, key_value = org.identifiers[0].system, org.identifiers[0].value
        key_src = f"{src}.identifiers[0]"
    full_url, seen = b.ref_url("Organization", key_system, key_value)
    if seen:
        return full_url
    lin = b.lin("Organization", full_url)
    res: JSON = {
        "resourceType": "Organization",
        "meta": b.meta("Organization", lin, reference_data=True),
    }
    idents: list[JSON] = []
    if org.ods_code is not None:
        idents.append({"system": profiles.ODS_ORGANIZATION_SYSTEM, "value": org.ods_code})
        trace(lin, None, "identifier[0].system", "constant: ODS organisation code system")
        trace(lin, f"{src}.ods_code", "identifier[0].value")
    for n, i in enumerate(org.identifiers):
        if org.ods_code is not None and i.system == key_system and i.value == key_value:
            continue
        idents.append(identifier(i, lin, f"{src}.identifiers[{n}]", f"identifier[{len(idents)}]"))
    res["identifier"] = idents
    set_opt(res, "name", org.name, lin, f"{src}.name")
    query = ref_query(key_system, key_value)
    b.create("Organization", full_url, res, query, key_src)
    return full_url
