"""FHIR R4 (UK Core / PDS) Patient -> canonical :class:`~shared.canonical.model.Patient`.

Rules
-----
* ``identifier`` with system ``https://fhir.nhs.uk/Id/nhs-number`` -> ``nhs_number``. The value must pass
  Modulus 11 (spaces/hyphens tolerated): a failure is :class:`~shared.mapping.errors.InvalidValue` naming
  ``Patient.identifier[i].value`` — never the number. Two *different* NHS numbers are an error too.
  The verification status comes from the ``Extension-UKCore-NHSNumberVerificationStatus`` extension, coded
  in either the PDS code system (``.../UKCore-NHSNumberVerificationStatus``) or the UK Core England one
  (``...StatusEngland``); the code must be one of 01-08.
* Other identifiers -> ``identifiers`` (system and value required; type = the v2-0203 code).
* ``meta.security`` in v3-Confidentiality -> ``sensitivity``: ``U`` or no label -> NORMAL, ``R`` ->
  RESTRICTED, ``V`` -> VERY_RESTRICTED (the PDS value set; any other confidentiality code is an error).
  When several labels are present the most restrictive wins.
* ``gender`` (or a ``_gender`` data-absent-reason extension -> DataAbsent), name ``use``, address
  ``use``/``type``, telecom ``system``/``use`` and ``link.type`` are checked against their (required)
  value sets; unknown codes are errors, never defaulted.
* ``generalPractitioner``: the first reference that is an Organization (by ODS code) ->
  ``general_practitioner``; the first that is a Practitioner (GMP / GMC number) -> ``registered_gp``.
* ``link`` -> ``links`` (``other`` by its logical identifier, else the referenced Patient's NHS number /
  first identifier when the caller supplied it in ``context``). A merge link (``replaces`` /
  ``replaced-by``) whose other record cannot be identified is an error; a ``refer`` / ``seealso`` link
  to something not supplied (e.g. a RelatedPerson) is not carried.
* Identifiers and telecoms without a ``value`` carry nothing and are skipped.
* Not carried (no canonical element): ``text`` of names/addresses, telecom periods and ranks, contacts,
  communication, extensions other than NHS-number verification and ethnic category.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.canonical.model import (
    Address,
    ClinicalDateTime,
    ContactPoint,
    DataAbsent,
    HumanName,
    Identifier,
    MergeLink,
    NhsNumber,
    Organization,
    Patient,
    Practitioner,
    Sensitivity,
)
from shared.identifiers.nhs_number import InvalidNhsNumber, normalise_nhs_number
from shared.mapping.errors import InvalidValue, MissingRequiredField
from shared.mapping.fhir_in import _read as r
from shared.mapping.lineage import LineageRecorder, Mapped
from shared.terminology import systems

__all__ = ["patient_from_fhir"]

_GENDERS = r.field_values(Patient, "gender")
_VERIFICATION = r.field_values(NhsNumber, "verification_status")
_VERIFICATION_SYSTEMS = frozenset(
    {systems.NHS_NUMBER_VERIFICATION_STATUS_PDS, systems.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND}
)
_ADDRESS_USES = r.field_values(Address, "use")
_ADDRESS_TYPES = r.field_values(Address, "type")
_TELECOM_SYSTEMS = r.field_values(ContactPoint, "system")
_TELECOM_USES = r.field_values(ContactPoint, "use")
_LINK_TYPES = r.field_values(MergeLink, "kind")
#: Link types that record a merge: their other record must be identified (or the write is refused).
_MERGE = frozenset({"replaces", "replaced-by"})
#: PDS confidentiality (value set ``pds-confidentiality``) -> canonical sensitivity, least restrictive first.
_SENSITIVITY: dict[str, Sensitivity] = {
    "U": Sensitivity.NORMAL,
    "R": Sensitivity.RESTRICTED,
    "V": Sensitivity.VERY_RESTRICTED,
}
_RANK = {s: i for i, s in enumerate(_SENSITIVITY.values())}


def patient_from_fhir(
    resource: r.JsonObj,
    *,
    context: Mapping[str, r.JsonObj] | None = None,
    lineage: bool = True,
    target: str = "patient",
    full_url: str | None = None,
) -> Mapped[Patient]:
    """Map a FHIR Patient resource (JSON object) to the canonical Patient.

    ``context`` maps references / fullUrls to resources the caller already has (e.g. the Patient a
    ``link`` points to). Lineage targets are prefixed with ``target`` (``patient.names[0].given[0]``);
    sources are FHIR paths (``Patient.name[0].given[0]``) with ``resource=full_url``.
    """
    rec = LineageRecorder(enabled=lineage)
    with rec.scope(f"{target}.", resource=full_url):
        patient = map_patient(resource, rec, r.Resolver(resource, context))
    return Mapped(patient, rec.freeze())


def _check_type(resource: r.JsonObj, expected: str) -> None:
    if resource.get("resourceType") != expected:
        raise InvalidValue("resourceType", f"expected a {expected} resource")


def map_patient(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> Patient:
    _check_type(resource, "Patient")
    src = "Patient"
    nhs_number, local = _identifiers(resource, rec)
    if nhs_number is None and not local:
        raise MissingRequiredField("Patient.identifier", "needs an NHS number or a local identifier")

    names: list[HumanName] = []
    for i, node in enumerate(r.arr(resource, "name", src)):
        names.append(r.human_name(node, f"{src}.name[{i}]", f"names[{len(names)}]", rec))

    gender: str | DataAbsent | None = r.code_in(resource, "gender", src, _GENDERS)
    if gender is not None:
        rec.add("Patient.gender", "gender", "copy", table="administrative-gender")
    else:
        gender = r.absent_extension(r.opt_obj(resource, "_gender", src), "Patient._gender")
        if gender is not None:
            rec.add("Patient._gender.extension", "gender.reason", "data-absent-reason extension")

    birth_date = None
    if resource.get("birthDate") is not None:
        birth_date = r.partial_date(resource["birthDate"], "Patient.birthDate")
        rec.add("Patient.birthDate", "birth_date", "fhir-date")

    deceased = _deceased(resource, rec)

    addresses: list[Address] = []
    for i, node in enumerate(r.arr(resource, "address", src)):
        address = _address(node, f"{src}.address[{i}]", f"addresses[{len(addresses)}]", rec)
        if address is not None:
            addresses.append(address)

    telecom: list[ContactPoint] = []
    for i, node in enumerate(r.arr(resource, "telecom", src)):
        if r.obj(node, f"{src}.telecom[{i}]").get("value") is None:
            continue  # a telecom without a value (only use/period) carries nothing
        telecom.append(_contact_point(node, f"{src}.telecom[{i}]", f"telecom[{len(telecom)}]", rec))

    gp: Organization | None = None
    registered_gp: Practitioner | None = None
    for i, node in enumerate(r.arr(resource, "generalPractitioner", src)):
        path = f"{src}.generalPractitioner[{i}]"
        kind = r.party_kind(node, path, resolver)
        if kind == "Organization" and gp is None:
            found = r.party(node, path, "general_practitioner", rec, resolver)
            gp = found if isinstance(found, Organization) else None
        elif kind == "Practitioner" and registered_gp is None:
            found = r.party(node, path, "registered_gp", rec, resolver)
            registered_gp = found if isinstance(found, Practitioner) else None

    ethnicity = None
    for i, ext in enumerate(r.arr(resource, "extension", src)):
        ext_obj = r.obj(ext, f"{src}.extension[{i}]")
        if ext_obj.get("url") == systems.EXT_ETHNIC_CATEGORY:
            path = f"{src}.extension[{i}]"
            node = ext_obj.get("valueCodeableConcept")
            if node is None:
                raise MissingRequiredField(f"{path}.valueCodeableConcept")
            ethnicity = r.concept(node, f"{path}.valueCodeableConcept", "ethnicity", rec)
            break

    marital = r.opt_concept(resource, "maritalStatus", src, "marital_status", rec)

    return Patient(
        nhs_number=nhs_number,
        identifiers=local,
        names=tuple(names),
        birth_date=birth_date,
        gender=gender,
        deceased=deceased,
        addresses=tuple(addresses),
        telecom=tuple(telecom),
        general_practitioner=gp,
        registered_gp=registered_gp,
        ethnicity=ethnicity,
        marital_status=marital,
        sensitivity=_sensitivity(resource, rec),
        links=_links(resource, rec, resolver),
    )


def _identifiers(
    resource: r.JsonObj, rec: LineageRecorder
) -> tuple[NhsNumber | None, tuple[Identifier, ...]]:
    nhs: NhsNumber | None = None
    local: list[Identifier] = []
    for i, node in enumerate(r.arr(resource, "identifier", "Patient")):
        path = f"Patient.identifier[{i}]"
        ident = r.obj(node, path)
        if ident.get("value") is None:
            continue  # an identifier without a value identifies nothing
        if ident.get("system") == systems.NHS_NUMBER:
            number = _nhs_number(ident, path, rec)
            if nhs is not None and number.value != nhs.value:
                raise InvalidValue(f"{path}.value", "a second, different NHS number")
            if nhs is None or (nhs.verification_status is None and number.verification_status is not None):
                nhs = number
            continue
        local.append(r.identifier(ident, path, f"identifiers[{len(local)}]", rec))
    return nhs, tuple(local)


def _nhs_number(ident: r.JsonObj, path: str, rec: LineageRecorder) -> NhsNumber:
    raw = r.req_str(ident, "value", path)
    try:
        value = normalise_nhs_number(raw)
    except InvalidNhsNumber as exc:
        raise InvalidValue(f"{path}.value", "NHS number fails the Modulus 11 check") from exc
    rec.add(f"{path}.value", "nhs_number.value", "nhs-number")
    status: str | None = None
    for j, ext in enumerate(r.arr(ident, "extension", path)):
        ext_path = f"{path}.extension[{j}]"
        ext_obj = r.obj(ext, ext_path)
        if ext_obj.get("url") != systems.EXT_NHS_NUMBER_VERIFICATION_STATUS:
            continue
        cc = ext_obj.get("valueCodeableConcept")
        if cc is None:
            raise MissingRequiredField(f"{ext_path}.valueCodeableConcept")
        cc_path = f"{ext_path}.valueCodeableConcept"
        for k, item in enumerate(r.arr(r.obj(cc, cc_path), "coding", cc_path)):
            coding = r.coding(item, f"{cc_path}.coding[{k}]")
            if coding.system in _VERIFICATION_SYSTEMS:
                if coding.code not in _VERIFICATION:
                    raise InvalidValue(
                        f"{cc_path}.coding[{k}].code", "code is not in its value set", error_code="103"
                    )
                status = coding.code
                rec.add(
                    f"{cc_path}.coding[{k}].code",
                    "nhs_number.verification_status",
                    "copy",
                    table="nhs-number-verification-status",
                )
                break
        if status is None:
            raise InvalidValue(cc_path, "no coding in its required code system", error_code="103")
    return NhsNumber(value=value, verification_status=status)


def _deceased(resource: r.JsonObj, rec: LineageRecorder) -> bool | ClinicalDateTime | None:
    flag = r.opt_bool(resource, "deceasedBoolean", "Patient")
    when = r.opt_date_time(resource, "deceasedDateTime", "Patient")
    if flag is not None and when is not None:
        raise InvalidValue("Patient.deceased[x]", "only one of deceasedBoolean / deceasedDateTime")
    if when is not None:
        rec.add("Patient.deceasedDateTime", "deceased", "fhir-datetime")
        return when
    if flag is not None:
        rec.add("Patient.deceasedBoolean", "deceased", "copy")
    return flag


def _address(node: object, src: str, tgt: str, rec: LineageRecorder) -> Address | None:
    a = r.obj(node, src)
    lines = r.str_list(a, "line", src)
    fields = {
        "city": r.opt_str(a, "city", src),
        "district": r.opt_str(a, "district", src),
        "postalCode": r.opt_str(a, "postalCode", src),
        "country": r.opt_str(a, "country", src),
    }
    use = r.code_in(a, "use", src, _ADDRESS_USES)
    addr_type = r.code_in(a, "type", src, _ADDRESS_TYPES)
    addr_period = r.period(a["period"], f"{src}.period", f"{tgt}.period", rec) if a.get("period") else None
    if not lines and not any(fields.values()):
        return None  # text-only / extension-only address: nothing the canonical model can carry
    for i in range(len(lines)):
        rec.add(f"{src}.line[{i}]", f"{tgt}.lines[{i}]", "copy")
    for key, canonical in (
        ("city", "city"),
        ("district", "district"),
        ("postalCode", "postal_code"),
        ("country", "country"),
        ("use", "use"),
        ("type", "type"),
    ):
        if a.get(key) is not None:
            rec.add(f"{src}.{key}", f"{tgt}.{canonical}", "copy")
    return Address(
        lines=lines,
        city=fields["city"],
        district=fields["district"],
        postal_code=fields["postalCode"],
        country=fields["country"],
        use=use,
        type=addr_type,
        period=addr_period,
    )


def _contact_point(node: object, src: str, tgt: str, rec: LineageRecorder) -> ContactPoint:
    c = r.obj(node, src)
    system = r.req_code_in(c, "system", src, _TELECOM_SYSTEMS)
    value = r.req_str(c, "value", src)
    use = r.code_in(c, "use", src, _TELECOM_USES)
    rec.add(f"{src}.system", f"{tgt}.system", "copy")
    rec.add(f"{src}.value", f"{tgt}.value", "copy")
    if use is not None:
        rec.add(f"{src}.use", f"{tgt}.use", "copy")
    return ContactPoint(system=system, value=value, use=use)


def _sensitivity(resource: r.JsonObj, rec: LineageRecorder) -> Sensitivity:
    meta = r.opt_obj(resource, "meta", "Patient")
    result = Sensitivity.NORMAL
    labelled = False
    for i, node in enumerate(r.arr(meta, "security", "Patient.meta") if meta is not None else ()):
        path = f"Patient.meta.security[{i}]"
        label = r.coding(node, path)
        if label.system != systems.V3_CONFIDENTIALITY:
            continue
        found = _SENSITIVITY.get(label.code)
        if found is None:
            raise InvalidValue(f"{path}.code", "code is not in its value set", error_code="103")
        rec.add(f"{path}.code", "sensitivity", "confidentiality", table="pds-confidentiality")
        labelled = True
        if _RANK[found] > _RANK[result]:
            result = found
    if not labelled:
        rec.add(None, "sensitivity", "no v3-Confidentiality label in meta.security: normal")
    return result


def _links(resource: r.JsonObj, rec: LineageRecorder, resolver: r.Resolver) -> tuple[MergeLink, ...]:
    out: list[MergeLink] = []
    for i, node in enumerate(r.arr(resource, "link", "Patient")):
        path = f"Patient.link[{i}]"
        link = r.obj(node, path)
        kind = r.req_code_in(link, "type", path, _LINK_TYPES)
        other_node = link.get("other")
        if other_node is None:
            raise MissingRequiredField(f"{path}.other")
        tgt = f"links[{len(out)}]"
        other = _link_target(
            other_node, f"{path}.other", f"{tgt}.other", rec, resolver, strict=kind in _MERGE
        )
        if other is None:
            continue  # a refer/seealso link to a resource that was not supplied (e.g. a RelatedPerson)
        rec.add(f"{path}.type", f"{tgt}.kind", "copy")
        out.append(MergeLink(kind=kind, other=other))
    return tuple(out)


def _link_target(
    node: object, src: str, tgt: str, rec: LineageRecorder, resolver: r.Resolver, *, strict: bool
) -> Identifier | None:
    ref = r.obj(node, src)
    logical = ref.get("identifier")
    if logical is not None:
        ident = r.identifier(logical, f"{src}.identifier", tgt, rec)
        if ident.system == systems.NHS_NUMBER:
            try:
                normalise_nhs_number(ident.value)
            except InvalidNhsNumber as exc:
                raise InvalidValue(
                    f"{src}.identifier.value", "NHS number fails the Modulus 11 check"
                ) from exc
        return ident
    resolved = resolver.resolve(r.opt_str(ref, "reference", src))
    if resolved is not None and resolved.get("resourceType") == "Patient":
        other = map_patient(resolved, LineageRecorder(enabled=False), resolver)
        if other.nhs_number is not None:
            rec.add(f"{src}.resolve().identifier", tgt, "linked-patient-nhs-number")
            return Identifier(system=systems.NHS_NUMBER, value=other.nhs_number.value)
        rec.add(f"{src}.resolve().identifier[0]", tgt, "linked-patient-identifier")
        return other.identifiers[0]
    if not strict:
        return None
    raise MissingRequiredField(f"{src}.identifier", "the merged patient must be identified")
