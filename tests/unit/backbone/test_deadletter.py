"""Dead-letter monitor and operations: recorded once, journaled, announced, kept; replay and purge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared.backbone import clinical, deadletter
from shared.backbone.delivery import PARKED_ROW_PROPERTY, Delivery
from shared.backbone.errors import DownstreamRejected
from shared.journal import Journal
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, REPLAY_COUNT_PROPERTY
from shared.messaging.topology import SUB_PLATFORM_AUDIT, SUB_WRITEBACK_FHIR, TOPIC_CLINICAL, TOPIC_PLATFORM
from shared.storage.names import TABLE_DEADLETTERS
from tests.unit.backbone import support as s

NHS = s.nhs_numbers(2)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[s.Env]:
    with s.embedded(tmp_path, max_delivery=3) as e:
        yield e


def poison(env: s.Env, fake: s.FakeDownstream, control: str, corr: str) -> str:
    """Publish an event the downstream rejects and pump it into the dead-letter sub-queue."""
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: fake})
    e = s.event(control, nhs=NHS[0], visit=f"V{control}", correlation_id=corr)
    s.publish(env.bus, e)
    s.pump(env.bus, SUB_WRITEBACK_FHIR, bb.subscriber(SUB_WRITEBACK_FHIR).handle)
    return e.key.value


def test_monitor_records_once_journals_announces_and_keeps_the_message(env: s.Env) -> None:
    fake = s.FakeDownstream(script=lambda _k, _n: DownstreamRejected("fake", "AR", response="AR"))
    key = poison(env, fake, "P1", "c-p1")
    [dead] = env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, dead_letter=True)
    # a permanent failure is dead-lettered at its first delivery, with its reason (not after 3 deliveries)
    assert (dead.dead_letter_reason, dead.dead_letter_description) == (
        "downstream-rejected",
        "downstream-rejected",
    )
    assert dead.delivery_count == 1
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: fake})
    report = bb.scan_dead_letters()
    assert (report.recorded, report.seen) == (1, 1)
    assert bb.scan_dead_letters().recorded == 0  # seen before: not recorded or announced again
    # Kept: still in the sub-queue.
    assert [
        m.sequence_number for m in env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, dead_letter=True)
    ] == [dead.sequence_number]
    [row] = env.records.query(TABLE_DEADLETTERS)
    assert row.value["reason"] == "downstream-rejected" and row.value["deliveryCount"] == 1
    assert row.value["correlationId"] == "c-p1" and row.value["eventKey"] == key
    assert row.value["last_error_code"] == "downstream-rejected"
    assert "body" not in row.value
    [notice] = [json.loads(m.body) for m in env.bus.peek(TOPIC_PLATFORM, SUB_PLATFORM_AUDIT)]
    assert notice["type"] == "uk.nhs.tie.platform.deadletter.recorded"
    assert notice["data"]["severity"] == "error" and notice["data"]["delivery_count"] == 1
    assert notice["tiecorrelationid"] == "c-p1"
    journal = Journal(env.records)
    [entry] = [x for x in journal.trace("c-p1") if x.stage == "dead-lettered"]
    assert entry.attributes["subscription"] == SUB_WRITEBACK_FHIR
    assert SUB_WRITEBACK_FHIR not in journal.waiting("c-p1")  # finished (dead-lettered), not in flight


def test_replay_after_the_fix_applies_once_and_a_second_replay_changes_nothing(env: s.Env) -> None:
    broken = True
    fake = s.FakeDownstream(
        script=lambda _k, _n: DownstreamRejected("fake", "AR", response="AR") if broken else None
    )
    key = poison(env, fake, "P2", "c-p2")
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: fake})
    bb.scan_dead_letters()
    broken = False
    assert deadletter.replay(env.bus, env.records, bb.journal, TOPIC_CLINICAL, SUB_WRITEBACK_FHIR) == 1
    [active] = env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR)
    assert active.application_properties[REPLAY_COUNT_PROPERTY] == 1
    assert SUB_WRITEBACK_FHIR in bb.journal.waiting("c-p2")  # re-opened by the replay
    s.pump(env.bus, SUB_WRITEBACK_FHIR, bb.subscriber(SUB_WRITEBACK_FHIR).handle)
    assert fake.effects[key] == 1
    # The same event delivered again as a replay (a second replay of a copy): answered from the store.
    again = clinical.to_message(s.event("P2", nhs=NHS[0], visit="VP2", correlation_id="c-p2"))
    delivery = Delivery(
        TOPIC_CLINICAL,
        SUB_WRITEBACK_FHIR,
        again.body,
        "again",
        session_id=again.session_id,
        properties={**again.application_properties, REPLAY_COUNT_PROPERTY: 2},
    )
    assert bb.subscriber(SUB_WRITEBACK_FHIR).handle(delivery).status == "duplicate"
    assert fake.effects[key] == 1
    stages = [x.stage for x in bb.journal.trace("c-p2")]
    assert stages.count("dead-lettered") == 1 and stages.count("replayed") == 1
    assert stages[-3:] == ["written-back", "delivered", "duplicate"]
    assert deadletter.replay(env.bus, env.records, bb.journal, TOPIC_CLINICAL, SUB_WRITEBACK_FHIR) == 0


def test_list_show_and_purge(env: s.Env) -> None:
    fake = s.FakeDownstream(script=lambda _k, _n: DownstreamRejected("fake", "AR", response="AR"))
    poison(env, fake, "P3", "c-p3")
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: fake})
    bb.scan_dead_letters()
    [letter] = deadletter.list_dead_letters(env.bus, env.records, topic=TOPIC_CLINICAL)
    row = letter.to_json()
    assert row["lastErrorCode"] == "downstream-rejected" and row["recorded"] and "body" not in row
    shown = deadletter.show_dead_letter(
        env.bus, env.records, TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, letter.sequence_number
    )
    assert shown is not None and "body" in shown.to_json(include_body=True)
    assert deadletter.show_dead_letter(env.bus, env.records, TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, 999) is None
    assert deadletter.purge(env.bus, env.records, older_than=timedelta(days=1)) == {}
    assert deadletter.purge(env.bus, env.records, older_than=timedelta(0)) == {
        f"{TOPIC_CLINICAL}/{SUB_WRITEBACK_FHIR}": 1
    }
    assert env.records.query(TABLE_DEADLETTERS) == []


def test_a_released_copy_that_dead_letters_releases_its_parked_record(env: s.Env) -> None:
    fake = s.FakeDownstream()
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: fake})
    sub = bb.subscriber(SUB_WRITEBACK_FHIR)
    message = clinical.to_message(s.event("P4", nhs=NHS[1], visit="V4", correlation_id="c-p4"))
    item = sub.parking.park(
        Delivery(
            TOPIC_CLINICAL,
            SUB_WRITEBACK_FHIR,
            message.body,
            message.message_id or "",
            session_id=message.session_id,
            correlation_id=message.correlation_id,
            properties=message.application_properties,
        ),
        reason="circuit-open",
    )
    bb.release_parked()
    [copy] = env.bus.receive(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, session_id=NEXT_AVAILABLE_SESSION)
    assert copy.application_properties[PARKED_ROW_PROPERTY] == item.row_key
    env.bus.dead_letter(copy, reason="test")
    assert sub.parking.count() == 1
    bb.scan_dead_letters()
    assert sub.parking.count() == 0  # no patient stays blocked behind a dead letter
