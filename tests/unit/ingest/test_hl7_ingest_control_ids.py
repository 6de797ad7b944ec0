"""Issue 10, case 6: only accepted messages (AA / CA) reserve their control ID.

A rejected message (AE, AR, CR) leaves the control ID free, so a corrected resend under the same MSH-10
is processed normally; once a message is accepted, its control ID is reserved (the same bytes get the
stored ACK, other bytes ERR 205). Concurrent writers replace a stored rejection only through the
record's ETag.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.hl7v2 import parse_message
from shared.ingest.hl7v2 import OUTCOME_TABLE, Hl7Ingest, bus_message_id
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from shared.storage.keys import safe_key
from tests.unit.ingest.hl7_ingest_support import BAD_NHS, RacingStore, ack_errs, oru

SENDER_KEY = safe_key("LIMS|LAB")


@pytest.fixture
def service(container: Any) -> Hl7Ingest:
    return Hl7Ingest(container.bus, container.records, strict_senders=())


def published(container: Any) -> list[Any]:
    return container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)


def stored(container: Any, control_id: str) -> dict[str, Any]:
    record = container.records.get(OUTCOME_TABLE, SENDER_KEY, safe_key(control_id))
    assert record is not None
    return dict(record.value)


def test_content_error_then_corrected_resend_is_accepted_and_published(
    service: Hl7Ingest, container: Any
) -> None:
    first = service.handle(oru("R1", nhs_number=BAD_NHS), source="t", correlation_id="a")
    assert (first.code, first.outcome) == ("AE", "content-error")
    assert stored(container, "R1")["outcome"] == "content-error"
    corrected = service.handle(oru("R1"), source="t", correlation_id="b")
    assert (corrected.code, corrected.outcome, corrected.duplicate) == ("AA", "accepted", False)
    assert ack_errs(corrected.ack) == []
    [message] = published(container)
    assert message.body == oru("R1")
    assert message.message_id == bus_message_id(parse_message(oru("R1"))) == corrected.message_id
    after = stored(container, "R1")
    assert (after["outcome"], after["code"], after["correlation_id"]) == ("accepted", "AA", "b")


def test_accepted_control_id_is_reserved(service: Hl7Ingest, container: Any) -> None:
    service.handle(oru("R2", nhs_number=BAD_NHS), source="t", correlation_id="a")
    accepted = service.handle(oru("R2"), source="t", correlation_id="b")
    again = service.handle(oru("R2"), source="t", correlation_id="c")
    assert again.duplicate and again.ack == accepted.ack and again.code == "AA"
    different = service.handle(oru("R2", obr4="LFT^Liver function^L"), source="t", correlation_id="d")
    assert (different.code, different.outcome) == ("AR", "rejected")
    assert ack_errs(different.ack) == [("205", "MSH^1^10^1", "E")]
    assert len(published(container)) == 1
    assert stored(container, "R2")["correlation_id"] == "b"  # the 205 did not replace the acceptance


def test_identical_resend_of_a_rejection_is_processed_again(service: Hl7Ingest, container: Any) -> None:
    """Our choice: a byte-identical resend of a rejected message is validated again (not answered from the
    store) - the rules or the sender's strictness may have changed, and a rejection had no effects."""
    bad = oru("R3", nhs_number=BAD_NHS)
    first = service.handle(bad, source="t", correlation_id="a")
    second = service.handle(bad, source="t", correlation_id="b")
    assert (second.code, second.duplicate) == ("AE", False)
    assert ack_errs(second.ack) == ack_errs(first.ack) == [("102", "PID^1^3^1^1", "E")]
    assert stored(container, "R3")["correlation_id"] == "b"
    assert published(container) == []


def test_structural_rejection_then_corrected_resend(service: Hl7Ingest, container: Any) -> None:
    no_obr = b"\r".join(line for line in oru("R4").split(b"\r") if not line.startswith(b"OBR"))
    rejected = service.handle(no_obr, source="t", correlation_id="a")
    assert (rejected.code, rejected.outcome) == ("AR", "rejected")
    assert service.handle(oru("R4"), source="t", correlation_id="b").code == "AA"
    assert len(published(container)) == 1


