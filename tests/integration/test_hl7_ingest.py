"""HL7 v2 ingest core: persist-before-ACK, ACK codes and modes, duplicates, faults."""

from __future__ import annotations

from typing import Any

import pytest

from shared.hl7v2 import parse_message
from shared.ingest.hl7v2 import OUTCOME_TABLE, Hl7Ingest, process_hl7v2
from shared.ingest.ingest import inbound_from_properties
from shared.messaging.errors import BusUnavailable
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tests.fixtures.hl7_messages import adt_a01


def ack_fields(ack: bytes) -> dict[str, Any]:
    msg = parse_message(ack)
    errs = msg.segments_named("ERR")
    return {
        "code": msg["MSA-1"],
        "ref": msg["MSA-2"],
        "type": msg["MSH-9"],
        "err_codes": [e.get(3, comp=1) for e in errs],
        "err_locations": [(e.get(2, comp=1), e.get(2, comp=3)) for e in errs],
        "text": msg.get("MSA-3"),
    }


@pytest.fixture
def service(container: Any) -> Hl7Ingest:
    return Hl7Ingest(container.bus, container.records)


def on_topic(container: Any) -> list[Any]:
    return container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)


def test_valid_adt_is_published_before_aa(service: Hl7Ingest, container: Any) -> None:
    published_before_ack: list[int] = []
    real_insert = container.records.insert

    def spy(table: str, *args: Any, **kwargs: Any) -> Any:
        if table == OUTCOME_TABLE:  # outcome stored right before the ACK is returned
            published_before_ack.append(len(on_topic(container)))
        return real_insert(table, *args, **kwargs)

    container.records.insert = spy
    result = service.handle(adt_a01("C1"), source="test", correlation_id="corr-1")
    assert result.outcome == "accepted" and result.code == "AA"
    assert ack_fields(result.ack) == {
        "code": "AA",
        "ref": "C1",
        "type": "ACK",
        "err_codes": [],
        "err_locations": [],
        "text": None,
    }
    assert published_before_ack == [1]
    [msg] = on_topic(container)
    assert msg.body == adt_a01("C1")
    assert msg.correlation_id == "corr-1"
    assert msg.application_properties["tie_channel"] == "hl7v2"
    assert msg.application_properties["hl7_message_type"] == "ADT"
    assert msg.application_properties["hl7_control_id"] == "C1"


def test_duplicate_control_id_gets_the_same_ack_and_is_not_reprocessed(
    service: Hl7Ingest, container: Any
) -> None:
    first = service.handle(adt_a01("C2"), source="test", correlation_id="a")
    again = service.handle(adt_a01("C2"), source="test", correlation_id="b")
    assert again.duplicate and not first.duplicate
    assert again.ack == first.ack and again.code == "AA"
    assert len(on_topic(container)) == 1


def test_same_control_id_from_another_sender_is_a_different_message(
    service: Hl7Ingest, container: Any
) -> None:
    service.handle(adt_a01("C3", sender="PAS"), source="test", correlation_id="a")
    other = service.handle(adt_a01("C3", sender="LAB"), source="test", correlation_id="b")
    assert not other.duplicate and other.code == "AA"
    assert len(on_topic(container)) == 2


def test_reused_control_id_with_different_content_is_rejected(service: Hl7Ingest, container: Any) -> None:
    service.handle(adt_a01("C4"), source="test", correlation_id="a")
    clash = service.handle(adt_a01("C4", nhs_number="9449305552"), source="test", correlation_id="b")
    assert clash.code == "AR" and clash.outcome == "rejected"
    assert ack_fields(clash.ack)["err_codes"] == ["205"]
    assert len(on_topic(container)) == 1


