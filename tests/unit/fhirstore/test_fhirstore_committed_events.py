"""Events committed with the write (``events=`` on the embedded store): the messages are rows of the store's
outbox table written in the write's own transaction - both durable or neither - plus settling and parking.

A crash is simulated by raising :class:`Crash` (a BaseException nothing handles) from the ``after_commit``
hook; a *new* repository on the same file then plays the restarted process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.fhirstore.errors import InvalidResource, ResourceNotFound, TransactionFailed
from shared.fhirstore.ports import (
    BatchEntryOutcome,
    CommitEvents,
    EventCommittingRepository,
    FhirReader,
    JsonDict,
    StoredResource,
    WriteResult,
)
from shared.messaging.ports import OutboundMessage
from shared.outbox import CommittedOutbox, OutboxMessage

TOPIC = "clinical-events"


class Crash(BaseException):
    """The process dies here (nothing catches a BaseException subclass)."""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def org(name: str = "Ward A", **extra: Any) -> JsonDict:
    return {"resourceType": "Organization", "name": name, **extra}


def message(label: str) -> OutboxMessage:
    return OutboxMessage(TOPIC, OutboundMessage(body=label.encode(), message_id=f"id-{label}", subject=label))


def labels(batch_messages: Sequence[OutboxMessage]) -> list[str]:
    return [m.message.body.decode() for m in batch_messages]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo(tmp_path: Path, clock: Clock) -> Iterator[SqliteFhirRepository]:
    store = SqliteFhirRepository(tmp_path / "fhir.sqlite3", clock=clock)
    yield store
    store.close()


def test_the_embedded_store_commits_events_and_is_a_committed_outbox(repo: SqliteFhirRepository) -> None:
    assert isinstance(repo, EventCommittingRepository) and isinstance(repo, CommittedOutbox)


def test_build_sees_the_uncommitted_write_and_its_messages_commit_with_it(repo: SqliteFhirRepository) -> None:
    seen: list[str] = []

    def build(reader: FhirReader, result: WriteResult) -> list[OutboxMessage]:
        seen.append(reader.read("Organization", result.id).resource["name"])  # inside the transaction
        return [message(f"created-{result.version_id}")]

    events: CommitEvents[WriteResult] = CommitEvents(build)
    result = repo.create(org(), events=events)
    assert seen == ["Ward A"]
    (batch,) = events.committed
    assert labels(batch.messages) == ["created-1"]
    assert repo.pending_batches() == [batch], "as committed: id, messages in order, time"
    repo.settle_batch(batch.batch_id)
    assert repo.pending_batches() == []
    repo.settle_batch(batch.batch_id)  # idempotent
    assert repo.read("Organization", result.id).version_id == "1"


def test_a_crash_right_after_the_commit_leaves_resource_and_events_durable_together(tmp_path: Path) -> None:
    def crash() -> None:
        raise Crash

    path = tmp_path / "fhir.sqlite3"
    dying = SqliteFhirRepository(path, after_commit=crash)
    events: CommitEvents[WriteResult] = CommitEvents(lambda reader, result: [message(result.id)])
    with pytest.raises(Crash):
        dying.create(org(), events=events)
    assert events.committed == [], "the writer never learnt it committed"
    restarted = SqliteFhirRepository(path)
    try:
        (stored,) = restarted.search("Organization", []).resources
        (batch,) = restarted.pending_batches()
        assert labels(batch.messages) == [stored["id"]], "the event of exactly that write"
    finally:
        restarted.close()
        dying.close()


def test_a_failing_build_rolls_the_write_back(repo: SqliteFhirRepository) -> None:
    def build(reader: FhirReader, result: WriteResult) -> list[OutboxMessage]:
        raise InvalidResource("cannot become an event", http_status=422)

    events: CommitEvents[WriteResult] = CommitEvents(build)
    with pytest.raises(InvalidResource):
        repo.create(org(), events=events)
    with pytest.raises(InvalidResource):
        repo.update("Organization", "fixed", org(id="fixed"), events=events)
    assert repo.search("Organization", []).total == 0
    with pytest.raises(ResourceNotFound):
        repo.read("Organization", "fixed")
    assert repo.pending_batches() == [] and events.committed == []


def test_no_messages_no_batch_and_after_commit_only_on_commit(tmp_path: Path) -> None:
    commits: list[int] = []
    repo = SqliteFhirRepository(tmp_path / "fhir.sqlite3", after_commit=lambda: commits.append(1))
    try:
        events: CommitEvents[WriteResult] = CommitEvents(lambda reader, result: [])
        repo.create(org(), events=events)
        assert events.committed == [] and repo.pending_batches() == [] and commits == [1]
        with pytest.raises(InvalidResource):
            repo.create(org(), events=CommitEvents(_refuse))
        assert commits == [1], "a rolled-back write is not a commit"
    finally:
        repo.close()


def _refuse(reader: FhirReader, result: WriteResult) -> list[OutboxMessage]:
    raise InvalidResource("no", http_status=422)


def test_update_and_conditional_update_carry_events(repo: SqliteFhirRepository) -> None:
    ident = [{"system": "urn:org", "value": "A"}]
    created = repo.create(org(identifier=ident))
    versions: list[tuple[str, bool]] = []

    def build(reader: FhirReader, result: WriteResult) -> list[OutboxMessage]:
        versions.append((result.version_id, result.created))
        return [message(f"v{result.version_id}")]

    events: CommitEvents[WriteResult] = CommitEvents(build)
    repo.update(
        "Organization",
        created.id,
        org("Ward B", id=created.id, identifier=ident),
        if_match='W/"1"',
        events=events,
    )
    repo.conditional_update(
        "Organization", "identifier=urn:org|A", org("Ward C", identifier=ident), events=events
    )
    assert versions == [("2", False), ("3", False)]
    assert [labels(b.messages) for b in repo.pending_batches()] == [["v2"], ["v3"]]


def test_delete_gives_build_the_deletion_version_or_none(repo: SqliteFhirRepository) -> None:
    created = repo.create(org())
    got: list[StoredResource | None] = []

    def build(reader: FhirReader, deletion: StoredResource | None) -> list[OutboxMessage]:
        got.append(deletion)
        return [message("deleted")] if deletion is not None else []

    events: CommitEvents[StoredResource | None] = CommitEvents(build)
    repo.delete("Organization", created.id, events=events)
    repo.delete("Organization", created.id, events=events)  # already deleted: nothing written
    first, second = got
    assert first is not None and first.deleted and first.version_id == "2" and second is None
    assert [labels(b.messages) for b in events.committed] == [["deleted"]]


def _transaction(*entries: JsonDict) -> JsonDict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_a_transaction_commits_one_batch_with_all_its_writes(repo: SqliteFhirRepository) -> None:
    def build(reader: FhirReader, response: JsonDict) -> list[OutboxMessage]:
        ids = [e["resource"]["id"] for e in response["entry"]]
        return [message(reader.read("Organization", rid).resource["name"]) for rid in ids]

    events: CommitEvents[JsonDict] = CommitEvents(build)
    bundle = _transaction(
        {"resource": org("One"), "request": {"method": "POST", "url": "Organization"}},
        {"resource": org("Two"), "request": {"method": "POST", "url": "Organization"}},
    )
    repo.transaction(bundle, events=events)
    (batch,) = repo.pending_batches()
    assert labels(batch.messages) == ["One", "Two"] and events.committed == [batch]

    failing = _transaction(
        {"resource": org("Three"), "request": {"method": "POST", "url": "Organization"}},
        {
            "resource": org("Four", id="x"),
            "request": {"method": "PUT", "url": "Organization/x", "ifMatch": "9"},
        },
    )
    with pytest.raises(TransactionFailed):
        repo.transaction(failing, events=events)
    assert repo.pending_batches() == [batch] and repo.search("Organization", []).total == 2


def test_a_batch_commits_each_entry_with_its_own_events(repo: SqliteFhirRepository) -> None:
    def build(reader: FhirReader, outcome: BatchEntryOutcome) -> list[OutboxMessage]:
        index, answer = outcome
        name = answer["resource"]["name"]
        if name == "Refused":
            raise InvalidResource("cannot become an event", http_status=422)
        return [message(f"{index}:{name}")]

    events: CommitEvents[BatchEntryOutcome] = CommitEvents(build)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": org("One"), "request": {"method": "POST", "url": "Organization"}},
            {"resource": org("Refused"), "request": {"method": "POST", "url": "Organization"}},
            {"resource": org("Three"), "request": {"method": "POST", "url": "Organization"}},
        ],
    }
    response = repo.batch(bundle, events=events)
    statuses = [e["response"]["status"][:3] for e in response["entry"]]
    assert statuses == ["201", "422", "201"]
    assert [labels(b.messages) for b in events.committed] == [["0:One"], ["2:Three"]]
    assert [labels(b.messages) for b in repo.pending_batches()] == [["0:One"], ["2:Three"]]
    assert sorted(r["name"] for r in repo.search("Organization", []).resources) == ["One", "Three"]


def test_pending_batches_oldest_first_with_a_cutoff_and_parking(
    repo: SqliteFhirRepository, clock: Clock
) -> None:
    first: CommitEvents[WriteResult] = CommitEvents(lambda reader, result: [message("a1"), message("a2")])
    repo.create(org(), events=first)
    clock.now += timedelta(seconds=5)
    second: CommitEvents[WriteResult] = CommitEvents(lambda reader, result: [message("b")])
    repo.create(org(), events=second)
    (a,), (b,) = first.committed, second.committed
    assert b.created_ms - a.created_ms == 5000
    assert [x.batch_id for x in repo.pending_batches()] == [a.batch_id, b.batch_id]
    assert repo.pending_batches(created_before_ms=a.created_ms) == [a]
    assert repo.pending_batches(limit=1) == [a]
    repo.park_batch(a.batch_id, "message-too-large")
    assert repo.pending_batches() == [b] and repo.parked_batches() == [a]
    assert repo.requeue_parked() == 1
    assert repo.pending_batches() == [a, b] and repo.parked_batches() == []
