"""FHIR write-back via the repository port: conditional creates, If-Match updates, no write when unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.backbone.errors import DownstreamRejected, DownstreamRetry, DownstreamUnavailable
from shared.backbone.fhir_writeback import FhirDownstream
from shared.canonical.model import ClinicalEvent
from shared.fhirstore import errors as fe
from shared.hl7v2 import parse_message
from shared.mapping.hl7v2_in import map_message
from tests.unit.backbone.support import adt, nhs_numbers

NHS = nhs_numbers(2)


def mapped(raw: bytes) -> ClinicalEvent:
    return map_message(parse_message(raw), correlation_id="c").value


def a31(nhs: str, street: str) -> ClinicalEvent:
    raw = "\r".join(
        [
            "MSH|^~\\&|PAS|RGT01|TIE|RGT01|20260316103000||ADT^A31^ADT_A05|A31X|P|2.5.1",
            "EVN|A31|20260316102900",
            f"PID|1||{nhs}^^^NHS^NH~H123^^^RGT01^MR||TESTPATIENT^ALEX^J^^MX||19800101|F|||"
            f"{street}^^LEEDS^^LS1 4AP^GBR",
            "PV1|1|N",
        ]
    )
    return mapped((raw + "\r").encode())


def oru(nhs: str, value: str) -> ClinicalEvent:
    raw = "\r".join(
        [
            "MSH|^~\\&|LIMS|LAB|TIE|RX1|20260115110500||ORU^R01^ORU_R01|MSG2|P|2.5.1",
            f"PID|1||{nhs}^^^NHS^NH||Smith^Jane||20101022|F",
            "OBR|1|P456^EPR|F123^LAB|UE^U\\T\\E^EXAMPLE-TRUST-LAB|||20260115093000" + "|" * 18 + "F",
            f"OBX|1|NM|K^Potassium^EXAMPLE-TRUST-LAB||{value}|mmol/L^^UCUM|3.5-5.3|H|||F",
        ]
    )
    return mapped((raw + "\r").encode())


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[SqliteFhirRepository]:
    r = SqliteFhirRepository(tmp_path / "fhir.sqlite3")
    yield r
    r.close()


def versions(repo: SqliteFhirRepository, rtype: str) -> int:
    return len(repo.history(rtype))


def test_admission_creates_once_and_re_applying_writes_nothing(repo: SqliteFhirRepository) -> None:
    ds = FhirDownstream(repo)
    e = mapped(adt("M1", nhs=NHS[0], visit="V1"))
    first = ds.apply(e)
    assert first.status == "201" and first.details == {"created": 4, "updated": 0, "found": 0, "unchanged": 0}
    assert "Encounter/" in first.summary and "/_history/1" in first.summary
    again = ds.apply(e)
    assert again.status == "200" and again.details == {"created": 0, "updated": 0, "found": 3, "unchanged": 1}
    assert [versions(repo, t) for t in ("Patient", "Practitioner", "Location", "Encounter")] == [1, 1, 1, 1]
    [encounter] = repo.search("Encounter").resources
    [patient] = repo.search("Patient").resources
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"  # urn:uuid resolved


def test_a_changed_encounter_is_updated_with_if_match(repo: SqliteFhirRepository) -> None:
    seen: list[Any] = []
    original = repo.transaction

    def spy(bundle: Any) -> Any:
        seen.append(bundle)
        return original(bundle)

    repo.transaction = spy  # type: ignore[method-assign]
    ds = FhirDownstream(repo)
    ds.apply(mapped(adt("M2", nhs=NHS[0], visit="V2")))
    discharged = mapped(adt("M3", nhs=NHS[0], visit="V2", trigger="A03", discharged="20260316120000"))
    result = ds.apply(discharged)
    assert result.details["updated"] == 1 and result.status == "200"
    [entry] = seen[-1]["entry"]
    assert entry["request"]["ifMatch"] == 'W/"1"'
    assert versions(repo, "Encounter") == 2 and versions(repo, "Patient") == 1


def test_patient_update_is_a_conditional_update_and_idempotent(repo: SqliteFhirRepository) -> None:
    ds = FhirDownstream(repo)
    assert ds.apply(a31(NHS[1], "1 OLD STREET")).details["created"] == 1
    assert ds.apply(a31(NHS[1], "1 OLD STREET")).details["unchanged"] == 1
    assert ds.apply(a31(NHS[1], "2 NEW STREET")).details["updated"] == 1
    assert versions(repo, "Patient") == 2
    [patient] = repo.search("Patient").resources
    assert patient["address"][0]["line"][0] == "2 NEW STREET"


def test_result_report_and_observations(repo: SqliteFhirRepository) -> None:
    ds = FhirDownstream(repo)
    assert ds.apply(oru(NHS[0], "5.9")).details["created"] == 3
    assert ds.apply(oru(NHS[0], "5.9")).details["unchanged"] == 2
    corrected = ds.apply(oru(NHS[0], "6.1"))
    assert corrected.details["updated"] == 1 and corrected.details["unchanged"] == 1
    assert versions(repo, "Observation") == 2 and versions(repo, "DiagnosticReport") == 1


def test_events_written_through_the_fhir_api_are_not_written_again_to_the_same_store(
    repo: SqliteFhirRepository,
) -> None:
    e = mapped(adt("M4", nhs=NHS[0], visit="V4"))
    from_fhir = e.model_copy(update={"provenance": e.provenance.model_copy(update={"source_format": "fhir"})})
    response = FhirDownstream(repo, origin_store=True).apply(from_fhir)
    assert response.status == "200" and "already" in response.summary
    assert versions(repo, "Encounter") == 0
    assert FhirDownstream(repo, origin_store=False).apply(from_fhir).status == "201"  # another server


class Failing:
    """A repository whose every call raises ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def fail(*_a: Any, **_k: Any) -> Any:
            raise self.exc

        return fail


@pytest.mark.parametrize(
    ("exc", "expected", "response"),
    [
        (fe.StoreUnavailable("down"), DownstreamUnavailable, "503"),
        (fe.Throttled("slow down"), DownstreamUnavailable, "429"),
        (fe.UpstreamError("401 from upstream"), DownstreamUnavailable, "502"),
        (fe.VersionConflict("Encounter", "x", "1", "2"), DownstreamRetry, "412"),
        (fe.ResourceConflict("exists"), DownstreamRetry, "409"),
        (fe.TransactionFailed(0, fe.VersionConflict("Encounter", "x", "1", "2")), DownstreamRetry, "412"),
        (fe.InvalidResource("bad", http_status=422), DownstreamRejected, "422"),
        (fe.MultipleMatches("Patient"), DownstreamRejected, "412"),
        (fe.TransactionFailed(0, fe.InvalidResource("bad")), DownstreamRejected, "400"),
    ],
)
def test_error_taxonomy(exc: Exception, expected: type[Exception], response: str) -> None:
    ds = FhirDownstream(Failing(exc))  # type: ignore[arg-type]
    with pytest.raises(expected) as info:
        ds.apply(mapped(adt("M5", nhs=NHS[0], visit="V5")))
    assert info.value.response == response  # type: ignore[attr-defined]
    assert NHS[0] not in str(info.value)
