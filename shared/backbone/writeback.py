"""Write-back subscribers: apply clinical events to downstream systems, each effect exactly once.

A :class:`WriteBackSubscriber` consumes one subscription of ``clinical-events`` (one per downstream:
``writeback-fhir``, ``writeback-hl7v2``) and, per delivery::

    decode + validate the envelope (contract)          -> permanent failure: dead-letter path
    journal "delivered"
    downstream not interested (kind not written back)  -> journal "skipped", done
    an earlier event of this patient is parked         -> park behind it (per-patient order), done
    circuit open                                       -> park, done (no delivery attempt used)
    idempotency guard (key = clinical-event key)       -> run the downstream call at most once
        transient failure  -> retry in the delivery (exponential backoff + full jitter), up to
                              RetryPolicy.max_attempts; "unavailable" failures feed the breaker, and
                              once the circuit opens the delivery is parked instead of failed
        permanent failure  -> stored as the key's outcome (HL7 AR, HTTP 4xx, unmappable), re-raised:
                              the bus dead-letters the message after max delivery count; a replay
                              (tagged tie_replay_count) runs it again
        payload conflict   -> same key, different clinical assertion: raised (correction workflow /
                              dead-letter) and a writeback.conflict platform event
        success            -> journal "written-back" with the downstream response, and a
                              writeback.completed operational event committed through the outbox in the
                              same write that marks the key COMPLETED
        already completed  -> journal "duplicate": no second effect

Returning normally means "complete the message"; raising means "abandon it" (the trigger adapter's
contract - the Functions host and the local host both settle that way).

What "the same event" means for the guard (payload validation): :func:`clinical_assertion` - the kind,
key, patient key and the clinical statement the event makes (encounter status and class, report and
result statuses, codes and values, order status), *not* provenance, source system, timestamps of
receipt or descriptive detail one format carries and the other does not. So an HL7 ADT^A01 and a FHIR
Encounter create of the same admission are one effect, while a corrected result under the same key is
a conflict that a human must see.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from shared.audit.payloads import OUTBOUND, REPLY
from shared.audit.trail import AuditTrail
from shared.backbone import clinical, contracts
from shared.backbone.breaker import BreakerState, CircuitBreaker, Permit, Transition
from shared.backbone.delivery import Delivery
from shared.backbone.errors import ContractViolation, DownstreamError, EventConflict, counts_against_breaker
from shared.backbone.ledger import EventLedger, Verdict
from shared.backbone.parking import ParkingLot
from shared.backbone.retry import RetryPolicy
from shared.canonical.identity import content_digest, patient_session_id
from shared.canonical.model import ClinicalEvent, Coded, Concept
from shared.errors import PermanentError, TieError, TransientError
from shared.idempotency import (
    IdempotencyGuard,
    IdempotencyPayloadConflict,
    IdempotencyStoredFailure,
    Outcome,
    WithMessages,
)
from shared.journal import (
    CONFLICT,
    DELIVERED,
    DUPLICATE,
    FAILED,
    PARKED,
    RETRIED,
    SKIPPED,
    SUPERSEDED,
    WRITTEN_BACK,
    Journal,
)
from shared.messaging.ports import MessageBus
from shared.messaging.topology import TOPIC_OPERATIONAL, TOPIC_PLATFORM
from shared.outbox import OutboxMessage

_log = logging.getLogger("tie.backbone.writeback")

Scalar = str | int | float | bool | None


def _sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


@dataclass(frozen=True, slots=True)
class DownstreamResponse:
    """What the downstream answered (identifiers and codes only: journaled and stored)."""

    #: HTTP status (``"201"``, ``"200"``) or HL7 acknowledgment code (``"AA"``).
    status: str
    #: One short line for the journal, e.g. ``"Encounter/<id>/_history/1 created; 2 unchanged"``.
    summary: str
    details: Mapping[str, Scalar] = field(default_factory=dict)
    #: SHA-256 of the payload sent (for the audit record; no content).
    payload_sha256: str | None = None
    #: SHA-256 of the downstream's answer (ACK message, response Bundle), when it hands it over.
    reply_sha256: str | None = None
    #: The bodies themselves, for the audit payload store only (never journaled or stored with the result).
    payload: bytes | None = field(default=None, compare=False, repr=False)
    reply: bytes | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = {"status": self.status, "summary": self.summary, "details": dict(self.details)}
        payload_sha256 = self.payload_sha256 or _sha256(self.payload)
        if payload_sha256:
            out["payload_sha256"] = payload_sha256
        reply_sha256 = self.reply_sha256 or _sha256(self.reply)
        if reply_sha256:
            out["reply_sha256"] = reply_sha256
        return out

    @classmethod
    def from_json(cls, data: Any) -> DownstreamResponse:
        if not isinstance(data, dict):
            return cls(status="", summary="")
        return cls(
            status=str(data.get("status", "")),
            summary=str(data.get("summary", "")),
            details=dict(data.get("details") or {}),
            payload_sha256=str(data["payload_sha256"]) if data.get("payload_sha256") else None,
            reply_sha256=str(data["reply_sha256"]) if data.get("reply_sha256") else None,
        )


class Downstream(Protocol):
    """A system clinical events are written back to."""

    #: Short name: ``fhir``, ``hl7v2`` (journal, breaker, parking partition, idempotency namespace).
    name: str

    def skip_reason(self, event: ClinicalEvent) -> str | None:
        """``None`` if this downstream takes ``event``; else why not (journaled as "skipped")."""
        ...

    def apply(self, event: ClinicalEvent) -> DownstreamResponse:
        """Apply the event. Raises :mod:`shared.backbone.errors` types (transient / permanent)."""
        ...

    def close(self) -> None: ...


_V2_TABLES = "http://terminology.hl7.org/CodeSystem/v2-"


def _coded(code: Coded | None) -> str | None:
    """One token per concept, the same whichever format it came in: an HL7 v2 field carries its v2 table
    code *and* the translated standard code, a FHIR write only the standard one - so the standard coding
    wins when there is one (the smallest, for determinism), else the smallest of the rest."""
    if isinstance(code, Concept) and code.codings:
        tokens = [f"{c.system or ''}|{c.code}" for c in code.codings]
        standard = [t for t in tokens if not t.startswith(_V2_TABLES)]
        return min(standard or tokens)
    if code is None:
        return None
    return code.model_dump_json()


def clinical_assertion(event: Any) -> dict[str, Any]:
    """The part of an event that must match for a repeat of its key to count as the same event (see the
    module docstring). Used as the idempotency guard's ``payload_validation``."""
    assert isinstance(event, ClinicalEvent)
    assertion: dict[str, Any] = {
        "kind": event.kind.value,
        "key": event.key.value,
        "patient": patient_session_id(event.patient),
        "cancels": event.cancels.value if event.cancels else None,
    }
    if event.encounter is not None:
        assertion["encounter"] = [event.encounter.status.value, _coded(event.encounter.encounter_class)]
    if event.reports:
        assertion["reports"] = [
            [
                report.status,
                _coded(report.code),
                [
                    [
                        _coded(result.code),
                        result.status,
                        None if result.value is None else _value(result.value),
                    ]
                    for result in report.results
                ],
            ]
            for report in event.reports
        ]
    if event.orders:
        assertion["orders"] = [[order.status, _coded(order.code)] for order in event.orders]
    return assertion


