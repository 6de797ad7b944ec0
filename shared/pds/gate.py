"""The identity gate: a write-back downstream wrapper that verifies the patient against PDS first.

For a demographic or admission event whose NHS number is absent or not verified (NSTS not ``01``), the
gate resolves the identity (:class:`~shared.pds.trace.IdentityResolver`) before the downstream sees the
event. A match writes the event with the PDS number (a superseded number replaced by the current one) and
status ``01``; a restricted (sensitive) patient additionally loses address, telecom and GP before any
downstream sees it. Anything else - several matches, ``TOO_MANY_MATCHES``, no match, PDS still unavailable
after the client's retries - holds the event on the review queue and skips the write (journaled as
``skipped`` with the reason), so no unverified identity is written downstream. The journal records
``identity-verified`` with the step that matched: the PDS lineage of the enrichment (no identifiers).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from shared.backbone.writeback import Downstream, DownstreamResponse
from shared.canonical.identity import event_digest
from shared.canonical.model import ClinicalEvent, EventKind, NhsNumber, Patient, Sensitivity
from shared.journal import Journal
from shared.pds.errors import PdsRejected, PdsResponseInvalid, PdsUnavailable
from shared.pds.model import PdsPatient, TraceOutcome, TraceQuery
from shared.pds.review import ReviewQueue
from shared.pds.trace import IdentityResolver

_log = logging.getLogger("tie.pds.gate")

#: Event kinds whose identity is verified before write-back (demographic and admission events).
GATED_KINDS = frozenset(
    {
        EventKind.ADMISSION,
        EventKind.PRE_ADMISSION,
        EventKind.REGISTRATION,
        EventKind.PATIENT_CREATED,
        EventKind.PATIENT_UPDATED,
    }
)
VERIFIED = "01"
_RESTRICTED_CLEARABLE = frozenset({"addresses", "telecom", "general_practitioner", "registered_gp"})
IDENTITY_VERIFIED = "identity-verified"
IDENTITY_REVIEW = "identity-review"


def needs_trace(patient: Patient) -> bool:
    return patient.nhs_number is None or patient.nhs_number.verification_status != VERIFIED


def trace_query(patient: Patient) -> TraceQuery:
    """The demographics to trace with (the usual/official name first; postcode of a home address)."""
    names = sorted(patient.names, key=lambda n: 0 if n.use in ("usual", "official", None) else 1)
    name = names[0] if names else None
    birth = patient.birth_date
    birth_date = (
        f"{birth.year:04d}-{birth.month:02d}-{birth.day:02d}"
        if birth is not None and birth.month is not None and birth.day is not None
        else None
    )
    gender = patient.gender if isinstance(patient.gender, str) else None
    postcode = next((a.postal_code for a in patient.addresses if a.postal_code and a.use != "old"), None)
    return TraceQuery(
        family=name.family if name else None,
        given=name.given[0] if name and name.given else None,
        birth_date=birth_date,
        gender=gender if gender in ("male", "female", "other", "unknown") else None,
        postcode=postcode,
    )


def enrich(patient: Patient, pds: PdsPatient) -> Patient:
    """``patient`` with the verified PDS number; restricted fields removed for a restricted record."""
    update: dict[str, object] = {"nhs_number": NhsNumber(value=pds.nhs_number, verification_status=VERIFIED)}
    if pds.restricted:
        update.update(
            sensitivity=Sensitivity.RESTRICTED,
            addresses=(),
            telecom=(),
            general_practitioner=None,
            registered_gp=None,
            cleared=tuple(c for c in patient.cleared if c not in _RESTRICTED_CLEARABLE),
            defaulted=tuple(d for d in patient.defaulted if d != "sensitivity"),
        )
    return patient.model_copy(update=update)


class IdentityGate:
    """:class:`~shared.backbone.writeback.Downstream` that verifies identity, then delegates to ``inner``."""

    def __init__(
        self,
        inner: Downstream,
        resolver: IdentityResolver,
        review: ReviewQueue,
        journal: Journal,
        *,
        subscription: str,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self._resolver = resolver
        self._review = review
        self._journal = journal
        self._subscription = subscription
        self._lock = threading.Lock()
        #: Events resolved in skip_reason, for apply (the subscriber calls both with the same object).
        self._resolved: OrderedDict[tuple[str, str], ClinicalEvent] = OrderedDict()

    def skip_reason(self, event: ClinicalEvent) -> str | None:
        reason = self.inner.skip_reason(event)
        if reason is not None or event.kind not in GATED_KINDS:
            return reason
        if not needs_trace(event.patient):
            return None
        corr = event.provenance.correlation_id or event.key.value
        number = event.patient.nhs_number.value if event.patient.nhs_number else None
        if number and event.kind is EventKind.PATIENT_UPDATED:
            self._resolver.invalidate(number)  # a demographic update: never answer it from the cache
        try:
            outcome = self._resolver.resolve(number, trace_query(event.patient), correlation_id=corr)
        except PdsUnavailable:
            step = "retrieve" if number else "trace"
            outcome = TraceOutcome("needs-review", None, (step,), reason="pds-unavailable")
        except (PdsRejected, PdsResponseInvalid) as exc:
            outcome = TraceOutcome("needs-review", None, (), reason=exc.code)
        if outcome.status != "matched" or outcome.patient is None:
            item = self._review.hold(event, outcome, subscription=self._subscription)
            self._journal.record(
                corr,
                IDENTITY_REVIEW,
                subscriber=self._subscription,
                reason=outcome.reason,
                tried=",".join(outcome.tried),
                review_item=item,
            )
            _log.warning(
                "identity held for review",
                extra={"correlation_id": corr, "status": outcome.reason, "subscriber": self._subscription},
            )
            return f"identity-review:{outcome.reason}"
        pds = outcome.patient
        self._journal.record(
            corr,
            IDENTITY_VERIFIED,
            subscriber=self._subscription,
            source="pds",
            step=outcome.tried[-1],
            superseded=pds.superseded_from is not None,
            restricted=pds.restricted,
        )
        enriched = event.model_copy(update={"patient": enrich(event.patient, pds)})
        with self._lock:
            # Keyed on the event's identity and clinical content (value, not object identity): the same
            # version of an event gets the same verified patient.
            self._resolved[(str(event.key), event_digest(event))] = enriched
            while len(self._resolved) > 256:
                self._resolved.popitem(last=False)
        return None

    def apply(self, event: ClinicalEvent) -> DownstreamResponse:
        with self._lock:
            held = self._resolved.get((str(event.key), event_digest(event)))
        if held is not None:
            return self.inner.apply(held)
        if event.kind in GATED_KINDS and needs_trace(event.patient):
            # Never write an unverified identity: a call without skip_reason first is a wiring error.
            raise PdsRejected(0, "IDENTITY_NOT_VERIFIED")
        return self.inner.apply(event)

    def close(self) -> None:
        self.inner.close()
