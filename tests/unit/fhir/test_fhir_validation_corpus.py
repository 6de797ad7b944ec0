"""The validator against published FHIR JSON: the FHIR R4 core examples and the PDS sandbox responses.

Both are third-party data the engine may receive, so every verdict here is pinned: a file that is
clean must stay clean (no false positives from the R4B models or our rules), and the known defects
must keep being found.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.fhir import json as fjson
from shared.fhir.validation import errors_only, validate_resource

CORPORA = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora"
R4_EXAMPLES = CORPORA / "fhir-r4-core-examples" / "spec" / "hl7.fhir.r4.examples" / "4.0.1" / "package"
PDS_MOCKS = CORPORA / "nhs-pds-fhir-api" / "sandbox" / "mocks"

pytestmark = pytest.mark.corpus

#: Files with errors, and exactly which (code, path). Everything else must have no error at all.
R4_DEFECTS = {
    # identifiers without a value / system: valid R4, but UK Core expects both
    "Patient-f001.json": {("required", "Patient.identifier[1].value")},
    "Specimen-101.json": {("required", "Specimen.container[0].identifier[0].system")},
}
PDS_DEFECTS = {
    "PatientCompoundName.json": {("value", "Bundle.entry[0].resource.identifier[0].value")},  # fails Mod 11
    "Personal_Details_RelatedPersonBundle.json": {("structure", "Bundle.entry[0].resource.patient")},  # {}
}


def _files(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        pytest.skip(f"corpus not present: {folder.name}")
    files = sorted(folder.glob(pattern))
    assert files
    return files


def test_fhir_r4_core_examples() -> None:
    seen = 0
    for path in _files(R4_EXAMPLES, "*-*.json"):
        resource = fjson.loads(path.read_bytes())
        errors = errors_only(validate_resource(resource, require_profile=False))
        assert {(e.code, e.path) for e in errors} == R4_DEFECTS.get(path.name, set()), path.name
        seen += 1
    assert seen >= 30


def test_pds_sandbox_responses() -> None:
    for path in _files(PDS_MOCKS, "*.json"):
        resource = fjson.loads(path.read_bytes())
        # PDS does not declare meta.profile; everything else is checked
        errors = errors_only(validate_resource(resource, require_profile=False))
        assert {(e.code, e.path) for e in errors} == PDS_DEFECTS.get(path.name, set()), path.name
        # and PDS's NHS numbers never leak into the messages
        for e in errors:
            assert re.search(r"\d{10}", e.message + e.path) is None


UK_CORE_EXAMPLES = CORPORA / "uk-core-examples" / "examples"


def test_uk_core_spellings_match_the_uk_core_examples() -> None:
    """Profile, extension and code-system URLs the mapper writes are spelt as UK Core spells them."""
    from shared.fhir import profiles

    files = _files(UK_CORE_EXAMPLES, "*.xml")
    text = "\n".join(p.read_text("utf-8") for p in files)
    declared = set(
        re.findall(r'<profile value="(https://fhir\.hl7\.org\.uk/StructureDefinition/UKCore-\w+)"', text)
    )
    assert declared and declared <= set(profiles.UK_CORE_PROFILES.values())
    for uri in (
        profiles.EXT_NHS_NUMBER_VERIFICATION,
        profiles.NHS_NUMBER_VERIFICATION_SYSTEM,
        profiles.NHS_NUMBER_SYSTEM,
        profiles.ODS_ORGANIZATION_SYSTEM,
        profiles.ODS_SITE_SYSTEM,
        profiles.EXT_ETHNIC_CATEGORY,
    ):
        assert f'"{uri}"' in text, uri
