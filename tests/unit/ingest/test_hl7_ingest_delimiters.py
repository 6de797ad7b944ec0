"""Issue 10, case 7 at the ingest edge: suspected unescaped delimiters are ACK warnings and a journal
note; senders in ``TIE_HL7_STRICT_SENDERS`` get them as errors (AE / CR)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config.settings import Settings, get_settings, parse_sender_list, reset_settings
from shared.errors import ConfigurationError
from shared.ingest.hl7v2 import SUSPECT_DELIMITERS_STAGE, Hl7Ingest
from shared.journal import Journal
from shared.messaging.topology import SUB_INGEST_PROCESSOR, TOPIC_INGEST
from tests.unit.ingest.hl7_ingest_support import ack_errs, oru

SUSPECT = {"obr4": "U&E^Urea and electrolytes^L", "units": "x10^9/L"}


def published(container: Any) -> list[Any]:
    return container.bus.peek(TOPIC_INGEST, SUB_INGEST_PROCESSOR)


def test_warnings_in_the_aa_at_their_location(container: Any) -> None:
    service = Hl7Ingest(container.bus, container.records, strict_senders=())
    result = service.handle(oru("D1", **SUSPECT), source="t", correlation_id="d-1")
    assert (result.code, result.outcome) == ("AA", "accepted")
    # ERR-2 = segment ^ sequence ^ field ^ repetition ^ component; ERR-3.1 = 102; ERR-4 = W
    assert ack_errs(result.ack) == [("102", "OBR^1^4^1^1", "W"), ("102", "OBX^1^6^1^1", "W")]
    assert len(published(container)) == 1  # a warning does not stop the message


def test_journal_note_holds_positions_not_values(container: Any) -> None:
    service = Hl7Ingest(container.bus, container.records, strict_senders=())
    service.handle(oru("D2", **SUSPECT), source="t", correlation_id="d-2")
    entries = Journal(container.records).trace("d-2")
    assert [e.stage for e in entries] == [
        "received",
        SUSPECT_DELIMITERS_STAGE,
        "published",
        "acknowledged",
    ]
    [note] = [e for e in entries if e.stage == SUSPECT_DELIMITERS_STAGE]
    assert dict(note.attributes) == {
        "control_id": "D2",
        "count": 2,
        "locations": "OBR[1]-4[1].1,OBX[1]-6[1].1",
        "strict": False,
    }
    text = repr([dict(e.attributes) for e in entries])
    for value in ("U&E", "Urea", "x10", "9/L", "9434765919", "TESTPATIENT"):
        assert value not in text


def test_clean_message_has_no_note(container: Any) -> None:
    service = Hl7Ingest(container.bus, container.records, strict_senders=())
    result = service.handle(oru("D3"), source="t", correlation_id="d-3")
    assert ack_errs(result.ack) == []
    assert SUSPECT_DELIMITERS_STAGE not in [e.stage for e in Journal(container.records).trace("d-3")]


def test_strict_sender_gets_ae_and_nothing_is_published(container: Any) -> None:
    service = Hl7Ingest(container.bus, container.records, strict_senders={("LIMS", "LAB")})
    result = service.handle(oru("D4", **SUSPECT), source="t", correlation_id="d-4")
    assert (result.code, result.outcome) == ("AE", "content-error")
    assert ack_errs(result.ack) == [("102", "OBR^1^4^1^1", "E"), ("102", "OBX^1^6^1^1", "E")]
    assert published(container) == []
    [note] = [e for e in Journal(container.records).trace("d-4") if e.stage == SUSPECT_DELIMITERS_STAGE]
    assert note.attributes["strict"] is True
    # The rejection does not reserve D4: the escaped resend is accepted.
    fixed = service.handle(oru("D4", obr4="U\\T\\E^Urea and electrolytes^L"), source="t", correlation_id="x")
    assert fixed.code == "AA" and ack_errs(fixed.ack) == []


def test_strict_sender_in_enhanced_mode_gets_cr(container: Any) -> None:
    service = Hl7Ingest(container.bus, container.records, strict_senders={("LIMS", "*")})
    result = service.handle(
        oru("D5", accept_ack="AL", app_ack="NE", **SUSPECT), source="t", correlation_id="c"
    )
    assert result.code == "CR"
    assert [severity for _c, _l, severity in ack_errs(result.ack)] == ["E", "E"]


@pytest.mark.parametrize(
    ("strict", "sender", "facility", "code"),
    [
        ({("LIMS", "LAB")}, "LIMS", "LAB", "AE"),
        ({("LIMS", "LAB")}, "lims", "lab", "AE"),  # namespace ids compared case-insensitively
        ({("LIMS", "LAB")}, "LIMS", "OTHER", "AA"),
        ({("LIMS", "*")}, "LIMS", "OTHER", "AE"),
        ({("*", "LAB")}, "PAS", "LAB", "AE"),
        ({("*", "*")}, "ANY", "WHERE", "AE"),
        ({("PAS", "*")}, "LIMS", "LAB", "AA"),
    ],
)
def test_strict_sender_matching(
    container: Any, strict: set[tuple[str, str]], sender: str, facility: str, code: str
) -> None:
    service = Hl7Ingest(container.bus, container.records, strict_senders=strict)
    raw = oru("D6", sender=sender, facility=facility, **SUSPECT)
    assert service.handle(raw, source="t", correlation_id="m").code == code


def test_strict_senders_come_from_the_setting(container: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_HL7_STRICT_SENDERS", "PAS|RGT01, LIMS|LAB")
    reset_settings()
    assert get_settings().hl7_strict_sender_set == {("PAS", "RGT01"), ("LIMS", "LAB")}
    service = Hl7Ingest(container.bus, container.records)
    assert service.handle(oru("D7", **SUSPECT), source="t", correlation_id="s").code == "AE"


def test_sender_list_parsing() -> None:
    assert parse_sender_list("") == frozenset()
    assert parse_sender_list(" lab|rgt01 , PAS ,*") == {("LAB", "RGT01"), ("PAS", "*"), ("*", "*")}
    for bad in ("A|B|C", "|B", "A|"):
        with pytest.raises(ValueError, match="MSH-3"):
            parse_sender_list(bad)


def test_malformed_setting_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIE_HL7_STRICT_SENDERS", "A|B|C")
    reset_settings()
    with pytest.raises(ConfigurationError):
        get_settings()
    assert Settings.model_validate({"TIE_HL7_STRICT_SENDERS": "LAB"}).hl7_strict_sender_set == {("LAB", "*")}
