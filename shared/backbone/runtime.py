"""Builds the backbone's moving parts from the container and settings.

``shared.wiring.Container.backbone`` builds it once per container; the trigger adapters
(``functions/events.py``, ``functions/deadletter.py``) use that. Each write-back
subscription gets its downstream, an idempotency guard in its own namespace (``writeback-<downstream>``:
the HL7 v2 and FHIR paths of one event share it) with the transactional outbox, a circuit breaker and a
parking lot.

Timing budget: one delivery may call the downstream ``max_attempts`` times with backoff in between; that
must finish inside the idempotency lease (75 % of the subscription's lock), else a redelivery could take
the key over while the first run is still going. :func:`build_backbone` refuses settings that break it.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.audit.trail import AuditTrail
from shared.backbone.breaker import BreakerConfig, CircuitBreaker, Permit
from shared.backbone.deadletter import DeadLetterMonitor, ScanReport
from shared.backbone.fhir_writeback import FhirDownstream
from shared.backbone.hl7_profile import OutboundProfile, load_profile
from shared.backbone.hl7_writeback import Hl7MllpDownstream, MllpSender
from shared.backbone.ledger import EventLedger
from shared.backbone.parking import ParkingLot
from shared.backbone.retry import Backoff, RetryPolicy
from shared.backbone.stuck import DEFAULT_STUCK_AFTER, StuckMonitor, StuckReport
from shared.backbone.writeback import Downstream, WriteBackSubscriber
from shared.config.settings import Settings
from shared.errors import ConfigurationError
from shared.fhirstore.ports import FhirRepository
from shared.idempotency import IdempotencyConfig, IdempotencyGuard, RecordStorePersistence
from shared.journal import RELEASED, Journal
from shared.messaging.ports import MessageBus
from shared.messaging.topology import (
    SUB_WRITEBACK_FHIR,
    SUB_WRITEBACK_HL7V2,
    TOPIC_CLINICAL,
    TOPOLOGY,
    TopicSpec,
    topic_spec,
)
from shared.observability.metrics import Metrics
from shared.outbox import Outbox, OutboxRelay, RelayReport
from shared.storage.ports import RecordStore

if TYPE_CHECKING:
    from shared.credentials.broker import CredentialBroker

_log = logging.getLogger("tie.backbone")


@dataclass(frozen=True, slots=True)
class WriteBackOptions:
    """Tunables (from :class:`~shared.config.settings.Settings` via :meth:`from_settings`)."""

    timeout_seconds: float = 10.0
    max_attempts: int = 3
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 10.0
    breaker_failure_threshold: int = 5
    breaker_cooldown_seconds: float = 30.0
    idempotency: bool = True
    operational_events: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> WriteBackOptions:
        return cls(
            timeout_seconds=settings.writeback_timeout_seconds,
            max_attempts=settings.writeback_max_attempts,
            backoff_base_seconds=settings.writeback_backoff_base_seconds,
            breaker_failure_threshold=settings.writeback_breaker_failure_threshold,
            breaker_cooldown_seconds=settings.writeback_breaker_cooldown_seconds,
        )

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_attempts, Backoff(base=self.backoff_base_seconds, cap=self.backoff_cap_seconds)
        )

    def breaker(self) -> BreakerConfig:
        cooldown = timedelta(seconds=self.breaker_cooldown_seconds)
        return BreakerConfig(
            failure_threshold=self.breaker_failure_threshold,
            cooldown=cooldown,
            max_cooldown=cooldown * 20,
            probe_lease=timedelta(seconds=max(5.0, self.timeout_seconds * 2)),
        )

    def worst_case_seconds(self) -> float:
        """Longest a delivery can spend calling the downstream (timeouts plus largest backoffs)."""
        backoff = Backoff(self.backoff_base_seconds, self.backoff_cap_seconds)
        waits = sum(backoff.ceiling(n) for n in range(1, self.max_attempts))
        return self.max_attempts * self.timeout_seconds + waits


@dataclass
class Backbone:
    """The write-back subscribers, the dead-letter monitor, the parking release, the outbox relay and the
    stuck-message monitor."""

    bus: MessageBus
    records: RecordStore
    journal: Journal
    subscribers: Mapping[str, WriteBackSubscriber]
    monitor: DeadLetterMonitor
    relay: OutboxRelay
    stuck: StuckMonitor
    _closables: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def subscriber(self, subscription: str) -> WriteBackSubscriber:
        try:
            return self.subscribers[subscription]
        except KeyError:
            raise ConfigurationError(f"no write-back subscriber for subscription {subscription}") from None

    def parking_for(self, subscription: str) -> ParkingLot | None:
        sub = self.subscribers.get(subscription)
        return None if sub is None else sub.parking

    def release_parked(self, *, limit: int = 200) -> dict[str, int]:
        """Release parked work of every downstream whose circuit allows it (timer). Returns counts."""
        released: dict[str, int] = {}
        for name, sub in self.subscribers.items():
            lot, breaker = sub.parking, sub.breaker
            snapshot = breaker.snapshot(fresh=True)
            if snapshot.state.value == "closed":
                items = lot.release(self.bus, limit=limit)
            elif breaker.due_for_probe():
                items = lot.release(self.bus, probe=True)
            else:
                continue
            for item in items:
                if item.correlation_id:
                    self.journal.record(
                        item.correlation_id,
                        RELEASED,
                        subscriber=name,
                        downstream=lot.downstream,
                        release=item.releases,
                        probe=snapshot.state.value != "closed",
                    )
            if items:
                released[name] = len(items)
        return released

    def scan_dead_letters(self) -> ScanReport:
        return self.monitor.scan()

    def scan_stuck(self) -> StuckReport:
        """Announce messages in flight past the deadline (timer ``stuck_monitor``)."""
        return self.stuck.scan()

    def relay_outbox(self, *, max_seconds: float = 20.0) -> RelayReport:
        return self.relay.run_until_idle(max_seconds=max_seconds)

    def permit(self, subscription: str) -> Permit:
        return self.subscriber(subscription).breaker.permit()

    def close(self) -> None:
        for close in self._closables:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing must not mask the caller's exit
                _log.warning("backbone component failed to close")
        self._closables.clear()


def build_backbone(
    *,
    bus: MessageBus,
    records: RecordStore,
    downstreams: Mapping[str, Downstream],
    options: WriteBackOptions | None = None,
    topology: Sequence[TopicSpec] = TOPOLOGY,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    close_downstreams: bool = False,
    stuck_after: timedelta = DEFAULT_STUCK_AFTER,
    metrics: Metrics | None = None,
    audit: AuditTrail | None = None,
) -> Backbone:
    """Wire the subscribers for ``downstreams`` (subscription name -> downstream) over the given ports.

    ``stuck_after``: how long a subscriber may keep a message in flight before it is announced as stuck;
    ``metrics``: where the stuck gauge goes (default: the OpenTelemetry meter)."""
    options = options or WriteBackOptions()
    journal = Journal(records, clock=clock)
    outbox = Outbox(records, clock=clock)
    specs = {s.name: s for s in topic_spec(TOPIC_CLINICAL, tuple(topology)).subscriptions}
    subscribers: dict[str, WriteBackSubscriber] = {}
    for subscription, downstream in downstreams.items():
        spec = specs.get(subscription)
        if spec is None:
            raise ConfigurationError(f"subscription {subscription} is not in the clinical-events topology")
        guard: IdempotencyGuard | None = None
        if options.idempotency:
            config = IdempotencyConfig.for_lock_duration(
                spec.lock_duration,
                namespace=f"writeback-{downstream.name}",
                payload_validation=_assertion,
                is_final_failure=_is_final,
                **({"clock": clock} if clock else {}),
            )
            lease = config.in_progress_lease.total_seconds()
            if options.worst_case_seconds() >= lease:
                raise ConfigurationError(
                    f"write-back to {downstream.name}: {options.max_attempts} attempts of "
                    f"{options.timeout_seconds:g} s plus backoff do not fit the {lease:g} s idempotency "
                    f"lease of subscription {subscription}; lower TIE_WRITEBACK_TIMEOUT_SECONDS or "
                    "TIE_WRITEBACK_MAX_ATTEMPTS"
                )
            guard = IdempotencyGuard(RecordStorePersistence(records), config, outbox=outbox, bus=bus)
        subscribers[subscription] = WriteBackSubscriber(
            downstream=downstream,
            subscription=subscription,
            journal=journal,
            bus=bus,
            guard=guard,
            ledger=EventLedger(records, downstream.name, clock=clock) if options.idempotency else None,
            breaker=CircuitBreaker(records, downstream.name, options.breaker(), clock=clock, rng=rng),
            parking=ParkingLot(records, downstream.name, clock=clock),
            policy=options.policy(),
            operational_events=options.operational_events,
            sleep=sleep,
            rng=rng,
            audit=audit,
        )

    def forget_parked(subscription: str, row: str) -> None:
        sub = subscribers.get(subscription)
        if sub is not None:
            sub.parking.forget(row)

    backbone = Backbone(
        bus=bus,
        records=records,
        journal=journal,
        subscribers=subscribers,
        monitor=DeadLetterMonitor(bus, records, journal, topology=topology, forget_parked=forget_parked),
        relay=OutboxRelay(outbox, bus),
        stuck=StuckMonitor(bus, records, journal, stuck_after=stuck_after, metrics=metrics, clock=clock),
    )
    if close_downstreams:
        backbone._closables.extend(d.close for d in downstreams.values())
    return backbone


def _assertion(event: Any) -> Any:
    from shared.backbone.writeback import clinical_assertion

    return clinical_assertion(event)


def _is_final(exc: BaseException) -> bool:
    from shared.backbone.errors import is_final_failure

    return is_final_failure(exc)


def default_downstreams(
    settings: Settings,
    fhir: FhirRepository,
    *,
    fhir_is_platform_store: bool = True,
    mllp_connect_timeout: float | None = None,
    credentials: CredentialBroker | None = None,
) -> dict[str, Downstream]:
    """The production downstreams: FHIR (``fhir``) and HL7 v2 over MLLP (sender only when configured;
    ``credentials``: the registry ``TIE_WRITEBACK_HL7_DOWNSTREAM`` names an entry of)."""
    sender = hl7_sender(
        settings,
        credentials,
        connect_timeout=mllp_connect_timeout or min(5.0, settings.writeback_timeout_seconds),
    )
    return {
        SUB_WRITEBACK_FHIR: FhirDownstream(fhir, origin_store=fhir_is_platform_store),
        SUB_WRITEBACK_HL7V2: Hl7MllpDownstream(
            sender, ack_timeout=settings.writeback_timeout_seconds, profile=hl7_profile(settings)
        ),
    }


def hl7_sender(
    settings: Settings, credentials: CredentialBroker | None, *, connect_timeout: float
) -> MllpSender | None:
    """The HL7 v2 write-back's MLLP sender, ``None`` when no address is configured.

    ``TIE_WRITEBACK_HL7_DOWNSTREAM`` names a registry entry (transport ``mllp``): its endpoint for this
    environment (``TIE_WRITEBACK_MLLP_HOST`` / ``_PORT`` override it) and, when it names a credential or a
    trust CA or its endpoint is ``mllps://``, TLS from the registry - client certificate, server CA,
    rotation, each send audited (docs/credentials.md). Without it: ``TIE_WRITEBACK_MLLP_*``, plain TCP."""
    name = settings.writeback_hl7_downstream
    if name is None:
        if not settings.writeback_mllp_host:
            return None
        return MllpSender(
            settings.writeback_mllp_host, settings.writeback_mllp_port, connect_timeout=connect_timeout
        )
    if credentials is None:
        raise ConfigurationError("TIE_WRITEBACK_HL7_DOWNSTREAM needs the downstream registry")
    entry = credentials.registry.get(name)
    if entry.transport != "mllp":
        raise ConfigurationError(f"downstream {name} is not an MLLP downstream ({entry.transport})")
    endpoint = credentials.endpoint(name)
    scheme, host, port = _mllp_endpoint(endpoint) if endpoint else ("", None, None)
    if settings.writeback_mllp_host:
        host, port = settings.writeback_mllp_host, settings.writeback_mllp_port
    if host is None or port is None:
        raise ConfigurationError(f"downstream {name} has no endpoint for {credentials.environment}")
    wants_tls = entry.credential is not None or entry.trust is not None
    if scheme == "mllp" and wants_tls:
        raise ConfigurationError(f"downstream {name} names a certificate but its endpoint is mllp://")
    tls = credentials.client_tls(name) if wants_tls or scheme == "mllps" else None
    return MllpSender(host, port, connect_timeout=connect_timeout, tls=tls)


def _mllp_endpoint(url: str) -> tuple[str, str, int]:
    """``mllp[s]://host:port`` -> (scheme, host, port) (the registry has checked the scheme)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.port is None:
        raise ConfigurationError("an MLLP endpoint needs a host and a port (mllps://host:port)")
    return parts.scheme, parts.hostname, parts.port


def hl7_profile(settings: Settings) -> OutboundProfile:
    """The HL7 v2 downstream's profile: TIE_WRITEBACK_HL7_PROFILE_FILE (else the default), with MSH-5/6
    from TIE_WRITEBACK_HL7_RECEIVING_APPLICATION / _FACILITY where the profile leaves them empty."""
    profile = load_profile(settings.writeback_hl7_profile_file)
    return dataclasses.replace(
        profile,
        receiving_application=profile.receiving_application or settings.writeback_hl7_receiving_application,
        receiving_facility=profile.receiving_facility or settings.writeback_hl7_receiving_facility,
    )
