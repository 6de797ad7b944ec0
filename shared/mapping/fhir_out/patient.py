"""Patient, and the parties other resources refer to: Practitioner / Organization (the registered
GP and practice, performers, requesters, authors) as conditionally created reference data."""

from __future__ import annotations

from shared.canonical.model import (
    DataAbsent,
    Organization,
    Practitioner,
)
from shared.fhir import profiles
from shared.fhir.ids import resource_id, urn
from shared.mapping.fhir_out._build import (
    JSON,
    RULE_ABSENT,
    RULE_REF,
    Lin,
    absent_extension,
    address,
    codeable,
    contact_point,
    date_time,
    display_name,
    human_name,
    identifier,
    identifier_query,
)
from shared.mapping.fhir_out._bundle import (
    PATIENT_UPSERT_KINDS,
    Builder,
    cached_object,
    ref_query,
    remember_object,
    remember_reference,
    worth_caching,
)
from shared.mapping.fhir_out._frozen import freeze


def patient(b: Builder) -> None:
    ev = b.event
    p = ev.patient
    cacheable = b.sink is None and not ev.merged_identifiers
    if cacheable:
        hit = cached_object(p, "Patient")
        if hit is not None:
            cached_url, cached, cached_query, cached_src = hit
            b.patient_ref = {"reference": cached_url}
            b.reserve(cached_url)
            if p.general_practitioner is not None:  # its Organization entry, after the Patient
                party_ref(b, p.general_practitioner, "patient.general_practitioner", None, "")
            if p.registered_gp is not None:  # and the GP's Practitioner entry
                party_ref(b, p.registered_gp, "patient.registered_gp", None, "")
            b.entry(cached_url, cached, _patient_request(b, cached_query), cached_src)
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
    b.patient_ref = {"reference": full_url}
    b.reserve(full_url)
    lin = b.lin("Patient", full_url)
    res: JSON = {"resourceType": "Patient", "meta": b.meta("Patient", lin, patient=True)}
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
                address(a, lin, f"patient.addresses[{i}]", f"address[{i}]") for i, a in enumerate(p.addresses)
            ]
    if p.marital_status is not None:
        res["maritalStatus"] = codeable(p.marital_status, lin, "patient.marital_status", "maritalStatus")
    gps: list[JSON] = []
    for attr, party in (
        ("general_practitioner", p.general_practitioner),
        ("registered_gp", p.registered_gp),
    ):
        if party is not None:
            ref = party_ref(b, party, f"patient.{attr}", lin, f"generalPractitioner[{len(gps)}]")
            if ref is not None:
                gps.append(ref)
    if gps:
        res["generalPractitioner"] = gps
    links = _links(b, lin)
    if links:
        res["link"] = links
    query = identifier_query(key_system, key_value)
    if cacheable and worth_caching(p, "Patient"):
        res = freeze(res)
        remember_object(p, "Patient", (full_url, res, query, key_src))
    b.entry(full_url, res, _patient_request(b, query), key_src)


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


def party_ref(
    b: Builder, party: Practitioner | Organization, src: str, lin: Lin | None, dst: str
) -> JSON | None:
    """Reference to a Practitioner/Organization entry (conditional create on its identifier), or a
    display-only reference when it has no identifier; ``None`` when there is nothing to say."""
    if isinstance(party, Practitioner):
        if party.identifiers:
            ref: JSON = {"reference": practitioner(b, party, src)}
        elif party.name is not None and (text := display_name(party.name)):
            ref = {"display": text}
            if lin is not None:
                lin.add(f"{src}.name", f"{dst}.display", "derived: display text of the name")
            return ref
        else:
            return None
    elif party.ods_code is not None or party.identifiers:
        ref = {"reference": organization(b, party, src)}
    elif party.name is not None:
        if lin is not None:
            lin.add(f"{src}.name", f"{dst}.display")
        return {"display": party.name}
    else:
        return None
    if lin is not None:
        lin.add(src, f"{dst}.reference", RULE_REF)
    return ref


def practitioner(b: Builder, pr: Practitioner, src: str) -> str:
    key = pr.identifiers[0]
    full_url, seen = b.ref_url("Practitioner", key.system, key.value)
    if seen or b.cached_reference("Practitioner", pr, full_url, f"{src}.identifiers[0]"):
        return full_url
    lin = b.lin("Practitioner", full_url)
    res: JSON = {
        "resourceType": "Practitioner",
        "meta": b.meta("Practitioner", lin, reference_data=True),
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
    query = ref_query(key.system, key.value)
    if lin is None:
        res = remember_reference(("Practitioner", pr), res, query)
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
    if seen or b.cached_reference("Organization", org, full_url, key_src):
        return full_url
    lin = b.lin("Organization", full_url)
    res: JSON = {
        "resourceType": "Organization",
        "meta": b.meta("Organization", lin, reference_data=True),
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
    query = ref_query(key_system, key_value)
    if lin is None:
        res = remember_reference(("Organization", org), res, query)
    b.create("Organization", full_url, res, query, key_src)
    return full_url
