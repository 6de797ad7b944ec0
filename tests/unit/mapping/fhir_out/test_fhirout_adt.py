from __future__ import annotations

from typing import Any

import pytest

from shared.canonical.model import (
    Coding,
    Concept,
    DataAbsent,
    DataAbsentReason,
    PartialDate,
    Sensitivity,
)
from shared.fhir.ids import resource_id, urn
from shared.fhir.profiles import UK_CORE_PROFILES
from shared.fhir.validation import validate_bundle
from shared.mapping.fhir_out import FhirOutError, to_bundle
from shared.terminology import systems
from tests.unit.mapping.fhir_out import fhirout_events as ev

ENCOUNTER_ID = resource_id("Encounter", ev.VISIT_SYSTEM, "V0001")
PATIENT_URL = urn(resource_id("Patient", systems.NHS_NUMBER, ev.NHS))


def by_type(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def one(bundle: dict[str, Any], rtype: str) -> dict[str, Any]:
    (entry,) = by_type(bundle, rtype)
    return entry


def assert_valid(bundle: dict[str, Any]) -> None:
    assert validate_bundle(bundle) == []


def test_a01_admission_bundle() -> None:
    b = to_bundle(ev.adt_a01()).value
    assert_valid(b)
    assert b["type"] == "transaction"
    assert b["identifier"] == {"system": "urn:tie:event-key", "value": ev.adt_a01().key.value}
    assert b["entry"][0]["resource"]["resourceType"] == "Patient"  # the patient comes first
    for entry in b["entry"]:
        res = entry["resource"]
        assert res["meta"]["profile"] == [UK_CORE_PROFILES[res["resourceType"]]]

    pat = one(b, "Patient")
    assert pat["fullUrl"] == PATIENT_URL
    assert pat["request"] == {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": f"identifier=https://fhir.nhs.uk/Id/nhs-number|{ev.NHS}",
    }
    p = pat["resource"]
    assert "id" not in p  # conditional create: the server owns the id
    nhs = p["identifier"][0]
    assert nhs["system"] == "https://fhir.nhs.uk/Id/nhs-number" and nhs["value"] == ev.NHS
    assert nhs["extension"] == [
        {
            "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
            "valueCodeableConcept": {
                "coding": [
                    {
                        "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                        "code": "01",
                    }
                ]
            },
        }
    ]
    assert p["identifier"][1]["type"]["coding"][0]["code"] == "MR"
    assert p["meta"]["security"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            "code": "U",
            "display": "unrestricted",
        }
    ]
    assert p["gender"] == "female" and p["birthDate"] == "1980-02-29"
    assert p["name"] == [
        {"use": "official", "family": "Testpatient", "given": ["Ann", "Marie"], "prefix": ["Ms"]}
    ]
    assert p["extension"][0]["url"] == systems.EXT_ETHNIC_CATEGORY
    assert p["maritalStatus"]["extension"] == [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unsupported"}
    ]
    assert len(by_type(b, "Organization")) == 2  # the GP practice and the trust
    gp_url = p["generalPractitioner"][0]["reference"]
    gp_entry = next(e for e in b["entry"] if e["fullUrl"] == gp_url)
    assert (
        gp_entry["request"]["ifNoneExist"] == "identifier=https://fhir.nhs.uk/Id/ods-organization-code|Y12345"
    )

    enc_entry = one(b, "Encounter")
    assert enc_entry["request"] == {"method": "PUT", "url": f"Encounter/{ENCOUNTER_ID}"}
    enc = enc_entry["resource"]
    assert enc["id"] == ENCOUNTER_ID
    assert enc["status"] == "in-progress"
    assert enc["class"] == {"system": systems.V3_ACT_CODE, "code": "IMP", "display": "inpatient encounter"}
    assert enc["subject"] == {"reference": PATIENT_URL}
    assert enc["period"] == {"start": "2026-07-01T12:00:00+01:00"}  # BST
    assert enc["partOf"]["identifier"] == {"system": ev.VISIT_SYSTEM + "-SPELL", "value": "S0001"}
    roles = [(p["type"][0]["coding"][0]["code"], p["individual"]) for p in enc["participant"]]
    practitioner = one(b, "Practitioner")  # attending and admitting are one person: one entry
    assert roles == [
        ("ATND", {"reference": practitioner["fullUrl"]}),
        ("REF", {"display": "Gary Gp"}),
        ("ADM", {"reference": practitioner["fullUrl"]}),
    ]
    assert practitioner["request"]["ifNoneExist"] == f"identifier={systems.GMC_NUMBER}|C1234567"
    (loc,) = enc["location"]
    assert loc["status"] == "active"
    location = one(b, "Location")
    assert loc["location"] == {"reference": location["fullUrl"]}
    assert location["resource"]["identifier"] == [
        {"system": "urn:tie:location:RX101", "value": "WARD1/BAY2/BED3"}
    ]
    assert location["resource"]["partOf"]["identifier"] == {"system": systems.ODS_SITE_CODE, "value": "RX101"}
    provider_url = enc["serviceProvider"]["reference"]
    provider = next(e for e in b["entry"] if e["fullUrl"] == provider_url)
    assert provider["resource"]["identifier"] == [{"system": systems.ODS_ORGANIZATION_CODE, "value": "RX1"}]


