"""Every emitted resource is valid FHIR R4: 0 validator errors, 0 required-binding errors.

The validator is ``@medplum/core`` ``validateResource`` (independent of the mapper); the required-binding
check is :class:`tests.conformance.base_r4.RequiredBindings`. ``test_checks_can_fail`` proves both
report what they should on small hand-made resources.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conformance.base_r4 import BindingResult, RequiredBindings
from tests.conformance.emitted import Collection
from tests.conformance.tooling import Validator

pytestmark = [pytest.mark.corpus, pytest.mark.timeout(300)]


def test_every_source_emits(emitted: Collection) -> None:
    assert emitted.errors == ()
    kinds = Counter(e.source.split(":", 1)[0] for e in emitted.resources)
    assert kinds["corpus"] >= 100 and kinds["scenario"] >= 1 and kinds["readback"] >= 5, kinds


def test_no_validator_errors(emitted: Collection, validator: Validator) -> None:
    errors: Counter[tuple[str, str, str]] = Counter()
    for item in emitted.resources:
        for issue in validator.validate(item.resource):
            if issue["severity"] in ("error", "fatal"):
                # element and issue code only: diagnostics can quote instance values
                errors[(item.resource_type, issue["expression"].split("[")[0], issue["code"])] += 1
    assert dict(errors) == {}


def test_no_required_binding_errors(emitted: Collection, r4_definitions: None) -> None:
    result = BindingResult()
    checker = RequiredBindings()
    for item in emitted.resources:
        checker.check(item.resource, result)
    assert [(i.resource_type, i.path, i.value_set) for i in result.issues] == []  # no instance values
    assert result.checked >= 100


#: Hand-made resources: (resource, expected validator error expressions, expected binding paths).
CASES = [
    pytest.param(
        {"resourceType": "Patient", "gender": "female", "name": [{"family": "Example"}]},
        set(),
        [],
        id="good-patient",
    ),
    pytest.param({"resourceType": "Patient", "colour": "blue"}, {"Patient.colour"}, [], id="unknown-element"),
    pytest.param({"resourceType": "Observation", "status": "final"}, {"Observation.code"}, [], id="min-card"),
    pytest.param(
        {
            "resourceType": "Patient",
            "gender": "f",
            "contact": [{"gender": "woman", "name": {"family": "Example"}}],
        },
        set(),
        ["Patient.gender", "Patient.contact.gender"],
        id="required-code",
    ),
    pytest.param(
        {"resourceType": "Patient", "identifier": [{"use": "main", "value": "1"}]},
        set(),
        ["Identifier.use"],
        id="required-code-in-datatype",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {"value": 1, "comparator": "~"},
        },
        set(),
        ["Quantity.comparator"],
        id="required-code-under-choice",
    ),
]


@pytest.mark.parametrize(("resource", "validator_errors", "binding_paths"), CASES)
def test_checks_can_fail(
    validator: Validator, resource: dict[str, object], validator_errors: set[str], binding_paths: list[str]
) -> None:
    found = {i["expression"] for i in validator.validate(resource) if i["severity"] == "error"}
    assert found == validator_errors
    assert [i.path for i in RequiredBindings().check(resource).issues] == binding_paths