def test_resend_of_a_content_error_is_processed_again(service: Hl7Ingest, container: Any) -> None:
    """A rejection does not reserve the control ID: even the same bytes are validated again (same AE)."""
    bad = adt_a01("C5", nhs_number="9434765910")
    first = service.handle(bad, source="test", correlation_id="a")
    assert first.code == "AE" and first.outcome == "content-error"
    fields = ack_fields(first.ack)
    assert fields["err_codes"] == ["102"]
    assert fields["err_locations"] == [("PID", "3")]
    assert "9434765910" not in first.ack.decode()
    again = service.handle(bad, source="test", correlation_id="b")
    assert not again.duplicate and again.code == "AE"
    assert ack_fields(again.ack) == fields
    assert on_topic(container) == []


def test_corrected_resend_under_a_rejected_control_id_is_accepted(service: Hl7Ingest, container: Any) -> None:
    rejected = service.handle(adt_a01("C7", nhs_number="9434765910"), source="test", correlation_id="a")
    assert rejected.code == "AE"
    corrected = service.handle(adt_a01("C7"), source="test", correlation_id="b")
    assert corrected.code == "AA" and corrected.outcome == "accepted" and not corrected.duplicate
    [published] = on_topic(container)
    assert published.body == adt_a01("C7")
    assert published.message_id == corrected.message_id
    # Now the control ID is reserved: the same bytes are a duplicate, other bytes a 205.
    assert service.handle(adt_a01("C7"), source="test", correlation_id="c").duplicate
    clash = service.handle(adt_a01("C7", nhs_number="9434765910"), source="test", correlation_id="d")
    assert clash.code == "AR" and ack_fields(clash.ack)["err_codes"] == ["205"]
    assert len(on_topic(container)) == 1


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff garbage", b"PID|1||123\r", b"MSH|^~\\&|A|B\rPID|1\r\x1c", b"MSH^~\\&|bad delimiters"],
)
def test_unparseable_input_gets_ar_with_err(service: Hl7Ingest, container: Any, raw: bytes) -> None:
    result = service.handle(raw, source="test", correlation_id="x")
    assert result.code == "AR" and result.outcome == "rejected"
    fields = ack_fields(result.ack)
    assert fields["code"] == "AR" and fields["err_codes"]
    assert on_topic(container) == []


def test_unsupported_message_type_is_rejected(service: Hl7Ingest, container: Any) -> None:
    result = service.handle(adt_a01("C6", message_type="ZZZ^Z01"), source="test", correlation_id="x")
    assert result.code == "AR"
    assert ack_fields(result.ack)["err_codes"] == ["200"]
    assert on_topic(container) == []


def test_missing_control_id_is_rejected(service: Hl7Ingest, container: Any) -> None:
    result = service.handle(adt_a01(""), source="test", correlation_id="x")
    assert result.code == "AR"
    assert "101" in ack_fields(result.ack)["err_codes"]
    assert on_topic(container) == []


def test_enhanced_mode_commit_ack(service: Hl7Ingest, container: Any) -> None:
    result = service.handle(adt_a01("E1", accept_ack="AL", app_ack="NE"), source="test", correlation_id="x")
    assert result.code == "CA" and ack_fields(result.ack)["code"] == "CA"
    # Content errors are not committed: we never CA a message we know we cannot process.
    bad = service.handle(
        adt_a01("E2", nhs_number="9434765910", accept_ack="AL", app_ack="AL"),
        source="test",
        correlation_id="y",
    )
    assert bad.code == "CR" and bad.outcome == "content-error"
    assert ack_fields(bad.ack)["err_codes"] == ["102"]
    assert len(on_topic(container)) == 1
    # MSH-15 = SU: only successes are acknowledged.
    quiet = service.handle(
        adt_a01("E4", nhs_number="9434765910", accept_ack="SU", app_ack="NE"),
        source="test",
        correlation_id="z",
    )
    assert quiet.code == "CR" and quiet.ack is None


def test_enhanced_mode_never_means_no_ack_but_still_stored(service: Hl7Ingest, container: Any) -> None:
    result = service.handle(adt_a01("E3", accept_ack="NE", app_ack="NE"), source="test", correlation_id="x")
    assert result.ack is None and result.outcome == "accepted"
    assert len(on_topic(container)) == 1
    assert (
        service.handle(adt_a01("E3", accept_ack="NE", app_ack="NE"), source="t", correlation_id="y").ack
        is None
    )