def test_patient_without_nhs_number_is_keyed_on_the_local_identifier() -> None:
    b = to_bundle(ev.adt_a01(nhs=None)).value
    assert_valid(b)
    pat = one(b, "Patient")
    assert pat["request"]["ifNoneExist"] == f"identifier={ev.MRN_SYSTEM}|RX1000001"
    assert pat["fullUrl"] == urn(resource_id("Patient", ev.MRN_SYSTEM, "RX1000001"))
    assert one(b, "Encounter")["resource"]["subject"] == {"reference": pat["fullUrl"]}


def test_a02_transfer_updates_the_same_encounter_with_location_history() -> None:
    b = to_bundle(ev.adt_a02()).value
    assert_valid(b)
    enc = one(b, "Encounter")
    assert enc["request"]["url"] == f"Encounter/{ENCOUNTER_ID}"
    locations = enc["resource"]["location"]
    assert [loc["status"] for loc in locations] == ["active", "completed"]
    urls = {e["fullUrl"]: e["resource"] for e in by_type(b, "Location")}
    assert len(urls) == 2
    prior = urls[locations[1]["location"]["reference"]]
    assert prior["identifier"][0]["value"] == "AMU//B7"


def test_a03_discharge_in_gmt() -> None:
    b = to_bundle(ev.adt_a03()).value
    assert_valid(b)
    enc = one(b, "Encounter")["resource"]
    assert enc["status"] == "finished"
    assert enc["period"] == {"start": "2026-07-01T12:00:00+01:00", "end": "2026-11-03T16:45:00+00:00"}
    assert enc["location"][0]["status"] == "completed"
    assert enc["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "19"


def test_a11_cancel_admission_updates_the_same_encounter() -> None:
    admit = to_bundle(ev.adt_a01()).value
    cancel = to_bundle(ev.adt_a11()).value
    assert_valid(cancel)
    assert [e["request"] for e in cancel["entry"]] == [e["request"] for e in admit["entry"]]
    enc = one(cancel, "Encounter")["resource"]
    assert enc["id"] == ENCOUNTER_ID
    assert enc["status"] == "cancelled"
    assert enc["location"][0]["status"] == "completed"


def test_a12_cancel_transfer_writes_only_the_location_the_patient_stays_in() -> None:
    """PV1-6 of an A12 is the cancelled transfer's ward: not written as history (the merge removes it)."""
    b = to_bundle(ev.adt_a12()).value
    assert_valid(b)
    enc = one(b, "Encounter")
    assert enc["request"]["url"] == f"Encounter/{ENCOUNTER_ID}"
    assert enc["resource"]["status"] == "in-progress"
    (current,) = enc["resource"]["location"]
    assert current["status"] == "active"
    urls = {e["fullUrl"]: e["resource"] for e in by_type(b, "Location")}
    assert urls[current["location"]["reference"]]["identifier"][0]["value"] == "AMU//B7"


def test_a13_cancel_discharge_reopens_the_encounter() -> None:
    b = to_bundle(ev.adt_a13()).value
    assert_valid(b)
    enc = one(b, "Encounter")["resource"]
    assert enc["id"] == ENCOUNTER_ID
    assert enc["status"] == "in-progress"
    assert enc["period"] == {"start": "2026-07-01T12:00:00+01:00"}
    assert "dischargeDisposition" not in enc.get("hospitalization", {})
    assert enc["location"][0]["status"] == "active"


def test_a40_merge_links_and_updates_the_surviving_patient() -> None:
    b = to_bundle(ev.adt_a40()).value
    assert_valid(b)
    pat = one(b, "Patient")
    assert pat["request"] == {
        "method": "PUT",
        "url": f"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ev.NHS}",
    }
    assert pat["resource"]["link"] == [
        {
            "other": {"type": "Patient", "identifier": {"system": ev.MRN_SYSTEM, "value": "RX1000099"}},
            "type": "replaces",
        },
        {
            "other": {"type": "Patient", "identifier": {"system": ev.MRN_SYSTEM, "value": "RX1000098"}},
            "type": "replaces",
        },
    ]
    assert not by_type(b, "Encounter")


@pytest.mark.parametrize(
    ("sensitivity", "code"), [(Sensitivity.RESTRICTED, "R"), (Sensitivity.VERY_RESTRICTED, "V")]
)
def test_restricted_patients_label_their_clinical_resources(sensitivity: Sensitivity, code: str) -> None:
    b = to_bundle(ev.adt_a01(sensitivity=sensitivity)).value
    assert_valid(b)
    for entry in b["entry"]:
        res = entry["resource"]
        security = res["meta"].get("security")
        if res["resourceType"] in ("Patient", "Encounter"):
            assert security is not None and security[0]["code"] == code
        else:  # reference data is shared by every patient: never labelled by one of them
            assert security is None


def test_unknown_gender_and_partial_birth_dates() -> None:
    absent = DataAbsent(reason=DataAbsentReason.ASKED_UNKNOWN)
    b = to_bundle(ev.adt_a01(gender=absent, birth_date=PartialDate(year=1980, month=2))).value
    assert_valid(b)
    p = one(b, "Patient")["resource"]
    assert "gender" not in p
    assert p["_gender"] == {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "asked-unknown",
            }
        ]
    }
    assert p["birthDate"] == "1980-02"
    year_only = to_bundle(ev.adt_a01(birth_date=PartialDate(year=1980))).value
    assert one(year_only, "Patient")["resource"]["birthDate"] == "1980"