def test_enhanced_mode_commit_reject_then_corrected_resend(service: Hl7Ingest, container: Any) -> None:
    bad = oru("R5", nhs_number=BAD_NHS, accept_ack="AL", app_ack="NE")
    assert service.handle(bad, source="t", correlation_id="a").code == "CR"
    good = service.handle(oru("R5", accept_ack="AL", app_ack="NE"), source="t", correlation_id="b")
    assert (good.code, good.outcome) == ("CA", "accepted")
    assert len(published(container)) == 1


def test_records_without_an_outcome_still_reserve(service: Hl7Ingest, container: Any) -> None:
    """Outcome records written before outcomes were recorded count as accepted (the safe reading)."""
    container.records.insert(
        OUTCOME_TABLE, SENDER_KEY, safe_key("R6"), {"code": "AA", "digest": "x", "ack": ""}
    )
    clash = service.handle(oru("R6"), source="t", correlation_id="a")
    assert ack_errs(clash.ack) == [("205", "MSH^1^10^1", "E")]
    assert published(container) == []


# -- concurrency: another edge instance writes between our read and our write ---------------------------


def _racing(container: Any, **kwargs: Any) -> tuple[Hl7Ingest, RacingStore]:
    store = RacingStore(container.records, **kwargs)
    return Hl7Ingest(container.bus, store, strict_senders=()), store


def test_rejection_stored_after_our_read_is_replaced_by_the_acceptance(container: Any) -> None:
    """Our read saw nothing; a concurrent rejected copy then inserted its outcome: insert fails, the
    rejection is read again and replaced through its ETag."""
    other = Hl7Ingest(container.bus, container.records, strict_senders=())
    service, store = _racing(container, stale_first_read=True)
    store.before_write = lambda: other.handle(oru("K1", nhs_number=BAD_NHS), source="t", correlation_id="x")
    result = service.handle(oru("K1"), source="t", correlation_id="ours")
    assert (result.code, result.duplicate) == ("AA", False)
    after = stored(container, "K1")
    assert (after["outcome"], after["correlation_id"]) == ("accepted", "ours")
    assert len(published(container)) == 1


def test_rejection_rewritten_after_our_read_does_not_lose_the_acceptance(container: Any) -> None:
    """We read a rejection, a concurrent writer replaced it (new ETag) before our update: the update
    conflicts, we read again and still replace the (newer) rejection."""
    other = Hl7Ingest(container.bus, container.records, strict_senders=())
    other.handle(oru("K2", nhs_number=BAD_NHS), source="t", correlation_id="x1")
    service, store = _racing(container)
    store.before_write = lambda: other.handle(oru("K2", nhs_number=BAD_NHS), source="t", correlation_id="x2")
    result = service.handle(oru("K2"), source="t", correlation_id="ours")
    assert result.code == "AA"
    assert stored(container, "K2")["correlation_id"] == "ours"


def test_acceptance_stored_after_our_read_wins_over_our_rejection(container: Any) -> None:
    """We are rejecting; meanwhile another copy was accepted: the acceptance is never overwritten and we
    answer as a sequential resend would have been answered (ERR 205)."""
    other = Hl7Ingest(container.bus, container.records, strict_senders=())
    other.handle(oru("K3", nhs_number=BAD_NHS), source="t", correlation_id="x1")
    service, store = _racing(container)
    store.before_write = lambda: other.handle(oru("K3"), source="t", correlation_id="winner")
    result = service.handle(oru("K3", nhs_number=BAD_NHS), source="t", correlation_id="ours")
    assert ack_errs(result.ack) == [("205", "MSH^1^10^1", "E")]
    assert stored(container, "K3")["correlation_id"] == "winner"
    assert len(published(container)) == 1


def test_identical_copy_accepted_concurrently_gets_the_same_ack(container: Any) -> None:
    other = Hl7Ingest(container.bus, container.records, strict_senders=())
    service, store = _racing(container, stale_first_read=True)
    first: list[Any] = []
    store.before_write = lambda: first.append(other.handle(oru("K4"), source="t", correlation_id="x"))
    result = service.handle(oru("K4"), source="t", correlation_id="ours")
    assert result.duplicate and result.ack == first[0].ack
    assert len(published(container)) == 1  # the bus dropped our copy (same message id)
