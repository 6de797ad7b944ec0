"""The parking lot: durable, deduplicated, ordered per patient, released addressed and idempotently."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.backbone import clinical
from shared.backbone.delivery import PARKED_ROW_PROPERTY, Delivery
from shared.backbone.parking import PARKED, RELEASED, ParkingLot, session_prefix
from shared.messaging.errors import BusUnavailable
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, REPLAY_COUNT_PROPERTY, REPLAY_SUBSCRIPTION_PROPERTY
from shared.messaging.topology import (
    SUB_CLINICAL_AUDIT,
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_CLINICAL,
)
from tests.unit.backbone import support as s

NHS = s.nhs_numbers(2)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def env(tmp_path: Path) -> Iterator[s.Env]:
    with s.embedded(tmp_path) as e:
        yield e


def delivery(control: str, nhs: str, **properties: object) -> Delivery:
    message = clinical.to_message(
        s.event(control, nhs=nhs, visit=f"V{control}", correlation_id=f"c-{control}")
    )
    return Delivery(
        TOPIC_CLINICAL,
        SUB_WRITEBACK_FHIR,
        message.body,
        message.message_id or "",
        correlation_id=message.correlation_id,
        session_id=message.session_id,
        content_type=message.content_type,
        properties={**message.application_properties, **properties},  # type: ignore[dict-item]
    )


def test_parking_is_per_session_ordered_and_a_redelivery_is_not_stored_twice(env: s.Env) -> None:
    lot = ParkingLot(env.records, "fhir", clock=Clock())
    a1, a2, b1 = delivery("A1", NHS[0]), delivery("A2", NHS[0]), delivery("B1", NHS[1])
    first = lot.park(a1, reason="circuit-open")
    assert lot.park(a1, reason="circuit-open").row_key == first.row_key  # redelivered after a crash
    lot.park(a2, reason="behind-parked")
    lot.park(b1, reason="circuit-open")
    assert [i.message_id for i in lot.session_items(a1.session_id)] == [a1.message_id, a2.message_id]
    assert first.row_key.startswith(session_prefix(a1.session_id)) and lot.count() == 3
    assert lot.blocker(a2) is not None and lot.blocker(delivery("C1", NHS[1])) is not None
    assert lot.blocker(delivery("D1", "9434765919")) is None
    assert first.body == a1.body and first.state == PARKED


def test_release_publishes_addressed_copies_in_order_once(env: s.Env) -> None:
    lot = ParkingLot(env.records, "fhir", clock=Clock())
    parked = [lot.park(delivery(c, NHS[0], **{REPLAY_COUNT_PROPERTY: 1}), reason="r") for c in ("R1", "R2")]
    released = lot.release(env.bus)
    assert [i.row_key for i in released] == [p.row_key for p in parked]
    assert {i.state for i in lot.items()} == {RELEASED}
    assert lot.release(env.bus) == []  # in flight: not released again until stale
    assert env.bus.peek(TOPIC_CLINICAL, SUB_CLINICAL_AUDIT) == []
    assert env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2) == []
    copies = env.bus.receive(
        TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, max_messages=5, session_id=NEXT_AVAILABLE_SESSION
    )
    assert [c.application_properties[PARKED_ROW_PROPERTY] for c in copies] == [p.row_key for p in parked]
    assert {c.application_properties[REPLAY_SUBSCRIPTION_PROPERTY] for c in copies} == {SUB_WRITEBACK_FHIR}
    assert {c.application_properties[REPLAY_COUNT_PROPERTY] for c in copies} == {1}  # a replay stays one
    assert copies[0].message_id.startswith("parked-") and copies[0].correlation_id == "c-R1"


def test_stale_releases_go_again_with_a_new_message_id(env: s.Env) -> None:
    clock = Clock()
    lot = ParkingLot(env.records, "fhir", clock=clock, stale_after=timedelta(minutes=5))
    lot.park(delivery("S1", NHS[0]), reason="r")
    [first] = lot.release(env.bus)
    clock.now += timedelta(minutes=6)
    [again] = lot.release(env.bus)
    assert again.releases == 2 and again.release_message_id() != first.release_message_id()
    assert len(env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR)) == 2


def test_a_failed_release_leaves_the_items_parked(env: s.Env) -> None:
    lot = ParkingLot(env.records, "fhir", clock=Clock())
    lot.park(delivery("F1", NHS[0]), reason="r")

    class DownBus:
        def publish(self, topic: str, messages: object) -> None:
            raise BusUnavailable("down")

    with pytest.raises(BusUnavailable):
        lot.release(DownBus())  # type: ignore[arg-type]
    assert [i.state for i in lot.items()] == [PARKED]
    assert len(lot.release(env.bus)) == 1


def test_a_released_copy_is_reparked_in_its_own_place_and_forgotten_when_done(env: s.Env) -> None:
    lot = ParkingLot(env.records, "fhir", clock=Clock())
    item = lot.park(delivery("Q1", NHS[0]), reason="circuit-open")
    lot.release(env.bus)
    copy = delivery("Q1", NHS[0], **{PARKED_ROW_PROPERTY: item.row_key})
    assert lot.blocker(copy) is None  # it is the oldest of its session
    again = lot.park(copy, reason="circuit-open")
    assert again.row_key == item.row_key and again.state == PARKED and again.releases == 1
    assert lot.forget(item.row_key) and not lot.forget(item.row_key)
    assert lot.count() == 0
