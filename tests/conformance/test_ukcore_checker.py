"""The UK Core checker itself, on tiny hand-made resources: a good one passes, and every rule has an
example that fails it (so ``test_ukcore.py``'s table can change in both directions).

Real UK Core profiles where they carry the rule (cardinality, slices, bindings, extensions); a small
hand-made profile (FHIR JSON, differential only) for ``fixed`` / ``pattern`` / ``type`` and for a
binding that is not checkable offline.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conformance import ukcore
from tests.conformance.fhir_xml import read_resource
from tests.conformance.tooling import CORPORA, unavailable
from tests.conformance.ukcore import RULES, Profile, UkCore, UkCoreResult

pytestmark = pytest.mark.corpus

NHS = "https://fhir.nhs.uk/Id/nhs-number"
UK_SD = "https://fhir.hl7.org.uk/StructureDefinition/"
UK_CS = "https://fhir.hl7.org.uk/CodeSystem/"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
LOCAL = "urn:tie:codesystem:RX1:"
ETHNIC = UK_SD + "Extension-UKCore-EthnicCategory"
VERIFICATION = UK_SD + "Extension-UKCore-NHSNumberVerificationStatus"

GOOD_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "extension": [
        {
            "url": ETHNIC,
            "valueCodeableConcept": {
                "coding": [{"system": UK_CS + "UKCore-EthnicCategoryEngland", "code": "A"}]
            },
        }
    ],
    "identifier": [
        {
            "extension": [
                {
                    "url": VERIFICATION,
                    "valueCodeableConcept": {
                        "coding": [
                            {"system": UK_CS + "UKCore-NHSNumberVerificationStatusEngland", "code": "01"}
                        ]
                    },
                }
            ],
            "system": NHS,
            "value": "9000000009",
        },
        {"system": "urn:example:mrn", "value": "X1"},
    ],
    "name": [{"family": "Example"}],
    "gender": "female",
    "maritalStatus": {
        "coding": [
            {"system": UK_CS + "UKCore-PersonMaritalStatusEngland", "code": "M"},
            {"system": "http://terminology.hl7.org/CodeSystem/v2-0002", "code": "M"},
        ]
    },
}


@pytest.fixture(scope="module")
def checker(uk_core: None) -> UkCore:
    return ukcore.uk_core()


def run(checker: UkCore, resource: dict[str, Any], profile: Profile | None = None) -> UkCoreResult:
    result = UkCoreResult()
    checker.check_resource(resource, result, profile)
    return result


def table(result: UkCoreResult) -> dict[tuple[str, str, str], int]:
    return dict(result.table())


def patient(change: Any) -> dict[str, Any]:
    p = copy.deepcopy(GOOD_PATIENT)
    change(p)
    return p


def test_good_patient_passes(checker: UkCore) -> None:
    result = run(checker, GOOD_PATIENT)
    assert table(result) == {}
    assert result.resources == {"UKCore-Patient": 1}
    assert result.must_support["UKCore-Patient"]["Patient.name"] == 1
    assert result.must_support["UKCore-Patient"]["Patient.telecom"] == 0


P = "UKCore-Patient"
EXT_VALUE = "Patient.extension:Extension-UKCore-EthnicCategory.value[x]"

#: change to the good patient -> the violations table it must produce.
PATIENT_CASES = [
    pytest.param(
        lambda p: p["identifier"][0].pop("value"),
        {(P, "Patient.identifier:nhsNumber.value", "min"): 1},
        id="min-slice-child",
    ),
    pytest.param(
        lambda p: p["identifier"].append({"system": NHS, "value": "9000000017"}),
        {(P, "Patient.identifier:nhsNumber", "max"): 1},
        id="max-slice",
    ),
    pytest.param(
        lambda p: p["extension"].append(copy.deepcopy(p["extension"][0])),
        {(P, "Patient.extension:ethnicCategory", "max"): 1},
        id="max-extension-slice",
    ),
    pytest.param(
        lambda p: p["extension"].__setitem__(0, {"url": ETHNIC, "valueString": "A"}),
        {(P, EXT_VALUE, "type"): 1},
        id="extension-value-type",
    ),
    pytest.param(
        lambda p: p["extension"][0].pop("valueCodeableConcept"),
        {(P, EXT_VALUE, "min"): 1},
        id="extension-value-missing",
    ),
    pytest.param(
        lambda p: p["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0].update(code="99"),
        {
            (
                P,
                "Patient.identifier.extension:Extension-UKCore-NHSNumberVerificationStatus.value[x]",
                "required-binding",
            ): 1,
            (P, "Patient.identifier.extension.valueCodeableConcept.coding", "code-not-in-system"): 1,
        },
        id="required-binding",
    ),
    pytest.param(
        lambda p: p["maritalStatus"]["coding"][0].update(code="S"),  # in the code system, not the value set
        {(P, "Patient.maritalStatus", "extensible-binding"): 1},
        id="extensible-binding-code-not-in-value-set",
    ),
    pytest.param(  # (a) the bound code system named, a code that is not in it
        lambda p: p["maritalStatus"]["coding"][0].update(code="ZZ"),
        {
            (P, "Patient.maritalStatus", "extensible-binding"): 1,
            (P, "Patient.maritalStatus.coding", "code-not-in-system"): 1,
        },
        id="extensible-binding-code-not-in-system",
    ),
    pytest.param(  # (b) a sender's local code labelled as an HL7 table code
        lambda p: p["maritalStatus"].update(coding=[{"system": V2 + "0002", "code": "Married"}]),
        {(P, "Patient.maritalStatus.coding", "hl7v2-table-code"): 1},
        id="hl7v2-table-code-not-in-table",
    ),
    pytest.param(
        lambda p: p["extension"][0]["valueCodeableConcept"].update(
            coding=[{"system": V2 + "0189", "code": "Z2"}]
        ),
        {(P, "Patient.extension.valueCodeableConcept.coding", "hl7v2-table-code"): 1},
        id="hl7v2-table-code-in-extension",
    ),
    pytest.param(  # (c) a local code where the binding is required
        lambda p: p["identifier"][0]["extension"][0].update(
            valueCodeableConcept={"coding": [{"system": LOCAL + "0445", "code": "V", "userSelected": False}]}
        ),
        {
            (
                P,
                "Patient.identifier.extension:Extension-UKCore-NHSNumberVerificationStatus.value[x]",
                "required-binding",
            ): 1
        },
        id="required-binding-local-code",
    ),
    pytest.param(
        lambda p: p["maritalStatus"].update(coding=[{"system": "http://snomed.info/sct", "code": "1"}]),
        {},
        id="extensible-other-system-allowed",
    ),
    pytest.param(
        lambda p: p["extension"].append({"url": UK_SD + "Extension-UKCore-NoSuchThing", "valueString": "x"}),
        {(P, "Patient.extension:Extension-UKCore-NoSuchThing", "extension-unknown"): 1},
        id="extension-unknown",
    ),
    pytest.param(
        lambda p: p["name"][0].update(extension=[copy.deepcopy(p["extension"][0])]),
        {(P, "Patient.name.extension:Extension-UKCore-EthnicCategory", "extension-context"): 1},
        id="extension-context",
    ),
]


@pytest.mark.parametrize(("change", "expected"), PATIENT_CASES)
def test_each_rule_fails(checker: UkCore, change: Any, expected: dict[tuple[str, str, str], int]) -> None:
    assert table(run(checker, patient(change))) == expected


#: change -> the unmapped-code report: legal codings outside an extensible / preferred value set are
#: counted by kind, never failed (and never hide a violation: see PATIENT_CASES above).
MS = (P, "Patient.maritalStatus")
UNMAPPED_CASES = [
    pytest.param(lambda p: None, {}, id="good-patient-nothing-unmapped"),
    pytest.param(
        lambda p: p["maritalStatus"].update(
            coding=[{"system": LOCAL + "0002", "code": "Married", "userSelected": False}], text="Married"
        ),
        {(*MS, "local"): 1},
        id="local-code",
    ),
    pytest.param(
        lambda p: p["maritalStatus"].update(coding=[{"system": V2 + "0002", "code": "C"}]),  # in table 0002
        {(*MS, "hl7v2-table"): 1},
        id="genuine-hl7-table-code",
    ),
    pytest.param(
        lambda p: p["maritalStatus"].update(coding=[{"system": "http://snomed.info/sct", "code": "1"}]),
        {(*MS, "other-system"): 1},
        id="other-system",
    ),
    pytest.param(lambda p: p.update(maritalStatus={"text": "Married"}), {(*MS, "text-only"): 1}, id="text"),
    pytest.param(
        lambda p: p["maritalStatus"].update(
            coding=[
                {"system": LOCAL + "0002", "code": "9"},
                {"system": UK_CS + "UKCore-PersonMaritalStatusEngland", "code": "M"},
            ]
        ),
        {},
        id="local-code-beside-value-set-code",
    ),
]


@pytest.mark.parametrize(("change", "expected"), UNMAPPED_CASES)
def test_unmapped_codes_are_reported_not_failed(
    checker: UkCore, change: Any, expected: dict[tuple[str, str, str], int]
) -> None:
    result = run(checker, patient(change))
    assert table(result) == {}
    assert dict(result.unmapped) == expected


#: A hand-made profile: fixed / pattern / choice type restriction / a SNOMED CT (not enumerable) binding.
TOY = Profile.from_sd(
    {
        "resourceType": "StructureDefinition",
        "id": "Toy-Observation",
        "url": "https://example.org/StructureDefinition/Toy-Observation",
        "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "differential": {
            "element": [
                {"id": "Observation", "path": "Observation"},
                {"id": "Observation.status", "path": "Observation.status", "fixedCode": "final"},
                {
                    "id": "Observation.code",
                    "path": "Observation.code",
                    "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                },
                {
                    "id": "Observation.value[x]",
                    "path": "Observation.value[x]",
                    "type": [{"code": "Quantity"}],
                },
                {
                    "id": "Observation.bodySite",
                    "path": "Observation.bodySite",
                    "binding": {
                        "strength": "extensible",
                        "valueSet": "https://fhir.hl7.org.uk/ValueSet/UKCore-CareSettingType",
                    },
                },
            ]
        },
    }
)
GOOD_OBS: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "valueQuantity": {"value": 60, "unit": "/min"},
    "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "1234"}]},
}
T = "Toy-Observation"

OBS_CASES = [
    pytest.param({}, {}, id="good"),
    pytest.param({"status": "preliminary"}, {(T, "Observation.status", "fixed"): 1}, id="fixed"),
    pytest.param(
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}},
        {(T, "Observation.code", "pattern"): 1},
        id="pattern",
    ),
    pytest.param({"valueString": "60"}, {(T, "Observation.value[x]", "type"): 1}, id="type"),
]


@pytest.mark.parametrize(("change", "expected"), OBS_CASES)
def test_hand_made_profile_rules(
    checker: UkCore, change: dict[str, Any], expected: dict[tuple[str, str, str], int]
) -> None:
    obs = {k: v for k, v in GOOD_OBS.items() if not (k.startswith("value") and "valueString" in change)}
    obs.update(change)
    result = run(checker, obs, TOY)
    assert table(result) == expected
    # SNOMED CT value sets are intensional: counted as not checkable, never failed.
    assert result.not_checkable == {
        (
            T,
            "Observation.bodySite",
            "extensible https://fhir.hl7.org.uk/ValueSet/UKCore-CareSettingType not enumerable",
        ): 1
    }


def test_rules_are_the_documented_ones() -> None:
    expected_tables = [case.values[1] for case in [*PATIENT_CASES, *OBS_CASES]]
    covered = {rule for t in expected_tables if isinstance(t, dict) for (_p, _path, rule) in t}
    assert covered == set(RULES)


def _with_bundle_entries(resource: dict[str, Any]) -> list[dict[str, Any]]:
    out = [resource]
    for entry in resource.get("entry", []) if resource["resourceType"] == "Bundle" else []:
        if "resource" in entry:
            out += _with_bundle_entries(entry["resource"])
    return out


def test_published_uk_core_examples_conform(checker: UkCore) -> None:
    """No false positives: UK Core's own examples (``uk-core-examples``, XML, read in place) pass."""
    folder = CORPORA / "uk-core-examples" / "examples"
    if not folder.is_dir():
        unavailable("uk-core-examples corpus is not present")
    files = sorted(folder.glob("*.xml"))
    resources = [r for path in files for r in _with_bundle_entries(read_resource(path))]
    result = checker.check(resources)
    assert table(result) == {}
    assert len(resources) >= 70 and not result.unprofiled
    # the examples exercise every rule family, so "no violations" means something
    assert {k: n > 10 for k, n in result.checked.items()} == {
        "cardinality": True,
        "fixed": True,
        "type": True,
        "binding": True,
        "code": True,
        "extension": True,
    }, result.checked
