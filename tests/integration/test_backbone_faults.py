"""Fault scenarios of the event backbone (issue 6), in process, loopback only. Each prints its counts.

(a) every message delivered 2-3 times            -> each downstream effect exactly once; and, with colliding
                                                    visit numbers across patients and issuers, versions,
                                                    late resends and conflicts: the FHIR store's contents,
                                                    each message's journal verdict, one HL7 send per version
                                                    - also run with the idempotency guard off and with a
                                                    constant digest, which must fail (MUST_FAIL)
(c) downstream 503 / timing out for a while      -> retries (and parking), then success, no duplicates
(d) poison messages                              -> dead-lettered after max delivery count; replay after
                                                    the fix -> applied once; replaying again changes nothing
(e) HL7 v2 and FHIR versions of one admission    -> one identity: one Encounter, versions in clinical
                                                    order (the older one superseded)

(b) - the host killed at random points - runs the real host in a subprocess: test_backbone_kill.py.

Effects are counted in the downstreams themselves: Encounter versions in the FHIR store (every event is
a distinct admission, so one version each), AA answers per control ID at the fake HL7 receiver.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.backbone import clinical, deadletter
from shared.backbone.fhir_writeback import FhirDownstream
from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.backbone.runtime import Backbone, WriteBackOptions
from shared.canonical.model import ClinicalEvent
from shared.hl7v2 import parse_message
from shared.ingest import ingest
from shared.ingest.channels import PROCESSORS
from shared.ingest.hl7v2 import Hl7Ingest
from shared.journal import Journal
from shared.mapping.fhir_in import event_from_fhir, patient_from_fhir
from shared.mapping.hl7v2_in import map_message
from shared.messaging.ports import ReceivedMessage
from shared.messaging.topology import (
    SUB_INGEST_PROCESSOR,
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_CLINICAL,
    TOPIC_INGEST,
    TopicSpec,
)
from shared.terminology import systems
from tests.fhir_test_server import Fault, FhirTestServer
from tests.unit.backbone import support as s

pytestmark = pytest.mark.timeout(120)

WRITEBACKS = (SUB_WRITEBACK_FHIR, SUB_WRITEBACK_HL7V2)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[s.Env]:
    with s.embedded(tmp_path, lock_seconds=5.0, max_delivery=5) as e:
        yield e


@pytest.fixture
def receiver() -> Iterator[s.FakeHl7Receiver]:
    with s.FakeHl7Receiver() as rx:
        yield rx


def hl7_downstream(port: int, timeout: float = 5.0) -> Hl7MllpDownstream:
    return Hl7MllpDownstream(MllpSender("127.0.0.1", port, connect_timeout=5.0), ack_timeout=timeout)


def pump_ingest(env: s.Env, context: ingest.ProcessorContext) -> None:
    """Run the ingest subscription (the ingest function: received message -> its channel's processor) until
    it is empty."""
    s.pump(
        env.bus,
        SUB_INGEST_PROCESSOR,
        lambda d: ingest.process(
            ingest.inbound_from_properties(
                body=d.body,
                message_id=d.message_id,
                correlation_id=d.correlation_id,
                content_type=d.content_type,
                delivery_count=d.delivery_count,
                properties=d.properties,
            ),
            context,
            PROCESSORS,
        ),
        topic=TOPIC_INGEST,
        sessions=False,
    )


def drain(
    env: s.Env,
    bb: Backbone,
    subscriptions: tuple[str, ...] = WRITEBACKS,
    *,
    workers: int = 2,
    settle: Callable[[ReceivedMessage, bool], str] | None = None,
    clock: s.ManualClock | None = None,
    max_seconds: float = 90.0,
) -> s.PumpStats:
    """Several consumers per subscription (each with its own bus connection, like separate hosts) until
    the subscriptions are empty and nothing is parked; releases parked work between rounds (the timer).
    When only parked work is left, the backbone's ``clock`` is moved past the longest circuit cooldown
    (nothing is in flight then), instead of waiting for it in real time."""
    total = s.PumpStats()
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def worker(subscription: str) -> None:
        bus = SqliteBus(env.bus.path, env.topology)
        try:
            stats = s.pump(
                bus, subscription, bb.subscriber(subscription).handle, settle=settle, idle_rounds=3
            )
        finally:
            bus.close()
        with lock:
            total.delivered += stats.delivered
            total.completed += stats.completed
            total.abandoned += stats.abandoned
            total.statuses.update(stats.statuses)

    while True:
        assert time.monotonic() < deadline, "the subscriptions did not drain"
        threads = [
            threading.Thread(target=worker, args=(sub,)) for sub in subscriptions for _ in range(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        released = bb.release_parked()
        active = sum(len(env.bus.peek(TOPIC_CLINICAL, sub, max_messages=1)) for sub in subscriptions)
        parked = sum(bb.subscriber(sub).parking.count() for sub in subscriptions)
        if not released and not active and not parked:
            return total
        if not released and not active:
            assert clock is not None, "work is parked behind an open circuit and nothing moves the clock"
            longest = max(bb.subscriber(sub).breaker.config.max_cooldown for sub in subscriptions)
            clock.advance(longest * 1.25)  # past any cooldown (+ up to 20 % jitter)


def dead_letters(env: s.Env, subscriptions: tuple[str, ...] = WRITEBACKS) -> int:
    return sum(len(env.bus.peek(TOPIC_CLINICAL, sub, dead_letter=True)) for sub in subscriptions)


def fhir_counts(repo: SqliteFhirRepository, sent: int, expected: int | None = None) -> dict[str, int]:
    """``sent`` messages that should make ``expected`` (default: ``sent``) distinct Encounters."""
    versions = s.encounter_versions(repo)
    return {
        "sent": sent,
        "effects": len(versions),
        "duplicates": sum(v - 1 for v in versions.values()),
        "lost": (sent if expected is None else expected) - len(versions),
    }


def hl7_counts(receiver: s.FakeHl7Receiver, sent: int, expected: int | None = None) -> dict[str, int]:
    return {
        "sent": sent,
        "effects": len(receiver.applied),
        "duplicates": sum(v - 1 for v in receiver.applied.values()),
        "lost": (sent if expected is None else expected) - len(receiver.applied),
    }


def admissions(count: int, patients: int, prefix: str) -> list[ClinicalEvent]:
    nhs = s.nhs_numbers(patients)
    return [
        s.event(
            f"{prefix}{i}", nhs=nhs[i % patients], visit=f"{prefix}V{i:05d}", correlation_id=f"{prefix}-{i}"
        )
        for i in range(count)
    ]


# -- (a) ---------------------------------------------------------------------------------------------------


def test_a_every_message_delivered_two_or_three_times_gives_exactly_one_effect(
    env: s.Env, receiver: s.FakeHl7Receiver
) -> None:
    events = admissions(150, 25, "a")
    ds = hl7_downstream(receiver.port)
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: FhirDownstream(env.fhir), SUB_WRITEBACK_HL7V2: ds})
    rng = random.Random(6)
    target = {clinical.to_message(e).message_id: rng.choice((2, 3)) for e in events}
    seen: dict[tuple[str, str], int] = {}
    seen_lock = threading.Lock()

    def settle(message: ReceivedMessage, ok: bool) -> str:
        # Processed, then "lost the lock": abandoned so the bus delivers it again, until 2-3 deliveries.
        with seen_lock:
            seen[(message.subscription, message.message_id)] = message.delivery_count
        return "abandon" if not ok or message.delivery_count < target[message.message_id] else "complete"

    try:
        s.publish(env.bus, *events)
        stats = drain(env, bb, settle=settle)
    finally:
        ds.close()
    sent = len(events)
    assert sorted(set(seen.values())) == [2, 3] and len(seen) == 2 * sent
    assert stats.delivered == 2 * sum(target.values())
    assert stats.statuses["applied"] == 2 * sent and stats.statuses["duplicate"] == stats.delivered - 2 * sent
    fhir = fhir_counts(env.fhir, sent)
    hl7 = hl7_counts(receiver, sent)
    dead = dead_letters(env)
    s.counts_line("a/fhir", **fhir, dead_lettered=dead)
    s.counts_line("a/hl7v2", **hl7, dead_lettered=dead)
    assert fhir == hl7 == {"sent": sent, "effects": sent, "duplicates": 0, "lost": 0} and dead == 0
    assert sum(receiver.received.values()) == sent  # a duplicate never even reached the downstream


#: (sending application, facility) of the two issuers that reuse each other's visit numbers.
_ISSUERS = (("PAS", "RGT01"), ("EPR2", "RX2"))
#: As built; then with a guard broken on purpose (each must make the checks named in MUST_FAIL fail).
_SABOTAGE = (None, "no-idempotency", "no-digest")
MUST_FAIL: dict[str | None, set[str]] = {
    None: set(),
    # every redelivery and the late version re-applied, the conflict applied, nothing dead-lettered
    "no-idempotency": {"encounters", "journal", "hl7-once", "dead-letters"},
    # every later version of an identity taken for a duplicate of the first (the corrected time never lands)
    "no-digest": {"encounters", "journal"},
}


def _admission(
    control: str, *, nhs: str, visit: str, issuer: int, minute: int, recorded: str
) -> ClinicalEvent:
    """An A01 from issuer 0 (PAS/RGT01) or 1 (EPR2/RX2); PV1-19 names no authority, so the sending facility
    scopes the visit number and the two issuers' V1 are two visits."""
    app, facility = _ISSUERS[issuer]
    raw = (
        s.adt(control, nhs=nhs, visit=visit, minute=minute, recorded=recorded)
        .replace(b"|PAS|RGT01|TIE|", f"|{app}|{facility}|TIE|".encode())
        .replace(b"^^^RGT01^MR", f"^^^{facility}^MR".encode())
    )
    return map_message(parse_message(raw), correlation_id=f"a2-{control}").value


def _stored_encounters(repo: SqliteFhirRepository) -> set[tuple[str, str, str, str]]:
    """(NHS number, visit system|value, admitted at (UTC), status) of every stored Encounter."""
    nhs = {
        p["id"]: next(i["value"] for i in p["identifier"] if i["system"] == systems.NHS_NUMBER)
        for p in repo.search("Patient", [], count=500).resources
    }
    found = set()
    for r in repo.search("Encounter", [], count=500).resources:
        visit = r["identifier"][0]
        start = datetime.fromisoformat(r["period"]["start"]).astimezone(UTC).isoformat()
        patient = nhs.get(r["subject"]["reference"].partition("/")[2], "?")
        found.add((patient, f"{visit['system']}|{visit['value']}", start, r["status"]))
    return found


@pytest.mark.parametrize("sabotage", _SABOTAGE)
def test_a_redelivered_versions_of_colliding_admissions_keep_identities_and_contents(
    env: s.Env, receiver: s.FakeHl7Receiver, sabotage: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every message delivered 2-3 times, the traffic colliding on purpose: patients 2k and 2k+1 share
    visit number V<k> from two issuers; each admission is sent, corrected (a later admit time, recorded
    later), the first version resent late under a new control id, the correction resent; then a third
    patient claims V<k> of the first issuer. The FHIR store must hold exactly the corrected admission of
    each patient, the journal must give each message the rules' verdict, the HL7 receiver must have been
    sent each applied version once, and only the conflicts are dead-lettered."""
    options = WriteBackOptions(timeout_seconds=0.5, max_attempts=3, backoff_base_seconds=0.01)
    if sabotage == "no-idempotency":
        options = replace(options, idempotency=False)
    elif sabotage == "no-digest":
        for module in ("shared.backbone.writeback", "shared.backbone.clinical"):
            monkeypatch.setattr(f"{module}.content_digest", lambda _data: "0" * 64)
    pairs, conflicts = 8, 3
    nhs = s.nhs_numbers(2 * pairs + conflicts)
    verdicts: dict[str, str] = {}  # correlation id -> the rules' verdict (both write-backs)
    phase1: list[ClinicalEvent] = []
    wanted: set[tuple[str, str, str, str]] = set()
    for i in range(2 * pairs):
        issuer, visit = i % 2, f"V{i // 2}"

        def version(
            step: str,
            minute: int,
            recorded: str,
            verdict: str,
            i: int = i,
            issuer: int = issuer,
            visit: str = visit,
        ) -> ClinicalEvent:
            e = _admission(
                f"{i}{step}", nhs=nhs[i], visit=visit, issuer=issuer, minute=minute, recorded=recorded
            )
            verdicts[e.provenance.correlation_id or ""] = verdict
            return e

        first = version("a", 0, "20260315102900", "written-back")
        corrected = version("b", 30, "20260315110000", "written-back")
        phase1 += [
            first,
            corrected,
            version("c", 0, "20260315102900", "superseded"),  # the first version, resent late
            version("d", 30, "20260315110000", "duplicate"),  # the correction, resent
        ]
        assert corrected.encounter is not None and corrected.encounter.period is not None
        assert corrected.encounter.period.start is not None
        admitted = corrected.encounter.period.start.value.astimezone(UTC).isoformat()
        wanted.add((nhs[i], f"urn:tie:authority:{_ISSUERS[issuer][1]}|{visit}", admitted, "in-progress"))
    phase2 = []
    for j in range(conflicts):
        e = _admission(
            f"x{j}", nhs=nhs[2 * pairs + j], visit=f"V{j}", issuer=0, minute=0, recorded="20260315120000"
        )
        verdicts[e.provenance.correlation_id or ""] = "conflict"
        phase2.append(e)
    rng = random.Random(10)
    target = {clinical.to_message(e).message_id: rng.choice((2, 3)) for e in phase1 + phase2}

    def settle(message: ReceivedMessage, ok: bool) -> str:
        return "abandon" if not ok or message.delivery_count < target[message.message_id] else "complete"

    ds = hl7_downstream(receiver.port)
    bb = s.backbone(
        env, {SUB_WRITEBACK_FHIR: FhirDownstream(env.fhir), SUB_WRITEBACK_HL7V2: ds}, options=options
    )
    try:
        s.publish(env.bus, *phase1)  # each patient's versions in order on its session
        drain(env, bb, settle=settle)
        s.publish(env.bus, *phase2)  # the conflicting claims, once the first claims are written back
        drain(env, bb, settle=settle)
    finally:
        ds.close()
    stored = _stored_encounters(env.fhir)
    journal = Journal(env.records)

    def first_verdict(corr: str, sub: str) -> str | None:
        """The subscriber's first terminal stage for ``corr`` (later ones answer its redeliveries)."""
        return next(
            (
                x.stage
                for x in journal.trace(corr)
                if x.attributes.get("subscriber") == sub and x.stage not in ("delivered", "retried", "failed")
            ),
            None,
        )

    found = {corr: {sub: first_verdict(corr, sub) for sub in WRITEBACKS} for corr in verdicts}
    hl7_written = sum(1 for corr in verdicts if found[corr][SUB_WRITEBACK_HL7V2] == "written-back")
    dead = {
        m.correlation_id for sub in WRITEBACKS for m in env.bus.peek(TOPIC_CLINICAL, sub, dead_letter=True)
    }
    conflicted = {corr for corr, verdict in verdicts.items() if verdict == "conflict"}
    s.counts_line(
        f"a2/fhir/{sabotage or 'as-built'}",
        sent=len(verdicts),
        effects=len(stored & wanted),
        duplicates=len(stored - wanted),
        lost=len(wanted - stored),
        dead_lettered=len(dead),
    )

    def check_encounters() -> None:
        assert stored == wanted, f"missing {sorted(wanted - stored)}, unexpected {sorted(stored - wanted)}"

    def check_journal() -> None:
        wrong = {
            corr: found[corr]
            for corr, verdict in verdicts.items()
            if found[corr] != dict.fromkeys(WRITEBACKS, verdict)
        }
        assert not wrong, sorted(wrong.items())

    def check_hl7_once() -> None:
        # each version applied was sent to the receiver once: a redelivery or a duplicate never reached it
        assert set(receiver.received.values()) == {1} and len(receiver.received) == hl7_written

    def check_dead_letters() -> None:
        assert dead == conflicted

    checks = {
        "encounters": check_encounters,
        "journal": check_journal,
        "hl7-once": check_hl7_once,
        "dead-letters": check_dead_letters,
    }
    for name, check in checks.items():
        if name not in MUST_FAIL[sabotage]:
            check()
            continue
        with pytest.raises(AssertionError):
            check()
        print(f"[fault a2] {sabotage}: {name} fails, as it must")


# -- (c) ---------------------------------------------------------------------------------------------------


def test_c_downstreams_failing_for_a_while_are_retried_then_succeed_without_duplicates(
    env: s.Env, receiver: s.FakeHl7Receiver
) -> None:
    """Both downstreams are down for a while, the outage measured in requests (not seconds): the FHIR
    server answers 503 to the first requests, then holds the next ones past the client's read timeout
    (and answers 503 without processing); the HL7 receiver does not answer the first frames at all, then
    answers AE to a few (briefly: AE is a per-message error, retried within a bounded number of
    deliveries and then dead-lettered - not an outage to wait out). Afterwards both work. The circuits'
    cooldowns run on a clock the drain loop moves once only parked work is left."""
    events = admissions(40, 10, "c")
    sent = len(events)
    backend = SqliteFhirRepository(env.root / "remote-fhir.sqlite3")
    server = FhirTestServer(backend)
    threshold = 4
    fhir_503, fhir_hung = threshold + 2, 2  # requests answered 503, then held past the read timeout
    hl7_silent, hl7_ae = threshold, 2  # frames never answered, then answered AE
    frames = itertools.count(1)
    frames_lock = threading.Lock()

    def decide(_cid: str, _n: int) -> str:
        with frames_lock:
            nth = next(frames)
        return "timeout" if nth <= hl7_silent else "AE" if nth <= hl7_silent + hl7_ae else "AA"

    receiver.script = s.ReceiverScript(decide)
    options = WriteBackOptions(
        timeout_seconds=1.0,
        max_attempts=3,
        backoff_base_seconds=0.05,
        backoff_cap_seconds=0.2,
        breaker_failure_threshold=threshold,
        breaker_cooldown_seconds=0.25,
    )
    clock = s.ManualClock()
    held = threading.Event()
    from shared.adapters.azure.ahds_fhir import AhdsFhirRepository

    with server.running():
        server.inject(Fault(status=503, times=fhir_503))
        server.inject(Fault(status=503, hold=held, times=fhir_hung))
        # Held requests outlast any read timeout; answered ones get a generous one (a busy machine).
        remote = AhdsFhirRepository(server.base_url, read_timeout=1.0, connect_timeout=5, max_retries=0)
        ds = hl7_downstream(receiver.port, timeout=1.0)
        bb = s.backbone(
            env,
            {SUB_WRITEBACK_FHIR: FhirDownstream(remote), SUB_WRITEBACK_HL7V2: ds},
            options=options,
            clock=clock,
        )
        try:
            s.publish(env.bus, *events)
            stats = drain(env, bb, workers=2, clock=clock)
        finally:
            held.set()
            ds.close()
            remote.close()
    journal = Journal(env.records)
    stage_counts: Counter[str] = Counter()
    for e in events:
        stage_counts.update(entry.stage for entry in journal.trace(e.provenance.correlation_id or ""))
    fhir = fhir_counts(backend, sent)
    hl7 = hl7_counts(receiver, sent)
    dead = dead_letters(env)
    s.counts_line("c/fhir", **fhir, dead_lettered=dead)
    s.counts_line("c/hl7v2", **hl7, dead_lettered=dead)
    print(
        f"[fault c] retried={stage_counts['retried']} parked={stage_counts['parked']} "
        f"released={stage_counts['released']} abandoned={stats.abandoned}"
    )
    # The outage was met in full (every scripted failure was answered), and survived.
    assert server.count("POST") + server.count("PUT") + server.count("GET") >= fhir_503 + fhir_hung
    assert sum(receiver.received.values()) >= hl7_silent + hl7_ae + sent
    assert fhir == hl7 == {"sent": sent, "effects": sent, "duplicates": 0, "lost": 0} and dead == 0
    assert stage_counts["retried"] > 0 and stage_counts["parked"] > 0
    assert stage_counts["released"] == stage_counts["parked"]  # nothing left behind a closed circuit
    assert stage_counts["written-back"] == 2 * sent
    backend.close()


# -- (d) ---------------------------------------------------------------------------------------------------


def test_d_poison_messages_dead_letter_and_a_replay_after_the_fix_applies_once(
    env: s.Env, receiver: s.FakeHl7Receiver
) -> None:
    events = admissions(30, 6, "d")
    sent = len(events)
    hl7 = hl7_downstream(receiver.port)
    poisoned = {e.key.value for e in events[::6]}  # 5 events the receiver rejects (AR) until fixed
    control_ids = {hl7.message_for(e).split(b"|")[9].decode(): e.key.value for e in events}
    fixed = False
    receiver.script = s.ReceiverScript(
        lambda cid, _n: "AR" if control_ids[cid] in poisoned and not fixed else "AA"
    )
    bb = s.backbone(env, {SUB_WRITEBACK_FHIR: FhirDownstream(env.fhir), SUB_WRITEBACK_HL7V2: hl7})
    try:
        s.publish(env.bus, *events)
        stats = drain(env, bb)
        dead = env.bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2, dead_letter=True)
        assert {m.message_id for m in dead} == {
            clinical.to_message(e).message_id for e in events if e.key.value in poisoned
        }
        # dead-lettered at the first delivery with their reason, not after the max delivery count (5)
        assert {m.delivery_count for m in dead} == {1} and {m.dead_letter_reason for m in dead} == {
            "downstream-rejected"
        }
        assert stats.statuses["error:downstream-rejected"] == len(poisoned)  # the downstream saw each once
        assert sum(receiver.received[cid] for cid, key in control_ids.items() if key in poisoned) == len(
            poisoned
        )
        report = bb.scan_dead_letters()
        assert report.recorded == len(poisoned)
        dead_lettered = len(dead)

        fixed = True
        replayed = deadletter.replay(env.bus, env.records, bb.journal, TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2)
        assert replayed == len(poisoned)
        drain(env, bb)
        # Replaying again: nothing left in the dead-letter queue; the same events re-sent as replays are
        # answered from the idempotency store.
        assert deadletter.replay(env.bus, env.records, bb.journal, TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2) == 0
        again = [clinical.to_message(e) for e in events if e.key.value in poisoned]
        env.bus.publish(
            TOPIC_CLINICAL,
            [
                replace(
                    m,
                    message_id=f"{m.message_id}-again",
                    application_properties={**m.application_properties, "tie_replay_count": 2},
                )
                for m in again
            ],
        )
        repeat = drain(env, bb)
        assert repeat.statuses["duplicate"] == 2 * len(poisoned)
    finally:
        hl7.close()
    counts = hl7_counts(receiver, sent)
    s.counts_line("d/hl7v2", **counts, dead_lettered=dead_lettered)
    s.counts_line("d/fhir", **fhir_counts(env.fhir, sent), dead_lettered=0)
    assert counts == {"sent": sent, "effects": sent, "duplicates": 0, "lost": 0}
    assert fhir_counts(env.fhir, sent)["duplicates"] == 0
    assert dead_letters(env) == 0
    replay_stages = [
        x for x in bb.journal.trace(events[0].provenance.correlation_id or "") if x.stage == "replayed"
    ]
    assert len(replay_stages) == 1


# -- (e) ---------------------------------------------------------------------------------------------------

A01 = "\r".join(
    [
        "MSH|^~\\&|PAS|RX1|TIE|RX1|20260701101600||ADT^A01^ADT_A01|{control}|P|2.5.1",
        "EVN|A01|20260701101600",
        "PID|1||9434765919^^^NHS^NH~MRN123^^^RX1^MR||Smith^Jane^Anne||20101022|F|||"
        "1 Trevelyan Square^Boar Lane^Leeds^West Yorkshire^LS1 6AE",
        "PV1|1|I|WARD7^R2^B4^RX101||||C1234567^Who^Alan^^^Dr^^^GMC"
        + "|" * 12
        + "{visit}^^^RX1^VN"
        + "|" * 25
        + "20260701101500",
    ]
)


def fhir_patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": systems.NHS_NUMBER, "value": "9434765919"},
            {"system": "urn:tie:authority:RX1", "value": "MRN123"},
        ],
        "name": [{"family": "Smith", "given": ["Jane", "Anne"]}],
        "gender": "female",
        "birthDate": "2010-10-22",
    }


