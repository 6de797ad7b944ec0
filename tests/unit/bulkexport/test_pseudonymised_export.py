"""Pseudonymised exports: no identifier that was sent in appears in any output line; references join
within a recipient's export and differ between recipients; the rules are data and named in the manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.bulkexport.pseudonymise import Pseudonymiser, load_rules, postcode_district
from tests.unit.bulkexport.support import KEY, Env, env, job_id, kickoff, lines, manifest

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
MRN_SYSTEM = "https://trust.example.nhs.uk/Id/mrn"

#: (NHS number, MRN, given, family, line, city, postcode, phone, email, birth date)
PEOPLE = [
    (
        "9434765919",
        "MRN7731",
        "Ottoline",
        "Quenby",
        "12 Larkspur Row",
        "Wetherby",
        "LS22 6RT",
        "07700900123",
        "ottoline.quenby@example.com",
        "1961-07-19",
    ),
    (
        "9434765870",
        "MRN7732",
        "Bartholomew",
        "Xavier-Lund",
        "Flat 3, 9 Quarry Mews",
        "Otley",
        "LS21 1AB",
        "01132 496000",
        "bx.lund@example.org",
        "1999-11-28",
    ),
    (
        "9434765889",
        "MRN7733",
        "Zuleika",
        "Pemberton",
        "The Old Forge",
        "Ilkley",
        "LS29 8QQ",
        "+44 7700 900456",
        "zp@example.net",
        "2004-02-29",
    ),
]


@pytest.fixture
def e(tmp_path: Path) -> Iterator[Env]:
    built = env(tmp_path)
    yield built
    built.close()


def load(e: Env) -> dict[str, str]:
    """The people as Patients with an Encounter and an Observation each; NHS number -> Patient id."""
    ids: dict[str, str] = {}
    for nhs, mrn, given, family, line, city, postcode, phone, email, born in PEOPLE:
        pid = e.fhir.create(
            {
                "resourceType": "Patient",
                "identifier": [{"system": NHS_SYSTEM, "value": nhs}, {"system": MRN_SYSTEM, "value": mrn}],
                "name": [
                    {"use": "official", "family": family, "given": [given], "text": f"{given} {family}"}
                ],
                "telecom": [{"system": "phone", "value": phone}, {"system": "email", "value": email}],
                "address": [{"use": "home", "line": [line], "city": city, "postalCode": postcode}],
                "birthDate": born,
                "gender": "unknown",
                "contact": [{"name": {"family": family}, "telecom": [{"system": "phone", "value": phone}]}],
                "text": {"status": "generated", "div": f"<div>{given} {family} {nhs}</div>"},
                "generalPractitioner": [{"reference": "Organization/gp1", "display": f"GP of {family}"}],
            }
        ).id
        ids[nhs] = pid
        subject = {
            "reference": f"Patient/{pid}",
            "display": f"{given} {family}",
            "identifier": {"system": NHS_SYSTEM, "value": nhs},
        }
        e.fhir.create(
            {
                "resourceType": "Encounter",
                "identifier": [{"system": "urn:tie:authority:RX1", "value": f"V-{mrn}"}],
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": subject,
                "period": {"start": "2026-01-10T08:00:00Z"},
            }
        )
        e.fhir.create(
            {
                "resourceType": "Observation",
                "identifier": [{"system": "urn:tie:authority:LAB", "value": f"F-{mrn}"}],
                "status": "final",
                "code": {
                    "coding": [{"system": "http://loinc.org", "code": "2823-3", "display": "Potassium"}]
                },
                "subject": subject,
                "effectiveDateTime": "2026-01-15T09:30:00Z",
                "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
                "note": [{"text": f"Called {given} {family} on {phone}"}],
                "performer": [{"reference": "Practitioner/dr1", "display": "Dr Who"}],
            }
        )
    return ids


def identifiers_sent() -> list[str]:
    """Every identifying string the test sent in (and the compact forms of postcodes and phones)."""
    out: list[str] = []
    for nhs, mrn, given, family, line, city, postcode, phone, email, born in PEOPLE:
        out += [nhs, mrn, given, family, line, city, postcode, postcode.replace(" ", ""), phone]
        out += [phone.replace(" ", ""), email, born, f"V-{mrn}", f"F-{mrn}"]
        out += [part for part in line.replace(",", " ").split() if len(part) > 3]
    return out


def export(e: Env, client: str) -> tuple[dict[str, Any], list[str]]:
    api = e.api("*:pseudonymised")
    job = job_id(kickoff(api, "_pseudonymise=true", client))
    e.runner().run_pending()
    m = manifest(api, job, client)
    return m, lines(api, m["output"], client)


def test_no_identifier_that_was_sent_in_appears_in_any_output_line(e: Env) -> None:
    ids = load(e)
    m, out = export(e, "lakehouse")
    assert len(out) == 9  # 3 Patients, 3 Encounters, 3 Observations
    leaks = [(needle, n) for n, line in enumerate(out) for needle in identifiers_sent() if needle in line]
    assert leaks == []
    for pid in ids.values():  # nor the server's own resource ids (they would reach the identified API)
        assert not any(pid in line for line in out)
    assert m["extension"]["pseudonymisation"] == {
        "name": "tie-bulk-export-pseudonymisation",
        "version": "1.0.0",
    }


def test_generalised_values_and_joins(e: Env) -> None:
    load(e)
    _, out = export(e, "lakehouse")
    found = [json.loads(line) for line in out]
    patients = {r["id"]: r for r in found if r["resourceType"] == "Patient"}
    assert sorted(p["birthDate"] for p in patients.values()) == ["1961-07", "1999-11", "2004-02"]
    assert sorted(p["address"][0]["postalCode"] for p in patients.values()) == ["LS21", "LS22", "LS29"]
    assert all(
        set(p)
        <= {
            "resourceType",
            "id",
            "meta",
            "identifier",
            "birthDate",
            "gender",
            "address",
            "generalPractitioner",
        }
        for p in patients.values()
    )
    for resource in found:
        if resource["resourceType"] in ("Observation", "Encounter"):
            reference = resource["subject"]["reference"]
            assert reference.split("/")[1] in patients, "subject must join to an exported Patient"
            assert resource["subject"]["identifier"]["system"] == "urn:tie:pseudonym"
    nhs_refs = {p["identifier"][0]["value"] for p in patients.values()}
    subject_refs = {r["subject"]["identifier"]["value"] for r in found if "subject" in r}
    assert subject_refs == nhs_refs, "the NHS number's reference is the same wherever it appears"


def test_two_recipients_get_different_references_and_one_recipient_the_same(e: Env) -> None:
    load(e)

    def patient_ids(client: str) -> set[str]:
        _, out = export(e, client)
        return {r["id"] for r in map(json.loads, out) if r["resourceType"] == "Patient"}

    lake, bi, lake_again = patient_ids("lakehouse"), patient_ids("ics-bi"), patient_ids("lakehouse")
    assert lake == lake_again
    assert lake.isdisjoint(bi)


def test_types_without_rules_are_not_exported_pseudonymised(e: Env) -> None:
    api = e.api("*:pseudonymised")
    assert kickoff(api, "_pseudonymise=true&_type=Practitioner", "lake").status == 400
    assert kickoff(api, "_pseudonymise=true&_type=DocumentReference", "lake").status == 400
    job = job_id(kickoff(api, "_pseudonymise=true", "lake"))
    types = e.jobs.get(job).request.types  # type: ignore[union-attr]
    assert "Practitioner" not in types and "DocumentReference" not in types and "Patient" in types


@pytest.mark.parametrize(
    ("value", "district"),
    [
        ("LS1 4AP", "LS1"),
        ("ls14ap", "LS1"),
        ("EC1A 1BB", "EC1A"),
        ("W1A 0AX", "W1A"),
        ("M1 1AE", "M1"),
        ("not a postcode", None),
        ("", None),
        ("LS1", None),
    ],
)
def test_postcode_district(value: str, district: str | None) -> None:
    assert postcode_district(value) == district


def test_key_and_recipient_are_required() -> None:
    rules = load_rules()
    with pytest.raises(ValueError, match="too short"):
        Pseudonymiser(b"short", "lake", rules)
    with pytest.raises(ValueError, match="recipient"):
        Pseudonymiser(KEY, "", rules)


def test_rules_name_only_known_generalisations() -> None:
    text = json.dumps(
        {
            "name": "x",
            "version": "0",
            "keep": {},
            "removeEverywhere": [],
            "keepIdentifierSystems": [],
            "generalise": {"Patient.birthDate": "round-to-decade"},
        }
    )
    with pytest.raises(ValueError, match="unknown generalisation"):
        load_rules(text)
