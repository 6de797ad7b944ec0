"""``tie reconcile replay ITEM...``: repair what a run found, through paths that are already idempotent.

* A write-back that never completed (``missing-at-destination`` / ``unacknowledged`` from the journal)
  and is in the subscription's dead-letter queue is returned to it with
  :func:`shared.backbone.deadletter.replay` - tagged as a replay, journaled ``replayed`` (re-opening the
  in-flight row) and then written back by the normal subscriber, its idempotency guard and ledger.
* A resource the engine wrote that is gone at the FHIR destination is restored to the version the engine
  wrote (read from the destination's history, ``vread``), unless something newer stands there.
* Other categories are for a human (chase the downstream or the sender, investigate): not replayed.

Each replay is journaled on the message as ``reconcile-replayed`` (item id, how). A later run shows
whether it worked: the item is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from shared.backbone import deadletter
from shared.fhirstore.errors import ResourceGone, ResourceNotFound
from shared.fhirstore.ports import FhirRepository
from shared.journal import Journal
from shared.messaging.ports import MessageBus
from shared.messaging.topology import TOPIC_CLINICAL, TOPOLOGY, TopicSpec
from shared.reconcile.model import Category
from shared.reconcile.store import RunHistory
from shared.storage.ports import RecordStore

#: Journal stage noted on a message a reconciliation replay acted on.
RECONCILE_REPLAYED: Final = "reconcile-replayed"
#: How many stored runs are searched for an item id (newest first).
SEARCH_RUNS: Final = 20


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    item: str
    #: replayed (back on the subscription) | restored (at the destination) | skipped | not-found
    status: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"item": self.item, "status": self.status, "detail": self.detail}


class Replayer:
    def __init__(
        self,
        records: RecordStore,
        bus: MessageBus,
        *,
        destinations: Mapping[str, FhirRepository] | None = None,
        journal: Journal | None = None,
        topology: Sequence[TopicSpec] = TOPOLOGY,
    ) -> None:
        self._records = records
        self._bus = bus
        self._destinations = dict(destinations or {})
        self._journal = journal or Journal(records)
        self._topology = topology
        self._history = RunHistory(records)

    def find(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted, found = set(item_ids), {}
        for run in self._history.runs(limit=SEARCH_RUNS):
            for item in self._history.items(str(run["run_id"])):
                if item["item"] in wanted and item["item"] not in found:
                    found[item["item"]] = item
            if len(found) == len(wanted):
                break
        return found

    def replay(self, item_ids: Sequence[str]) -> list[ReplayOutcome]:
        found = self.find(item_ids)
        outcomes = []
        for item_id in item_ids:
            item = found.get(item_id)
            if item is None:
                outcomes.append(ReplayOutcome(item_id, "not-found", "not in the recent runs"))
                continue
            outcome = self._one(item)
            if outcome.status in ("replayed", "restored") and item.get("correlationId"):
                self._journal.record(
                    str(item["correlationId"]),
                    RECONCILE_REPLAYED,
                    item=item_id,
                    category=str(item["category"]),
                    how=outcome.status,
                )
            outcomes.append(outcome)
        return outcomes

    def _one(self, item: Mapping[str, Any]) -> ReplayOutcome:
        item_id, category = str(item["item"]), str(item["category"])
        identifiers: Mapping[str, str] = item.get("identifiers") or {}
        if category == Category.MISSING.value and "resource" in identifiers:
            return self._restore(item_id, item, identifiers)
        if category in (Category.MISSING.value, Category.UNACKNOWLEDGED.value) and identifiers.get(
            "subscriber"
        ):
            return self._from_dead_letters(
                item_id, str(item.get("correlationId") or ""), identifiers["subscriber"]
            )
        return ReplayOutcome(item_id, "skipped", f"{category}: suggested action is {item.get('action')}")

    def _from_dead_letters(self, item_id: str, correlation_id: str, subscription: str) -> ReplayOutcome:
        letters = [
            letter
            for letter in deadletter.list_dead_letters(
                self._bus,
                self._records,
                topology=self._topology,
                topic=TOPIC_CLINICAL,
                subscription=subscription,
            )
            if correlation_id and letter.correlation_id == correlation_id
        ]
        if not letters:
            return ReplayOutcome(
                item_id, "skipped", f"not in the dead letters of {subscription} (tie dlq list)"
            )
        count = deadletter.replay(
            self._bus,
            self._records,
            self._journal,
            TOPIC_CLINICAL,
            subscription,
            sequence_numbers=[letter.sequence_number for letter in letters],
        )
        return ReplayOutcome(item_id, "replayed", f"{count} dead letter(s) returned to {subscription}")

    def _restore(
        self, item_id: str, item: Mapping[str, Any], identifiers: Mapping[str, str]
    ) -> ReplayOutcome:
        downstream = str(item["interface"]).split(":")[1]
        destination = self._destinations.get(downstream)
        if destination is None:
            return ReplayOutcome(item_id, "skipped", f"no destination to restore to for {downstream}")
        rtype, _, rid = identifiers["resource"].partition("/")
        version = identifiers.get("version") or ""
        try:
            current = destination.read(rtype, rid)
        except (ResourceNotFound, ResourceGone):
            current = None
        if current is not None:
            return ReplayOutcome(item_id, "skipped", "the resource is at the destination again")
        try:
            written = destination.vread(rtype, rid, version)
        except (ResourceNotFound, ResourceGone):
            return ReplayOutcome(item_id, "skipped", "the destination keeps no copy of the version written")
        body = {k: v for k, v in written.resource.items() if k != "meta"}
        meta = {
            k: v
            for k, v in (written.resource.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")
        }
        if meta:
            body["meta"] = meta
        destination.update(rtype, rid, body)
        return ReplayOutcome(
            item_id, "restored", f"{rtype}/{rid} restored to the content of version {version}"
        )
