"""A40 merges are complete (clinical safety, issue 10 case 5; docs/adr/0002-patient-merge.md).

The survivor gets ``link replaces``; the merged-away Patient is retired (``active`` false, ``link
replaced-by`` the survivor); what referred to it is re-pointed to the survivor, so a search by the
survivor - or by the survivor's NHS number - finds the retired record's encounters and results.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.backbone.errors import DownstreamRetry
from shared.backbone.fhir_writeback import FhirDownstream
from shared.canonical.model import ClinicalEvent
from shared.fhir import profiles
from shared.mapping.hl7v2_in import map_bytes
from tests.unit.mapping.hl7v2_in.hl7in_samples import NHS, adt, oru, seg

OLD_MRN = "RRV0000001"
OLD_SYSTEM = "urn:tie:authority:RRV"
OLD_PID = {3: f"{OLD_MRN}^^^RRV^MR"}
OLD_VISIT = "V0000999^^^RRV^VN"
OBR = (
    "OBR|1|ORD{n}^EPR|LAB{n}^LIMS|UE^Urea and electrolytes^EXAMPLE-TRUST-LAB|||20260115093000"
    + "|" * 18
    + "F"
)
OBX = "OBX|1|NM|NA^Sodium^EXAMPLE-TRUST-LAB||{value}|mmol/L|133-146|N|||F"


def event(raw: bytes) -> ClinicalEvent:
    return map_bytes(raw).value


def a40(mrg: str = f"{OLD_MRN}^^^RRV^MR", control_id: str = "MERGE1") -> ClinicalEvent:
    return event(
        adt(
            "A40",
            pid={3: f"{NHS}^^^NHS^NH~RRV1234567^^^RRV^MR"},
            extra=(seg("MRG", {1: mrg}),),
            control_id=control_id,
            when="20260801120000",
        )
    )


def result(n: int, value: str, pid: dict[int, str]) -> ClinicalEvent:
    return event(oru(OBR.format(n=n), OBX.format(value=value), pid=pid, control_id=f"LAB{n}"))


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SqliteFhirRepository]:
    r = SqliteFhirRepository(tmp_path / "fhir.sqlite3")
    yield r
    r.close()


def two_records(repo: SqliteFhirRepository) -> tuple[str, str]:
    """The surviving patient (NHS number) and a duplicate record (old hospital number only), each with an
    admission; the duplicate also has a result. Returns (survivor id, retired id)."""
    ds = FhirDownstream(repo)
    ds.apply(event(adt("A01", control_id="S1")))
    ds.apply(event(adt("A01", pid=OLD_PID, pv1={19: OLD_VISIT}, control_id="R1")))
    ds.apply(result(1, "141", OLD_PID))
    return patient_id(repo, profiles.NHS_NUMBER_SYSTEM, NHS), patient_id(repo, OLD_SYSTEM, OLD_MRN)


def patient_id(repo: SqliteFhirRepository, system: str, value: str) -> str:
    [patient] = repo.search("Patient", [("identifier", f"{system}|{value}")]).resources
    return str(patient["id"])


def found(repo: SqliteFhirRepository, resource_type: str, param: str, patient: str) -> list[dict[str, Any]]:
    return repo.search(resource_type, [(param, f"Patient/{patient}")], sort=["_id"]).resources


def visit_numbers(encounters: list[dict[str, Any]]) -> list[str]:
    return sorted(e["identifier"][0]["value"] for e in encounters)


def test_a40_retires_the_merged_away_record_and_re_points_its_records(repo: SqliteFhirRepository) -> None:
    survivor, retired = two_records(repo)
    [observation] = found(repo, "Observation", "subject", retired)

    response = FhirDownstream(repo).apply(a40())

    assert response.details["retired"] == 1 and response.details["repointed"] == 3
    assert "1 retired" in response.summary
    old = repo.read("Patient", retired).resource
    assert old["active"] is False
    assert old["link"] == [
        {
            "other": {
                "reference": f"Patient/{survivor}",
                "type": "Patient",
                "identifier": {"system": profiles.NHS_NUMBER_SYSTEM, "value": NHS},
            },
            "type": "replaced-by",
        }
    ]
    assert [i["value"] for i in old["identifier"]] == [OLD_MRN]  # the retired record is kept as it was
    assert repo.read("Patient", survivor).resource["link"] == [
        {
            "other": {
                "type": "Patient",
                "identifier": {"system": OLD_SYSTEM, "value": OLD_MRN},
                "reference": f"Patient/{retired}",
            },
            "type": "replaces",
        }
    ]
    # The survivor's searches find the retired record's encounter and result; nothing is left behind.
    moved = found(repo, "Observation", "subject", survivor)
    assert [(o["id"], o["valueQuantity"]["value"]) for o in moved] == [(observation["id"], 141)]
    assert visit_numbers(found(repo, "Encounter", "patient", survivor)) == ["V0000123", "V0000999"]
    assert [r["code"]["coding"][0]["code"] for r in found(repo, "DiagnosticReport", "patient", survivor)] == [
        "UE"
    ]
    for rtype, param in (
        ("Observation", "subject"),
        ("Encounter", "patient"),
        ("DiagnosticReport", "patient"),
    ):
        assert found(repo, rtype, param, retired) == []


def test_the_survivors_nhs_number_reaches_the_merged_records_results(repo: SqliteFhirRepository) -> None:
    """No chained search in the store: the NHS number finds the one active Patient, whose id finds
    everything (re-pointing, not a link the client must follow)."""
    two_records(repo)
    FhirDownstream(repo).apply(a40())
    [patient] = repo.search("Patient", [("identifier", f"{profiles.NHS_NUMBER_SYSTEM}|{NHS}")]).resources
    assert patient.get("active") is not False
    values = [o["valueQuantity"]["value"] for o in found(repo, "Observation", "patient", str(patient["id"]))]
    assert values == [141]


def test_re_applying_the_merge_writes_nothing(repo: SqliteFhirRepository) -> None:
    survivor, retired = two_records(repo)
    ds = FhirDownstream(repo)
    ds.apply(a40())
    versions = {rid: repo.read("Patient", rid).version_id for rid in (survivor, retired)}
    again = ds.apply(a40())
    assert (again.details["created"], again.details["updated"], again.details["repointed"]) == (0, 0, 0)
    assert {rid: repo.read("Patient", rid).version_id for rid in (survivor, retired)} == versions


def test_a_later_result_for_the_old_record_is_filed_under_the_survivor(repo: SqliteFhirRepository) -> None:
    survivor, retired = two_records(repo)
    ds = FhirDownstream(repo)
    ds.apply(a40())
    ds.apply(result(2, "139", OLD_PID))
    assert sorted(o["valueQuantity"]["value"] for o in found(repo, "Observation", "subject", survivor)) == [
        139,
        141,
    ]
    assert found(repo, "Observation", "subject", retired) == []


def test_a40_without_the_merged_away_record_retires_nothing_and_says_so(repo: SqliteFhirRepository) -> None:
    ds = FhirDownstream(repo)
    ds.apply(event(adt("A01", control_id="S1")))
    response = ds.apply(a40(mrg="RRV5555555^^^RRV^MR"))
    assert response.details["retired"] == 0 and response.details["repointed"] == 0
    assert "merged-away record not found, nothing to retire" in response.summary
    [patient] = repo.search("Patient").resources
    assert patient["link"][0]["type"] == "replaces" and "active" not in patient


def test_a40_for_a_survivor_not_yet_stored_creates_it_and_links_both_ways(repo: SqliteFhirRepository) -> None:
    ds = FhirDownstream(repo)
    ds.apply(event(adt("A01", pid=OLD_PID, pv1={19: OLD_VISIT}, control_id="R1")))
    retired = patient_id(repo, OLD_SYSTEM, OLD_MRN)
    response = ds.apply(a40())
    survivor = patient_id(repo, profiles.NHS_NUMBER_SYSTEM, NHS)
    assert response.details["retired"] == 1 and response.details["repointed"] == 1
    assert repo.read("Patient", retired).resource["link"][0]["other"]["reference"] == f"Patient/{survivor}"
    assert visit_numbers(found(repo, "Encounter", "patient", survivor)) == ["V0000999"]


def test_re_pointing_is_bounded_per_delivery_and_resumes(repo: SqliteFhirRepository) -> None:
    survivor, retired = two_records(repo)
    ds = FhirDownstream(repo, merge_page_size=1, merge_max_pages=2)
    with pytest.raises(DownstreamRetry):
        ds.apply(a40())  # Encounter and Observation moved (two transactions); the report is left
    assert repo.read("Patient", retired).resource["active"] is False
    assert found(repo, "DiagnosticReport", "patient", retired) != []
    assert ds.apply(a40()).details["repointed"] == 1  # the redelivery moves the rest
    for rtype in ("Observation", "Encounter", "DiagnosticReport"):
        assert found(repo, rtype, "patient", retired) == []
    assert len(found(repo, "DiagnosticReport", "patient", survivor)) == 1
