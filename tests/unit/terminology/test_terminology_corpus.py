"""Terminology against the public corpora in ../shared/corpora (skips cleanly when absent).

* URIs declared in ``systems.py`` as taken from the UK Core examples / PDS sandbox are spelled exactly as
  those sources spell them.
* Every HL7 v2 table code the corpora use in PID-8, PV1-2, OBX-8 and OBX-11 is either listed in the
  concept map (mapped, or deliberately ``unmatched`` with a reason) or named below as a known local /
  invalid code, with why.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from shared.hl7v2 import iter_messages
from shared.terminology import load_concept_map, v2_table_system
from shared.terminology import systems as s
from tests.hl7_corpus import UNREADABLE

pytestmark = pytest.mark.corpus

CORPORA = (Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora").resolve()

UK_CORE_EXAMPLES = "uk-core-examples/examples"
PDS = "nhs-pds-fhir-api/sandbox/mocks"

#: constant -> the corpus folder whose files must contain it verbatim
SOURCED = {
    s.NHS_NUMBER: UK_CORE_EXAMPLES,
    s.ODS_ORGANIZATION_CODE: UK_CORE_EXAMPLES,
    s.ODS_SITE_CODE: UK_CORE_EXAMPLES,
    s.SDS_USER_ID: UK_CORE_EXAMPLES,
    s.SDS_ROLE_PROFILE_ID: UK_CORE_EXAMPLES,
    s.GMC_NUMBER: UK_CORE_EXAMPLES,
    s.GMP_NUMBER: UK_CORE_EXAMPLES,
    s.GPHC_NUMBER: UK_CORE_EXAMPLES,
    s.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND: UK_CORE_EXAMPLES,
    s.EXT_NHS_NUMBER_VERIFICATION_STATUS: UK_CORE_EXAMPLES,
    s.ETHNIC_CATEGORY_ENGLAND: UK_CORE_EXAMPLES,
    s.EXT_ETHNIC_CATEGORY: UK_CORE_EXAMPLES,
    s.ADMISSION_METHOD_ENGLAND: UK_CORE_EXAMPLES,
    s.EXT_ADMISSION_METHOD: UK_CORE_EXAMPLES,
    s.DISCHARGE_METHOD_ENGLAND: UK_CORE_EXAMPLES,
    s.EXT_DISCHARGE_METHOD: UK_CORE_EXAMPLES,
    s.DISCHARGE_DESTINATION_ENGLAND: UK_CORE_EXAMPLES,
    s.RESIDENTIAL_STATUS: UK_CORE_EXAMPLES,
    s.EXT_RESIDENTIAL_STATUS: UK_CORE_EXAMPLES,
    s.EXT_CONTACT_RANK: UK_CORE_EXAMPLES,
    s.ADDITIONAL_PERSON_RELATIONSHIP_ROLE: UK_CORE_EXAMPLES,
    s.RECORD_STANDARD_HEADINGS: UK_CORE_EXAMPLES,
    s.V3_ACT_CODE: UK_CORE_EXAMPLES,
    s.V3_ROLE_CODE: UK_CORE_EXAMPLES,
    s.V3_PARTICIPATION_TYPE: UK_CORE_EXAMPLES,
    s.DATA_ABSENT_REASON: UK_CORE_EXAMPLES,
    s.OBSERVATION_CATEGORY: UK_CORE_EXAMPLES,
    s.ALLERGY_CLINICAL_STATUS: UK_CORE_EXAMPLES,
    s.ALLERGY_VERIFICATION_STATUS: UK_CORE_EXAMPLES,
    s.CONDITION_CLINICAL_STATUS: UK_CORE_EXAMPLES,
    s.CONDITION_VERIFICATION_STATUS: UK_CORE_EXAMPLES,
    s.CONDITION_CATEGORY: UK_CORE_EXAMPLES,
    s.V2_0074_DIAGNOSTIC_SERVICE_SECTION: UK_CORE_EXAMPLES,
    s.SNOMED_CT: UK_CORE_EXAMPLES,
    s.LOINC: UK_CORE_EXAMPLES,
    s.UCUM: UK_CORE_EXAMPLES,
    s.RFC4122_UUID: UK_CORE_EXAMPLES,
    s.NHS_NUMBER_VERIFICATION_STATUS_PDS: PDS,
    s.V3_CONFIDENTIALITY: PDS,
    s.V2_0131_CONTACT_ROLE: PDS,
    s.DEATH_NOTIFICATION_STATUS: PDS,
    s.EXT_DEATH_NOTIFICATION_STATUS: PDS,
    s.PDS_ADDITIONAL_RELATED_PERSON_ROLE: PDS,
    s.HUMAN_LANGUAGE: PDS,
    s.ADDRESS_KEY_TYPE: PDS,
    s.EXT_ADDRESS_KEY: PDS,
    s.PREFERRED_CONTACT_METHOD: PDS,
    s.PREFERRED_WRITTEN_COMMUNICATION_FORMAT: PDS,
}


def _folder_text(folder: str) -> str:
    root = CORPORA / folder
    if not root.is_dir():
        pytest.skip(f"corpus {folder} not available")
    return "\n".join(p.read_text("utf-8") for p in sorted(root.iterdir()) if p.suffix in (".xml", ".json"))


def test_sourced_uris_are_spelled_as_the_source_spells_them() -> None:
    texts = {folder: _folder_text(folder) for folder in set(SOURCED.values())}
    missing = [
        uri
        for uri, folder in SOURCED.items()
        if f'"{uri}"' not in texts[folder]  # XML value="..." and JSON "...": exact, whole-URI match
    ]
    assert not missing, missing


def test_pds_security_labels_are_in_the_value_set() -> None:
    from shared.terminology import lookup

    text = _folder_text(PDS)
    for code in ("U", "R"):
        assert f'"code": "{code}"' in text
        assert lookup("pds-confidentiality", s.V3_CONFIDENTIALITY, code)


# ------------------------------------------------------------------------------------------------
# HL7 v2 table codes used by the corpora
# ------------------------------------------------------------------------------------------------

V2_SOURCES = {
    "fhir-converter/data/SampleData/Hl7v2": "*.hl7",
    "pipehat/samples": "*.hl7",
    "uclh-emap/hl7-reader/src/test/resources": "**/*.txt",
}

#: (segment, field) -> (v2 table, concept map)
FIELDS = {
    ("PID", 8): ("0001", "v2-0001-to-administrative-gender"),
    ("PV1", 2): ("0004", "v2-0004-to-encounter-class"),
    ("OBX", 8): ("0078", "v2-0078-to-observation-interpretation"),
    ("OBX", 11): ("0085", "v2-0085-to-observation-status"),
}

#: Codes the corpora use that are not HL7 table codes, so no map should list them (the field policy
#: decides: keep-source for PV1-2 / OBX-8, raise for OBX-11).
KNOWN_NON_TABLE_CODES = {
    ("PV1", 2, "NH"): "UCLH (Epic) local patient class, not in table 0004",
    ("PV1", 2, "DAY CASE"): "UCLH (Epic) local patient class text, not in table 0004",
    ("OBX", 8, "HI"): "pipehat sample: laboratory-local high flag (table 0078 uses H)",
    ("OBX", 8, "LO"): "pipehat sample: laboratory-local low flag (table 0078 uses L)",
    ("OBX", 8, "*"): "pipehat sample: laboratory-local abnormal marker",
    ("OBX", 11, "?"): "UCLH fixture deliberately carrying an invalid result status",
    ("OBX", 11, "NOT_EXPECTED"): "UCLH fixture deliberately carrying an invalid result status",
}


def _corpus_codes() -> dict[tuple[str, int, str], set[str]]:
    found: dict[tuple[str, int, str], set[str]] = defaultdict(set)
    for folder, pattern in V2_SOURCES.items():
        for path in sorted((CORPORA / folder).glob(pattern)):
            rel = path.relative_to(CORPORA).as_posix()
            if rel in UNREADABLE:  # malformed fixtures fail as tests/hl7_corpus_outcomes.json lists
                with pytest.raises(UNREADABLE[rel]):
                    list(iter_messages(path.read_bytes()))
                continue
            messages = list(iter_messages(path.read_bytes()))
            for message in messages:
                for segment_name, field in FIELDS:
                    for segment in message.segments_named(segment_name):
                        code = segment.get(field, comp=1)
                        if code and code != '""':
                            found[(segment_name, field, code)].add(path.relative_to(CORPORA).as_posix())
    return found


def test_corpus_table_codes_are_mapped_or_known() -> None:
    if not all((CORPORA / folder).is_dir() for folder in V2_SOURCES):
        pytest.skip("HL7 v2 corpora not available")
    found = _corpus_codes()
    assert len(found) > 20, "the corpus scan found almost nothing: the paths changed?"
    unexplained = []
    for (segment, field, code), files in sorted(found.items()):
        table, map_id = FIELDS[(segment, field)]
        listed = code in load_concept_map(map_id).source_codes(v2_table_system(table))
        known = (segment, field, code) in KNOWN_NON_TABLE_CODES
        if listed == known:  # neither explained, or a "local" code that a map now lists
            unexplained.append(f"{segment}-{field} {code!r} (listed={listed}) in {sorted(files)[:2]}")
    assert not unexplained, "\n".join(unexplained)
    # Every known local code is still used by the corpora (keeps the list honest).
    assert set(KNOWN_NON_TABLE_CODES) <= set(found)