def _value(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", exclude_defaults=True) if callable(dump) else str(value)


@dataclass(frozen=True, slots=True)
class HandleResult:
    status: Literal["applied", "duplicate", "superseded", "parked", "skipped"]
    response: DownstreamResponse | None = None
    attempts: int = 0
    reason: str | None = None


def _short_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


class WriteBackSubscriber:
    """The subscriber of one write-back subscription (see the module docstring). Thread-safe.

    ``guard=None`` and ``ledger=None`` run the downstream without idempotency (benchmarks only: duplicates
    then reach the downstream). ``operational_events`` publishes ``writeback.*`` events on
    ``operational-events``.
    """

    def __init__(
        self,
        *,
        downstream: Downstream,
        subscription: str,
        journal: Journal,
        bus: MessageBus,
        guard: IdempotencyGuard | None,
        ledger: EventLedger | None,
        breaker: CircuitBreaker,
        parking: ParkingLot,
        policy: RetryPolicy | None = None,
        operational_events: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        #: Where each send to the downstream is audited (``None``: not audited; see docs/audit.md).
        self.audit = audit
        self.downstream = downstream
        self.subscription = subscription
        self.journal = journal
        self.bus = bus
        self.guard = guard
        self.ledger = ledger
        self.breaker = breaker
        self.parking = parking
        self.policy = policy or RetryPolicy()
        self.operational_events = operational_events
        self._sleep = sleep
        self._rng = rng or random.Random()

    # -- the delivery ------------------------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> HandleResult:
        corr = delivery.correlation
        try:
            envelope, event = clinical.decode(delivery.body)
        except ContractViolation as exc:
            self._failed(corr, delivery, exc)
            raise
        except ValidationError:
            violation = ContractViolation(
                delivery.topic, path="$.data", keyword="canonical-model", reason="not a valid ClinicalEvent"
            )
            self._failed(corr, delivery, violation)
            raise violation from None
        key = event.key.value
        digest = content_digest(envelope["data"])
        version = str(envelope["id"])
        self.journal.record(
            corr,
            DELIVERED,
            subscriber=self.subscription,
            message_id=delivery.message_id,
            delivery_count=delivery.delivery_count,
            event_key=key,
            replay=delivery.is_replay,
            released=delivery.parked_row is not None,
        )
        reason = self.downstream.skip_reason(event)
        if reason is not None:
            self._forget(delivery)
            self.journal.record(corr, SKIPPED, subscriber=self.subscription, reason=reason)
            return HandleResult("skipped", reason=reason)
        if self.parking.blocker(delivery) is not None:
            return self._park(delivery, key, "behind-parked")
        if self.breaker.permit() is Permit.PARK:
            return self._park(delivery, key, "circuit-open")

        attempt = 0
        while True:
            attempt += 1
            try:
                outcome = self._run(event, delivery, digest, version)
            except IdempotencyPayloadConflict as exc:
                self._forget(delivery)
                self._failed(corr, delivery, exc, classification=exc.classification)
                self._platform_conflict(delivery, key, exc)
                raise
            except TransientError as exc:
                if counts_against_breaker(exc):
                    transition = self.breaker.record_failure(exc.code)
                    self._announce(transition, corr)
                    if transition is not None or self.breaker.snapshot().state is not BreakerState.CLOSED:
                        return self._park(delivery, key, "circuit-open", error_code=exc.code)
                elif isinstance(exc, DownstreamError) and exc.response is not None:
                    self._announce(self.breaker.record_success(), corr)  # it answered (AE, 409): it is up
                if attempt >= self.policy.max_attempts:
                    self._failed(corr, delivery, exc, attempts=attempt)
                    self._audit(delivery, envelope, key, digest, None, attempt, exc)
                    raise
                delay = self.policy.backoff.delay(attempt, self._rng)
                self.journal.record(
                    corr,
                    RETRIED,
                    subscriber=self.subscription,
                    attempt=attempt,
                    error_code=exc.code,
                    response=_response_code(exc),
                    detail=_detail(exc),
                    backoff_ms=round(delay * 1000),
                )
                self._sleep(delay)
                continue
            except PermanentError as exc:
                if isinstance(exc, DownstreamError) and exc.response is not None:
                    self._announce(self.breaker.record_success(), corr)  # it answered: it is up
                self._forget(delivery)
                if isinstance(exc, EventConflict):
                    self.journal.record(
                        corr,
                        CONFLICT,
                        subscriber=self.subscription,
                        event_key=key,
                        digest=digest[:16],
                        reason=exc.reason,
                    )
                    self._platform_event_conflict(delivery, key, digest, exc)
                self._failed(corr, delivery, exc, attempts=attempt, final=True)
                self._operational_failed(delivery, key, exc)
                self._audit(delivery, envelope, key, digest, None, attempt, exc)
                raise
            except Exception as exc:
                self._failed(corr, delivery, exc, attempts=attempt)
                raise
            break

        self._announce(self.breaker.record_success(), corr)
        self._forget(delivery)
        response = DownstreamResponse.from_json(outcome.result)
        stored = outcome.result if isinstance(outcome.result, dict) else {}
        decision = str(stored.get("ledger") or "apply")
        if outcome.replayed_from_store and decision == "apply":
            self.journal.record(
                corr,
                DUPLICATE,
                subscriber=self.subscription,
                event_key=key,
                digest=digest[:16],
                reason="redelivery of a message already applied",
                replay=delivery.is_replay,
                first_applied_by_replay=outcome.applied_by_replay,
            )
            return HandleResult("duplicate", response, attempt)
        if decision in ("duplicate", "superseded"):
            original = stored.get("original_correlation_id")
            self.journal.record(
                corr,
                DUPLICATE if decision == "duplicate" else SUPERSEDED,
                subscriber=self.subscription,
                event_key=key,
                digest=digest[:16],
                original_correlation_id=str(original) if original else None,
                reason=str(stored.get("reason") or ""),
                replay=delivery.is_replay,
            )
            return HandleResult("duplicate" if decision == "duplicate" else "superseded", None, attempt)
        self.journal.record(
            corr,
            WRITTEN_BACK,
            subscriber=self.subscription,
            downstream=self.downstream.name,
            status=response.status,
            response=response.summary[:500],
            attempts=attempt,
            replay=delivery.is_replay,
            event_key=key,
            digest=digest[:16],
        )
        self._audit(delivery, envelope, key, digest, response, attempt, None)
        return HandleResult("applied", response, attempt)

    # -- pieces --------------------------------------------------------------------------------------------

    def _audit(
        self,
        delivery: Delivery,
        envelope: Mapping[str, Any],
        key: str,
        digest: str,
        response: DownstreamResponse | None,
        attempts: int,
        exc: BaseException | None,
    ) -> None:
        """Audit one send to the downstream: applied (``response``) or finally failed (``exc``)."""
        if self.audit is None or isinstance(exc, (IdempotencyStoredFailure, EventConflict)):
            return  # answered from our own stores: nothing was sent
        payload = response.payload_sha256 if response is not None else None
        code = getattr(exc, "code", type(exc).__name__) if exc is not None else None
        self.audit.written_back(
            correlation_id=delivery.correlation,
            subscription=self.subscription,
            downstream=self.downstream.name,
            event_key=key,
            patient=str(envelope.get("tiepatientkey") or "") or None,
            event_digest=digest,
            payload_digest=str(payload) if payload else None,
            reply_digest=response.reply_sha256 if response is not None else None,
            status=response.status if response is not None else str((exc and _response_code(exc)) or ""),
            attempts=attempts,
            error_code=str(code) if code is not None else None,
        )

    def _keep_bodies(self, response: DownstreamResponse) -> None:
        """The payload sent and the reply into the audit payload store, as soon as the downstream answered
        (the record naming their digests follows; the result stored for redeliveries holds digests only)."""
        if self.audit is not None:
            self.audit.keep(OUTBOUND, response.payload)
            self.audit.keep(REPLY, response.reply)

    def _decide_and_apply(
        self, event: ClinicalEvent, delivery: Delivery, digest: str
    ) -> tuple[dict[str, Any], DownstreamResponse | None]:
        """The ledger's verdict, and the downstream call when it says ``apply`` (run inside the guard, so a
        redelivery gets the stored verdict). Raises :class:`EventConflict` for a conflict."""
        corr = delivery.correlation
        if self.ledger is None:  # unprotected (benchmarks)
            unprotected = self.downstream.apply(event)
            self._keep_bodies(unprotected)
            return unprotected.to_json(), unprotected
        verdict = self.ledger.judge(event, digest, corr)
        if verdict.decision == "conflict":
            raise EventConflict(verdict.reason)
        if verdict.decision != "apply":
            return _verdict_result(verdict), None
        response = self.downstream.apply(event)
        self._keep_bodies(response)
        self.ledger.applied(event, digest, corr)
        return {**response.to_json(), "ledger": "apply", "reason": verdict.reason}, response

    def _run(self, event: ClinicalEvent, delivery: Delivery, digest: str, version: str) -> Outcome[Any]:
        """Run the verdict + effect once per version (``version``: the event key, its digest and the
        message that carried it - a redelivery of the same message is answered from the store)."""
        key = event.key.value
        if self.guard is None:  # unprotected (benchmarks): no idempotency, so no outbox either
            result, response = self._decide_and_apply(event, delivery, digest)
            if response is not None and self.operational_events:
                self._publish(TOPIC_OPERATIONAL, self._completed_notice(key, version, response, delivery))
            return Outcome(result, False, "", delivery.is_replay, False, False, 1)
        if not self.operational_events:
            return self.guard.run(
                version,
                event,
                lambda: self._decide_and_apply(event, delivery, digest)[0],
                is_replay=delivery.is_replay,
            )

        def effect() -> WithMessages[dict[str, Any]]:
            result, response = self._decide_and_apply(event, delivery, digest)
            if response is None:
                return WithMessages(result, ())
            notice = self._completed_notice(key, version, response, delivery)
            message = contracts.to_outbound(TOPIC_OPERATIONAL, notice)
            return WithMessages(result, (OutboxMessage(TOPIC_OPERATIONAL, message),))

        return self.guard.run_and_publish(version, event, effect, is_replay=delivery.is_replay)

    def _completed_notice(
        self, key: str, version: str, response: DownstreamResponse, delivery: Delivery
    ) -> dict[str, Any]:
        return contracts.operational_event(
            "writeback.completed",
            event_id=f"wb-{self.downstream.name}-{_short_id(version)}",
            downstream=self.downstream.name,
            subscription=self.subscription,
            status=response.status,
            correlation_id=delivery.correlation,
            event_key=key,
            details={"summary": response.summary[:500], "replay": delivery.is_replay},
        )

    def _park(
        self, delivery: Delivery, key: str, reason: str, *, error_code: str | None = None
    ) -> HandleResult:
        item = self.parking.park(delivery, reason=reason)
        self.journal.record(
            delivery.correlation,
            PARKED,
            subscriber=self.subscription,
            downstream=self.downstream.name,
            reason=reason,
            error_code=error_code,
        )
        if self.operational_events:
            notice = contracts.operational_event(
                "writeback.parked",
                event_id=f"wbp-{self.downstream.name}-{_short_id(item.row_key, str(item.releases))}",
                downstream=self.downstream.name,
                subscription=self.subscription,
                status=reason,
                correlation_id=delivery.correlation,
                event_key=key,
            )
            self._publish(TOPIC_OPERATIONAL, notice)
        return HandleResult("parked", reason=reason)

    def _forget(self, delivery: Delivery) -> None:
        row = delivery.parked_row
        if row is not None:
            self.parking.forget(row)

    def _failed(
        self,
        corr: str,
        delivery: Delivery,
        exc: BaseException,
        *,
        attempts: int | None = None,
        final: bool = False,
        classification: str | None = None,
    ) -> None:
        code = getattr(exc, "code", None)
        self.journal.record(
            corr,
            FAILED,
            subscriber=self.subscription,
            message_id=delivery.message_id,
            delivery_count=delivery.delivery_count,
            error_code=code if isinstance(code, str) else type(exc).__name__,
            response=_response_code(exc),
            attempts=attempts,
            final=final,
            classification=classification,
            # A redelivery answered with a stored failure: what the stored failure was.
            cause=exc.error_code if isinstance(exc, IdempotencyStoredFailure) else None,
            detail=_detail(exc),
        )

    def _operational_failed(self, delivery: Delivery, key: str, exc: TieError) -> None:
        if not self.operational_events:
            return
        notice = contracts.operational_event(
            "writeback.failed",
            event_id=f"wbf-{self.downstream.name}-{_short_id(key, delivery.message_id)}",
            downstream=self.downstream.name,
            subscription=self.subscription,
            status=exc.code,
            correlation_id=delivery.correlation,
            event_key=key,
            details={"response": _response_code(exc)},
        )
        self._publish(TOPIC_OPERATIONAL, notice)

    def _platform_conflict(self, delivery: Delivery, key: str, exc: IdempotencyPayloadConflict) -> None:
        self._conflict_notice(
            delivery,
            key,
            exc.received_payload_hash,
            "warning",
            classification=exc.classification,
            stored_payload_hash=exc.stored_payload_hash[:16],
        )

    def _platform_event_conflict(self, delivery: Delivery, key: str, digest: str, exc: EventConflict) -> None:
        self._conflict_notice(
            delivery, key, digest, "error", classification="natural-id-conflict", reason=exc.reason
        )

    def _conflict_notice(
        self,
        delivery: Delivery,
        key: str,
        received: str,
        severity: Literal["warning", "error"],
        **details: str,
    ) -> None:
        notice = contracts.platform_event(
            "writeback.conflict",
            event_id=f"conflict-{self.downstream.name}-{_short_id(key, received)}",
            subject=f"writeback/{self.downstream.name}",
            severity=severity,
            correlation_id=delivery.correlation,
            event_key=key,
            details={"subscription": self.subscription, **details, "received_payload_hash": received[:16]},
        )
        self._publish(TOPIC_PLATFORM, notice)

    def _announce(self, transition: Transition | None, corr: str) -> None:
        if transition is None:
            return
        snapshot = transition.snapshot
        opened = snapshot.state is BreakerState.OPEN
        stamp = snapshot.opened_at.isoformat() if snapshot.opened_at else "closed"
        notice = contracts.platform_event(
            "circuit.opened" if opened else "circuit.closed",
            event_id=f"circuit-{self.downstream.name}-{_short_id(stamp, str(snapshot.trips), str(opened))}",
            subject=f"writeback/{self.downstream.name}",
            severity="error" if opened else "info",
            correlation_id=corr,
            details={
                "downstream": self.downstream.name,
                "failures": snapshot.failures,
                "cooldown_s": snapshot.cooldown_s,
                "error_code": snapshot.last_error,
                "open_until": snapshot.open_until.isoformat() if snapshot.open_until else None,
            },
        )
        self._publish(TOPIC_PLATFORM, notice)

    def _publish(self, topic: str, document: dict[str, Any]) -> None:
        """Best-effort notification (the journal is the record of truth): never fails the delivery."""
        try:
            self.bus.publish(topic, [contracts.to_outbound(topic, document)])
        except TieError as exc:
            _log.warning("notification not published", extra={"topic": topic, "error_code": exc.code})


def _verdict_result(verdict: Verdict) -> dict[str, Any]:
    return {
        "status": "",
        "summary": verdict.reason,
        "details": {},
        "ledger": verdict.decision,
        "reason": verdict.reason,
        "original_correlation_id": verdict.original_correlation_id,
    }


def _response_code(exc: BaseException) -> str | None:
    return exc.response if isinstance(exc, DownstreamError) else None


def _detail(exc: BaseException) -> str | None:
    """The downstream's error codes and positions (``ERR 103 at PID-8``), or the field a mapping refused."""
    return exc.detail if isinstance(exc, DownstreamError) else None
