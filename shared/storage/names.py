"""Every table and blob container the application uses, declared once.

Code imports the names from here; the Bicep templates provision exactly these (checked by
``tests/infra``). Names follow the strictest backend's rules (Azure Tables: alphanumeric, 3-63 chars;
blob containers: lowercase, digits and hyphens).
"""

from __future__ import annotations

#: Message journal: per correlation ID, every stage a message went through.
TABLE_JOURNAL = "journal"
#: HL7 v2 outcomes per (sender, control ID): duplicate retransmissions get the stored ACK back.
TABLE_HL7_OUTCOMES = "hl7outcomes"
#: Idempotency records per (namespace, clinical-event key) hash: state, lease, stored outcome.
TABLE_IDEMPOTENCY = "idempotency"
#: Transactional outbox entries: committed bus messages not yet published (see shared.outbox).
TABLE_OUTBOX = "outbox"
#: Write-back work parked while a downstream's circuit is open (see shared.backbone.parking).
TABLE_PARKED = "writebackparked"
#: Circuit-breaker state per write-back downstream, shared by every instance (shared.backbone.breaker).
TABLE_CIRCUITS = "circuits"
#: Dead letters seen by the dead-letter monitor: reason, delivery count, correlation ID (no bodies).
TABLE_DEADLETTERS = "deadletters"
#: What is accepted but not finished: one row per (correlation ID, subscriber still to act).
TABLE_INFLIGHT = "inflight"
#: (correlation ID, subscriber) pairs announced as stuck, so each is announced once (shared.backbone.stuck).
TABLE_STUCK = "stuck"
#: Event ledger per (write-back downstream, event identity / ordering scope): the version applied last
#: (content digest, clinical order) - duplicates, superseded versions and updates are decided on it.
TABLE_EVENT_LEDGER = "eventledger"
#: Natural-id claims (visit / order number with its issuer -> the patient's hashed identifiers) and
#: patient merges (retired patient token -> survivor): two patients claiming one number is a conflict.
TABLE_EVENT_CLAIMS = "eventclaims"
#: Bulk Data export jobs: request, transaction time, per-type cursors, files written, lease
#: (shared.bulkexport).
TABLE_BULK_EXPORT = "bulkexport"
#: Certificate expiry bands announced, per (certificate, version, band) (shared.credentials.expiry).
TABLE_CERT_ALERTS = "certalerts"
#: Reconciliation (shared.reconcile): what the FHIR write-back wrote (per resource: version, element
#: digests), run summaries and their variance items, the scheduled run claimed per local day.
TABLE_RECONCILE = "reconcile"
#: Health probes read this (never written).
TABLE_HEALTH = "health"
#: Blob container probed by the health check.
CONTAINER_HEALTH = "health"
#: Bulk Data export files (NDJSON per type, deleted and error files) under ``<job id>/``.
CONTAINER_BULK_EXPORT = "bulk-export"
#: Write-backs held for a person because PDS could not verify the patient's identity (shared/pds/review.py):
#: the record per item, and the held canonical event.
TABLE_IDENTITY_REVIEW = "identityreview"
CONTAINER_IDENTITY_REVIEW = "identity-review"
#: MESH inbound per (mailbox, MESH message id): stored -> ingested / quarantined -> acknowledged; the bodies.
TABLE_MESH_INBOX = "meshinbox"
CONTAINER_MESH_INBOX = "mesh-inbox"
#: MESH outbound per (sending mailbox, local id = event key): MESH message id and tracking status.
TABLE_MESH_OUTBOX = "meshoutbox"

TABLES: frozenset[str] = frozenset(
    {
        TABLE_JOURNAL,
        TABLE_HL7_OUTCOMES,
        TABLE_IDEMPOTENCY,
        TABLE_OUTBOX,
        TABLE_PARKED,
        TABLE_CIRCUITS,
        TABLE_DEADLETTERS,
        TABLE_INFLIGHT,
        TABLE_STUCK,
        TABLE_EVENT_LEDGER,
        TABLE_EVENT_CLAIMS,
        TABLE_CERT_ALERTS,
        TABLE_RECONCILE,
        TABLE_BULK_EXPORT,
        TABLE_HEALTH,
        TABLE_IDENTITY_REVIEW,
        TABLE_MESH_INBOX,
        TABLE_MESH_OUTBOX,
    }
)
CONTAINERS: frozenset[str] = frozenset(
    {CONTAINER_HEALTH, CONTAINER_BULK_EXPORT, CONTAINER_IDENTITY_REVIEW, CONTAINER_MESH_INBOX}
)
