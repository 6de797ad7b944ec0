"""Helpers shared by the fhir_in tests: canonical leaf paths, lineage coverage and small FHIR builders."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from shared.mapping.lineage import LineageEntry

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
                walk(value, f"{path}.{name}")
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
