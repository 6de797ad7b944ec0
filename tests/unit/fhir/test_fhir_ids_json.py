from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.fhir import json as fjson
from shared.fhir.ids import FHIR_ID_NAMESPACE, NAMESPACE_NAME, child_id, keyed_id, name_uuid, resource_id, urn


def test_namespace_is_pinned_and_derived_as_documented() -> None:
    assert uuid.uuid5(uuid.NAMESPACE_URL, NAMESPACE_NAME) == FHIR_ID_NAMESPACE
    assert str(FHIR_ID_NAMESPACE) == "ef535bf2-e121-5ab1-9117-0dda00852afb"


def test_resource_id_is_uuid5_of_type_system_value() -> None:
    rid = resource_id("Patient", "https://fhir.nhs.uk/Id/nhs-number", "9434765919")
    assert rid == str(uuid.uuid5(FHIR_ID_NAMESPACE, "Patient|https://fhir.nhs.uk/Id/nhs-number|9434765919"))
    assert uuid.UUID(rid).version == 5
    assert rid == resource_id("Patient", "https://fhir.nhs.uk/Id/nhs-number", "9434765919")
    assert rid != resource_id("Encounter", "https://fhir.nhs.uk/Id/nhs-number", "9434765919")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_fast_name_uuid_matches_uuid5(name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates: not a string FHIR or HL7 can carry
    assert name_uuid(name) == str(uuid.uuid5(FHIR_ID_NAMESPACE, name))


def test_pipes_in_non_last_parts_cannot_collide() -> None:
    # "a|b" + "c" and "a" + "b|c" would hash the same name without escaping
    assert keyed_id("X", "a|b", "c") != keyed_id("X", "a", "b|c")
    assert keyed_id("X", "a\\", "|c") != keyed_id("X", "a\\|", "c")
    assert child_id("Observation", "p", "1", "sys|code") == keyed_id("Observation", "p", "1", "sys|code")
    with pytest.raises(ValueError):
        keyed_id("X")


def test_urn() -> None:
    assert urn("abc") == "urn:uuid:abc"


def test_decimals_keep_their_precision_and_output_is_compact_utf8() -> None:
    doc = {"a": Decimal("7.40"), "b": [Decimal("-0.001"), Decimal("1E+2"), 3, True, None], "c": "Zoë / <x>"}
    out = fjson.dumps(doc)
    assert out == '{"a":7.40,"b":[-0.001,1E+2,3,true,null],"c":"Zoë / <x>"}'.encode()
    back = fjson.loads(out)
    assert back["a"] == Decimal("7.40") and str(back["a"]) == "7.40"
    assert fjson.dumps(back) == out
    assert fjson.dumps_str(doc) == out.decode("utf-8")


def test_stdlib_and_fast_backends_agree_byte_for_byte() -> None:
    doc = {
        "x": [Decimal("0.10"), "\x00\x1f\u2028 é", {"n": Decimal("12345678901234567890.123")}],
        # a string that looks like the stdlib marker (without the secret nonce) is left alone
        "m": "\x00deadbeef:1.0",
    }
    stdlib = fjson._dumps_stdlib(doc).encode("utf-8")
    assert stdlib == fjson.dumps(doc)
    assert json.loads(stdlib)["m"] == "\x00deadbeef:1.0"


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity")])
def test_non_finite_decimals_are_refused(bad: Decimal) -> None:
    with pytest.raises(ValueError):
        fjson.dumps({"v": bad})
    with pytest.raises(ValueError):
        fjson._dumps_stdlib({"v": bad})


def test_non_json_types_are_refused() -> None:
    with pytest.raises(TypeError):
        fjson.dumps({"v": object()})
