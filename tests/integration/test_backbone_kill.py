"""Fault scenario (b): the host process is killed (SIGKILL, no shutdown) at random points of a run and
restarted -> what the downstream holds is exactly what was sent, by identity and content.

The real ``tie run`` host in a subprocess, with the real HL7 v2 edge, ingest processor and write-back
subscribers (``tests/fixtures/backbone_app.py``: short 4 s locks so work held by a dead host comes back
quickly). Sender threads post HL7 v2 over HTTP and, like any HL7 sender, resend until they get an AA; one
thread sends all of one patient's messages, in order, each after the previous one's AA.

The traffic collides natural ids on purpose (rules: ``docs/event-identity.md``):

* every patient has an admission (ADT^A01) and a result sequence for one filler order number: ORU^R01
  preliminary -> final, then the preliminary again, late, under a new control id;
* patients 2k and 2k+1 share visit number ``V<k>`` and filler order number ``LAB<k>``, from different
  issuers (PAS/RX1 + WINPATH vs EPR2/RX2 + TPATH): two Encounters, two reports;
* a few more patients are admitted under a visit number the same facility already gave another NHS
  number (sent once that admission is written back): a ``conflict``, never applied, dead-lettered;
  their own result still is.

Afterwards the FHIR store's contents - (patient, visit, status) of every Encounter and (patient, filler
order number, code, value, status) of every result - must *equal* what the identity rules make of the
traffic (final results win, the late preliminary never does, a conflicting patient has no Encounter), and
the ``writeback-fhir`` journal must end each message in the stage the rules give it. Run as built and with
a guard broken on purpose (``TIE_TEST_SABOTAGE``: no idempotency/ledger; a constant content digest): the
broken runs must fail those checks, which proves the test can see what the guards protect.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.fhirstore.ports import FhirRepository
from shared.journal import Journal
from shared.messaging.topology import (
    SUB_INGEST_PROCESSOR,
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_CLINICAL,
    TOPIC_INGEST,
)
from shared.storage.names import TABLE_PARKED
from tests.fixtures.backbone_app import SHORT_LOCKS
from tests.helpers import child_pids, free_port, host_process, http
from tests.unit.backbone import support as s

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

APP = "tests/fixtures/backbone_app.py"
ENV = {
    # Everything a delivery may spend on the downstream (2 x 1 s + backoff) must fit 75 % of the 4 s lock.
    "TIE_WRITEBACK_TIMEOUT_SECONDS": "1.0",
    "TIE_WRITEBACK_MAX_ATTEMPTS": "2",
    "TIE_WRITEBACK_BACKOFF_BASE_SECONDS": "0.05",
    "TIE_LOG_LEVEL": "WARNING",
}
SENDERS = 6
#: How long one condition may take to come true (a restart, 4 s locks, a busy machine): generous bounds.
PATIENCE = 120.0
HL7 = {"Content-Type": "x-application/hl7-v2+er7"}

PRELIMINARY = ("P", "20260701103000")
FINAL = ("F", "20260701113000")
STATUS = {"P": "preliminary", "F": "final"}
#: (sending application, facility, laboratory) of the two issuers that reuse each other's numbers.
ISSUERS = (("PAS", "RX1", "WINPATH"), ("EPR2", "RX2", "TPATH"))


@dataclass(frozen=True)
class Run:
    patients: int  # even: pairs sharing a visit / filler number across issuers
    conflicts: int  # extra patients claiming a visit number already held by another NHS number
    kills: int
    workers: int = 0  # tie run --workers: each kill takes the host process and its workers together


#: Runs on ``tie run --workers 2`` (the Service Bus triggers in two worker processes): as built, and with
#: the idempotency guard broken, which must fail there too.
WORKERS, WORKERS_BROKEN = "workers", "no-idempotency/workers"
#: As built, substantial; the broken runs only need to show that the checks fail.
RUNS: dict[str | None, Run] = {
    None: Run(patients=100, conflicts=6, kills=5),
    WORKERS: Run(patients=40, conflicts=4, kills=3, workers=2),
    "no-idempotency": Run(patients=16, conflicts=2, kills=2),
    "no-digest": Run(patients=16, conflicts=2, kills=2),
    WORKERS_BROKEN: Run(patients=16, conflicts=2, kills=2, workers=2),
}


# -- traffic -------------------------------------------------------------------------------------------------


def _segments(*lines: str) -> bytes:
    return ("\r".join(lines) + "\r").encode("ascii")


def a01(control: str, *, nhs: str, visit: str, app: str, facility: str) -> bytes:
    """An admission (as ``test_clinical_safety.a01``): PV1-19 names no assigning authority, so the
    sending facility scopes the visit number."""
    return _segments(
        f"MSH|^~\\&|{app}|{facility}|TIE|RX1|20260701101600||ADT^A01^ADT_A01|{control}|P|2.5.1",
        "EVN|A01|20260701101600",
        f"PID|1||{nhs}^^^NHS^NH||TESTPATIENT^ALEX||19800101|F",
        "PV1|1|I|WARD7^R2^B4^RX1||||C1234567^Who^Alan^^^Dr^^^GMC"
        + "|" * 12
        + visit
        + "|" * 25
        + "20260701101500",
    )


def oru(
    control: str, *, nhs: str, lab: str, facility: str, filler: str, value: int, status: str, reported: str
) -> bytes:
    """A troponin result (as ``test_clinical_safety.oru``) for filler order ``filler^lab`` (OBR-3: the lab
    is the issuer), OBR-25 / OBX-11 ``status``; the placer order number is the patient's own."""
    flag = "H" if value > 14 else "N"
    return _segments(
        f"MSH|^~\\&|{lab}|{facility}|TIE|RX1|{reported}||ORU^R01^ORU_R01|{control}|P|2.5.1",
        f"PID|1||{nhs}^^^NHS^NH~M{nhs}^^^{facility}^MR||TESTPATIENT^ALEX||19800101|F",
        f"ORC|RE|P{nhs}^EPR|{filler}^{lab}",
        f"OBR|1|P{nhs}^EPR|{filler}^{lab}|TROP^Troponin T^L|||20260701100000"
        + "|" * 15
        + f"{reported}|||{status}",
        f"OBX|1|NM|TROP^Troponin T^L||{value}|ng/L|0-14|{flag}|||{status}",
    )


