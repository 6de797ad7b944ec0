"""The write-back subscriber: idempotent effects, retries, breaker + parking, dead-letter path, journal."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.backbone import clinical, contracts
from shared.backbone.breaker import BreakerState
from shared.backbone.delivery import PARKED_ROW_PROPERTY, Delivery
from shared.backbone.errors import (
    ContractViolation,
    DownstreamRejected,
    DownstreamRetry,
    DownstreamUnavailable,
    EventConflict,
)
from shared.backbone.runtime import WriteBackOptions
from shared.backbone.writeback import clinical_assertion
from shared.canonical import identity
from shared.canonical.model import EncounterStatus
from shared.idempotency import IdempotencyPayloadConflict, IdempotencyStoredFailure
from shared.messaging.ports import REPLAY_COUNT_PROPERTY
from shared.messaging.topology import (
    SUB_OPERATIONAL_AUDIT,
    SUB_PLATFORM_AUDIT,
    SUB_WRITEBACK_FHIR,
    TOPIC_CLINICAL,
    TOPIC_OPERATIONAL,
    TOPIC_PLATFORM,
)
from tests.unit.backbone import support as s

NHS = s.nhs_numbers(4)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[s.Env]:
    with s.embedded(tmp_path) as e:
        yield e


def delivery(e: Any, *, count: int = 1, properties: dict[str, Any] | None = None) -> Delivery:
    message = clinical.to_message(e)
    return Delivery(
        topic=TOPIC_CLINICAL,
        subscription=SUB_WRITEBACK_FHIR,
        body=message.body,
        message_id=message.message_id or "",
        delivery_count=count,
        correlation_id=message.correlation_id,
        session_id=message.session_id,
        content_type=message.content_type,
        properties={**message.application_properties, **(properties or {})},
    )


def trace(env: s.Env, corr: str) -> list[Any]:
    from shared.journal import Journal

    return Journal(env.records).trace(corr)


def stages(env: s.Env, corr: str) -> list[str]:
    from shared.journal import Journal

    return [x.stage for x in Journal(env.records).trace(corr)]


def events_on(env: s.Env, topic: str, sub: str) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in env.bus.peek(topic, sub, max_messages=200)]


def test_applies_once_and_answers_repeats_from_the_store(env: s.Env) -> None:
    fake = s.FakeDownstream()
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}).subscriber(SUB_WRITEBACK_FHIR)
    e = s.event("A1", nhs=NHS[0], visit="V1", correlation_id="c-a1")
    first = sub.handle(delivery(e))
    assert first.status == "applied" and first.response is not None and first.response.status == "200"
    again = sub.handle(delivery(e, count=2))
    also = sub.handle(delivery(e, properties={REPLAY_COUNT_PROPERTY: 1}))  # a replay changes nothing
    assert (again.status, also.status) == ("duplicate", "duplicate")
    assert fake.effects[e.key.value] == 1 and fake.calls[e.key.value] == 1
    assert stages(env, "c-a1") == [
        "delivered",
        "written-back",
        "delivered",
        "duplicate",
        "delivered",
        "duplicate",
    ]
    [completed] = events_on(env, TOPIC_OPERATIONAL, SUB_OPERATIONAL_AUDIT)
    assert completed["type"] == "uk.nhs.tie.operational.writeback.completed"
    assert completed["tieeventkey"] == e.key.value and completed["data"]["status"] == "200"


def test_a_resend_is_a_proven_duplicate_and_changed_content_an_update_in_clinical_order(env: s.Env) -> None:
    fake = s.FakeDownstream()
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}).subscriber(SUB_WRITEBACK_FHIR)
    e = s.event("B1", nhs=NHS[0], visit="V2", correlation_id="c-b1", recorded="20260315110000")
    assert sub.handle(delivery(e)).status == "applied"
    # The same admission resent under a new control id (another message, same clinical content).
    resent = s.event("B2", nhs=NHS[0], visit="V2", correlation_id="c-b2", recorded="20260315110000")
    assert resent.key == e.key and clinical.to_message(resent).message_id != clinical.to_message(e).message_id
    assert sub.handle(delivery(resent)).status == "duplicate"
    [dup] = [x for x in trace(env, "c-b2") if x.stage == "duplicate"]
    assert dup.attributes["original_correlation_id"] == "c-b1"
    assert dup.attributes["digest"] == identity.event_digest(e)[:16]
    # Same identity, different content (another bed), recorded later: an update, applied.
    moved = s.event(
        "B3", nhs=NHS[0], visit="V2", correlation_id="c-b3", bed="BED9", recorded="20260315120000"
    )
    assert moved.key == e.key and identity.event_digest(moved) != identity.event_digest(e)
    assert sub.handle(delivery(moved)).status == "applied"
    # An older version arriving late: recorded as superseded, never applied.
    stale = s.event(
        "B4", nhs=NHS[0], visit="V2", correlation_id="c-b4", bed="BED5", recorded="20260315103000"
    )
    assert sub.handle(delivery(stale)).status == "superseded"
    [superseded] = [x for x in trace(env, "c-b4") if x.stage == "superseded"]
    assert superseded.attributes["original_correlation_id"] == "c-b3"
    assert fake.effects[e.key.value] == 2 and fake.calls[e.key.value] == 2
    # Every message ended in a terminal stage with its reason; nothing is left in flight.
    assert [stages(env, c)[-1] for c in ("c-b1", "c-b2", "c-b3", "c-b4")] == [
        "written-back",
        "duplicate",
        "written-back",
        "superseded",
    ]


def test_one_visit_number_of_one_issuer_for_two_patients_is_a_conflict(env: s.Env) -> None:
    fake = s.FakeDownstream()
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}).subscriber(SUB_WRITEBACK_FHIR)
    first = s.event("X1", nhs=NHS[0], visit="V9", correlation_id="c-x1")
    other = s.event("X2", nhs=NHS[1], visit="V9", correlation_id="c-x2")
    assert first.key != other.key  # the patient is part of the identity
    assert sub.handle(delivery(first)).status == "applied"
    with pytest.raises(EventConflict):
        sub.handle(delivery(other))
    with pytest.raises(IdempotencyStoredFailure):  # a redelivery gets the stored verdict
        sub.handle(delivery(other, count=2))
    assert fake.effects == {first.key.value: 1}
    assert "conflict" in stages(env, "c-x2")
    [conflict] = events_on(env, TOPIC_PLATFORM, SUB_PLATFORM_AUDIT)
    assert conflict["type"] == "uk.nhs.tie.platform.writeback.conflict"
    assert conflict["data"]["classification"] == "natural-id-conflict"
    assert NHS[1] not in json.dumps(conflict) and "V9" not in json.dumps(conflict)


def test_a_changed_assertion_under_one_version_id_is_still_a_payload_conflict(env: s.Env) -> None:
    """Belt and braces: the guard's payload check still refuses two assertions under one version id."""
    fake = s.FakeDownstream()
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}).subscriber(SUB_WRITEBACK_FHIR)
    e = s.event("P1", nhs=NHS[0], visit="V2")
    first = delivery(e)
    sub.handle(first)
    assert e.encounter is not None
    changed = e.model_copy(
        update={"encounter": e.encounter.model_copy(update={"status": EncounterStatus.PLANNED})}
    )
    assert clinical_assertion(changed) != clinical_assertion(e)
    forged = clinical.envelope(changed)
    forged["id"] = json.loads(first.body)["id"]  # the same version id, another content
    body = contracts.encode(forged)
    with pytest.raises(IdempotencyPayloadConflict):
        sub.handle(dataclasses.replace(first, body=body))
    assert fake.effects[e.key.value] == 1


