"""Event contracts: the checked-in schemas, validation on publish and consume, the compiled fast path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.backbone import clinical, contracts
from shared.backbone._fastschema import UnsupportedSchema, compile_schema, json_equal
from shared.backbone.errors import ContractViolation
from shared.canonical import identity
from shared.messaging.topology import TOPIC_CLINICAL, TOPIC_INGEST, TOPIC_OPERATIONAL, TOPIC_PLATFORM
from tests.unit.backbone.support import event, nhs_numbers

NHS = nhs_numbers(1)[0]


def clinical_document() -> dict[str, Any]:
    return clinical.envelope(event("K1", nhs=NHS, visit="V00001", correlation_id="corr-k1"))


def operational_document() -> dict[str, Any]:
    return contracts.operational_event(
        "writeback.completed",
        event_id="wb-fhir-1",
        downstream="fhir",
        subscription="writeback-fhir",
        status="201",
        correlation_id="corr-1",
        event_key="admission-" + "0" * 32,
        details={"summary": "1 created", "replay": False},
    )


def platform_document() -> dict[str, Any]:
    return contracts.platform_event(
        "deadletter.recorded",
        event_id="dlq-1",
        subject="deadletter/clinical-events/writeback-fhir",
        severity="error",
        details={"sequence": 7, "reason": "MaxDeliveryCountExceeded"},
    )


DOCUMENTS = {
    TOPIC_CLINICAL: clinical_document,
    TOPIC_OPERATIONAL: operational_document,
    TOPIC_PLATFORM: platform_document,
}


@pytest.mark.parametrize(
    "name", ["envelope-1.0.json", *(c.schema_file for c in contracts.CONTRACTS.values())]
)
def test_checked_in_schemas_are_valid_json_schema_2020_12(name: str) -> None:
    schema = json.loads(contracts.schema_text(name))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:tie:schema:")


def test_every_backbone_topic_has_a_contract_and_only_those() -> None:
    assert set(contracts.CONTRACTS) == {TOPIC_CLINICAL, TOPIC_OPERATIONAL, TOPIC_PLATFORM}
    assert contracts.CONTRACTS[TOPIC_CLINICAL].state_carrying
    assert not contracts.CONTRACTS[TOPIC_OPERATIONAL].state_carrying
    assert not contracts.CONTRACTS[TOPIC_PLATFORM].state_carrying
    with pytest.raises(ContractViolation):
        contracts.validate(TOPIC_INGEST, {})


@pytest.mark.parametrize("topic", sorted(DOCUMENTS))
def test_built_events_satisfy_their_topic_schema(topic: str) -> None:
    contracts.validate(topic, DOCUMENTS[topic]())


def test_clinical_envelope_carries_the_versioned_tie_attributes() -> None:
    doc = clinical_document()
    assert doc["specversion"] == "1.0" and doc["tieschemaversion"] == "1.0"
    assert doc["tieeventkey"] == doc["data"]["key"]["value"]
    assert doc["tieeventdigest"] == identity.content_digest(doc["data"])
    # id = one version of the event as carried by one message: key, digest, carrying message
    assert doc["id"].startswith(doc["tieeventkey"] + "~" + doc["tieeventdigest"][:16] + "~")
    assert doc["tiepatientkey"].startswith("patient-") and NHS not in doc["tiepatientkey"]
    assert doc["tiecorrelationid"] == "corr-k1"
    assert doc["tiesourcesystem"] == "PAS:RGT01" and doc["source"] == "urn:tie:source:PAS:RGT01"
    assert doc["tiesensitivity"] == "normal"


def test_clinical_message_round_trip_validates_both_ways() -> None:
    e = event("K2", nhs=NHS, visit="V00002")
    message = clinical.to_message(e)
    assert message.message_id == json.loads(message.body)["id"]
    assert message.message_id.startswith(e.key.value + "~")
    assert message.session_id == json.loads(message.body)["tiepatientkey"]
    assert message.application_properties[contracts.EVENT_TYPE_PROPERTY] == "uk.nhs.tie.clinical.admission"
    document, decoded = clinical.decode(message.body)
    assert decoded == e and document["tieeventkey"] == e.key.value
    broken = json.loads(message.body)
    broken["tiepatientkey"] = NHS  # an identifier where a hash belongs
    with pytest.raises(ContractViolation) as info:
        clinical.from_message(json.dumps(broken).encode())
    assert info.value.path == "$.tiepatientkey" and info.value.keyword == "pattern"
    assert NHS not in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "path", "keyword"),
    [
        (lambda d: d.pop("tieschemaversion"), "$", "required"),
        (lambda d: d.update(tieschemaversion="2.0"), "$.tieschemaversion", "pattern"),
        (lambda d: d.update(specversion="0.3"), "$.specversion", "const"),
        (lambda d: d.update(type="uk.nhs.tie.platform.x"), "$.type", "pattern"),
        (lambda d: d["data"].pop("patient"), "$.data", "required"),
        (
            lambda d: d["data"]["provenance"].update(source_format="csv"),
            "$.data.provenance.source_format",
            "enum",
        ),
        (lambda d: d.update(tiesensitivity="secret"), "$.tiesensitivity", "enum"),
    ],
)
def test_clinical_violations_name_the_element_not_the_value(mutate: Any, path: str, keyword: str) -> None:
    doc = clinical_document()
    mutate(doc)
    with pytest.raises(ContractViolation) as info:
        contracts.validate(TOPIC_CLINICAL, doc)
    assert (info.value.path, info.value.keyword) == (path, keyword)


def test_notifications_carry_flat_scalars_only() -> None:
    doc = operational_document()
    doc["data"]["body"] = {"resourceType": "Patient"}  # a nested payload would leak data
    with pytest.raises(ContractViolation) as info:
        contracts.validate(TOPIC_OPERATIONAL, doc)
    assert info.value.path == "$.data.body"
    doc = platform_document()
    doc["data"]["severity"] = "panic"
    with pytest.raises(ContractViolation):
        contracts.validate(TOPIC_PLATFORM, doc)


def test_to_outbound_sets_message_id_correlation_and_filter_properties() -> None:
    message = contracts.to_outbound(TOPIC_PLATFORM, platform_document())
    assert message.message_id == "dlq-1" and message.content_type == contracts.CONTENT_TYPE
    assert message.application_properties[contracts.SEVERITY_PROPERTY] == "error"
    assert message.application_properties[contracts.EVENT_TYPE_PROPERTY] == (
        "uk.nhs.tie.platform.deadletter.recorded"
    )
    op = contracts.to_outbound(TOPIC_OPERATIONAL, operational_document())
    assert op.correlation_id == "corr-1" and op.application_properties["tie_correlation_id"] == "corr-1"
    bad = operational_document()
    bad["id"] = ""
    with pytest.raises(ContractViolation):
        contracts.to_outbound(TOPIC_OPERATIONAL, bad)


def test_decode_rejects_what_is_not_a_json_object() -> None:
    for body in (b"\xff\xfe", b"not json", b"[1, 2]"):
        with pytest.raises(ContractViolation) as info:
            contracts.decode(TOPIC_CLINICAL, body)
        assert info.value.path == "$"


# -- the compiled fast path agrees with jsonschema ---------------------------------------------------------


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _leaves(v, (*path, i))
    return out


_REPLACEMENTS: list[Any] = [None, True, 0, 1.5, "", "x" * 600, "1.0", [], {}, ["a"], {"a": 1}]


def _mutations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every element replaced by each of several values, and every member deleted (a few thousand)."""
    out = []
    for path in _leaves(doc):
        if not path:
            continue
        for value in (*_REPLACEMENTS, "delete"):
            mutated = copy.deepcopy(doc)
            parent = mutated
            for step in path[:-1]:
                parent = parent[step]
            if value == "delete":
                if isinstance(parent, dict):
                    del parent[path[-1]]
                else:
                    parent.pop(path[-1])
            else:
                parent[path[-1]] = value
            out.append(mutated)
    return out


