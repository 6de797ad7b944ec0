"""Test support for the event backbone: an in-process bus pump, a scripted MLLP receiver, event builders,
and counting of downstream effects. Loopback only; everything started here is stopped by its owner."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.adapters.embedded.sqlite_records import SqliteRecordStore
from shared.backbone import clinical
from shared.backbone.delivery import Delivery
from shared.backbone.runtime import Backbone, WriteBackOptions, build_backbone
from shared.backbone.settlement import DEAD_LETTERED, settle_failure
from shared.backbone.writeback import Downstream
from shared.canonical.model import ClinicalEvent
from shared.errors import TieError
from shared.fhirstore.ports import FhirRepository
from shared.hl7v2 import parse_message
from shared.identifiers.nhs_number import is_valid_nhs_number
from shared.mapping.hl7v2_in import map_message
from shared.messaging.errors import MessageLockLost
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, MessageBus, ReceivedMessage
from shared.messaging.topology import TOPIC_CLINICAL, TOPOLOGY, SubscriptionSpec, TopicSpec
from shared.mllp.server import ConnectionInfo, MllpServer, generic_nak


def nhs_numbers(count: int, start: int = 943_476_000) -> list[str]:
    """``count`` valid (Modulus 11) fabricated NHS numbers."""
    out: list[str] = []
    n = start
    while len(out) < count:
        for check in range(10):
            candidate = f"{n:09d}{check}"
            if is_valid_nhs_number(candidate):
                out.append(candidate)
                break
        n += 1
    return out


def adt(
    control_id: str,
    *,
    nhs: str,
    visit: str,
    trigger: str = "A01",
    minute: int = 0,
    bed: str = "BED2",
    discharged: str | None = None,
    recorded: str = "20260315102900",
) -> bytes:
    """A fabricated ADT message (visit number and admission minute make an admission's key;
    ``discharged`` = PV1-45 as HL7 TS)."""
    segments = [
        f"MSH|^~\\&|PAS|RGT01|TIE|RGT01|20260315103000||ADT^{trigger}^ADT_A01|{control_id}|P|2.5.1",
        f"EVN|{trigger}|{recorded}",
        f"PID|1||{nhs}^^^NHS^NH~H{visit}^^^RGT01^MR||TESTPATIENT^ALEX^J^^MX||19800101|F|||"
        "1 TEST STREET^^LEEDS^^LS1 4AP^GBR||01130000000",
        f"PV1|1|I|WARD1^{bed}^^RGT01||||C1234567^CONSULTANT^ANNA|||MED||||1|||C1234567^CONSULTANT^ANNA|IP|"
        f"{visit}|||||||||||||||||||||||||202603151{minute // 60:01d}{minute % 60:02d}00"
        + (f"|{discharged}" if discharged else ""),
    ]
    return ("\r".join(segments) + "\r").encode("ascii")


def event(
    control_id: str, *, nhs: str, visit: str, correlation_id: str | None = None, **fields: Any
) -> ClinicalEvent:
    raw = adt(control_id, nhs=nhs, visit=visit, **fields)
    return map_message(parse_message(raw), correlation_id=correlation_id or f"corr-{control_id}").value


def short_topology(lock_seconds: float = 3.0, max_delivery: int = 10) -> tuple[TopicSpec, ...]:
    """The declared topology with short locks on clinical-events (quick redelivery in tests)."""
    topics = []
    for topic in TOPOLOGY:
        if topic.name != TOPIC_CLINICAL:
            topics.append(topic)
            continue
        subs = tuple(
            SubscriptionSpec(
                s.name,
                filter=s.filter,
                max_delivery_count=max_delivery,
                lock_duration=timedelta(seconds=lock_seconds),
                requires_session=s.requires_session,
            )
            for s in topic.subscriptions
        )
        topics.append(TopicSpec(topic.name, subs, topic.duplicate_detection_window))
    return tuple(topics)


@dataclass
class Env:
    """Embedded ports in a temporary directory."""

    root: Path
    bus: SqliteBus
    records: SqliteRecordStore
    fhir: SqliteFhirRepository
    topology: tuple[TopicSpec, ...]

    def close(self) -> None:
        self.bus.close()
        self.records.close()
        self.fhir.close()


@contextmanager
def embedded(root: Path, *, lock_seconds: float = 3.0, max_delivery: int = 10) -> Iterator[Env]:
    topology = short_topology(lock_seconds, max_delivery)
    env = Env(
        root,
        SqliteBus(root / "bus.sqlite3", topology),
        SqliteRecordStore(root / "records.sqlite3"),
        SqliteFhirRepository(root / "fhir.sqlite3"),
        topology,
    )
    try:
        yield env
    finally:
        env.close()


class ManualClock:
    """A clock for the backbone that moves only when the test says so (``advance``), plus one microsecond
    per reading so timestamps stay strictly increasing. Thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += timedelta(microseconds=1)
            return self.now

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self.now += by


