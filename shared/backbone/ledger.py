"""The event ledger: what one delivered version of a clinical event is, for one write-back downstream.

A duplicate is proven, never assumed (rules: ``docs/event-identity.md``). Per downstream the ledger keeps,
for each event identity, the version applied last (content digest, clinical order, who carried it) and,
for each ordering scope (an encounter, a patient's demographics, else the identity), the newest clinical
order applied. A delivered version is then (one record-store row per downstream and scope):

* ``conflict``   - its natural id (visit / order number with its issuer) is claimed by another patient
                   who was not merged into this one: surfaced, never applied;
* ``duplicate``  - same identity and same digest as the version applied last (and not cancelled since);
                   also an *update* (patient or encounter update) whose content differs from the version
                   applied last only in its event time - a no-op re-save (reason ``unchanged: ...``);
* ``superseded`` - older, in clinical order, than what was applied in its scope: recorded, never applied;
* ``apply``      - anything else: a new event, or an update applied in clinical order.

Only hashes are stored (keys, digests, hashed patient tokens) and a transfer's time: no identifiers,
no values. Writes for one identity come from one Service Bus session (the patient's), so they never race;
natural-id claims cross patients and are made with an atomic insert.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from shared.canonical import identity
from shared.canonical.model import ClinicalEvent, EventKind
from shared.storage.errors import ConcurrencyConflict, RecordExists
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_EVENT_CLAIMS, TABLE_EVENT_LEDGER
from shared.storage.ports import Record, RecordStore

Decision = Literal["apply", "duplicate", "superseded", "conflict"]

#: How many merge hops a claim follows (A merged into B merged into C ...).
_MAX_MERGE_HOPS = 8

#: Updates whose event time is when the update was saved (FHIR ``meta.lastUpdated``, HL7 EVN-6/EVN-2), not
#: a clinical fact: a version equal to the one applied but for that time changes nothing downstream.
_UPDATE_KINDS = frozenset({EventKind.PATIENT_UPDATED, EventKind.ENCOUNTER_UPDATE})


def _digest_without(event: ClinicalEvent, field: str) -> str:
    data = json.loads(event.model_dump_json(exclude_defaults=True))
    data.pop(field, None)
    return identity.content_digest(data)


def unchanged_digest(event: ClinicalEvent) -> str:
    """The content digest without the event time (``occurred_at``): equal for a no-op re-save."""
    return _digest_without(event, "occurred_at")


def _latest_transfer(versions: dict[str, Any], before: str) -> str | None:
    """The key of the scope's most recent transfer not cancelled yet, by its time (not after ``before``);
    among transfers recorded before their time was kept, the last one applied."""
    timed: list[tuple[str, str]] = []
    untimed: list[str] = []
    for key, v in versions.items():
        if not isinstance(v, dict) or v.get("cancelled"):
            continue
        if v.get("transfer_at"):
            if str(v["transfer_at"]) <= before:
                timed.append((str(v["transfer_at"]), key))
        elif key.startswith(f"{EventKind.TRANSFER.value}-"):
            untimed.append(key)
    if timed:
        return max(timed)[1]
    return untimed[-1] if untimed else None


def _cancel_content(event: ClinicalEvent) -> str:
    """A cancellation's content without what it cancels (which an A12 without EVN-6 takes from its own
    EVN-2, so a resend would differ in it alone)."""
    return _digest_without(event, "cancels")


def _cancelled_by(versions: dict[str, Any], content: str) -> str | None:
    """The transfer a cancellation with this content already cancelled (and that stays cancelled), if any."""
    for key, v in versions.items():
        if isinstance(v, dict) and v.get("cancelled") and v.get("cancelled_by") == content:
            return key
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    #: Short, identifier-free reason (journaled).
    reason: str
    digest: str
    #: ``duplicate``: the correlation id of the message whose version this repeats; ``superseded``: the
    #: one whose newer version stands.
    original_correlation_id: str | None = None


def _order(value: Any) -> tuple[int, str, str] | None:
    if not isinstance(value, list) or len(value) != 3:
        return None
    return (int(value[0]), str(value[1]), str(value[2]))


class EventLedger:
    """The ledger of one downstream (``namespace``: its name). Thread-safe: the record store is."""

    def __init__(
        self, records: RecordStore, namespace: str, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._records = records
        self._namespace = safe_key(namespace)
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- deciding --------------------------------------------------------------------------------------

    def judge(self, event: ClinicalEvent, digest: str, correlation_id: str | None) -> Verdict:
        conflict = self._check_claim(event, correlation_id)
        if conflict is not None:
            return Verdict("conflict", conflict, digest)
        scope = self._get(identity.ordering_scope(event))
        versions: dict[str, Any] = dict(scope.value.get("versions") or {}) if scope is not None else {}
        state = versions.get(event.key.value)
        if isinstance(state, dict) and not state.get("cancelled") and state.get("digest") == digest:
            original = state.get("correlation_id")
            return Verdict(
                "duplicate",
                "same identity and clinical content as the version applied",
                digest,
                str(original) if original else None,
            )
        if (
            isinstance(state, dict)
            and not state.get("cancelled")
            and event.kind in _UPDATE_KINDS
            and state.get("unchanged") == unchanged_digest(event)
        ):
            original = state.get("correlation_id")
            return Verdict(
                "duplicate",
                "unchanged: same content as the version applied, only the update time differs",
                digest,
                str(original) if original else None,
            )
        newest = _order(scope.value.get("order")) if scope is not None else None
        if newest is not None and identity.clinical_order(event) < newest:
            original = scope.value.get("correlation_id") if scope is not None else None
            return Verdict(
                "superseded",
                "older in clinical order than the version applied",
                digest,
                str(original) if original else None,
            )
        if isinstance(state, dict) and state.get("cancelled"):
            return Verdict("apply", "re-applied after a cancellation", digest)
        return Verdict("apply", "an update, in clinical order" if state is not None else "new", digest)

    # -- recording -------------------------------------------------------------------------------------

    def applied(self, event: ClinicalEvent, digest: str, correlation_id: str | None) -> None:
        """Record that this version was applied (call inside the guarded effect, after the downstream).

        One row per ordering scope (an encounter's events, a patient's demographics, else the identity):
        the newest clinical order applied and, per identity in it, the version applied last."""
        order = list(identity.clinical_order(event))
        at = self._clock().isoformat()
        scope_key = identity.ordering_scope(event)
        scope = self._get(scope_key)
        value: dict[str, Any] = dict(scope.value) if scope is not None else {}
        versions: dict[str, Any] = dict(value.get("versions") or {})
        versions[event.key.value] = {
            "digest": digest,
            "correlation_id": correlation_id,
            "cancelled": False,
            "unchanged": unchanged_digest(event) if event.kind in _UPDATE_KINDS else None,
        }
        if event.kind is EventKind.TRANSFER:
            versions[event.key.value]["transfer_at"] = identity.utc_second(
                event.occurred_at or event.recorded_at, what="the time of the transfer"
            )
        if event.cancels is not None:
            cancelled = event.cancels.value
            by = _cancel_content(event)
            if event.kind is EventKind.CANCEL_TRANSFER and cancelled not in versions:
                # No transfer at the A12's EVN-6 (none stated, or the A02 was keyed on its EVN-2): an A12
                # cancels the encounter's most recent transfer (HL7 v2), as the write-backs undo it - once:
                # the same A12 re-sent with a new EVN-2 names the transfer it cancelled before.
                before = identity.utc_second(event.recorded_at or event.occurred_at, what="the A12's time")
                cancelled = _cancelled_by(versions, by) or _latest_transfer(versions, before) or cancelled
            # The cancelled event may happen again (re-admitted after A11): its next version is applied.
            versions[cancelled] = {
                "digest": None,
                "correlation_id": correlation_id,
                "cancelled": True,
                "cancelled_by": by,
            }
        value["versions"] = versions
        newest = _order(value.get("order"))
        if newest is None or tuple(order) >= newest:
            value.update(order=order, correlation_id=correlation_id)
        value["at"] = at
        self._put(scope_key, value)
        if event.kind is EventKind.PATIENT_MERGE and event.merged_identifiers:
            survivor = list(identity.patient_tokens(event.patient))
            for token in identity.identifier_tokens(event.merged_identifiers):
                self._records.upsert(
                    TABLE_EVENT_CLAIMS, f"merge-{token}", "survivor", {"tokens": survivor, "at": at}
                )

    # -- natural-id claims -----------------------------------------------------------------------------

    def _check_claim(self, event: ClinicalEvent, correlation_id: str | None) -> str | None:
        claim = identity.natural_claim(event)
        if claim is None:
            return None
        tokens = identity.patient_tokens(event.patient)
        nhs = identity.nhs_token(event.patient)
        value = {
            "tokens": list(tokens),
            "nhs": nhs,
            "correlation_id": correlation_id,
            "at": self._clock().isoformat(),
        }
        for _ in range(3):
            existing = self._records.get(TABLE_EVENT_CLAIMS, claim, "claim")
            if existing is None:
                with contextlib.suppress(RecordExists):
                    self._records.insert(TABLE_EVENT_CLAIMS, claim, "claim", value)
                    return None
                continue
            held = set(existing.value.get("tokens") or ())
            held_nhs = existing.value.get("nhs")
            # One patient: an identifier in common, and no two different NHS numbers.
            if held & set(tokens) and (held_nhs is None or nhs is None or held_nhs == nhs):
                return None
            if self._merged_into(held, set(tokens)):
                with contextlib.suppress(ConcurrencyConflict):
                    self._records.update(TABLE_EVENT_CLAIMS, claim, "claim", value, etag=existing.etag)
                return None
            return "the natural id (visit / order number of this issuer) belongs to another patient"
        return None  # pragma: no cover - three lost races in a row

    def _merged_into(self, retired: set[str], survivor: set[str]) -> bool:
        frontier = set(retired)
        seen: set[str] = set()
        for _ in range(_MAX_MERGE_HOPS):
            reached: set[str] = set()
            for token in frontier - seen:
                seen.add(token)
                row = self._records.get(TABLE_EVENT_CLAIMS, f"merge-{token}", "survivor")
                if row is not None:
                    reached.update(str(t) for t in row.value.get("tokens") or ())
            if reached & survivor:
                return True
            if not reached - seen:
                return False
            frontier = reached
        return False

    # -- storage ---------------------------------------------------------------------------------------

    def _get(self, scope: str) -> Record | None:
        return self._records.get(TABLE_EVENT_LEDGER, scope, self._namespace)

    def _put(self, scope: str, value: dict[str, Any]) -> None:
        self._records.upsert(TABLE_EVENT_LEDGER, scope, self._namespace, value)
