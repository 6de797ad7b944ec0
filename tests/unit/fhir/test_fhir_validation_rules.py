from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.errors import PermanentError
from shared.fhir.profiles import UK_CORE_PROFILES
from shared.fhir.validation import (
    FhirValidationError,
    ValidationIssue,
    check_bundle,
    check_resource,
    errors_only,
    to_operation_outcome,
    validate_bundle,
    validate_resource,
)
from shared.terminology import systems

NHS = "9434765919"
PATIENT_URL = "urn:uuid:11111111-1111-5111-8111-111111111111"


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "meta": {"profile": [UK_CORE_PROFILES["Patient"]]},
        "identifier": [
            {
                "extension": [
                    {
                        "url": systems.EXT_NHS_NUMBER_VERIFICATION_STATUS,
                        "valueCodeableConcept": {
                            "coding": [
                                {"system": systems.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND, "code": "01"}
                            ]
                        },
                    }
                ],
                "system": systems.NHS_NUMBER,
                "value": NHS,
            }
        ],
        "name": [{"family": "Testpatient", "given": ["Ann"]}],
        "gender": "female",
        "birthDate": "1980-02",
    }


def observation(**extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs1",
        "meta": {"profile": [UK_CORE_PROFILES["Observation"]]},
        "status": "final",
        "code": {"coding": [{"system": systems.LOINC, "code": "718-7"}]},
        "subject": {"reference": PATIENT_URL},
        "effectiveDateTime": "2026-07-01T12:00:00+01:00",
        "valueQuantity": {"value": 132, "unit": "g/L"},
    }
    res.update(extra)
    return res


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": PATIENT_URL,
            "resource": patient(),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={systems.NHS_NUMBER}|{NHS}",
            },
        }
    ]
    for n, res in enumerate(resources):
        rid = res.setdefault("id", f"r{n}")
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-5000-8000-{n:012d}",
                "resource": res,
                "request": {"method": "PUT", "url": f"{res['resourceType']}/{rid}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def issues_at(issues: list[ValidationIssue], path: str) -> list[ValidationIssue]:
    return [i for i in issues if i.path == path]


def test_valid_resources_and_bundle_have_no_issues() -> None:
    assert validate_resource(patient()) == []
    assert validate_bundle(bundle(observation())) == []
    assert check_bundle(bundle(observation())) == []


def test_bad_gender_code() -> None:
    res = patient() | {"gender": "mail"}
    issues = validate_resource(res)
    assert [(i.code, i.path) for i in issues] == [("code-invalid", "Patient.gender")]


@pytest.mark.parametrize(
    ("value", "message"),
    [("9434765918", "Modulus 11"), ("943 476 5919", "ten digits"), ("12345", "ten digits")],
)
def test_bad_nhs_number(value: str, message: str) -> None:
    res = patient()
    res["identifier"][0]["value"] = value
    issues = validate_resource(res)
    assert len(issues) == 1
    assert issues[0].path == "Patient.identifier[0].value" and issues[0].code == "value"
    assert message in issues[0].message
    assert value not in issues[0].message


def test_nhs_number_verification_status_codes() -> None:
    res = patient()
    coding = res["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]
    coding["system"] = systems.NHS_NUMBER_VERIFICATION_STATUS_PDS  # the older PDS spelling is accepted
    assert validate_resource(res) == []
    coding["code"] = "09"
    issues = validate_resource(res)
    assert [i.path for i in issues] == ["Patient.identifier[0].extension[0].valueCodeableConcept"]


def test_missing_subject() -> None:
    res = observation()
    del res["subject"]
    issues = validate_resource(res)
    assert [(i.code, i.path) for i in issues] == [("required", "Observation.subject")]


def test_dangling_references() -> None:
    obs = observation(subject={"reference": "urn:uuid:99999999-9999-5999-8999-999999999999"})
    obs["performer"] = [{"reference": "Practitioner/nowhere"}]
    issues = validate_bundle(bundle(obs))
    assert {(i.code, i.path) for i in issues} == {
        ("not-found", "Bundle.entry[1].resource.subject.reference"),
        ("not-found", "Bundle.entry[1].resource.performer[0].reference"),
    }
    # a Type/id reference may point at the server when the caller allows it
    allowed = validate_bundle(bundle(copy.deepcopy(obs)), external_references=True)
    assert [i.path for i in allowed] == ["Bundle.entry[1].resource.subject.reference"]


def test_references_that_resolve() -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr1",
        "meta": {"profile": [UK_CORE_PROFILES["DiagnosticReport"]]},
        "status": "final",
        "code": {"text": "FBC"},
        "subject": {"reference": PATIENT_URL},
        "result": [{"reference": "Observation/obs1"}],  # by PUT url / type+id
        "performer": [
            {"reference": "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|RX1"},
            {"reference": "https://example.org/fhir/Organization/1"},
            {"type": "Organization", "identifier": {"system": systems.ODS_ORGANIZATION_CODE, "value": "RX1"}},
        ],
    }
    assert validate_bundle(bundle(observation(), report)) == []


def test_contained_references() -> None:
    res = observation(performer=[{"reference": "#p1"}])
    assert [i.path for i in validate_resource(res)] == ["Observation.performer[0].reference"]
    res["contained"] = [{"resourceType": "Organization", "id": "p1", "name": "Lab"}]
    assert validate_resource(res) == []


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("birthDate", "2020-02-30", "Patient.birthDate"),
        ("birthDate", "2020-13", "Patient.birthDate"),
        ("birthDate", "01/02/1980", "Patient.birthDate"),
    ],
)
def test_bad_dates(key: str, value: str, path: str) -> None:
    issues = validate_resource(patient() | {key: value})
    assert [i.path for i in issues] == [path]
    assert issues[0].code == "value"
    assert value not in issues[0].message