def backbone(
    env: Env,
    downstreams: dict[str, Downstream],
    *,
    options: WriteBackOptions | None = None,
    sleep: Callable[[float], None] = lambda _s: None,
    clock: Callable[[], datetime] | None = None,
) -> Backbone:
    return build_backbone(
        bus=env.bus,
        records=env.records,
        downstreams=downstreams,
        options=options
        or WriteBackOptions(
            timeout_seconds=0.5, max_attempts=3, backoff_base_seconds=0.01, backoff_cap_seconds=0.05
        ),
        topology=env.topology,
        sleep=sleep,
        clock=clock,
    )


def publish(bus: MessageBus, *events: ClinicalEvent) -> None:
    for e in events:
        bus.publish(TOPIC_CLINICAL, [clinical.to_message(e)])


@dataclass
class PumpStats:
    delivered: int = 0
    completed: int = 0
    abandoned: int = 0
    dead_lettered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


def pump(
    bus: MessageBus,
    subscription: str,
    handle: Callable[[Delivery], Any],
    *,
    topic: str = TOPIC_CLINICAL,
    idle_rounds: int = 2,
    max_seconds: float = 60.0,
    settle: Callable[[ReceivedMessage, bool], str] | None = None,
    stats: PumpStats | None = None,
    sessions: bool = True,
) -> PumpStats:
    """Deliver until the subscription stays empty for ``idle_rounds`` receives: complete on return,
    dead-letter a permanent failure, abandon any other exception (as the host). ``settle(message, ok)`` may
    override the settlement ("complete"/"abandon")."""
    stats = stats or PumpStats()
    idle = 0
    deadline = time.monotonic() + max_seconds
    while idle < idle_rounds:
        assert time.monotonic() < deadline, f"pump on {subscription} did not drain in {max_seconds}s"
        session = NEXT_AVAILABLE_SESSION if sessions else None
        batch = bus.receive(topic, subscription, max_messages=1, max_wait=0.05, session_id=session)
        if not batch:
            idle += 1
            continue
        idle = 0
        message = batch[0]
        stats.delivered += 1
        ok = True
        failure: TieError | None = None
        try:
            result = handle(Delivery.from_received(message))
            stats.statuses[getattr(result, "status", "ok")] += 1
        except TieError as exc:  # the pump settles like the host does; anything else is a bug: it fails
            ok, failure = False, exc
            stats.statuses[f"error:{getattr(exc, 'code', type(exc).__name__)}"] += 1
        action = settle(message, ok) if settle else ("complete" if ok else "failed")
        try:
            if action == "complete":
                bus.complete(message)
                stats.completed += 1
            elif action == "failed" and failure is not None:
                # as the host: a permanent failure goes straight to dead-letter, anything else is abandoned
                if settle_failure(bus, message, failure) == DEAD_LETTERED:
                    stats.dead_lettered += 1
                else:
                    stats.abandoned += 1
            else:
                bus.abandon(message)
                stats.abandoned += 1
        except MessageLockLost:
            pass
        if message.session_id:
            bus.release_session(topic, subscription, message.session_id)
    return stats


