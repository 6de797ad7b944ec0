"""The event backbone: topic contracts, write-back subscribers, circuit breaking and parking, dead letters.

Modules (import them directly; this package imports nothing):

* :mod:`~shared.backbone.clinical` - the clinical-event envelope on ``clinical-events`` (build and read).
* :mod:`~shared.backbone.contracts` - versioned CloudEvents envelope, JSON Schemas (``schemas/``),
  validation on publish and consume, operational / platform event builders.
* :mod:`~shared.backbone.platform` - platform events published on the bus (the certificate alerts port).
* :mod:`~shared.backbone.errors` - the transient-vs-permanent taxonomy of write-back failures.
* :mod:`~shared.backbone.retry` - exponential backoff with full jitter, the in-delivery retry policy.
* :mod:`~shared.backbone.breaker` - a per-downstream circuit breaker shared through the record store.
* :mod:`~shared.backbone.parking` - work parked while a downstream is down, released in order.
* :mod:`~shared.backbone.writeback` - the write-back subscriber core (idempotency, journal, parking).
* :mod:`~shared.backbone.fhir_writeback` / :mod:`~shared.backbone.hl7_writeback` - the two downstreams.
* :mod:`~shared.backbone.deadletter` - dead-letter monitor and the ``tie dlq`` operations.
* :mod:`~shared.backbone.runtime` - builds all of it from the container and settings.
"""