def test_transient_failures_are_retried_with_backoff_inside_the_delivery(env: s.Env) -> None:
    sleeps: list[float] = []
    fake = s.FakeDownstream(
        script=lambda _k, n: DownstreamRetry("fake", "AE", response="AE") if n < 3 else None
    )
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}, sleep=sleeps.append)
    e = s.event("C1", nhs=NHS[0], visit="V3", correlation_id="c-c1")
    result = bb.subscriber(SUB_WRITEBACK_FHIR).handle(delivery(e))
    assert result.status == "applied" and result.attempts == 3 and fake.effects[e.key.value] == 1
    assert len(sleeps) == 2 and all(0 <= x <= 0.05 for x in sleeps)
    trace = [x for x in bb.journal.trace("c-c1") if x.stage == "retried"]
    assert [x.attributes["attempt"] for x in trace] == [1, 2]
    assert {x.attributes["response"] for x in trace} == {"AE"}
    assert bb.subscriber(SUB_WRITEBACK_FHIR).breaker.snapshot(fresh=True).failures == 0  # AE is not "down"


def test_exhausted_retries_fail_the_delivery_so_the_bus_redelivers(env: s.Env) -> None:
    fake = s.FakeDownstream(script=lambda _k, _n: DownstreamRetry("fake", "AE", response="AE"))
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}).subscriber(SUB_WRITEBACK_FHIR)
    e = s.event("D1", nhs=NHS[0], visit="V4", correlation_id="c-d1")
    with pytest.raises(DownstreamRetry):
        sub.handle(delivery(e))
    assert fake.calls[e.key.value] == 3
    fake.script = lambda _k, _n: None
    assert sub.handle(delivery(e, count=2)).status == "applied"  # the key was released, not stored
    assert stages(env, "c-d1").count("failed") == 1