def test_bus_outage_answers_ar_and_the_retry_succeeds(service: Hl7Ingest, container: Any) -> None:
    real_publish = container.bus.publish

    def down(*args: Any, **kwargs: Any) -> None:
        raise BusUnavailable("bus down")

    container.bus.publish = down
    failed = service.handle(adt_a01("T1"), source="test", correlation_id="a")
    assert failed.code == "AR" and failed.outcome == "unavailable"
    assert ack_fields(failed.ack)["err_codes"] == ["207"]
    container.bus.publish = real_publish
    retry = service.handle(adt_a01("T1"), source="test", correlation_id="b")
    assert retry.code == "AA" and not retry.duplicate
    assert len(on_topic(container)) == 1


def test_bus_processor_maps_and_publishes_the_clinical_event(container: Any) -> None:
    from shared.backbone.clinical import from_message, to_message
    from shared.ingest.ingest import ProcessorContext
    from shared.journal import Journal
    from shared.messaging.topology import SUB_CLINICAL_AUDIT, TOPIC_CLINICAL

    inbound = inbound_from_properties(
        body=adt_a01("P1"),
        message_id="m",
        correlation_id="c-1",
        content_type=None,
        delivery_count=1,
        properties={"tie_channel": "hl7v2"},
    )
    context = ProcessorContext(bus=container.bus, journal=Journal(container.records))
    assert process_hl7v2(inbound, context) == "published admission"
    [published] = container.bus.peek(TOPIC_CLINICAL, SUB_CLINICAL_AUDIT)
    event = from_message(published.body)
    # the event version as carried by this message: identity, content digest, carrying message
    assert published.message_id == to_message(event).message_id
    assert published.message_id.startswith(event.key.value + "~")
    assert published.session_id and "9434765919" not in published.session_id
    assert published.application_properties["tie_event_kind"] == "admission"
    assert event.patient.nhs_number is not None and event.patient.nhs_number.value == "9434765919"
    assert event.provenance.correlation_id == "c-1"
    # A redelivery re-publishes the same event id: the bus drops the duplicate.
    process_hl7v2(inbound, context)
    assert len(container.bus.peek(TOPIC_CLINICAL, SUB_CLINICAL_AUDIT)) == 1


def test_unmappable_message_gets_ae_naming_the_field(service: Hl7Ingest, container: Any) -> None:
    # Valid structure, but an admission without a visit number (PV1-19) has no identity: AE at PV1-19.
    raw = adt_a01("U1").replace(b"|IP|V000123|", b"|IP||")
    result = service.handle(raw, source="test", correlation_id="u-1")
    assert result.code == "AE" and result.outcome == "content-error"
    fields = ack_fields(result.ack)
    assert fields["err_codes"] == ["101"]
    assert fields["err_locations"] == [("PV1", "19")]
    assert on_topic(container) == []


def test_cancel_transfer_without_evn6_is_accepted(service: Hl7Ingest, container: Any) -> None:
    # Many PAS never fill EVN-6. An A12 without it is taken (the ledger then cancels the encounter's most
    # recent transfer, docs/event-identity.md), not refused: a refusal would leave the patient on the
    # cancelled ward until someone handled the AE.
    a12 = adt_a01("X1", message_type="ADT^A12^ADT_A12").replace(b"EVN|A01|", b"EVN|A12|")
    result = service.handle(a12, source="test", correlation_id="x-1")
    assert result.code == "AA"
    assert len(on_topic(container)) == 1


def test_journal_records_the_ingest_stages(service: Hl7Ingest, container: Any) -> None:
    from shared.journal import Journal

    service.handle(adt_a01("J1"), source="test", correlation_id="j-1")
    stages = [e.stage for e in Journal(container.records).trace("j-1")]
    assert stages == ["received", "published", "acknowledged"]
    service.handle(b"garbage", source="test", correlation_id="j-2")
    assert [e.stage for e in Journal(container.records).trace("j-2")] == [
        "received",
        "rejected",
        "acknowledged",
    ]