@dataclass(frozen=True)
class Message:
    corr: str  # sent as X-Correlation-ID (on every resend too): the journal's key for this message
    raw: bytes
    nhs: str
    #: ("visit", "<issuer system>|<visit>") or ("result", "<issuer system>|<filler>", status, value)
    says: tuple[Any, ...]
    #: Send only once this message's FHIR write-back has finished (the order the rules are judged in).
    after: str | None = None


@dataclass
class Traffic:
    chains: list[list[Message]] = field(default_factory=list)  # each sent in order by one thread

    @property
    def messages(self) -> list[Message]:
        return [m for chain in self.chains for m in chain]


def _authority(code: str) -> str:
    return f"urn:tie:authority:{code}"


def traffic(run: Run, rng: random.Random) -> Traffic:
    nhs = s.nhs_numbers(run.patients + run.conflicts)
    chains: list[list[Message]] = []
    for i in range(run.patients):
        app, facility, lab = ISSUERS[i % 2]
        k = i // 2
        visit, filler = f"V{k:04d}", f"LAB{k:04d}"
        n = nhs[i]
        admit = Message(
            f"kb-{i:04d}-a01",
            a01(f"A{i:04d}", nhs=n, visit=visit, app=app, facility=facility),
            n,
            ("visit", f"{_authority(facility)}|{visit}"),
        )
        sequence = []
        for step, ((status, reported), value, after) in enumerate(
            (
                (PRELIMINARY, 5 + i % 9, None),
                (FINAL, 40 + i, None),
                # the preliminary again, late, under a new control id - once the final is written back
                (PRELIMINARY, 5 + i % 9, f"kb-{i:04d}-r1"),
            )
        ):
            sequence.append(
                Message(
                    f"kb-{i:04d}-r{step}",
                    oru(
                        f"R{i:04d}{step}",
                        nhs=n,
                        lab=lab,
                        facility=facility,
                        filler=filler,
                        value=value,
                        status=status,
                        reported=reported,
                    ),
                    n,
                    ("result", f"{_authority(lab)}|{filler}", status, reported, value),
                    after,
                )
            )
        chains.append([admit, *sequence])
    for j in range(run.conflicts):
        # Patient 2j's visit number, from the same facility, another NHS number: sent after 2j's admission
        # is written back (so which claim is first is not a race), on the same thread.
        i = run.patients + j
        n, visit, filler = nhs[i], f"V{j:04d}", f"CX{j:04d}"
        chains[2 * j] += [
            Message(
                f"kb-{i:04d}-a01",
                a01(f"A{i:04d}", nhs=n, visit=visit, app="PAS", facility="RX1"),
                n,
                ("visit", f"{_authority('RX1')}|{visit}"),
                f"kb-{2 * j:04d}-a01",
            ),
            Message(
                f"kb-{i:04d}-r1",
                oru(
                    f"R{i:04d}1",
                    nhs=n,
                    lab="WINPATH",
                    facility="RX1",
                    filler=filler,
                    value=60 + j,
                    status="F",
                    reported=FINAL[1],
                ),
                n,
                ("result", f"{_authority('WINPATH')}|{filler}", "F", FINAL[1], 60 + j),
            ),
        ]
    rng.shuffle(chains)
    return Traffic(chains)