def test_permanent_rejection_is_stored_not_retried_and_a_replay_runs_it_again(env: s.Env) -> None:
    fake = s.FakeDownstream(script=lambda _k, _n: DownstreamRejected("fake", "AR", response="AR"))
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}).subscriber(SUB_WRITEBACK_FHIR)
    e = s.event("E1", nhs=NHS[0], visit="V5", correlation_id="c-e1")
    with pytest.raises(DownstreamRejected):
        sub.handle(delivery(e))
    for n in range(2, 5):  # redeliveries fail fast without calling the downstream again
        with pytest.raises(IdempotencyStoredFailure):
            sub.handle(delivery(e, count=n))
    assert fake.calls[e.key.value] == 1
    fake.script = lambda _k, _n: None  # the fix
    replayed = sub.handle(delivery(e, properties={REPLAY_COUNT_PROPERTY: 1}))
    assert replayed.status == "applied" and fake.effects[e.key.value] == 1
    twice = sub.handle(delivery(e, properties={REPLAY_COUNT_PROPERTY: 2}))
    assert twice.status == "duplicate" and fake.effects[e.key.value] == 1
    written = [x for x in sub.journal.trace("c-e1") if x.stage == "written-back"]
    assert written[0].attributes["replay"] is True
    failed = [x.attributes for x in sub.journal.trace("c-e1") if x.stage == "failed"]
    assert failed[0]["final"] is True and failed[0]["response"] == "AR"


def test_downstream_down_opens_the_circuit_and_parks_without_failing_deliveries(env: s.Env) -> None:
    down = True
    fake = s.FakeDownstream(script=lambda _k, _n: DownstreamUnavailable("fake", "refused") if down else None)
    options = WriteBackOptions(
        timeout_seconds=0.5,
        max_attempts=2,
        backoff_base_seconds=0.0,
        breaker_failure_threshold=3,
        breaker_cooldown_seconds=0.2,
    )
    clock = s.ManualClock()  # the cooldown passes when the test moves the clock, not in real time
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}, options=options, clock=clock)
    sub = bb.subscriber(SUB_WRITEBACK_FHIR)
    first = s.event("F1", nhs=NHS[0], visit="V6", correlation_id="c-f1")
    with pytest.raises(DownstreamUnavailable):  # two failures: not yet open, the bus redelivers
        sub.handle(delivery(first))
    assert sub.handle(delivery(first, count=2)).status == "parked"  # third failure opened it
    assert sub.breaker.snapshot(fresh=True).state is BreakerState.OPEN
    others = [s.event(f"F{i}", nhs=NHS[i % 2], visit=f"V6{i}", correlation_id=f"c-f{i}") for i in (2, 3)]
    for other in others:  # while open: parked at once, the downstream is not called
        assert sub.handle(delivery(other)).status == "parked"
    assert sum(fake.calls.values()) == 3 and sub.parking.count() == 3
    [opened] = events_on(env, TOPIC_PLATFORM, SUB_PLATFORM_AUDIT)
    assert opened["type"] == "uk.nhs.tie.platform.circuit.opened" and opened["data"]["severity"] == "error"
    assert "parked" in stages(env, "c-f2")

    down = False
    clock.advance(timedelta(seconds=0.19))  # within the cooldown (0.2 s + up to 20 % jitter): nothing goes
    assert bb.release_parked() == {} and sub.parking.count() == 3
    assert sub.breaker.snapshot(fresh=True).state is BreakerState.OPEN
    clock.advance(timedelta(seconds=0.1))  # past it: one item goes out as the half-open probe
    assert bb.release_parked() == {SUB_WRITEBACK_FHIR: 1}
    stats = s.pump(env.bus, SUB_WRITEBACK_FHIR, sub.handle)
    assert stats.statuses["applied"] == 1 and sub.breaker.snapshot(fresh=True).state is BreakerState.CLOSED
    assert bb.release_parked() == {SUB_WRITEBACK_FHIR: 2}  # closed: the rest goes
    s.pump(env.bus, SUB_WRITEBACK_FHIR, sub.handle)
    assert sub.parking.count() == 0
    assert {e.key.value: fake.effects[e.key.value] for e in (first, *others)} == {
        e.key.value: 1 for e in (first, *others)
    }
    assert stages(env, "c-f2")[-3:] == ["released", "delivered", "written-back"]
    assert [m["type"] for m in events_on(env, TOPIC_PLATFORM, SUB_PLATFORM_AUDIT)][-1] == (
        "uk.nhs.tie.platform.circuit.closed"
    )
    assert env.bus.peek(TOPIC_CLINICAL, "clinical-audit", max_messages=100) == []  # releases are addressed