def encounter_versions(repo: FhirRepository) -> dict[str, int]:
    """Encounter id -> number of stored versions (the FHIR downstream's effects)."""
    counts: Counter[str] = Counter()
    for version in repo.history("Encounter"):
        counts[version.id] += 1
    return dict(counts)


@dataclass
class ReceiverScript:
    """What the fake HL7 receiver answers: ``decide(control_id, nth_time_seen) -> code``;
    codes AA/AE/AR/CE..., ``timeout`` (no reply), ``close`` (drop the connection) or ``wrong-id`` (an AA
    for another control ID)."""

    decide: Callable[[str, int], str] = lambda _cid, _n: "AA"


class FakeHl7Receiver:
    """An MLLP receiver on 127.0.0.1 (shared/mllp/server.py) with scripted answers. ``applied`` counts
    AA answers per control ID: the downstream's effects."""

    def __init__(self, script: ReceiverScript | None = None) -> None:
        self.script = script or ReceiverScript()
        self.received: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        #: MSH-9 (type^trigger^structure) of every message received, in order.
        self.message_types: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: MllpServer | None = None
        self.port = 0

    async def _handle(self, payload: bytes, info: ConnectionInfo) -> bytes | None:
        first = payload.split(b"\r", 1)[0].decode("latin-1").split("|")
        control_id = first[9] if len(first) > 9 else ""
        with self._lock:
            self.received[control_id] += 1
            self.message_types.append(first[8] if len(first) > 8 else "")
            nth = self.received[control_id]
        code = self.script.decide(control_id, nth)
        if code == "timeout":
            await asyncio.sleep(30)
            return None
        if code == "close":
            raise ConnectionResetError
        if code == "wrong-id":
            code, control_id = "AA", "SOMEONE-ELSE"
        elif code == "AA":
            with self._lock:
                self.applied[control_id] += 1
        header = f"MSH|^~\\&|PAS|RGT01|TIE||20260101000000||ACK|R{nth}{control_id}|P|2.5.1"
        return f"{header}\rMSA|{code}|{control_id}\r".encode()

    def start(self) -> FakeHl7Receiver:
        self._thread.start()

        async def boot() -> None:
            self._server = MllpServer(self._handle, host="127.0.0.1", port=0, nak_builder=generic_nak)
            await self._server.start()

        asyncio.run_coroutine_threadsafe(boot(), self._loop).result(10)
        assert self._server is not None
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(grace=1), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FakeHl7Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def counts_line(name: str, *, sent: int, effects: int, duplicates: int, lost: int, dead_lettered: int) -> str:
    line = (
        f"[fault {name}] sent={sent} effects={effects} duplicates={duplicates} lost={lost} "
        f"dead-lettered={dead_lettered}"
    )
    print(line)
    return line


class FakeDownstream:
    """A downstream whose behaviour is scripted per call: ``script(key, call_number)`` returns ``None``
    (success) or an exception to raise. ``effects`` counts successful applications per event key."""

    def __init__(
        self,
        name: str = "fake",
        script: Callable[[str, int], Exception | None] | None = None,
        skip: Callable[[ClinicalEvent], str | None] | None = None,
    ) -> None:
        self.name = name
        self.script = script or (lambda _key, _n: None)
        self.skip = skip or (lambda _e: None)
        self.calls: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self._lock = threading.Lock()

    def skip_reason(self, event: ClinicalEvent) -> str | None:
        return self.skip(event)

    def apply(self, event: ClinicalEvent) -> Any:
        from shared.backbone.writeback import DownstreamResponse

        key = event.key.value
        with self._lock:
            self.calls[key] += 1
            n = self.calls[key]
        failure = self.script(key, n)
        if failure is not None:
            raise failure
        with self._lock:
            self.effects[key] += 1
        return DownstreamResponse("200", f"applied {key[:12]}", {"call": n})

    def close(self) -> None:
        pass