@dataclass(frozen=True)
class Expected:
    encounters: set[tuple[str, str, str]]
    results: set[tuple[str, str, str, str, str]]
    #: correlation id -> the writeback-fhir journal's last word on it (``None``: either way is right)
    stages: dict[str, str | None]


def expected(sent: Traffic) -> Expected:
    """What the identity rules make of the traffic, in the order it was judged (each chain in order; a
    message with ``after`` only once that one was judged)."""
    claims: dict[str, str] = {}  # visit -> the NHS number that claimed it first
    best: dict[tuple[str, str], tuple[str, str, int]] = {}  # (patient, filler) -> version applied
    stages: dict[str, str | None] = {}
    order = {"P": 1, "F": 2}
    for chain in sent.chains:
        for m in chain:
            if m.says[0] == "visit":
                holder = claims.setdefault(m.says[1], m.nhs)
                stages[m.corr] = "written-back" if holder == m.nhs else "conflict"
                continue
            _, filler, status, reported, value = m.says
            key = (m.nhs, filler)
            current = best.get(key)
            if current is None or (order[status], reported) > (order[current[0]], current[1]):
                best[key] = (status, reported, value)
                # A preliminary held up by a kill may yet be judged after its final: superseded then.
                stages[m.corr] = "written-back" if status == "F" else None
            else:
                stages[m.corr] = "superseded"
    encounters = {(nhs, visit, "in-progress") for visit, nhs in claims.items()}
    results = {
        (nhs, filler, "TROP", str(value), STATUS[status])
        for (nhs, filler), (status, _, value) in best.items()
    }
    return Expected(encounters, results, stages)


# -- what the downstream holds ---------------------------------------------------------------------------


