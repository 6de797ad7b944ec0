"""Key and payload hashing, canonical JSON, record (de)serialisation and config validation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from shared.canonical.identity import make_key
from shared.canonical.model import EventKind
from shared.errors import ConfigurationError, PermanentError
from shared.idempotency import (
    IdempotencyConfig,
    IdempotencyConfigError,
    IdempotencyKeyError,
    IdempotencyRecord,
    IdempotencyStatus,
    canonical_json,
    hash_key,
    hash_payload,
)


def test_key_hash_is_sha256_of_namespace_and_key() -> None:
    expected = hashlib.sha256(b"writeback\x1fadmission-0123").hexdigest()
    assert hash_key("writeback", "admission-0123") == expected
    assert len(expected) == 64


def test_namespaces_separate_the_same_key() -> None:
    assert hash_key("a", "k") != hash_key("b", "k")
    assert hash_key("a", "k") == hash_key("a", "k")


def test_clinical_event_keys_hash_like_any_string() -> None:
    key = make_key(EventKind.ADMISSION, "https://trust.example/visit", "VN1", "2024-03-15T14:25:00Z")
    assert hash_key("ns", key.value) == hash_key("ns", str(key.value))


@pytest.mark.parametrize("bad", ["", None, 42, b"bytes"])
def test_key_must_be_non_empty_string(bad: object) -> None:
    with pytest.raises(IdempotencyKeyError) as info:
        hash_key("ns", bad)  # type: ignore[arg-type]
    assert isinstance(info.value, PermanentError)


def test_lone_surrogates_in_keys_hash() -> None:
    assert hash_key("ns", "a\ud800b") != hash_key("ns", "ab")


def test_canonical_json_ignores_key_order_and_whitespace() -> None:
    a = {"b": 1, "a": [1, {"y": 2, "x": 1}]}
    b = json.loads('{ "a" : [1, {"x":1, "y":2}], "b":1 }')
    assert canonical_json(a) == canonical_json(b) == b'{"a":[1,{"x":1,"y":2}],"b":1}'
    assert hash_payload(a) == hash_payload(b)


def test_payload_hash_distinguishes_values_and_types() -> None:
    assert hash_payload({"a": 1}) != hash_payload({"a": 2})
    assert hash_payload({"a": 1}) != hash_payload({"a": "1"})
    assert hash_payload("x") != hash_payload(b"x")


def test_bytes_payload_hashes_raw_bytes() -> None:
    assert hash_payload(b"MSH|^~\\&|") == hashlib.sha256(b"MSH|^~\\&|").hexdigest()


class Colour(Enum):
    RED = "red"


@dataclass
class Event:
    when: datetime
    amount: Decimal
    colour: Colour
    tags: frozenset[str]
    raw: bytes


class Model(BaseModel):
    day: date
    name: str


def test_rich_payload_types_are_canonical() -> None:
    when = datetime(2024, 3, 15, 14, 25, tzinfo=UTC)
    one = Event(when, Decimal("1.50"), Colour.RED, frozenset({"b", "a"}), b"\x00\x01")
    two = Event(when, Decimal("1.50"), Colour.RED, frozenset({"a", "b"}), b"\x00\x01")
    assert hash_payload(one) == hash_payload(two)
    rendered = json.loads(canonical_json(one))
    assert rendered["when"] == "2024-03-15T14:25:00+00:00"
    assert rendered["amount"] == "1.50" and rendered["colour"] == "red"
    assert rendered["raw"] == {"$sha256": hashlib.sha256(b"\x00\x01").hexdigest()}
    assert hash_payload(Model(day=date(2024, 1, 2), name="x")) == hash_payload(
        {"day": "2024-01-02", "name": "x"}
    )


@pytest.mark.parametrize("bad", [{"a": object()}, {"a": float("nan")}, {1: "a", "b": 2}])
def test_unrenderable_payload_is_a_permanent_key_error(bad: object) -> None:
    with pytest.raises(IdempotencyKeyError):
        hash_payload(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_round_trips_and_is_stable(value: object) -> None:
    text = canonical_json(value)
    assert json.loads(text) == value
    assert canonical_json(json.loads(text)) == text


def test_record_round_trips_through_its_stored_value() -> None:
    record = IdempotencyRecord(
        key_hash="ab" * 32,
        status=IdempotencyStatus.COMPLETED,
        namespace="ns",
        payload_hash="cd" * 32,
        holder="h",
        attempt=2,
        by_replay=True,
        created_ms=1,
        lease_until_ms=2,
        expires_ms=3,
        completed_ms=2,
        result={"id": "Encounter/1"},
        error=None,
        replays_observed=1,
        duplicates_observed=4,
        last_observed_ms=2,
        outbox={"b1": {"entry": ["0", "r"], "messages": []}},
    )
    value = record.to_value()
    assert json.loads(json.dumps(value)) == value
    assert IdempotencyRecord.from_value(record.key_hash, value) == record
    assert record.status_at(2) is IdempotencyStatus.COMPLETED
    assert record.status_at(3) is IdempotencyStatus.EXPIRED


def test_expired_is_never_a_stored_status() -> None:
    with pytest.raises(ValueError):
        IdempotencyRecord.from_value("k", {"status": "EXPIRED"})


# -- config -----------------------------------------------------------------------------------------------


def test_default_config_is_valid() -> None:
    cfg = IdempotencyConfig()
    assert cfg.in_progress_lease < cfg.message_lock_duration
    assert cfg.expires_after == timedelta(days=30)


@pytest.mark.parametrize(
    ("lease", "lock"),
    [(60, 60), (90, 60), (0, 60), (-1, 60)],
)
def test_lease_must_be_positive_and_shorter_than_the_lock(lease: float, lock: float) -> None:
    with pytest.raises(IdempotencyConfigError) as info:
        IdempotencyConfig(
            in_progress_lease=timedelta(seconds=lease), message_lock_duration=timedelta(seconds=lock)
        )
    assert isinstance(info.value, ConfigurationError)


def test_expiry_must_outlast_the_lease() -> None:
    with pytest.raises(IdempotencyConfigError):
        IdempotencyConfig(expires_after=timedelta(seconds=30))


@pytest.mark.parametrize("namespace", ["", "a\x1fb"])
def test_namespace_must_be_non_empty_without_the_separator(namespace: str) -> None:
    with pytest.raises(IdempotencyConfigError):
        IdempotencyConfig(namespace=namespace)


def test_serializer_must_have_dump_and_load() -> None:
    with pytest.raises(IdempotencyConfigError):
        IdempotencyConfig(serializer=object())  # type: ignore[arg-type]


def test_config_from_a_subscription_lock_duration() -> None:
    cfg = IdempotencyConfig.for_lock_duration(timedelta(minutes=5), namespace="x")
    assert cfg.in_progress_lease == timedelta(seconds=225)
    assert cfg.message_lock_duration == timedelta(minutes=5) and cfg.namespace == "x"