@pytest.mark.parametrize("topic", sorted(DOCUMENTS))
def test_fast_path_agrees_with_jsonschema_on_valid_and_mutated_documents(topic: str) -> None:
    registry = contracts._registry()
    schema = registry.contents(contracts.CONTRACTS[topic].schema_id)
    reference = Draft202012Validator(schema, registry=registry)
    fast = compile_schema(schema, registry.contents)
    documents = [DOCUMENTS[topic](), *_mutations(DOCUMENTS[topic]())]
    assert len(documents) > 150
    disagreements = [d for d in documents if fast(d) != reference.is_valid(d)]
    assert disagreements == []
    assert sum(not reference.is_valid(d) for d in documents) > 40  # the mutations do break things


def test_fast_path_json_semantics() -> None:
    assert json_equal(1, 1.0) and not json_equal(True, 1) and not json_equal(0, False)
    assert json_equal({"a": [1, "x"]}, {"a": [1.0, "x"]}) and not json_equal([1], [1, 2])
    check = compile_schema({"type": "integer"}, lambda _r: {})
    assert check(3) and check(3.0) and not check(3.5) and not check(True)
    check = compile_schema({"type": ["number", "null"]}, lambda _r: {})
    assert check(None) and check(2.5) and not check(False) and not check("2")
    with pytest.raises(UnsupportedSchema):
        compile_schema({"oneOf": [{"type": "string"}]}, lambda _r: {})
    with pytest.raises(UnsupportedSchema):
        compile_schema({"type": "decimal"}, lambda _r: {})