def _all(repo: FhirRepository, rtype: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = repo.search(rtype, [], count=100, offset=len(found)).resources
        found += page
        if len(page) < 100:
            return found


def _nhs_numbers(repo: FhirRepository) -> dict[str, str]:
    """Patient id -> NHS number."""
    return {
        p["id"]: next(i["value"] for i in p["identifier"] if i["system"].endswith("nhs-number"))
        for p in _all(repo, "Patient")
    }


def encounters(repo: FhirRepository, patients: dict[str, str]) -> set[tuple[str, str, str]]:
    """(patient NHS number, visit system|value, status) of every stored Encounter."""
    found = set()
    for resource in _all(repo, "Encounter"):
        visit = resource["identifier"][0]
        subject = resource["subject"]["reference"].partition("/")[2]
        found.add((patients.get(subject, subject), f"{visit['system']}|{visit['value']}", resource["status"]))
    return found


def results(repo: FhirRepository, patients: dict[str, str]) -> set[tuple[str, str, str, str, str]]:
    """(patient NHS number, filler system|value, code, value, status) of every stored Observation (the
    filler order number from the DiagnosticReport that lists it; ``-`` for one no report lists)."""
    filler_of: dict[str, str] = {}
    for report in _all(repo, "DiagnosticReport"):
        fill = next(i for i in report["identifier"] if i["type"]["coding"][0]["code"] == "FILL")
        for ref in report.get("result", []):
            filler_of[ref["reference"].partition("/")[2]] = f"{fill['system']}|{fill['value']}"
    found = set()
    for obs in _all(repo, "Observation"):
        subject = obs["subject"]["reference"].partition("/")[2]
        found.add(
            (
                patients.get(subject, subject),
                filler_of.get(obs["id"], "-"),
                obs["code"]["coding"][0]["code"],
                str(obs["valueQuantity"]["value"]),
                obs["status"],
            )
        )
    return found


_TRACED = {"delivery_count", "reason", "original_correlation_id", "cause", "code"}
_DONE = {"written-back", "duplicate", "superseded", "conflict", "skipped"}


def last_word(journal: Journal, corr: str) -> str | None:
    """The writeback-fhir subscriber's last terminal stage for ``corr`` (``None``: none yet).

    A host killed in mid-delivery leaves a redelivery to finish the journal: when the effect was made, the
    redelivery is answered from the idempotency store ("redelivery of a message already applied") or, if
    the guard had not yet stored the outcome, proven by the ledger a duplicate of the version this very
    message applied - both count as the write-back they repeat. A redelivered conflict answered with the
    stored failure counts as the conflict."""
    last = None
    for entry in journal.trace(corr):
        attrs = entry.attributes
        if attrs.get("subscriber") != SUB_WRITEBACK_FHIR:
            continue
        if entry.stage == "duplicate" and (
            attrs.get("reason") == "redelivery of a message already applied"
            or attrs.get("original_correlation_id") == corr
        ):
            last = "written-back" if last is None else last
        elif entry.stage in _DONE:
            last = entry.stage
        elif entry.stage == "failed" and attrs.get("cause") == "event-conflict" and last is None:
            last = "conflict"
    return last


#: The checks a broken guard must fail; the others must still hold. Without the idempotency guard and
#: ledger the late preliminary is applied last, the conflicting admission overwrites the first patient's
#: Encounter and nothing is a conflict; with a constant digest every later version of an identity is
#: taken for a duplicate of the first applied (the final of a result after its preliminary).
MUST_FAIL: dict[str | None, set[str]] = {
    None: set(),
    "no-idempotency": {"encounters", "results", "journal", "dead-letters"},
    "no-digest": {"results", "journal"},
}


def expect(sabotage: str | None, checks: dict[str, Callable[[], None]]) -> None:
    """As built every check holds; with a guard broken the checks that guard stands for must fail (the test
    can fail), and only those."""
    for name, check in checks.items():
        if name not in MUST_FAIL[sabotage]:
            check()
            continue
        with pytest.raises(AssertionError):
            check()
        # The check's name only: its assertion text holds (fabricated) NHS numbers.
        print(f"[fault b] {sabotage}: {name} fails, as it must")


# -- the run ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(RUNS))
def test_b_host_killed_at_random_points_keeps_identities_and_contents(
    tmp_path: Path, variant: str | None
) -> None:
    run = RUNS[variant]
    sabotage = "no-idempotency" if variant == WORKERS_BROKEN else None if variant == WORKERS else variant
    host_args = ["--no-mllp", "--workers", str(run.workers)] if run.workers else None
    local = tmp_path / "local"
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    seed = int(os.environ.get("BACKBONE_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    sent = traffic(run, rng)
    work = deque(sent.chains)
    env = {**ENV, "TIE_TEST_SABOTAGE": sabotage or ""}
    acked: set[str] = set()
    problems: list[str] = []
    resends = 0
    lock = threading.Lock()
    stop = threading.Event()

    def written(journal: Journal, corr: str) -> bool:
        deadline = time.monotonic() + PATIENCE
        while not stop.is_set() and time.monotonic() < deadline:
            if last_word(journal, corr) is not None:
                return True
            stop.wait(0.1)
        return False

    def post(m: Message) -> bool:
        nonlocal resends
        headers = {**HL7, "X-Correlation-ID": m.corr}
        while not stop.is_set():
            try:
                res = http("POST", f"{base}/hl7v2", m.raw, headers, timeout=10)
            except OSError:
                res = None
            if res is not None and res.status == 200 and res.headers.get("X-HL7-Ack-Code") == "AA":
                return True
            with lock:
                resends += 1
            stop.wait(0.2)  # host down or restarting: resend, as an HL7 sender does
        return False

    def sender() -> None:
        records: SqliteRecordStore | None = None
        try:
            records = SqliteRecordStore(local / "records.sqlite3")
            journal = Journal(records, track_inflight=False)
            while not stop.is_set():
                with lock:
                    if not work:
                        return
                    chain = work.popleft()
                for m in chain:
                    if m.after is not None and not written(journal, m.after):
                        with lock:
                            problems.append(f"{m.after} not written back within {PATIENCE:g} s")
                    if not post(m):
                        return
                    with lock:
                        acked.add(m.corr)
        except Exception as exc:  # surfaced below
            with lock:
                problems.append(repr(exc))
        finally:
            if records is not None:
                records.close()

    total = len(sent.messages)
    kill_after = sorted(rng.sample(range(total // 20, total * 9 // 10), run.kills))
    tail: deque[str] = deque(maxlen=50)
    senders = [threading.Thread(target=sender, daemon=True) for _ in range(SENDERS)]
    started = time.monotonic()
    kills_at: list[float] = []
    try:
        for round_ in range(run.kills + 1):
            with host_process(local, app=APP, port=port, env=env, output=tail, extra_args=host_args) as (
                proc,
                _base,
            ):
                if round_ == 0:
                    for t in senders:
                        t.start()
                if round_ < run.kills:
                    # Fault injection at a random point of the traffic: once a random share is ACKed.
                    deadline = time.monotonic() + PATIENCE
                    while (
                        len(acked) < kill_after[round_]
                        and any(t.is_alive() for t in senders)
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.05)
                    time.sleep(rng.uniform(0.0, 0.5))
                    kills_at.append(round(time.monotonic() - started, 1))
                    workers = child_pids(proc.pid)
                    assert len(workers) == run.workers, "\n".join(tail)
                    os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no settlement, nothing flushed
                    for pid in workers:  # the whole host at once, as a crash of its machine
                        os.kill(pid, signal.SIGKILL)
                    proc.wait(10)
                    continue
                deadline = time.monotonic() + 2 * PATIENCE
                for t in senders:
                    t.join(max(0.0, deadline - time.monotonic()))
                assert not any(t.is_alive() for t in senders), "senders did not finish\n" + "\n".join(tail)
                repo = SqliteFhirRepository(local / "fhir.sqlite3")
                bus = SqliteBus(local / "bus.sqlite3", SHORT_LOCKS)
                records = SqliteRecordStore(local / "records.sqlite3")
                try:
                    # Quiet: nothing left to ingest, park or write back (a message leaves the write-back
                    # subscription only once its effect and journal entry are done, or dead-lettered).
                    deadline = time.monotonic() + PATIENCE
                    while time.monotonic() < deadline and (
                        bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR, max_messages=1)
                        or records.query(TABLE_PARKED, limit=1)
                        or bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, max_messages=1)
                        or bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_HL7V2, max_messages=1)
                    ):
                        time.sleep(0.2)
                    quiet = time.monotonic() < deadline
                    patients = _nhs_numbers(repo)
                    found_enc = encounters(repo, patients)
                    found_res = results(repo, patients)
                    journal = Journal(records, track_inflight=False)
                    stages = {m.corr: last_word(journal, m.corr) for m in sent.messages}
                    traces = {
                        m.corr: [
                            (e.stage, *(f"{k}={v}" for k, v in e.attributes.items() if k in _TRACED))
                            for e in journal.trace(m.corr)
                            if e.attributes.get("subscriber") in (None, SUB_WRITEBACK_FHIR)
                        ]
                        for m in sent.messages
                    }
                    dead_fhir = {
                        m.correlation_id
                        for m in bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, dead_letter=True)
                    }
                    dead = sum(
                        len(bus.peek(t.name, sub.name, dead_letter=True))
                        for t in SHORT_LOCKS
                        for sub in t.subscriptions
                    )
                finally:
                    bus.close()
                    records.close()
                    repo.close()
    finally:
        stop.set()

    want = expected(sent)
    conflicts = {corr for corr, stage in want.stages.items() if stage == "conflict"}
    contents, wanted = found_enc | found_res, want.encounters | want.results
    s.counts_line(
        f"b/fhir/{variant or 'as-built'}",
        sent=len(sent.messages),
        effects=len(contents & wanted),
        duplicates=len(contents - wanted),  # contents nothing sent asks for (an overwrite, a stale result)
        lost=len(wanted - contents),
        dead_lettered=dead,
    )
    print(
        f"[fault b] seed={seed} (BACKBONE_FAULT_SEED) {variant=} patients={run.patients}"
        f"+{run.conflicts} kills at {kills_at} s, resends={resends}, seconds={time.monotonic() - started:.1f}"
    )
    # The harness itself, whatever the guards do: everything sent and ACKed, the host quiet in the end.
    assert not problems, problems
    assert acked == {m.corr for m in sent.messages}, "\n".join(tail)
    assert quiet, "the host did not go quiet\n" + "\n".join(tail)
    # Two different NHS numbers are two Patients, each created once, whatever collided.
    assert sorted(patients.values()) == sorted({m.nhs for m in sent.messages})

    def same(what: str, found: set[Any], wanted: set[Any]) -> None:
        assert found == wanted, (
            f"{what}: missing {sorted(wanted - found)}, unexpected {sorted(found - wanted)}"
        )

    def journal_stages() -> None:
        # correlation id -> (the journal's last word, the rules'); a preliminary the rules leave open
        # (held up by a kill, it may be judged after its final) is written back or superseded.
        wrong = {
            corr: (stages[corr], stage)
            for corr, stage in want.stages.items()
            if stages[corr] != stage
            and not (stage is None and stages[corr] in ("written-back", "superseded"))
        }
        if sabotage is None:
            for corr, verdicts in wrong.items():
                print(f"[fault b] {corr}: journal {verdicts[0]!r}, rules {verdicts[1]!r}: {traces[corr]}")
        assert not wrong, f"writeback-fhir stages (journal, rules): {sorted(wrong.items())}"

    expect(
        sabotage,
        {
            "encounters": lambda: same("encounters", found_enc, want.encounters),
            "results": lambda: same("results", found_res, want.results),
            "journal": journal_stages,
            # the conflicts are dead-lettered, nothing else is
            "dead-letters": lambda: same("writeback-fhir dead letters", dead_fhir, conflicts),
        },
    )
