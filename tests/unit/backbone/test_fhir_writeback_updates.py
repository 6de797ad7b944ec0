"""HL7 v2 updates change only what they carry (clinical safety, issue 10 case 4).

Each test sends an ordinary sequence of ADT messages through :class:`FhirDownstream` into the embedded
SQLite FHIR store and checks the stored resources' contents: what a later message did not carry survives,
what it deleted with ``""`` is gone. (A whole-record PUT of the later message fails every one of them.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.backbone.fhir_writeback import FhirDownstream
from shared.canonical.model import ClinicalEvent
from shared.fhir import profiles
from shared.mapping.hl7v2_in import map_bytes
from tests.unit.mapping.hl7v2_in.hl7in_samples import NHS, adt, seg

GP = seg("PD1", {3: "THE SURGERY^^Y01234", 12: "Y"})
DISCHARGED = "20260705100000"


def event(raw: bytes) -> ClinicalEvent:
    return map_bytes(raw).value


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SqliteFhirRepository]:
    r = SqliteFhirRepository(tmp_path / "fhir.sqlite3")
    yield r
    r.close()


def send(repo: SqliteFhirRepository, *messages: bytes) -> None:
    ds = FhirDownstream(repo)
    for raw in messages:
        ds.apply(event(raw))


def only(repo: SqliteFhirRepository, resource_type: str) -> dict[str, Any]:
    [resource] = repo.search(resource_type).resources
    return resource


def target(repo: SqliteFhirRepository, reference: str) -> dict[str, Any]:
    resource_type, _, rid = reference.partition("/")
    return repo.read(resource_type, rid).resource


def codes(concept: dict[str, Any]) -> list[str]:
    return [c["code"] for c in concept.get("coding", [])]


def confidentiality(resource: dict[str, Any]) -> list[str]:
    return [s["code"] for s in resource.get("meta", {}).get("security", [])]


def wards(repo: SqliteFhirRepository, encounter: dict[str, Any]) -> list[tuple[str, str]]:
    """(Location name, status) of each Encounter.location entry, in order."""
    return [(target(repo, e["location"]["reference"])["name"], e["status"]) for e in encounter["location"]]


def extension(element: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in element.get("extension", []) if e["url"] == url]


def nhs_identifier(patient: dict[str, Any]) -> dict[str, Any]:
    [ident] = [i for i in patient["identifier"] if i["system"] == profiles.NHS_NUMBER_SYSTEM]
    return ident


# ------------------------------------------------------------------------------------- absent: no change
def test_a08_without_pd1_keeps_the_gp_practice_and_the_restriction(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", before_pv1=(GP,), control_id="M1"),
        adt("A08", pid={11: "2 NEW ROAD^^LEEDS^^LS1 1AA^GBR^H"}, control_id="M2", when="20260702120000"),
    )
    patient = only(repo, "Patient")
    [gp] = patient["generalPractitioner"]
    practice = target(repo, gp["reference"])
    assert practice["identifier"] == [{"system": profiles.ODS_ORGANIZATION_SYSTEM, "value": "Y01234"}]
    assert confidentiality(patient) == ["R"]  # no PD1-12 is not "unrestricted"
    assert confidentiality(only(repo, "Encounter")) == ["R"]
    assert [a["line"] for a in patient["address"]] == [["2 NEW ROAD"]]  # what the A08 did carry: applied
    assert [n["family"] for n in patient["name"]] == ["SMITH", "JONES"]


def test_a08_without_pv1_36_keeps_the_discharge_disposition_of_the_a03(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", control_id="M1"),
        adt("A03", pv1={36: "01", 45: DISCHARGED}, control_id="M2", when="20260705100100"),
        adt("A08", pv1={4: "U"}, control_id="M3", when="20260706090000"),  # no PV1-36, no PV1-45
    )
    encounter = only(repo, "Encounter")
    assert codes(encounter["hospitalization"]["dischargeDisposition"]) == ["01"]
    assert codes(encounter["hospitalization"]["admitSource"]) == ["19"]
    assert encounter["status"] == "finished"  # an A08 without PV1-45 does not reopen the stay (A13 does)
    assert encounter["period"]["end"] == "2026-07-05T10:00:00+01:00"
    assert "U" in codes(encounter["priority"])  # what the A08 did carry: applied


def test_a03_keeps_the_prior_ward_of_the_a02(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", control_id="M1"),
        adt(
            "A02", pv1={3: "WARD2^B^1^RRV", 6: "WARD1^BAY2^BED3^RRV"}, control_id="M2", when="20260702120000"
        ),
    )
    assert wards(repo, only(repo, "Encounter")) == [("WARD2/B/1", "active"), ("WARD1/BAY2/BED3", "completed")]
    send(repo, adt("A03", pv1={3: "WARD2^B^1^RRV", 45: DISCHARGED}, control_id="M3", when="20260705100100"))
    assert wards(repo, only(repo, "Encounter")) == [
        ("WARD2/B/1", "completed"),
        ("WARD1/BAY2/BED3", "completed"),
    ]


def test_an_a08_after_the_a03_does_not_make_the_ward_current_again(repo: SqliteFhirRepository) -> None:
    ward = {3: "WARD2^B^1^RRV"}
    send(
        repo,
        adt("A01", pv1=ward, control_id="M1"),
        adt("A03", pv1={**ward, 45: DISCHARGED}, control_id="M2", when="20260705100100"),
        adt("A08", pv1={**ward, 4: "U"}, control_id="M3", when="20260706090000"),  # no PV1-45: no status
    )
    encounter = only(repo, "Encounter")
    assert encounter["status"] == "finished"
    assert wards(repo, encounter) == [("WARD2/B/1", "completed")]


def test_a02_without_prior_location_completes_the_stored_current_ward(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", control_id="M1"),
        adt("A02", pv1={3: "WARD2^B^1^RRV"}, control_id="M2", when="20260702120000"),
    )
    assert wards(repo, only(repo, "Encounter")) == [("WARD2/B/1", "active"), ("WARD1/BAY2/BED3", "completed")]


def test_a08_carrying_only_the_attending_keeps_the_referring_doctor(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", control_id="M1"),
        adt(
            "A08",
            pv1={7: "C7777777^NEW^DOC^^^DR^^^GMC", 8: "", 17: ""},
            control_id="M2",
            when="20260702120000",
        ),
    )
    roles = {
        p["type"][0]["coding"][0]["code"]: target(repo, p["individual"]["reference"])["identifier"][0][
            "value"
        ]
        for p in only(repo, "Encounter")["participant"]
    }
    assert roles == {"ATND": "C7777777", "REF": "G7654321", "ADM": "C1234567"}


def test_a13_reopens_the_stay_and_keeps_the_location_history(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", control_id="M1"),
        adt(
            "A02", pv1={3: "WARD2^B^1^RRV", 6: "WARD1^BAY2^BED3^RRV"}, control_id="M2", when="20260702120000"
        ),
        adt(
            "A03", pv1={3: "WARD2^B^1^RRV", 36: "01", 45: DISCHARGED}, control_id="M3", when="20260705100100"
        ),
        adt("A13", pv1={3: "WARD2^B^1^RRV", 45: DISCHARGED}, control_id="M4", when="20260705110000"),
    )
    encounter = only(repo, "Encounter")
    assert encounter["status"] == "in-progress"
    assert "end" not in encounter["period"] and "start" in encounter["period"]
    assert "dischargeDisposition" not in encounter["hospitalization"]
    assert wards(repo, encounter) == [("WARD2/B/1", "active"), ("WARD1/BAY2/BED3", "completed")]


def test_a11_cancels_the_admission_in_place(repo: SqliteFhirRepository) -> None:
    send(repo, adt("A01", control_id="M1"), adt("A11", control_id="M2", when="20260701130000"))
    encounter = only(repo, "Encounter")
    assert encounter["status"] == "cancelled"
    assert wards(repo, encounter) == [("WARD1/BAY2/BED3", "completed")]
    assert codes(encounter["serviceType"]) == ["MED"]


# --------------------------------------------------------------------------------------- "": delete
def test_explicit_null_deletes_patient_fields(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", before_pv1=(GP,), pid={32: "NSTS01"}, control_id="M1"),
        adt(
            "A08",
            pid={11: '""', 22: '""', 32: '""'},
            before_pv1=(seg("PD1", {3: '""', 12: "Y"}),),
            control_id="M2",
            when="20260702120000",
        ),
    )
    patient = only(repo, "Patient")
    assert "generalPractitioner" not in patient
    assert "address" not in patient
    assert extension(patient, profiles.EXT_ETHNIC_CATEGORY) == []
    assert nhs_identifier(patient) == {"system": profiles.NHS_NUMBER_SYSTEM, "value": NHS}
    assert [n["family"] for n in patient["name"]] == ["SMITH", "JONES"]  # not sent as "": kept
    assert confidentiality(patient) == ["R"]


def test_explicit_null_deletes_the_discharge_disposition(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", control_id="M1"),
        adt("A03", pv1={36: "01", 45: DISCHARGED}, control_id="M2", when="20260705100100"),
        adt("A08", pv1={36: '""', 45: DISCHARGED}, control_id="M3", when="20260706090000"),
    )
    hospitalization = only(repo, "Encounter")["hospitalization"]
    assert "dischargeDisposition" not in hospitalization
    assert codes(hospitalization["admitSource"]) == ["19"]


def test_pd1_12_n_lifts_the_restriction_and_an_empty_one_does_not(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", before_pv1=(GP,), control_id="M1"),
        adt(
            "A08",
            before_pv1=(seg("PD1", {3: "THE SURGERY^^Y01234"}),),
            control_id="M2",
            when="20260702120000",
        ),
    )
    assert confidentiality(only(repo, "Patient")) == ["R"]
    send(
        repo,
        adt("A08", before_pv1=(seg("PD1", {12: "N"}),), control_id="M3", when="20260703120000"),
    )
    assert confidentiality(only(repo, "Patient")) == ["U"]
    assert confidentiality(only(repo, "Encounter")) == []
    assert "generalPractitioner" in only(repo, "Patient")  # PD1-3 empty: kept


# ----------------------------------------------------------------------------------- merge: survivor
def test_a40_keeps_the_survivor_demographics(repo: SqliteFhirRepository) -> None:
    send(
        repo,
        adt("A01", pid={32: "NSTS01"}, control_id="M1"),
        adt(
            "A40",
            pid={1: "1", 3: f"{NHS}^^^NHS^NH~RRV1234567^^^RRV^MR", 5: "SMITH^JOHN", 11: "", 13: "", 22: ""},
            extra=(seg("MRG", {1: "RRV0000001^^^RRV^MR"}),),
            control_id="M2",
            when="20260702120000",
        ),
    )
    patient = only(repo, "Patient")
    assert [a["line"] for a in patient["address"]] == [["1 HIGH STREET", "FLAT 2"]]
    [ethnic] = extension(patient, profiles.EXT_ETHNIC_CATEGORY)
    assert codes(ethnic["valueCodeableConcept"]) == ["A"]
    [status] = extension(nhs_identifier(patient), profiles.EXT_NHS_NUMBER_VERIFICATION)
    assert codes(status["valueCodeableConcept"]) == ["01"]
    assert [t["value"] for t in patient["telecom"]] == ["020 7946 0000"]
    assert patient["name"] == [{"family": "SMITH", "given": ["JOHN"]}]  # what it carried replaces
    assert patient["link"] == [
        {
            "other": {
                "type": "Patient",
                "identifier": {"system": "urn:tie:authority:RRV", "value": "RRV0000001"},
            },
            "type": "replaces",
        }
    ]


def test_an_fhir_origin_update_is_a_whole_replacement(repo: SqliteFhirRepository) -> None:
    send(repo, adt("A01", before_pv1=(GP,), control_id="M1"))
    a08 = event(adt("A08", control_id="M2", when="20260702120000"))
    from_fhir = a08.model_copy(
        update={"provenance": a08.provenance.model_copy(update={"source_format": "fhir"})}
    )
    FhirDownstream(repo).apply(from_fhir)
    assert "generalPractitioner" not in only(repo, "Patient")  # FHIR update semantics: the whole resource


def test_an_a08_that_repeats_what_is_stored_writes_nothing(repo: SqliteFhirRepository) -> None:
    ds = FhirDownstream(repo)
    ds.apply(event(adt("A01", before_pv1=(GP,), control_id="M1")))
    response = ds.apply(event(adt("A08", control_id="M2", when="20260702120000")))
    assert (response.details["created"], response.details["updated"]) == (0, 0)
    assert [v.version_id for v in repo.history("Patient")] == ["1"]
    assert [v.version_id for v in repo.history("Encounter")] == ["1"]