def test_a_later_event_of_a_patient_with_parked_work_parks_behind_it(env: s.Env) -> None:
    fake = s.FakeDownstream()
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: fake})
    sub = bb.subscriber(SUB_WRITEBACK_FHIR)
    early = s.event("G1", nhs=NHS[0], visit="V7")
    late = s.event("G2", nhs=NHS[0], visit="V8")
    other = s.event("G3", nhs=NHS[1], visit="V9")
    sub.parking.park(delivery(early), reason="circuit-open")  # as if parked while the circuit was open
    assert sub.handle(delivery(late)).status == "parked"  # same patient: behind the earlier one
    assert sub.handle(delivery(other)).status == "applied"  # other patients are not held up
    order: list[str] = []
    original = fake.apply

    def recording(e: Any) -> Any:
        order.append(e.key.value)
        return original(e)

    fake.apply = recording  # type: ignore[method-assign]
    bb.release_parked()
    s.pump(env.bus, SUB_WRITEBACK_FHIR, sub.handle)
    assert order == [early.key.value, late.key.value]


def test_a_released_copy_that_is_not_the_oldest_of_its_patient_parks_again(env: s.Env) -> None:
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: s.FakeDownstream()})
    sub = bb.subscriber(SUB_WRITEBACK_FHIR)
    early, late = s.event("H1", nhs=NHS[2], visit="V10"), s.event("H2", nhs=NHS[2], visit="V11")
    first = sub.parking.park(delivery(early), reason="circuit-open")
    second = sub.parking.park(delivery(late), reason="behind-parked")
    assert first.row_key < second.row_key
    copy = delivery(late, properties={PARKED_ROW_PROPERTY: second.row_key})
    assert sub.handle(copy).status == "parked"
    assert [i.row_key for i in sub.parking.items()] == [first.row_key, second.row_key]  # kept its place


def test_events_the_downstream_does_not_take_are_skipped(env: s.Env) -> None:
    fake = s.FakeDownstream(skip=lambda _e: "not-configured")
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}).subscriber(SUB_WRITEBACK_FHIR)
    e = s.event("I1", nhs=NHS[0], visit="V12", correlation_id="c-i1")
    assert sub.handle(delivery(e)).status == "skipped" and fake.calls == {}
    [skipped] = [x for x in sub.journal.trace("c-i1") if x.stage == "skipped"]
    assert skipped.attributes["reason"] == "not-configured"


def test_a_message_that_breaks_the_contract_fails_permanently(env: s.Env) -> None:
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: s.FakeDownstream()}).subscriber(SUB_WRITEBACK_FHIR)
    good = delivery(s.event("J1", nhs=NHS[0], visit="V13"))
    document = json.loads(good.body)
    document["data"]["patient"] = {"nhs_number": {"value": "123"}}  # schema-valid, model-invalid
    bad_model = Delivery(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, json.dumps(document).encode(), "m1")
    with pytest.raises(ContractViolation) as info:
        sub.handle(bad_model)
    assert info.value.path == "$.data" and "123" not in str(info.value)
    with pytest.raises(ContractViolation):
        sub.handle(Delivery(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, b"{}", "m2"))


def test_without_a_guard_duplicates_reach_the_downstream(env: s.Env) -> None:
    """The benchmark's "without idempotency" mode really is unprotected (so the ratio means something)."""
    fake = s.FakeDownstream()
    options = WriteBackOptions(idempotency=False, operational_events=False)
    sub = s.backbone(env, {SUB_WRITEBACK_FHIR: fake}, options=options).subscriber(SUB_WRITEBACK_FHIR)
    e = s.event("K1", nhs=NHS[0], visit="V14")
    sub.handle(delivery(e))
    sub.handle(delivery(e, count=2))
    assert fake.effects[e.key.value] == 2