def test_datetime_with_a_time_needs_an_offset() -> None:
    issues = validate_resource(observation(effectiveDateTime="2026-07-01T12:00:00"))
    assert [i.path for i in issues] == ["Observation.effectiveDateTime"]


def test_unknown_elements_and_types() -> None:
    issues = validate_resource(patient() | {"favouriteColour": "blue"})
    assert [(i.code, i.path) for i in issues] == [("structure", "Patient.favouriteColour")]
    issues = validate_resource({"resourceType": "Nonsense"})
    assert [(i.code, i.path) for i in issues] == [("structure", "Nonsense.resourceType")]
    assert validate_resource([])[0].severity == "fatal"  # type: ignore[arg-type]


def test_required_elements_from_the_models() -> None:
    res = observation()
    del res["code"]
    del res["status"]
    issues = validate_resource(res)
    assert {(i.code, i.path) for i in issues} == {
        ("required", "Observation.code"),
        ("required", "Observation.status"),
    }


def test_uk_core_profile_must_be_declared() -> None:
    res = patient()
    del res["meta"]
    assert [(i.code, i.path) for i in validate_resource(res)] == [("required", "Patient.meta.profile")]
    res["meta"] = {"profile": ["http://example.org/other"]}
    assert [i.path for i in validate_resource(res)] == ["Patient.meta.profile"]


def test_identifier_needs_system_and_value() -> None:
    res = patient()
    res["identifier"].append({"value": "X1"})
    issues = validate_resource(res)
    assert [(i.code, i.path) for i in issues] == [("required", "Patient.identifier[1].system")]


def test_empty_elements_and_control_characters() -> None:
    res = patient()
    res["name"] = [{"family": "", "given": ["A\x07nn"]}]
    res["address"] = [{}]
    issues = validate_resource(res, structural=False)
    assert {(i.code, i.path) for i in issues} == {
        ("value", "Patient.name[0].family"),
        ("value", "Patient.name[0].given[0]"),
        ("structure", "Patient.address[0]"),
    }


def test_value_and_data_absent_reason_are_exclusive() -> None:
    dar = {"coding": [{"system": systems.DATA_ABSENT_REASON, "code": "error"}]}
    issues = validate_resource(observation(dataAbsentReason=dar))
    assert [(i.code, i.path) for i in issues] == [("invariant", "Observation.dataAbsentReason")]
    res = observation(dataAbsentReason={"coding": [{"system": systems.DATA_ABSENT_REASON, "code": "bogus"}]})
    del res["valueQuantity"]
    assert [(i.code, i.path) for i in validate_resource(res)] == [
        ("code-invalid", "Observation.dataAbsentReason")
    ]


def test_data_absent_reason_extension_code() -> None:
    res = patient()
    del res["gender"]
    res["_gender"] = {"extension": [{"url": systems.EXT_DATA_ABSENT_REASON, "valueCode": "unknown"}]}
    assert validate_resource(res) == []
    res["_gender"]["extension"][0]["valueCode"] = "because"
    assert [i.path for i in validate_resource(res)] == ["Patient._gender.extension[0].valueCode"]


def test_status_bindings() -> None:
    assert [i.path for i in validate_resource(observation(status="done"))] == ["Observation.status"]
    sr = {
        "resourceType": "ServiceRequest",
        "meta": {"profile": [UK_CORE_PROFILES["ServiceRequest"]]},
        "status": "pending",
        "intent": "wish",
        "subject": {"reference": "Patient/1"},
    }
    assert {i.path for i in validate_resource(sr)} == {"ServiceRequest.status", "ServiceRequest.intent"}


