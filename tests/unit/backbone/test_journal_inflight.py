"""The journal's in-flight index: accepted but not finished, per subscriber still to act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.journal import Journal
from shared.storage.names import TABLE_INFLIGHT


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_an_hl7_message_is_in_flight_until_every_subscriber_is_done(tmp_path: Path) -> None:
    journal = Journal(SqliteRecordStore(tmp_path / "r.sqlite3"))
    journal.record("m1", "received", channel="hl7v2", source="http", size=10)
    assert set(journal.waiting("m1")) == {"ingest-processor"}
    journal.record("m1", "published", topic="tie-ingest", message_id="x")
    journal.record("m1", "acknowledged", code="AA", control_id="C1")
    journal.record("m1", "mapped", event_kind="admission", event_key="k")
    journal.record("m1", "consumed", message_id="x", delivery_count=1, outcome="published admission")
    assert set(journal.waiting("m1")) == {"writeback-fhir", "writeback-hl7v2"}
    journal.record("m1", "delivered", subscriber="writeback-fhir", delivery_count=1)
    journal.record("m1", "written-back", subscriber="writeback-fhir", status="201")
    assert [e.correlation_id for e in journal.inflight()] == ["m1"]
    journal.record("m1", "skipped", subscriber="writeback-hl7v2", reason="not-configured")
    assert journal.waiting("m1") == {} and journal.inflight() == []


def test_a_write_back_that_finishes_before_mapped_is_journaled_stays_finished(tmp_path: Path) -> None:
    """The event is published before "mapped" is recorded, so a fast subscriber can finish first."""
    journal = Journal(SqliteRecordStore(tmp_path / "r.sqlite3"))
    journal.record("m2", "received")
    journal.record("m2", "written-back", subscriber="writeback-fhir", status="201")
    journal.record("m2", "mapped", event_kind="admission")
    journal.record("m2", "consumed", delivery_count=1)
    assert set(journal.waiting("m2")) == {"writeback-hl7v2"}


def test_rejections_and_edge_failures_finish_a_message_but_processor_retries_do_not(tmp_path: Path) -> None:
    journal = Journal(SqliteRecordStore(tmp_path / "r.sqlite3"))
    for corr, stage, attrs in (
        ("r", "rejected", {"control_id": "C"}),
        ("i", "invalid", {"control_id": "C"}),
        ("d", "duplicate", {"control_id": "C"}),
        ("f", "failed", {"control_id": "C", "error_code": "207"}),
    ):
        journal.record(corr, "received")
        journal.record(corr, stage, **attrs)  # type: ignore[arg-type]
        assert journal.waiting(corr) == {}, stage
    journal.record("p", "received")
    journal.record("p", "failed", message_id="x", delivery_count=2, error_code="boom")
    assert set(journal.waiting("p")) == {"ingest-processor"}


def test_dead_letter_closes_and_replay_reopens(tmp_path: Path) -> None:
    journal = Journal(SqliteRecordStore(tmp_path / "r.sqlite3"))
    journal.record("m3", "received")
    journal.record("m3", "mapped")
    journal.record("m3", "consumed", delivery_count=1)
    journal.record("m3", "skipped", subscriber="writeback-hl7v2")
    journal.record("m3", "dead-lettered", topic="clinical-events", subscription="writeback-fhir")
    assert journal.waiting("m3") == {}
    journal.record("m3", "replayed", topic="clinical-events", subscription="writeback-fhir")
    assert set(journal.waiting("m3")) == {"writeback-fhir"}


def test_listing_is_oldest_first_filters_by_age_and_clears_old_tombstones(tmp_path: Path) -> None:
    records = SqliteRecordStore(tmp_path / "r.sqlite3")
    clock = Clock()
    journal = Journal(records, clock=clock, tombstone_ttl=timedelta(minutes=10))
    journal.record("old", "received")
    clock.now += timedelta(minutes=3)
    journal.record("new", "received")
    journal.record("done", "received")
    journal.record("done", "consumed")
    assert [e.correlation_id for e in journal.inflight()] == ["old", "new"]
    assert [e.correlation_id for e in journal.inflight(older_than=timedelta(minutes=2))] == ["old"]
    assert len(records.query(TABLE_INFLIGHT)) == 3
    clock.now += timedelta(minutes=11)
    journal.inflight()
    assert {r.partition_key for r in records.query(TABLE_INFLIGHT)} == {"old", "new"}
    untracked = Journal(records, track_inflight=False)
    untracked.record("quiet", "received")
    assert untracked.waiting("quiet") == {}


def test_a_fhir_api_write_awaits_the_write_backs_of_the_events_it_published(tmp_path: Path) -> None:
    journal = Journal(SqliteRecordStore(tmp_path / "r.sqlite3"))
    journal.record("f1", "fhir-write", interaction="create", resource="Encounter/1")
    journal.record("f1", "published", topic="clinical-events", message_id="k", event_kind="admission")
    assert set(journal.waiting("f1")) == {"writeback-fhir", "writeback-hl7v2"}
    journal.record("f2", "published", topic="tie-ingest", message_id="x")
    assert journal.waiting("f2") == {}
