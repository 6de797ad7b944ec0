"""Exceptions of the event backbone, and the transient-vs-permanent taxonomy of write-back failures.

Every type derives from exactly one of :class:`~shared.errors.PermanentError` /
:class:`~shared.errors.TransientError` (plus the :class:`BackboneError` marker). What a subscriber does
with each failure of a downstream call:

===============================  ==========  =====================================================  =======
failure                          class       what happens                                           breaker
===============================  ==========  =====================================================  =======
connect refused / reset, ACK or  transient   retried in-call with exponential backoff + jitter;     counts
read timeout, HTTP 5xx / 429     (Unavail.)  then abandoned (redelivered) - or parked once the
                                             circuit opens
HL7 ``AE`` / ``CE``, HTTP 409 /  transient   retried in-call, then abandoned: the downstream        no
412 (a concurrent writer)        (Retry)     answered, it is up
HL7 ``AR`` / ``CR``, HTTP 4xx    permanent   stored as the key's final outcome (idempotency) and    no
(invalid resource, multiple      (Rejected)  dead-lettered at once with its code (settlement.py);
matches), unmappable event                   a redelivery is answered from the store; a replay re-runs
payload conflict (same key,      permanent   dead-letter + ``writeback.conflict`` platform event    no
different clinical assertion)
===============================  ==========  =====================================================  =======

Exception text carries codes, statuses and downstream names, never message content.
"""

from __future__ import annotations

from shared.errors import PermanentError, TransientError


class BackboneError(Exception):
    """Marker mixin for every backbone error."""


class ContractViolation(BackboneError, PermanentError):
    """An event does not satisfy its topic's JSON Schema (on publish or on consume).

    ``path`` is the JSON path of the failing element and ``keyword`` the schema keyword that failed
    (``pattern``, ``required``...); the offending *value* is never included.
    """

    code = "contract-violation"

    def __init__(self, topic: str, *, path: str, keyword: str, reason: str = "") -> None:
        self.topic = topic
        self.path = path
        self.keyword = keyword
        detail = f" ({reason})" if reason else ""
        super().__init__(f"event for topic {topic} violates its schema at {path}: {keyword}{detail}")


class DownstreamError(BackboneError):
    """Marker mixin for failures of a write-back downstream. ``response`` is what the downstream said
    (an HTTP status or an HL7 acknowledgment code), or ``None`` when it said nothing."""

    downstream: str = ""
    response: str | None = None
    #: What the downstream reported beside its answer, as codes and positions only (HL7 ``ERR 103 at
    #: PID-8``): journaled with the failure. Never the receiver's free text (it may quote patient data).
    detail: str | None = None

    def _init(self, downstream: str, response: str | None, text: str, detail: str | None = None) -> None:
        self.downstream = downstream
        self.response = response
        self.detail = detail
        Exception.__init__(self, f"downstream {downstream}: {text}")


class DownstreamUnavailable(DownstreamError, TransientError):
    """The downstream could not be reached or did not answer in time (connection failure, timeout, HTTP
    5xx / 429). Retried; counts as a failure for the downstream's circuit breaker."""

    code = "downstream-unavailable"

    def __init__(
        self, downstream: str, text: str, *, response: str | None = None, detail: str | None = None
    ) -> None:
        self._init(downstream, response, text, detail)


class DownstreamRetry(DownstreamError, TransientError):
    """The downstream answered but asked for a retry (HL7 ``AE``, a write conflict). Retried; not a
    breaker failure: the downstream is up."""

    code = "downstream-retry"

    def __init__(
        self, downstream: str, text: str, *, response: str | None = None, detail: str | None = None
    ) -> None:
        self._init(downstream, response, text, detail)


class DownstreamRejected(DownstreamError, PermanentError):
    """The downstream refused the update for good (HL7 ``AR``, HTTP 4xx). Stored as the event's final
    outcome, dead-lettered; only a replay (after a fix) tries again."""

    code = "downstream-rejected"

    def __init__(
        self, downstream: str, text: str, *, response: str | None = None, detail: str | None = None
    ) -> None:
        self._init(downstream, response, text, detail)


class WriteBackUnmappable(DownstreamError, PermanentError):
    """The event cannot be expressed for this downstream (the outbound mapping refused it)."""

    code = "writeback-unmappable"

    def __init__(self, downstream: str, text: str, *, detail: str | None = None) -> None:
        self._init(downstream, None, text, detail)


class EventConflict(PermanentError):
    """Two contents that cannot both be true for one identity (one issuer's visit or order number for two
    patients): never applied; stored as the version's outcome, dead-lettered with this reason, announced."""

    code = "event-conflict"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def counts_against_breaker(exc: BaseException) -> bool:
    """Whether ``exc`` says the downstream is down (as opposed to answering with an error)."""
    return isinstance(exc, DownstreamUnavailable)


def is_final_failure(exc: BaseException) -> bool:
    """Failures the idempotency guard stores as the key's outcome (see the module table)."""
    return isinstance(exc, DownstreamRejected | WriteBackUnmappable | EventConflict)