def test_allergy_status_bindings_and_invariants() -> None:
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "meta": {"profile": [UK_CORE_PROFILES["AllergyIntolerance"]]},
        "clinicalStatus": {"coding": [{"system": systems.ALLERGY_CLINICAL_STATUS, "code": "active"}]},
        "verificationStatus": {
            "coding": [{"system": systems.ALLERGY_VERIFICATION_STATUS, "code": "confirmed"}]
        },
        "code": {"text": "Penicillin"},
        "patient": {"reference": "Patient/1"},
    }
    assert validate_resource(allergy) == []
    bad = copy.deepcopy(allergy)
    bad["clinicalStatus"]["coding"][0]["code"] = "gone"
    assert [(i.code, i.path) for i in validate_resource(bad)] == [
        ("code-invalid", "AllergyIntolerance.clinicalStatus")
    ]
    eie = copy.deepcopy(allergy)
    eie["verificationStatus"]["coding"][0]["code"] = "entered-in-error"
    assert [i.message for i in validate_resource(eie)] == ["no clinicalStatus when entered-in-error (ait-2)"]
    del allergy["clinicalStatus"]
    assert [i.path for i in validate_resource(allergy)] == ["AllergyIntolerance.clinicalStatus"]


def test_encounter_class_outside_act_encounter_code_is_a_warning() -> None:
    enc = {
        "resourceType": "Encounter",
        "meta": {"profile": [UK_CORE_PROFILES["Encounter"]]},
        "status": "in-progress",
        "class": {"system": systems.v2_table_system("0004"), "code": "I"},
        "subject": {"reference": "Patient/1"},
    }
    issues = validate_resource(enc)
    assert [(i.severity, i.path) for i in issues] == [("warning", "Encounter.class")]
    assert check_resource(enc) == issues  # warnings do not raise


def test_transaction_requests() -> None:
    b = bundle(observation())
    b["entry"][1]["request"]["url"] = "Observation/other-id"
    b["entry"].append(copy.deepcopy(b["entry"][0]))  # duplicate fullUrl
    del b["entry"][0]["request"]
    issues = validate_bundle(b)
    assert {(i.code, i.path) for i in issues} == {
        ("invariant", "Bundle.entry[1].resource.id"),
        ("duplicate", "Bundle.entry[2].fullUrl"),
        ("required", "Bundle.entry[0].request"),
    }


def test_structural_paths_inside_bundles() -> None:
    b = bundle(observation(effectiveDateTime="yesterday"))
    issues = validate_bundle(b)
    assert [i.path for i in issues] == ["Bundle.entry[1].resource.effectiveDateTime"]


def test_messages_and_paths_never_carry_values() -> None:
    marker = "SECRETVALUE"
    res = patient()
    res["gender"] = marker
    res["birthDate"] = marker
    res["identifier"][0]["value"] = marker
    res["name"] = [{"family": f"\x01{marker}"}]
    res["deceasedDateTime"] = marker
    res["maritalStatus"] = marker
    issues = validate_resource(res)
    assert len(errors_only(issues)) >= 5
    for issue in issues:
        assert marker not in issue.message and marker not in issue.path
    err = FhirValidationError(issues)
    assert marker not in str(err)


def test_validation_error_type_and_outcome() -> None:
    res = patient() | {"gender": "mail"}
    with pytest.raises(FhirValidationError) as info:
        check_resource(res)
    assert isinstance(info.value, PermanentError)
    assert info.value.issues and "Patient.gender" in str(info.value)
    outcome = to_operation_outcome(info.value.issues)
    assert outcome["issue"][0]["expression"] == ["Patient.gender"]
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    OperationOutcome.model_validate(outcome)
    OperationOutcome.model_validate(to_operation_outcome([]))
    with pytest.raises(FhirValidationError):
        check_bundle(bundle(observation(status="done")))


def test_bundle_routing_and_non_bundles() -> None:
    b = bundle(observation(status="done"))
    assert validate_resource(b) == validate_bundle(b)
    assert validate_bundle(patient())[0].severity == "fatal"


def test_operations_and_non_transaction_bundles() -> None:
    b = bundle(observation())
    b["entry"].append(
        {
            "fullUrl": "urn:uuid:22222222-2222-5222-8222-222222222222",
            "resource": {"resourceType": "Parameters", "parameter": [{"name": "code", "valueCode": "x"}]},
            "request": {"method": "POST", "url": "ValueSet/$lookup"},
        }
    )
    assert validate_bundle(b) == []
    # in a collection (or document, message, searchset) Type/id may name a resource on the server ...
    obs = observation(performer=[{"reference": "Practitioner/elsewhere"}])
    collection = {"resourceType": "Bundle", "type": "collection", "entry": bundle(obs)["entry"]}
    for entry in collection["entry"]:
        del entry["request"]
    assert validate_bundle(collection) == []
    # ... but a urn:uuid reference must still name an entry
    obs["subject"] = {"reference": "urn:uuid:33333333-3333-5333-8333-333333333333"}
    assert [i.path for i in validate_bundle(collection)] == ["Bundle.entry[1].resource.subject.reference"]


def test_profile_requirement_can_be_relaxed() -> None:
    res = patient()
    del res["meta"]
    assert validate_resource(res, require_profile=False) == []
    assert check_resource(res, require_profile=False) == []