def test_encounter_class_without_act_code_is_refused() -> None:
    e = ev.adt_a01()
    assert e.encounter is not None
    local = Concept(codings=(Coding(system=ev.V2_0004, code="I"),))
    bad = e.model_copy(update={"encounter": e.encounter.model_copy(update={"encounter_class": local})})
    with pytest.raises(FhirOutError) as info:
        to_bundle(bad)
    assert info.value.field == "encounter.encounter_class"


def test_data_absent_encounter_class_keeps_the_source_code() -> None:
    e = ev.adt_a01()
    assert e.encounter is not None
    absent = DataAbsent(reason=DataAbsentReason.UNSUPPORTED, source=Coding(system=ev.V2_0004, code="Q"))
    b = to_bundle(
        e.model_copy(update={"encounter": e.encounter.model_copy(update={"encounter_class": absent})})
    ).value
    cls = one(b, "Encounter")["resource"]["class"]
    assert cls["extension"][0]["valueCode"] == "unsupported"
    assert (cls["system"], cls["code"]) == (ev.V2_0004, "Q")
    issues = validate_bundle(b)
    assert [(i.severity, i.path) for i in issues] == [("warning", "Bundle.entry[5].resource.class")]


def test_encounter_event_without_visit_number_is_refused() -> None:
    e = ev.adt_a01()
    assert e.encounter is not None
    bad = e.model_copy(update={"encounter": e.encounter.model_copy(update={"identifiers": ()})})
    with pytest.raises(FhirOutError) as info:
        to_bundle(bad)
    assert info.value.field == "encounter.identifiers"
    assert "V0001" not in str(info.value)


def test_locations_by_site_only_or_description_only() -> None:
    from shared.canonical.model import Location
    from shared.mapping.lineage import leaf_paths, uncovered

    e = ev.adt_a01()
    assert e.encounter is not None
    site, theatre = Location(facility="RX101"), Location(description="Theatre recovery")
    enc = e.encounter.model_copy(update={"location": site, "prior_location": theatre})
    mapped = to_bundle(e.model_copy(update={"encounter": enc}), lineage=True)
    b = mapped.value
    assert_valid(b)
    entry = one(b, "Location")
    assert entry["resource"]["identifier"] == [{"system": systems.ODS_SITE_CODE, "value": "RX101"}]
    assert "partOf" not in entry["resource"]
    assert entry["request"]["ifNoneExist"] == f"identifier={systems.ODS_SITE_CODE}|RX101"
    locations = one(b, "Encounter")["resource"]["location"]
    assert locations == [
        {"location": {"reference": entry["fullUrl"]}, "status": "active"},
        {"location": {"display": "Theatre recovery"}, "status": "completed"},
    ]
    for e_ in b["entry"]:
        res = e_["resource"]
        assert uncovered(leaf_paths(res, res["resourceType"]), mapped.lineage, resource=e_["fullUrl"]) == []
