"""PDS FHIR API sandbox Patients: FHIR -> canonical (fhir_in) -> FHIR (fhir_out) -> canonical again.

Every Patient in ``nhs-pds-fhir-api`` (``sandbox/mocks/*.json``: Patient resources and searchset entries;
``karate-tests/.../stubs/**/*.json``: the mock responses) must map without loss of identity (NHS number and
its verification status), names (all, with use/period/prefix/suffix), addresses, telecom, birth date,
gender, restricted flag, GP practice ODS code and death - checked against the source JSON and across the
round trip. Files that are not Patients (OperationOutcomes, RelatedPerson/Coverage bundles) or are
templates (Karate ``#(...)`` placeholders) are listed with the reason they were skipped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.canonical.model import ClinicalDateTime, Patient, Sensitivity
from shared.identifiers.nhs_number import is_valid_nhs_number
from shared.mapping.errors import InvalidValue
from shared.mapping.fhir_in import event_from_fhir, patient_from_fhir
from shared.terminology import systems
from tests.helpers import corpus_missing

pytestmark = pytest.mark.corpus

PDS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "nhs-pds-fhir-api"
RECORDED = ClinicalDateTime(value=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
_CONFIDENTIALITY = {"U": Sensitivity.NORMAL, "R": Sensitivity.RESTRICTED, "V": Sensitivity.VERY_RESTRICTED}


def _files() -> list[Path]:
    if not PDS.is_dir():
        return []
    return sorted(PDS.glob("sandbox/mocks/*.json")) + sorted(
        PDS.glob("karate-tests/src/test/java/mocks/stubs/**/*.json")
    )


def _collect() -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, str]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    skipped: list[tuple[str, str]] = []
    for path in _files():
        name = str(path.relative_to(PDS))
        text = path.read_text("utf-8")
        if "#(" in text:
            skipped.append((name, "template: Karate #(...) placeholders filled in by the mock at run time"))
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            skipped.append((name, "not valid JSON"))
            continue
        kind = doc.get("resourceType")
        if kind == "Patient":
            cases.append((name, doc))
        elif kind == "Bundle":
            entries = [e.get("resource", {}) for e in doc.get("entry") or []]
            patients = [r for r in entries if r.get("resourceType") == "Patient"]
            if not patients:
                types = sorted({str(r.get("resourceType")) for r in entries}) or ["no entries"]
                skipped.append((name, f"Bundle without Patients ({', '.join(types)})"))
            for i, res in enumerate(patients):
                cases.append((f"{name}#entry{i}", res))
        else:
            skipped.append((name, f"not a Patient ({kind})"))
    return cases, skipped


CASES, SKIPPED = _collect()


def _nhs_identifier(res: dict[str, Any]) -> dict[str, Any]:
    return next(i for i in res["identifier"] if i.get("system") == systems.NHS_NUMBER)


def _round_trip(resource: dict[str, Any]) -> Patient:
    """FHIR write -> canonical event -> FHIR (fhir_out transaction entries) -> canonical Patient, references
    resolved within the written bundle (the GP Organization entry)."""
    fhir_out = pytest.importorskip("shared.mapping.fhir_out", reason="fhir_out is not available")
    event = event_from_fhir(
        resource, interaction="update", patient=None, recorded_at=RECORDED, lineage=False
    ).value
    entries = fhir_out.to_entries(event).value
    context = {e["fullUrl"]: e["resource"] for e in entries}
    written = next(e for e in entries if e["resource"]["resourceType"] == "Patient")
    return patient_from_fhir(written["resource"], context=context, lineage=False).value


def test_the_corpus_was_read_and_every_file_is_accounted_for() -> None:
    if not PDS.is_dir():
        corpus_missing("../shared/corpora/nhs-pds-fhir-api is not present")
    assert len(CASES) >= 40
    accounted = {c.split("#")[0] for c, _ in CASES} | {s for s, _ in SKIPPED}
    assert accounted == {str(p.relative_to(PDS)) for p in _files()}
    for name, reason in SKIPPED:
        assert reason, name
    assert any("template" in reason for _, reason in SKIPPED)


@pytest.mark.parametrize(("name", "resource"), CASES, ids=[c for c, _ in CASES])
def test_pds_patient_maps_and_round_trips_without_loss(name: str, resource: dict[str, Any]) -> None:
    nhs_source = _nhs_identifier(resource)
    if not is_valid_nhs_number(nhs_source["value"]):
        # the sandbox holds a deliberately invalid number (9000000015): a typed error naming the element
        with pytest.raises(InvalidValue) as err:
            patient_from_fhir(resource)
        index = resource["identifier"].index(nhs_source)
        assert err.value.field == f"Patient.identifier[{index}].value"
        assert nhs_source["value"] not in str(err.value)
        return
    mapped = patient_from_fhir(resource)
    p = mapped.value
    _check_against_source(p, resource)
    again = _round_trip(resource)
    assert again.nhs_number == p.nhs_number
    assert again.names == p.names
    assert again.addresses == p.addresses
    assert again.telecom == p.telecom
    assert (again.birth_date, again.gender, again.deceased) == (p.birth_date, p.gender, p.deceased)
    assert again.sensitivity == p.sensitivity
    assert again.general_practitioner == p.general_practitioner
    assert again == p


def _check_against_source(p: Patient, res: dict[str, Any]) -> None:
    """What the canonical Patient holds is what the PDS resource says (nothing dropped or invented)."""
    nhs = _nhs_identifier(res)
    assert p.nhs_number is not None and p.nhs_number.value == nhs["value"]
    codes = [
        c["code"]
        for ext in nhs.get("extension", [])
        for c in ext.get("valueCodeableConcept", {}).get("coding", [])
    ]
    assert p.nhs_number.verification_status == (codes[0] if codes else None)
    names = res.get("name", [])
    assert len(p.names) == len(names)
    for mine, theirs in zip(p.names, names, strict=True):
        assert mine.family == theirs.get("family")
        assert list(mine.given) == theirs.get("given", [])
        assert list(mine.prefix) == theirs.get("prefix", [])
        assert list(mine.suffix) == theirs.get("suffix", [])
        assert mine.use == theirs.get("use")
        if "period" in theirs:
            assert mine.period is not None
            for key in ("start", "end"):
                when = getattr(mine.period, key)
                assert (when.value.date().isoformat() if when else None) == theirs["period"].get(key)
    addresses = [a for a in res.get("address", []) if a.get("line") or a.get("postalCode") or a.get("city")]
    assert len(p.addresses) == len(addresses)
    for mine_a, theirs_a in zip(p.addresses, addresses, strict=True):
        assert list(mine_a.lines) == theirs_a.get("line", [])
        assert (mine_a.city, mine_a.district, mine_a.postal_code, mine_a.use) == (
            theirs_a.get("city"),
            theirs_a.get("district"),
            theirs_a.get("postalCode"),
            theirs_a.get("use"),
        )
        assert (mine_a.period is not None) == ("period" in theirs_a)
    telecom = [t for t in res.get("telecom", []) if t.get("value")]
    assert [(t.system, t.value, t.use) for t in p.telecom] == [
        (t["system"], t["value"], t.get("use")) for t in telecom
    ]
    assert (p.birth_date.iso() if p.birth_date else None) == res.get("birthDate")
    assert p.gender == res.get("gender")
    labels = [
        s["code"]
        for s in res.get("meta", {}).get("security", [])
        if s.get("system") == systems.V3_CONFIDENTIALITY
    ]
    assert p.sensitivity == (_CONFIDENTIALITY[labels[0]] if labels else Sensitivity.NORMAL)
    gps = res.get("generalPractitioner", [])
    assert (p.general_practitioner.ods_code if p.general_practitioner else None) == (
        gps[0]["identifier"]["value"] if gps else None
    )
    if "deceasedDateTime" in res:
        assert isinstance(p.deceased, ClinicalDateTime)
        assert p.deceased.value == datetime.fromisoformat(res["deceasedDateTime"])
    else:
        assert p.deceased == res.get("deceasedBoolean")


@pytest.mark.parametrize(("name", "reason"), SKIPPED, ids=[n for n, _ in SKIPPED])
def test_files_that_are_not_patients_are_skipped_with_their_reason(name: str, reason: str) -> None:
    pytest.skip(f"{name}: {reason}")
