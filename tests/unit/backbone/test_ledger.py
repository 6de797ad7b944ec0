"""The event ledger: duplicates proven by content, versions in clinical order, cancellations, merges, claims;
and a property: any interleaving and redelivery of a result's P / F / C versions ends in the same state."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.backbone.fhir_writeback import FhirDownstream
from shared.backbone.ledger import EventLedger
from shared.backbone.runtime import WriteBackOptions
from shared.canonical import identity
from shared.canonical.model import ClinicalEvent, Identifier
from shared.hl7v2 import parse_message
from shared.mapping.hl7v2_in import map_message
from shared.messaging.topology import SUB_WRITEBACK_FHIR
from shared.storage.names import TABLE_EVENT_LEDGER
from tests.integration.test_clinical_safety import NHS_A, observations, oru
from tests.unit.backbone import support as s
from tests.unit.backbone.test_writeback import delivery

NHS = s.nhs_numbers(3)


def mapped(raw: bytes, corr: str) -> ClinicalEvent:
    return map_message(parse_message(raw), correlation_id=corr).value


def test_cancelled_then_readmitted_with_the_same_content_is_applied_again(tmp_path: Path) -> None:
    records = SqliteRecordStore(tmp_path / "r.sqlite3")
    ledger = EventLedger(records, "fhir")
    admit = s.event("C1", nhs=NHS[0], visit="V1", recorded="20260315103000")
    digest = identity.event_digest(admit)
    assert ledger.judge(admit, digest, "c1").decision == "apply"
    ledger.applied(admit, digest, "c1")
    assert ledger.judge(admit, digest, "c1b").decision == "duplicate"
    cancel = s.event("C2", nhs=NHS[0], visit="V1", trigger="A11", recorded="20260315110000")
    assert cancel.cancels == admit.key
    ledger.applied(cancel, identity.event_digest(cancel), "c2")
    later = s.event("C3", nhs=NHS[0], visit="V1", recorded="20260315120000").recorded_at
    # the same content, re-sent after the A11 (no EVN-6: EVN-2 is both its record and its event time)
    again = admit.model_copy(update={"recorded_at": later, "occurred_at": later})
    assert identity.event_digest(again) == digest
    assert ledger.judge(again, digest, "c3").decision == "apply"  # re-admitted: not a duplicate
    late = s.event("C4", nhs=NHS[0], visit="V1", bed="BED7", recorded="20260315100000")
    assert ledger.judge(late, identity.event_digest(late), "c4").decision == "superseded"
    records.close()


def _transfer(control_id: str, trigger: str, recorded: str, evn6: str = "") -> ClinicalEvent:
    raw = s.adt(control_id, nhs=NHS[0], visit="V1", trigger=trigger, recorded=recorded)
    if evn6:
        raw = raw.replace(
            f"EVN|{trigger}|{recorded}".encode(), f"EVN|{trigger}|{recorded}||||{evn6}".encode()
        )
    return mapped(raw, f"corr-{control_id}")


def test_an_a12_naming_no_transfer_cancels_the_most_recent_one(tmp_path: Path) -> None:
    """An A12 whose EVN-6 names no applied transfer (none stated: its EVN-2 is the cancellation's record
    time) cancels the encounter's most recent transfer, as the write-backs undo it; so that transfer, sent
    again with the same content and EVN-6, is applied again rather than taken for a duplicate. An earlier
    transfer stays applied."""
    records = SqliteRecordStore(tmp_path / "r.sqlite3")
    ledger = EventLedger(records, "fhir")
    first = _transfer("T1", "A02", "20260315110000", evn6="20260315105500")
    second = _transfer("T2", "A02", "20260315120000", evn6="20260315115500")
    for corr, transfer in (("t1", first), ("t2", second)):
        ledger.applied(transfer, identity.event_digest(transfer), corr)
    cancel = _transfer("T3", "A12", "20260315123000")  # no EVN-6
    assert cancel.cancels not in (first.key, second.key)
    ledger.applied(cancel, identity.event_digest(cancel), "t3")
    again = _transfer("T4", "A02", "20260315130000", evn6="20260315115500")
    assert again.key == second.key and identity.event_digest(again) == identity.event_digest(second)
    verdict = ledger.judge(again, identity.event_digest(again), "t4")
    assert (verdict.decision, verdict.reason) == ("apply", "re-applied after a cancellation")
    earlier = _transfer("T5", "A02", "20260315131000", evn6="20260315105500")
    assert ledger.judge(earlier, identity.event_digest(earlier), "t5").decision == "duplicate"
    # The same A12 re-sent with a new EVN-2 (a new key, so applied) names the transfer it cancelled
    # before: the earlier transfer is not cancelled as well.
    resent = _transfer("T6", "A12", "20260315124500")
    assert resent.key != cancel.key
    assert ledger.judge(resent, identity.event_digest(resent), "t6").decision == "apply"
    ledger.applied(resent, identity.event_digest(resent), "t6")
    assert ledger.judge(earlier, identity.event_digest(earlier), "t5").decision == "duplicate"
    records.close()


def test_an_a12_naming_no_transfer_cancels_one_recorded_before_transfer_times_were_kept(
    tmp_path: Path,
) -> None:
    """Ledger rows written before the transfer time was kept: the last transfer applied is cancelled."""
    records = SqliteRecordStore(tmp_path / "r.sqlite3")
    ledger = EventLedger(records, "fhir")
    transfer = _transfer("U1", "A02", "20260315110000", evn6="20260315105500")
    ledger.applied(transfer, identity.event_digest(transfer), "u1")
    scope = identity.ordering_scope(transfer)
    row = records.get(TABLE_EVENT_LEDGER, scope, ledger._namespace)
    assert row is not None
    value = dict(row.value)
    value["versions"] = {
        k: {f: x for f, x in v.items() if f != "transfer_at"} for k, v in value["versions"].items()
    }
    records.upsert(TABLE_EVENT_LEDGER, scope, ledger._namespace, value)
    cancel = _transfer("U2", "A12", "20260315123000")
    ledger.applied(cancel, identity.event_digest(cancel), "u2")
    again = _transfer("U3", "A02", "20260315130000", evn6="20260315105500")
    assert ledger.judge(again, identity.event_digest(again), "u3").decision == "apply"
    records.close()


def test_a_visit_of_a_merged_away_patient_is_not_a_conflict_for_the_survivor(tmp_path: Path) -> None:
    records = SqliteRecordStore(tmp_path / "r.sqlite3")
    ledger = EventLedger(records, "fhir")
    retired = s.event("M1", nhs=NHS[1], visit="V2")
    ledger.applied(retired, identity.event_digest(retired), "m1")
    assert ledger.judge(retired, identity.event_digest(retired), "m1").decision == "duplicate"
    survivor_visit = s.event("M2", nhs=NHS[0], visit="V2")
    assert ledger.judge(survivor_visit, identity.event_digest(survivor_visit), "m2").decision == "conflict"
    merge = survivor_visit.model_copy(
        update={
            "kind": identity.EventKind.PATIENT_MERGE,
            "merged_identifiers": (Identifier(system=identity.NHS_NUMBER_SYSTEM, value=NHS[1]),),
        }
    )
    ledger.applied(merge, identity.event_digest(merge), "m3")
    assert ledger.judge(survivor_visit, identity.event_digest(survivor_visit), "m2").decision == "apply"
    records.close()


VERSIONS = {
    "P": oru("P1", value="9", flag="N", status="P", reported="20260701103000"),
    "F": oru("F1", value="52", flag="H", status="F", reported="20260701113000"),
    "C": oru("C1", value="48", flag="H", status="C", reported="20260701123000"),
}


@settings(max_examples=25, deadline=None)
@given(
    sequence=st.lists(st.sampled_from(sorted(VERSIONS)), min_size=3, max_size=7).filter(
        lambda seq: set(seq) == set(VERSIONS)
    ),
    redeliver=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_any_interleaving_and_redelivery_of_p_f_c_ends_in_the_corrected_result(
    sequence: list[str], redeliver: list[bool]
) -> None:
    assert_ends_corrected(sequence, redeliver)


def assert_ends_corrected(sequence: list[str], redeliver: list[bool], *, idempotency: bool = True) -> None:
    with tempfile.TemporaryDirectory() as tmp, s.embedded(Path(tmp)) as env:
        options = WriteBackOptions(
            operational_events=False, timeout_seconds=0.3, max_attempts=2, idempotency=idempotency
        )
        sub = s.backbone(env, {SUB_WRITEBACK_FHIR: FhirDownstream(env.fhir)}, options=options).subscriber(
            SUB_WRITEBACK_FHIR
        )
        for n, name in enumerate(sequence):
            event = mapped(VERSIONS[name], f"corr-{n}-{name}")
            sub.handle(delivery(event))
            if redeliver[n]:
                sub.handle(delivery(event, count=2))
        assert observations(env.fhir) == {(NHS_A, "TROP", "48", "H", "corrected")}


@pytest.mark.parametrize("sabotage", [None, "no-idempotency", "no-digest"])
def test_one_interleaving_as_built_and_with_a_guard_broken(
    sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The property can fail: the preliminary, the correction, then the final and the preliminary late,
    each redelivered, ends corrected as built and not with a guard broken."""
    if sabotage == "no-digest":
        for module in ("shared.backbone.writeback", "shared.backbone.clinical"):
            monkeypatch.setattr(f"{module}.content_digest", lambda _data: "0" * 64)
    run = ["P", "C", "F", "P"], [False, True, True, True]
    if sabotage is None:
        assert_ends_corrected(*run)
        return
    with pytest.raises(AssertionError):
        assert_ends_corrected(*run, idempotency=sabotage != "no-idempotency")
