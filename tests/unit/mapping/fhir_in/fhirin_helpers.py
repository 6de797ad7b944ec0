"""Helpers shared by the fhir_in tests: canonical leaf paths, lineage coverage and small FHIR builders."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from shared.mapping.lineage import LineageEntry
from shared.terminology import systems

NHS_OK = "9434765919"  # valid Modulus 11 (NHS Data Dictionary example)
NHS_OK_2 = "9000000009"  # PDS sandbox number (valid check digit)
NHS_BAD = "9434765918"  # wrong check digit


def canonical_leaves(model: BaseModel, prefix: str) -> list[str]:
    """Every populated leaf of a canonical model as ``prefix.a[0].b`` paths (defaults and Nones skipped)."""
    out: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, BaseModel):
            for name in type(node).model_fields:
                value = getattr(node, name)
                if value is None or value == ():
                    continue
                walk(value, f"{path}.{name}" if path else name)
        elif isinstance(node, tuple):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
        else:
            out.append(path)

    walk(model, prefix)
    return out


def covered(path: str, entries: list[LineageEntry] | tuple[LineageEntry, ...]) -> bool:
    return any(
        path == e.target or path.startswith(e.target + ".") or path.startswith(e.target + "[")
        for e in entries
    )


def uncovered_leaves(
    model: BaseModel, prefix: str, entries: tuple[LineageEntry, ...], *, ignore: set[str]
) -> list[str]:
    return [
        p
        for p in canonical_leaves(model, prefix)
        if p.rsplit(".", 1)[-1] not in ignore and not covered(p, entries)
    ]


def sources(entries: tuple[LineageEntry, ...], target: str) -> set[str | None]:
    return {e.source for e in entries if e.target == target}


def pds_patient() -> dict[str, Any]:
    """A PDS-shaped Patient (fabricated values; structure as the PDS sandbox returns it)."""
    return copy.deepcopy(
        {
            "resourceType": "Patient",
            "id": NHS_OK,
            "meta": {
                "versionId": "2",
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "U",
                        "display": "unrestricted",
                    }
                ],
            },
            "identifier": [
                {
                    "system": "https://fhir.nhs.uk/Id/nhs-number",
                    "value": NHS_OK,
                    "extension": [
                        {
                            "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                            "valueCodeableConcept": {
                                "coding": [
                                    {
                                        "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus",
                                        "version": "1.0.0",
                                        "code": "01",
                                        "display": "Number present and verified",
                                    }
                                ]
                            },
                        }
                    ],
                },
                {"system": "https://trust.example.nhs.uk/Id/mrn", "value": "MRN123"},
            ],
            "name": [
                {
                    "use": "usual",
                    "period": {"start": "2020-01-01", "end": "2025-12-31"},
                    "given": ["Jane", "Anne"],
                    "family": "Smith",
                    "prefix": ["Mrs"],
                    "suffix": ["MBE"],
                },
                {"use": "maiden", "family": "Jones", "given": ["Jane"]},
            ],
            "gender": "female",
            "birthDate": "2010-10-22",
            "deceasedDateTime": "2020-10-22T10:30:00+01:00",
            "generalPractitioner": [
                {
                    "type": "Organization",
                    "identifier": {
                        "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                        "value": "Y12345",
                    },
                }
            ],
            "telecom": [
                {"system": "phone", "value": "01632960587", "use": "home"},
                {"system": "email", "value": "jane.smith@example.com", "use": "work"},
                {"use": "home"},
            ],
            "address": [
                {
                    "use": "home",
                    "period": {"start": "2020-01-01"},
                    "line": ["1 Trevelyan Square", "Boar Lane", "City Centre"],
                    "city": "Leeds",
                    "district": "West Yorkshire",
                    "postalCode": "LS1 6AE",
                },
                {"use": "temp", "text": "Student Accommodation"},
            ],
            "extension": [
                {
                    "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory",
                    "valueCodeableConcept": {
                        "coding": [
                            {
                                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                                "code": "A",
                                "display": "British, Mixed British",
                            }
                        ]
                    },
                }
            ],
            "maritalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]
            },
        }
    )


FILL = {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "FILL"}]}
PLAC = {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "PLAC"}]}


def potassium(**extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "k",
        "status": "final",
        "category": [{"coding": [{"system": systems.OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": {
            "coding": [
                {"system": systems.LOINC, "code": "2823-3", "display": "Potassium"},
                {"system": systems.LOCAL_LAB, "code": "K"},
            ],
            "text": "Potassium",
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-15T09:30:00Z",
        "issued": "2026-01-15T11:00:00+00:00",
        "valueQuantity": {"value": 5.9, "unit": "mmol/L", "system": systems.UCUM, "code": "mmol/L"},
        "interpretation": [{"coding": [{"system": systems.V3_OBSERVATION_INTERPRETATION, "code": "H"}]}],
        "referenceRange": [
            {
                "low": {"value": 3.5, "unit": "mmol/L", "system": systems.UCUM, "code": "mmol/L"},
                "high": {"value": 5.3, "unit": "mmol/L", "system": systems.UCUM, "code": "mmol/L"},
            }
        ],
        "note": [{"text": "haemolysed sample"}],
    }
    res.update(extra)
    return copy.deepcopy(res)


def report(**extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [
            {"system": "urn:tie:authority:LAB", "value": "F123", "type": FILL},
            {"system": "urn:tie:authority:EPR", "value": "P456", "type": PLAC},
        ],
        "status": "final",
        "code": {"coding": [{"system": systems.LOCAL_LAB, "code": "U&E"}], "text": "Urea and electrolytes"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-15T09:30:00Z",
        "issued": "2026-01-15T11:00:00Z",
        "performer": [{"type": "Organization", "display": "Pathology"}],
        "result": [{"reference": "#k"}, {"reference": "urn:uuid:na"}],
        "contained": [potassium()],
        "conclusion": "see notes",
    }
    res.update(extra)
    return res


def sodium() -> dict[str, Any]:
    res = potassium()
    res["id"] = "na"
    res["code"] = {"coding": [{"system": systems.LOINC, "code": "2951-2"}]}
    res["valueQuantity"] = {"value": 140, "unit": "mmol/L"}
    del res["interpretation"]
    return res


def allergy() -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "identifier": [{"system": "urn:tie:allergy", "value": "A1"}],
        "clinicalStatus": {"coding": [{"system": systems.ALLERGY_CLINICAL_STATUS, "code": "active"}]},
        "verificationStatus": {
            "coding": [{"system": systems.ALLERGY_VERIFICATION_STATUS, "code": "confirmed"}]
        },
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "code": {"coding": [{"system": systems.SNOMED_CT, "code": "372687004", "display": "Amoxicillin"}]},
        "patient": {"reference": "Patient/p1"},
        "onsetDateTime": "2019",
        "recordedDate": "2026-01-15T09:00:00Z",
        "reaction": [
            {
                "manifestation": [{"coding": [{"system": systems.SNOMED_CT, "code": "271807003"}]}],
                "severity": "moderate",
                "description": "rash",
            }
        ],
    }


VISITS = "urn:tie:authority:RX1"
PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"


def encounter() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "resourceType": "Encounter",
            "identifier": [
                {
                    "system": VISITS,
                    "value": "V0001",
                    "type": {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "VN"}]},
                }
            ],
            "status": "in-progress",
            "class": {"system": systems.V3_ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
            "period": {"start": "2026-07-01T10:15:00+01:00"},
            "subject": {"reference": "Patient/p1"},
            "participant": [
                {
                    "type": [{"coding": [{"system": systems.V3_PARTICIPATION_TYPE, "code": "ATND"}]}],
                    "individual": {"identifier": {"system": systems.GMC_NUMBER, "value": "C1234567"}},
                },
                {
                    "type": [{"coding": [{"system": systems.V3_PARTICIPATION_TYPE, "code": "REF"}]}],
                    "individual": {"reference": "Practitioner/ref"},
                },
                {
                    "type": [{"coding": [{"system": systems.V3_PARTICIPATION_TYPE, "code": "PART"}]}],
                    "individual": {"identifier": {"system": systems.GMC_NUMBER, "value": "C7654321"}},
                },
            ],
            "location": [
                {"location": {"display": "Old ward"}, "status": "completed"},
                {
                    "location": {"reference": "#bed"},
                    "status": "active",
                    "period": {"start": "2026-07-02T09:00:00+01:00"},
                },
            ],
            "contained": [
                {
                    "resourceType": "Location",
                    "id": "bed",
                    "name": "Bed 4",
                    "physicalType": {"coding": [{"system": PHYSICAL, "code": "bd"}]},
                    "partOf": {"reference": "#ward"},
                },
                {
                    "resourceType": "Location",
                    "id": "ward",
                    "identifier": [{"system": "urn:tie:location", "value": "WARD7"}],
                    "physicalType": {"coding": [{"system": PHYSICAL, "code": "wa"}]},
                    "partOf": {"reference": "#site"},
                },
                {
                    "resourceType": "Location",
                    "id": "site",
                    "identifier": [{"system": systems.ODS_SITE_CODE, "value": "RX101"}],
                    "physicalType": {"coding": [{"system": PHYSICAL, "code": "si"}]},
                },
            ],
            "hospitalization": {
                "admitSource": {"coding": [{"system": "urn:tie:admit-source", "code": "19"}]},
            },
            "priority": {"coding": [{"system": systems.V3_ACT_PRIORITY, "code": "EM"}]},
            "serviceProvider": {"identifier": {"system": systems.ODS_ORGANIZATION_CODE, "value": "RX1"}},
        }
    )