def fhir_admission(visit: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "meta": {"lastUpdated": "2026-07-01T10:16:30+01:00"},
        "identifier": [
            {
                "type": {"coding": [{"system": systems.V2_0203_IDENTIFIER_TYPE, "code": "VN"}]},
                "system": "urn:tie:authority:RX1",
                "value": visit,
            }
        ],
        "status": "in-progress",
        "class": {"system": systems.V3_ACT_CODE, "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-07-01T09:15:00Z"},
    }


def no_duplicate_detection(topology: tuple[TopicSpec, ...]) -> tuple[TopicSpec, ...]:
    """clinical-events without the broker's duplicate detection: a copy arriving after the detection window
    (or re-published under another id) reaches the subscribers, and only idempotency stands in the way."""
    return tuple(
        replace(t, duplicate_detection_window=None) if t.name == TOPIC_CLINICAL else t for t in topology
    )


def test_e_hl7_and_fhir_versions_of_one_admission_are_one_event_in_clinical_order(
    tmp_path: Path, receiver: s.FakeHl7Receiver
) -> None:
    with s.embedded(tmp_path) as env:
        env.bus.close()
        env.topology = no_duplicate_detection(env.topology)
        env.bus = SqliteBus(env.root / "bus.sqlite3", env.topology)
        ds = hl7_downstream(receiver.port)
        bb = s.backbone(env, {SUB_WRITEBACK_FHIR: FhirDownstream(env.fhir), SUB_WRITEBACK_HL7V2: ds})
        edge = Hl7Ingest(env.bus, env.records)
        context = ingest.ProcessorContext(bus=env.bus, journal=Journal(env.records))

        def via_hl7(visit: str, control: str) -> None:
            raw = (A01.format(control=control, visit=visit) + "\r").encode()
            result = edge.handle(raw, source="http", correlation_id=f"e-hl7-{visit}")
            assert result.code == "AA"
            pump_ingest(env, context)

        def via_fhir(visit: str) -> ClinicalEvent:
            e = event_from_fhir(
                fhir_admission(visit),
                interaction="create",
                patient=patient_from_fhir(fhir_patient()).value,
                correlation_id=f"e-fhir-{visit}",
                lineage=False,
            ).value
            env.bus.publish(TOPIC_CLINICAL, [clinical.to_message(e)])
            return e

        try:
            via_hl7("VE1", "E1")  # HL7 first, then the FHIR version of the same admission
            first = via_fhir("VE1")
            second = via_fhir("VE2")  # FHIR first, then HL7
            via_hl7("VE2", "E2")
            stats = drain(env, bb)
        finally:
            ds.close()
        assert first.key != second.key  # 4 messages, 2 admissions
        # One identity each: the later version (in clinical order) is applied as an update of the same
        # Encounter, the older one is superseded; neither is ever a second Encounter.
        assert stats.statuses == {"applied": 6, "superseded": 2}
        stored = {
            (r["identifier"][0]["value"], r["subject"]["reference"].split("/")[0], r["status"])
            for r in env.fhir.search("Encounter", [], count=10).resources
        }
        assert stored == {("VE1", "Patient", "in-progress"), ("VE2", "Patient", "in-progress")}
        patients = env.fhir.search("Patient", [], count=10).resources
        assert len(patients) == 1
        assert {r["subject"]["reference"] for r in env.fhir.search("Encounter", [], count=10).resources} == {
            f"Patient/{patients[0]['id']}"
        }
        hl7 = hl7_counts(receiver, 4, 3)
        s.counts_line("e/fhir", **fhir_counts(env.fhir, 4, 2), dead_lettered=dead_letters(env))
        s.counts_line("e/hl7v2", **hl7, dead_lettered=dead_letters(env))
        assert hl7["duplicates"] == 0 and hl7["effects"] == 3 and dead_letters(env) == 0
        journal = Journal(env.records)
        expected = {
            "e-hl7-VE1": "written-back",
            "e-fhir-VE1": "written-back",  # recorded later than the A01: an update
            "e-fhir-VE2": "written-back",
            "e-hl7-VE2": "superseded",  # recorded before the FHIR write it arrived after
        }
        for corr, stage in expected.items():
            for sub in WRITEBACKS:
                path = [x.stage for x in journal.trace(corr) if x.attributes.get("subscriber") == sub]
                assert path == ["delivered", stage], (corr, sub)
