"""rules.json: the trigger table, compile-time checks (a bad rules file fails at import, not on a message),
strict mode and agreement with shared.terminology."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from shared.canonical.model import EncounterStatus, EventKind
from shared.mapping.hl7v2_in import RULES_VERSION
from shared.mapping.hl7v2_in.rules import RULES, STRICT_RULES, RulesError, compile_rules
from shared.terminology import Unmapped, field_policies, systems
from shared.terminology._data import SEMVER


def rules_doc() -> dict[str, Any]:
    text = resources.files("shared.mapping.hl7v2_in").joinpath("rules.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def test_version() -> None:
    assert SEMVER.fullmatch(RULES_VERSION)
    assert RULES.version == rules_doc()["version"] == RULES_VERSION


@pytest.mark.parametrize(
    ("message_type", "kind", "status"),
    [
        ("ADT^A01", EventKind.ADMISSION, EncounterStatus.IN_PROGRESS),
        ("ADT^A02", EventKind.TRANSFER, EncounterStatus.IN_PROGRESS),
        ("ADT^A03", EventKind.DISCHARGE, EncounterStatus.FINISHED),
        ("ADT^A04", EventKind.REGISTRATION, EncounterStatus.ARRIVED),
        ("ADT^A05", EventKind.PRE_ADMISSION, EncounterStatus.PLANNED),
        ("ADT^A08", EventKind.ENCOUNTER_UPDATE, None),
        ("ADT^A11", EventKind.CANCEL_ADMISSION, EncounterStatus.CANCELLED),
        ("ADT^A12", EventKind.CANCEL_TRANSFER, EncounterStatus.IN_PROGRESS),
        ("ADT^A13", EventKind.CANCEL_DISCHARGE, EncounterStatus.IN_PROGRESS),
        ("ADT^A28", EventKind.PATIENT_CREATED, None),
        ("ADT^A31", EventKind.PATIENT_UPDATED, None),
        ("ADT^A40", EventKind.PATIENT_MERGE, None),
        ("ORU^R01", EventKind.RESULT, None),
        ("ORM^O01", EventKind.ORDER, None),
    ],
)
def test_trigger_table(message_type: str, kind: EventKind, status: EncounterStatus | None) -> None:
    rule = RULES.messages[message_type]
    assert rule.kind is kind
    assert rule.encounter_status is status
    assert rule.derived is (message_type == "ADT^A08")


def test_strict_rules_raise_for_every_mapped_code_field() -> None:
    for name, rule in STRICT_RULES.coded.items():
        if rule.concept_map_id is not None:
            assert rule.unmapped is Unmapped.RAISE, name
    assert RULES.rule("patient.gender").unmapped is Unmapped.DATA_ABSENT


def test_no_rule_is_pending_and_omit_rules_are_optional_code_fields() -> None:
    for name, rule in RULES.coded.items():
        assert rule.active, name
    omitted = {name for name, rule in RULES.coded.items() if rule.omit}
    assert omitted == {
        "patient.names.use",
        "patient.addresses.use",
        "patient.addresses.type",
        "patient.telecom.use",
        "order.priority",
        "encounter.admission_method",  # a concept field: PV1-4 letters are priorities, not methods
    }
    status = RULES.rule("patient.nhs_number.verification_status")
    assert status.unmatched_omit and status.unmapped is Unmapped.RAISE and not status.omit
    assert not any(r.omit or r.unmatched_omit for r in STRICT_RULES.coded.values())


def test_concept_maps_agree_with_terminology_field_policies() -> None:
    """Where shared.terminology declares a policy for the same HL7 field, the concept map is the same."""
    by_location: dict[str, set[str]] = {}
    for p in field_policies().values():
        if p.hl7v2:
            by_location.setdefault(p.hl7v2, set()).add(p.concept_map_id)
    checked = 0
    for name, rule in RULES.coded.items():
        maps = by_location.get(rule.hl7v2)
        if maps is None or rule.concept_map_id is None:
            continue
        assert rule.concept_map_id in maps, name
        checked += 1
    assert checked >= 11


def test_identifier_and_code_system_uris_are_registered() -> None:
    for uri in RULES.authority_systems.values():
        assert uri in systems.IDENTIFIER_SYSTEMS
    for uri in RULES.coding_systems.values():
        assert systems.is_known_code_system(uri)


def _compile(mutate: Any) -> None:
    doc = copy.deepcopy(rules_doc())
    mutate(doc)
    compile_rules(doc)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(extra=1),
        lambda d: d["messages"]["ADT^A01"].update(kind="not-a-kind"),
        lambda d: d["messages"]["ADT^A01"].update(encounter_status="resting"),
        lambda d: d["messages"]["ORM^O01"].update(intent="wish"),
        lambda d: d["coded_fields"]["patient.gender"].update(concept_map="no-such-map"),
        lambda d: d["coded_fields"]["patient.gender"].update(concept_map="v2-0085-to-observation-status"),
        lambda d: d["coded_fields"]["report.status"].update(unmapped="keep-source"),
        lambda d: d["coded_fields"]["report.status"].update(when_empty="sometime"),
        lambda d: d["coded_fields"]["report.status"].update(unmapped="data-absent"),
        lambda d: d["coded_fields"]["patient.gender"].update(unmapped="maybe"),
        lambda d: d["coded_fields"]["patient.gender"].update(colour="blue"),
        lambda d: d["observation_value_types"].update(XX="guess"),
        lambda d: d["event_times"].update(occurred_at=["not a path"]),
        # 'omit' only for optional bare-code fields; 'unmatched' only 'omit'
        lambda d: d["coded_fields"]["patient.telecom.system"].update(unmapped="omit"),
        lambda d: d["coded_fields"]["encounter.service_type"].update(unmapped="omit"),  # no map
        lambda d: d["coded_fields"]["patient.ethnicity"].update(mapped="keep-both"),
        lambda d: d["coded_fields"]["patient.ethnicity"].update(kept_source_user_selected=True),
        lambda d: d["coded_fields"]["patient.gender"].update(kept_source_user_selected=False),
        lambda d: d["explicit_null"]["fields"].update({"PV1-4": ["encounter.priority", "encounter.colour"]}),
        lambda d: d["coded_fields"]["report.status"].update(unmatched="raise"),
        # a map target the canonical field cannot hold (address-type group read as Address.use)
        lambda d: d["coded_fields"]["patient.addresses.use"].update(
            target_system="http://hl7.org/fhir/address-type"
        ),
        lambda d: d["telecom"]["fields"].update({"PID-13": "mobile phone"}),
        lambda d: d["telecom"]["system_without_equipment_type"].update(number="telephone"),
    ],
)
def test_bad_rules_are_rejected(mutate: Any) -> None:
    with pytest.raises(RulesError):
        _compile(mutate)


def test_a_pending_rule_may_name_a_map_that_does_not_ship_yet() -> None:
    doc = rules_doc()
    doc["coded_fields"]["patient.names.use"]["concept_map"] = "not-shipped-yet"
    doc["coded_fields"]["patient.names.use"]["status"] = "pending"
    compiled = compile_rules(doc)
    assert compiled.rule("patient.names.use").concept_map_id is None
    doc["coded_fields"]["patient.names.use"]["status"] = "active"
    with pytest.raises(RulesError):
        compile_rules(doc)
