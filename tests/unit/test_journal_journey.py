"""A message's journey is read consistently: a subscriber that is no longer waiting has its final stage in
the trace, even when that stage is recorded while the journey is being read (the race seen under load:
``/api/messages/{id}`` answered "nothing in flight" with the last write-back's stage missing)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.journal import Journal
from shared.messaging.topology import WRITEBACK_SUBSCRIPTIONS


class _FinishesBetweenReads(Journal):
    """The last write-back finishes between the two reads a journey makes (whichever comes first)."""

    finish: tuple[str, str] | None = None

    def _race(self) -> None:
        if self.finish is not None:
            correlation_id, subscriber = self.finish
            self.finish = None
            self.record(correlation_id, "skipped", subscriber=subscriber, reason="not-configured")

    def waiting(self, correlation_id: str) -> dict[str, datetime]:
        found = super().waiting(correlation_id)
        self._race()
        return found

    def trace(self, correlation_id: str):  # type: ignore[no-untyped-def]
        found = super().trace(correlation_id)
        self._race()
        return found


def test_a_subscriber_no_longer_waiting_has_its_final_stage_in_the_trace(tmp_path: Path) -> None:
    records = SqliteRecordStore(tmp_path / "records.sqlite3")
    try:
        journal = _FinishesBetweenReads(records)
        corr = "c-race"
        journal.record(corr, "received", channel="hl7v2")
        journal.record(corr, "mapped", event_kind="admission", event_key="k")
        journal.record(corr, "consumed", outcome="published admission")
        first, last = sorted(WRITEBACK_SUBSCRIPTIONS)[:2]
        journal.record(corr, "written-back", subscriber=first, status="201")
        journal.finish = (corr, last)

        entries, waiting = journal.journey(corr)

        finished = {e.attributes.get("subscriber") for e in entries if e.stage in ("written-back", "skipped")}
        for subscriber in WRITEBACK_SUBSCRIPTIONS:
            assert subscriber in waiting or subscriber in finished, subscriber
    finally:
        records.close()
