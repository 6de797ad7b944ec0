"""Per-Trust identifier systems as configuration (issue 11 item 3, docs/identifier-systems.md): a configured
assigning authority gets its Trust's URI on every path (HL7 in, FHIR in, HL7 write-back) and keeps one
event identity; an unconfigured one keeps the default ``urn:tie:authority:<ns>`` and is counted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.identifiers import systems as id_systems
from shared.mapping.fhir_in import event_from_fhir, patient_from_fhir
from shared.mapping.fhir_out import to_bundle
from shared.mapping.fhir_out._bundle import clear_caches as clear_fhir_out_caches
from shared.mapping.hl7v2_in import map_bytes
from shared.mapping.hl7v2_in.rules import RULES, STRICT_RULES
from shared.mapping.hl7v2_out import to_adt_a08
from tests.unit.mapping.fhir_in.test_fhirin_crosspath import A01, fhir_admission, fhir_patient
from tests.unit.mapping.hl7v2_out.hl7out_helpers import HEADER

BASE = "https://fhir.example-trust.nhs.uk/Id/"
CONFIG = {
    "version": "1.0.0",
    "authorities": {
        "RX1": {
            "name": "Example Trust (fictional)",
            "systems": {
                "MR": BASE + "mrn",
                "VN": BASE + "visit-number",
                "practitioner": BASE + "consultant-code",
                "*": BASE + "local-identifier",
            },
        }
    },
}


def _clear() -> None:
    RULES.memo.clear()
    STRICT_RULES.memo.clear()
    for rule in (*RULES.coded.values(), *STRICT_RULES.coded.values()):
        rule.memo.clear()
    clear_fhir_out_caches()
    id_systems.reset_unregistered()


@pytest.fixture
def trust() -> Iterator[id_systems.IdentifierSystems]:
    config = id_systems.parse(CONFIG, "test")
    id_systems.override(config)
    _clear()
    yield config
    id_systems.override(None)
    _clear()


def _hl7(text: str, *, lineage: bool = False) -> Any:
    return map_bytes(text.encode(), lineage=lineage)


def test_configured_authority_gets_the_trusts_uris(trust: id_systems.IdentifierSystems) -> None:
    ev = _hl7(A01).value
    assert [(i.system, i.value) for i in ev.patient.identifiers] == [(BASE + "mrn", "MRN123")]
    assert ev.encounter is not None
    assert [(i.system, i.value) for i in ev.encounter.identifiers] == [(BASE + "visit-number", "V0001")]
    # consultant with a GMC number keeps the national system
    (consultant,) = ev.encounter.attending
    assert consultant.identifiers[0].system == "https://fhir.hl7.org.uk/Id/gmc-number"
    assert id_systems.unregistered_counts() == {}


def test_consultant_without_xcn_9_gets_the_sending_facilitys_consultant_code_system(
    trust: id_systems.IdentifierSystems,
) -> None:
    text = A01.replace("C1234567^Who^Alan^^^Dr^^^GMC", "C999^Who^Alan^^^Dr")
    (consultant,) = _hl7(text).value.encounter.attending
    assert (consultant.identifiers[0].system, consultant.identifiers[0].value) == (
        BASE + "consultant-code",
        "C999",
    )


def test_unconfigured_authority_keeps_the_default_urn_and_is_reported(
    trust: id_systems.IdentifierSystems,
) -> None:
    text = A01.replace("MRN123^^^RX1^MR", "MRN123^^^ZZ9^MR")
    mapped = _hl7(text, lineage=True)
    assert mapped.value.patient.identifiers[0].system == "urn:tie:authority:ZZ9"
    assert id_systems.unregistered_counts() == {"ZZ9": 1}
    flagged = [e for e in mapped.lineage if "UNREGISTERED" in e.rule]
    assert [e.target for e in flagged] == ["patient.identifiers[0].system"]
    assert "MRN123" not in str(flagged)  # the report names the authority, never the identifier


def test_without_configuration_the_default_is_kept_and_counted() -> None:
    _clear()
    ev = _hl7(A01).value
    assert ev.patient.identifiers[0].system == "urn:tie:authority:RX1"
    assert id_systems.unregistered_counts()["RX1"] >= 1


def test_one_identity_over_hl7_and_fhir(trust: id_systems.IdentifierSystems) -> None:
    from_hl7 = _hl7(A01).value
    patient = patient_from_fhir(fhir_patient()).value
    # a FHIR client using the configured URI, and one still using the default URN, are the same issuer
    configured = fhir_admission()
    configured["identifier"][0]["system"] = BASE + "visit-number"
    for resource in (configured, fhir_admission()):
        from_fhir = event_from_fhir(resource, interaction="create", patient=patient).value
        assert from_fhir.key == from_hl7.key
    # and the patient's MRN read back from the bundle fhir_out wrote is the configured URI again
    bundle = to_bundle(from_hl7).value
    res = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient_from_fhir(res).value.identifiers == from_hl7.patient.identifiers


def test_hl7_write_back_names_the_configured_authority(trust: id_systems.IdentifierSystems) -> None:
    ev = _hl7(A01).value
    text = to_adt_a08(ev, HEADER).to_er7()
    pid = next(s for s in text.split("\r") if s.startswith("PID")).split("|")
    pv1 = next(s for s in text.split("\r") if s.startswith("PV1")).split("|")
    assert "MRN123^^^RX1^MR" in pid[3].split("~")
    assert pv1[19] == "V0001^^^RX1^VN"
    again = _hl7(text).value  # an A08: another event of the same patient and visit
    assert again.patient.identifiers == ev.patient.identifiers
    assert again.encounter.identifiers == ev.encounter.identifiers


BAD: list[Any] = [
    [],
    {"version": "1", "authorities": {}},
    {"version": "1.0.0", "authorities": {"RX1": {"systems": {"MR": "urn:tie:authority:RX1"}}}},
    {"version": "1.0.0", "authorities": {"RX1": {"systems": {"MR": "http://insecure.example/Id/mrn"}}}},
    {"version": "1.0.0", "authorities": {"RX1": {"systems": {}}}},
    {"version": "1.0.0", "authorities": {"RX1": {"systems": {"MR": BASE + "a"}, "colour": "blue"}}},
    {
        "version": "1.0.0",
        "authorities": {"RX1": {"systems": {"MR": BASE + "a"}}, "rx1": {"systems": {"VN": BASE + "b"}}},
    },
    {
        "version": "1.0.0",
        "authorities": {"RX1": {"systems": {"MR": BASE + "a"}}, "RX2": {"systems": {"MR": BASE + "a"}}},
    },
    {"version": "1.0.0", "authorities": {"bad|ns": {"systems": {"MR": BASE + "a"}}}},
]


@pytest.mark.parametrize("doc", BAD)
def test_bad_configuration_is_refused(doc: Any) -> None:
    with pytest.raises(id_systems.InvalidIdentifierSystems):
        id_systems.parse(doc, "test")


def test_packaged_configuration_names_no_trust() -> None:
    assert id_systems.packaged().by_authority == {}
