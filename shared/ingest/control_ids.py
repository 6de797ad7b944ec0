"""Read-only lookup: which message did a sender's HL7 v2 control ID (MSH-10) become?

The HL7 v2 ingest (:mod:`shared.ingest.hl7v2`) remembers the outcome of every parseable message with a
control ID in table ``hl7outcomes``: partition = ``safe_key("MSH-3|MSH-4")``, row = ``safe_key(MSH-10)``,
value with the correlation ID, ACK code and outcome. This module only reads that table (``tie trace
--control-id``); it never writes it. Identifiers only: no message content is stored there.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.storage.errors import InvalidKey
from shared.storage.keys import restore_key, safe_key
from shared.storage.names import TABLE_HL7_OUTCOMES
from shared.storage.ports import Record, RecordStore


@dataclass(frozen=True, slots=True)
class ControlIdMatch:
    """One remembered (sender, control ID) and the message it belongs to."""

    sending_application: str
    sending_facility: str
    control_id: str
    correlation_id: str
    code: str
    outcome: str
    at: str | None


def _namespace(value: str) -> str:
    """The namespace id of an HD value (``PAS^1.2.3^ISO`` -> ``PAS``)."""
    return value.split("^", 1)[0]


def _matches(wanted: str, stored: str) -> bool:
    return wanted == stored or wanted == _namespace(stored)


def _match(record: Record, application: str, facility: str, control_id: str) -> ControlIdMatch | None:
    correlation_id = record.value.get("correlation_id")
    if not correlation_id:
        return None
    return ControlIdMatch(
        sending_application=application,
        sending_facility=facility,
        control_id=control_id,
        correlation_id=str(correlation_id),
        code=str(record.value.get("code") or ""),
        outcome=str(record.value.get("outcome") or ""),
        at=str(record.value["at"]) if record.value.get("at") else None,
    )


def find_by_control_id(
    records: RecordStore, application: str, control_id: str, *, facility: str | None = None
) -> list[ControlIdMatch]:
    """Messages whose MSH-10 is ``control_id`` from sending application ``application`` (MSH-3, or its
    namespace id) and, when given, sending facility ``facility`` (MSH-4, or its namespace id).

    With both exact, one point read; otherwise the rows with that control ID are read across senders
    (a scan of one row-key range) and filtered. Ordered by sender."""
    row = safe_key(control_id)
    if facility is not None:
        record = records.get(TABLE_HL7_OUTCOMES, safe_key(f"{application}|{facility}"), row)
        if record is not None:
            found = _match(record, application, facility, control_id)
            return [found] if found is not None else []
    matches: list[ControlIdMatch] = []
    for record in records.query(TABLE_HL7_OUTCOMES, row_key_prefix=row):
        if record.row_key != row:
            continue
        try:
            sender = restore_key(record.partition_key)
        except InvalidKey:
            continue
        stored_app, _, stored_facility = sender.partition("|")
        if not _matches(application, stored_app):
            continue
        if facility is not None and not _matches(facility, stored_facility):
            continue
        found = _match(record, stored_app, stored_facility, control_id)
        if found is not None:
            matches.append(found)
    return matches
