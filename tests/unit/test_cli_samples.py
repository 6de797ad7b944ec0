"""The practice samples in ``samples/``: synthetic, accepted by the engine (the lab result), or broken on
purpose (the poison event), exactly as the README says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.backbone import clinical
from shared.backbone.errors import ContractViolation
from shared.hl7v2 import parse_message
from shared.identifiers.nhs_number import is_valid_nhs_number
from shared.ingest.hl7v2 import Hl7Ingest
from tests.helpers import REPO_ROOT

SAMPLES = REPO_ROOT / "samples"


def _hl7(name: str) -> bytes:
    return (SAMPLES / name).read_bytes().replace(b"\n", b"\r")


@pytest.mark.parametrize("name", ["adt-a01.hl7", "oru-r01.hl7"])
def test_hl7_samples_are_synthetic(name: str) -> None:
    message = parse_message(_hl7(name))
    nhs = message.get("PID-3[1].1")
    assert nhs is not None and is_valid_nhs_number(nhs)
    assert nhs.startswith("9"), "test-range NHS numbers only"
    assert message.get("PID-5.1") == "TESTPATIENT"


def test_oru_sample_is_a_lab_result_from_the_999_test_range() -> None:
    message = parse_message(_hl7("oru-r01.hl7"))
    assert (message.get("MSH-9.1"), message.get("MSH-9.2")) == ("ORU", "R01")
    assert message.get("PID-3[1].1", "").startswith("999")
    assert [obx.get(3, comp=1) for obx in message.segments_named("OBX")] == ["NA", "K"]


@pytest.mark.parametrize(
    ("name", "control_id"), [("adt-a01.hl7", "SAMPLE0001"), ("oru-r01.hl7", "SAMPLE0002")]
)
def test_hl7_samples_are_accepted(container: Any, name: str, control_id: str) -> None:
    result = Hl7Ingest(container.bus, container.records).handle(
        _hl7(name), source="test", correlation_id="s-1"
    )
    assert (result.code, result.outcome, result.control_id) == ("AA", "accepted", control_id)


def test_poison_event_breaks_its_contract_on_purpose() -> None:
    body = (SAMPLES / "poison-event.json").read_bytes()
    document = json.loads(body)
    assert document["tiecorrelationid"] == "practice-poison" and "patient" not in document["data"]
    with pytest.raises(ContractViolation) as raised:
        clinical.decode(body)
    assert raised.value.code == "contract-violation"
    assert "$.data" in str(raised.value) and "required" in str(raised.value)
